package daemon

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/vipgate/vipgate/internal/netlab"
	"github.com/vipgate/vipgate/internal/testutil"
	"github.com/vipgate/vipgate/vrrp"
)

// A client whose SYN was held while the VIP moved is connected to the new
// master as soon as that master announces the VIP (gratuitous ARP for
// IPv4, unsolicited neighbor advertisement for IPv6), not after its own
// SYN retransmission a second later.
func TestHeldSYNsGoToTheNewMaster(t *testing.T) {
	for _, tc := range []struct {
		name, vip, bits, wildcard string
	}{
		{"IPv4", "192.0.2.100", "/24", "0.0.0.0:8080"},
		{"IPv6", "2001:db8::100", "/64", "[::]:8080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testHeldSYNsGoToTheNewMaster(t, netip.MustParseAddr(tc.vip), tc.bits, tc.wildcard)
		})
	}
}

func testHeldSYNsGoToTheNewMaster(t *testing.T, vip netip.Addr, bits, wildcard string) {
	testutil.RequireRoot(t)
	lab := netlab.New(t, netlab.Options{Hosts: 3})
	a, b, client := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2]
	vipPort := net.JoinHostPort(vip.String(), "8080")
	a.MustRun(t, "ip", "addr", "add", vip.String()+bits, "dev", "eth0", "nodad")

	// Each node answers with its name.
	serve := func(h *netlab.Host, name string) {
		var ln net.Listener
		err := h.Do(func() error {
			lc := net.ListenConfig{}
			lc.SetMultipathTCP(false)
			var err error
			ln, err = lc.Listen(context.Background(), "tcp", wildcard)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				io.WriteString(c, name)
				c.Close()
			}
		}()
	}
	serve(a, "node-a")
	if err := client.Reach(vip); err != nil {
		t.Fatal(err)
	}
	// Linux ignores an ARP update within locktime (1 s) of the last one.
	time.Sleep(1100 * time.Millisecond)

	var fwd *synForwarder
	var resume func()
	err := a.Do(func() error {
		var err error
		if _, resume, err = prepareHold([]netip.Addr{vip}).holdNewConnections(); err != nil {
			return err
		}
		fwd, err = startSYNForwarder([]netip.Addr{vip}, zaptest.NewLogger(t))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resume()
	// node-b's listener opens after the hold: both nodes are this one
	// process, whose listeners the hold filters.
	serve(b, "node-b")

	type answer struct {
		from string
		took time.Duration
		err  error
	}
	answered := make(chan answer, 1)
	start := time.Now()
	go client.Do(func() error {
		c, err := net.DialTimeout("tcp", vipPort, 5*time.Second)
		if err != nil {
			answered <- answer{err: err}
			return nil
		}
		defer c.Close()
		b, err := io.ReadAll(c)
		answered <- answer{from: string(b), took: time.Since(start), err: err}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // the SYN is held at node-a

	// The VIP moves: node-a lets go, node-b takes it and announces it.
	moved := time.Now()
	a.MustRun(t, "ip", "addr", "del", vip.String()+bits, "dev", "eth0")
	b.MustRun(t, "ip", "addr", "add", vip.String()+bits, "dev", "eth0", "nodad")
	if err := b.Do(func() error { return vrrp.Announce("eth0", vip, 1) }); err != nil {
		t.Fatal(err)
	}

	got := <-answered
	forwarded := fwd.Stop()
	if got.err != nil {
		t.Fatalf("held client: %v", got.err)
	}
	t.Logf("held client answered by %s %v after it connected (%v after the VIP moved); %d SYN(s) forwarded",
		got.from, got.took, time.Since(moved), forwarded)
	if got.from != "node-b" {
		t.Errorf("held client answered by %q, want node-b", got.from)
	}
	// Its own retransmission would come 1 s after its SYN.
	if got.took > 700*time.Millisecond || forwarded == 0 {
		t.Errorf("held client connected after %v with %d SYNs forwarded: it waited for its own retransmission", got.took, forwarded)
	}
}
