package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A held listener neither accepts nor refuses new connections (the SYN is
// dropped, so the client retries), while an established connection keeps
// working; resume lets new connections in again.
func TestHoldNewConnections(t *testing.T) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false) // socket filters do not apply to MPTCP listeners
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	other, err := lc.Listen(context.Background(), "tcp", "127.0.0.2:0") // not a VIP: untouched
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		for _, l := range []net.Listener{ln, other} {
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						buf := make([]byte, 1)
						for {
							if _, err := c.Read(buf); err != nil {
								return
							}
							c.Write(buf)
						}
					}()
				}
			}()
		}
	}()
	established, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer established.Close()

	held, resume, err := prepareHold([]netip.Addr{netip.MustParseAddr("127.0.0.1")}).holdNewConnections()
	if err != nil || held != 1 {
		t.Fatalf("holdNewConnections: held %d listeners, %v; want 1", held, err)
	}
	_, err = net.DialTimeout("tcp", ln.Addr().String(), 300*time.Millisecond)
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("dial to a held listener: %v, want a timeout (SYN dropped, not refused)", err)
	}
	if c, err := net.DialTimeout("tcp", other.Addr().String(), time.Second); err != nil {
		t.Fatalf("a listener on another address is held too: %v", err)
	} else {
		c.Close()
	}
	_ = established.SetDeadline(time.Now().Add(time.Second))
	if _, err := established.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := established.Read(make([]byte, 1)); err != nil {
		t.Fatalf("established connection broken by the hold: %v", err)
	}
	resume()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	if err != nil {
		t.Fatalf("dial after resume: %v", err)
	}
	c.Close()
}

// A handshake under way when the hold starts completes and is served: only
// SYNs are dropped, not the client's ACK and first data. TCP_DEFER_ACCEPT
// keeps the connection a request (half-open, in the listener's care)
// until the client's data arrives, which is then after the hold started.
func TestHoldLetsHandshakesUnderWayComplete(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "0.0.0.0:0"} {
		t.Run(addr, func(t *testing.T) {
			ln := listenDeferAccept(t, addr)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						buf := make([]byte, 1)
						if _, err := c.Read(buf); err == nil {
							c.Write(buf)
						}
					}()
				}
			}()
			port := ln.Addr().(*net.TCPAddr).Port
			target := fmt.Sprintf("127.0.0.1:%d", port)
			underWay, err := net.Dial("tcp", target)
			if err != nil {
				t.Fatal(err)
			}
			defer underWay.Close()

			_, resume, err := prepareHold([]netip.Addr{netip.MustParseAddr("127.0.0.1")}).holdNewConnections()
			if err != nil {
				t.Fatal(err)
			}
			defer resume()
			if c, err := net.DialTimeout("tcp", target, 300*time.Millisecond); err == nil {
				c.Close()
				t.Fatal("a new connection was not held")
			}
			_ = underWay.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := underWay.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, err := underWay.Read(make([]byte, 1)); err != nil {
				t.Fatalf("a handshake under way when the hold started was not served: %v", err)
			}
		})
	}
}

// listenDeferAccept listens on addr (plain TCP, which takes socket
// filters) with TCP_DEFER_ACCEPT, so a connection stays a half-open
// request in the listener's care until the client sends. Closed by
// t.Cleanup.
func listenDeferAccept(t *testing.T, addr string) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 5)
		})
		return errors.Join(err, serr)
	}}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// On a wildcard listener only connections to a VIP are held, IPv4 or
// IPv6 (a dual-stack listener), and connections to its other addresses go on.
func TestHoldNewConnectionsWildcardListener(t *testing.T) {
	for _, tc := range []struct{ listen, vip, other string }{
		{"0.0.0.0:0", "127.0.0.3", "127.0.0.4"},
		{"[::]:0", "::1", "127.0.0.1"},
	} {
		t.Run(tc.vip, func(t *testing.T) {
			var lc net.ListenConfig
			lc.SetMultipathTCP(false)
			ln, err := lc.Listen(context.Background(), "tcp", tc.listen)
			if err != nil {
				t.Skipf("cannot listen on %s here: %v", tc.listen, err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
			held, resume, err := prepareHold([]netip.Addr{netip.MustParseAddr(tc.vip)}).holdNewConnections()
			if err != nil || held != 1 {
				t.Fatalf("holdNewConnections: held %d listeners, %v; want 1", held, err)
			}
			defer resume()
			_, err = net.DialTimeout("tcp", net.JoinHostPort(tc.vip, port), 300*time.Millisecond)
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				t.Fatalf("dial to the VIP on a held wildcard listener: %v, want a timeout", err)
			}
			c, err := net.DialTimeout("tcp", net.JoinHostPort(tc.other, port), time.Second)
			if err != nil {
				t.Fatalf("dial to another address of a held wildcard listener: %v", err)
			}
			c.Close()
		})
	}
}

// An MPTCP listener (Go's default where the kernel has MPTCP) takes no
// socket filter: the hold must say so rather than pretend.
func TestHoldNewConnectionsReportsMPTCPListener(t *testing.T) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.5:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	proto := 0
	rc.Control(func(fd uintptr) { proto, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL) })
	if proto != unix.IPPROTO_MPTCP {
		t.Skip("kernel without MPTCP")
	}
	_, resume, err := prepareHold([]netip.Addr{netip.MustParseAddr("127.0.0.5")}).holdNewConnections()
	defer resume()
	if err == nil {
		t.Fatal("holding an MPTCP listener reported no error")
	}
}

// The hold's and the hand-on's socket filters assemble for many VIPs of
// both families (their jumps are resolved by label; a conditional jump
// reaches only 255 instructions).
func TestSocketFiltersAssembleForManyVIPs(t *testing.T) {
	var vips []netip.Addr
	for i := range 120 {
		vips = append(vips, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
		vips = append(vips, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}))
	}
	if _, err := dropSYNs(vips); err != nil {
		t.Errorf("hold filter: %v", err)
	}
	if _, err := synOrVIPAnnouncement(vips); err != nil {
		t.Errorf("hand-on filter: %v", err)
	}
}
