package proxy

import (
	"net"
	"testing"
	"time"
)

// TestIPv4WildcardListenIsIPv4Only: `listen = ["0.0.0.0:80"]` is the
// README's translation of nginx's `listen 80;`, which (like `listen
// 0.0.0.0:80;`) accepts IPv4 only; `[::]:80` is documented as the way to
// get IPv6. Listen passes "0.0.0.0:P" to net.ListenConfig with network
// "tcp", which Go turns into a dual-stack AF_INET6 socket: the listener
// also accepts IPv6 clients (ss shows *:P, curl http://[::1]:P/ is
// proxied) while status and logs say 0.0.0.0:P.
func TestIPv4WildcardListenIsIPv4Only(t *testing.T) {
	if l6, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback")
	} else {
		l6.Close()
	}
	l, err := Listen("0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	c, err := net.DialTimeout("tcp6", net.JoinHostPort("::1", port), time.Second)
	if err == nil {
		c.Close()
		t.Errorf("listen 0.0.0.0:%s accepted an IPv6 connection from [::1] (listener address %s): an IPv4 wildcard must not serve IPv6", port, l.Addr())
	}
}

// TestIPv4WildcardAndIPv6LoopbackCoexist: `vipgate -t` accepts
// listen = ["0.0.0.0:P"] in one [[http]] and ["[::1]:P"] in another (as
// nginx does), but the daemon then fails to start with "bind: address
// already in use", because the IPv4 wildcard took the IPv6 port too.
func TestIPv4WildcardAndIPv6LoopbackCoexist(t *testing.T) {
	if l6, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback")
	} else {
		l6.Close()
	}
	l4, err := Listen("0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l4.Close()
	_, port, _ := net.SplitHostPort(l4.Addr().String())
	l6, err := Listen(net.JoinHostPort("::1", port))
	if err != nil {
		t.Fatalf("0.0.0.0:%s and [::1]:%s cannot both be listened on: %v", port, port, err)
	}
	l6.Close()
}
