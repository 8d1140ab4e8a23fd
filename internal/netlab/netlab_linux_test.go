package netlab

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

func TestLabHostsReachEachOtherAndCleanUp(t *testing.T) {
	var prefix string
	t.Run("lab", func(t *testing.T) {
		lab := New(t, Options{Hosts: 2})
		prefix = lab.Prefix
		a, b := lab.Hosts[0], lab.Hosts[1]
		for _, addr := range []netip.Addr{b.Addr4.Addr(), b.Addr6.Addr()} {
			if err := a.Reach(addr); err != nil {
				t.Fatal(err)
			}
		}
		mac, err := a.NeighbourMAC(b.Addr4.Addr())
		if err != nil || mac.String() != b.MAC.String() {
			t.Fatalf("neighbour entry for b: %v %v, want %v", mac, err, b.MAC)
		}
		if !b.HasAddr(netip.MustParseAddr("192.0.2.2")) {
			t.Fatal("b lacks 192.0.2.2")
		}
		// A socket opened through Do lives in a's namespace.
		var ln net.Listener
		if err := a.Do(func() (err error) {
			ln, err = net.Listen("tcp", "192.0.2.1:0") // only a's namespace has this address
			return err
		}); err != nil {
			t.Fatal(err)
		}
		ln.Close()
		p := b.Start(t, "sleep", "60")
		if err := a.PortDown(); err != nil {
			t.Fatal(err)
		}
		if err := a.Reach(b.Addr4.Addr()); err == nil {
			t.Fatal("b answers with a's port down")
		}
		if err := a.PortUp(); err != nil {
			t.Fatal(err)
		}
		p.Kill()
	})
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), prefix) {
		t.Fatalf("namespaces left behind:\n%s", out)
	}
}
