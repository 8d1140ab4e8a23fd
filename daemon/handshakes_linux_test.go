package daemon

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// connectionsArriving sees a handshake under way to a VIP (held open here
// by TCP_DEFER_ACCEPT until the client sends), and a connection waiting
// to be accepted; neither once the proxy has it.
func TestConnectionsArriving(t *testing.T) {
	// An address of its own: the count covers the whole host, and the
	// tests of other packages, run at the same time, use 127.0.0.1.
	vip := netip.MustParseAddr("127.0.83.1")
	other := netip.MustParseAddr("127.0.83.9")
	ln := listenDeferAccept(t, "127.0.83.1:0")
	count := func(vips ...netip.Addr) int {
		t.Helper()
		n, err := connectionsArriving(vips)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(vip); n != 0 {
		t.Fatalf("nothing connecting: %d arriving", n)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := count(vip); n != 1 {
		t.Fatalf("a handshake under way: %d arriving, want 1", n)
	}
	if n := count(other); n != 0 {
		t.Fatalf("another address: %d arriving, want 0", n)
	}
	// The client's data completes the connection: it waits in the accept
	// queue, still arriving.
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for queued(t, ln) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the completed connection never reached the accept queue")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := count(vip); n != 1 {
		t.Fatalf("a connection in the accept queue: %d arriving, want 1", n)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := count(vip); n != 0 {
		t.Fatalf("after accept: %d arriving, want 0", n)
	}
}

// queued is the listener's accept queue length (TCP_INFO's unacked on a
// listening socket).
func queued(t *testing.T, ln net.Listener) int {
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	_ = rc.Control(func(fd uintptr) { info, _ = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if info == nil {
		return 0
	}
	return int(info.Unacked)
}
