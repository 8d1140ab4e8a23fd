package httpproxy

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

// zonedListener hands out connections whose peer is reported as Go's
// accept reports a link-local IPv6 client: with its zone.
type zonedListener struct{ net.Listener }

type zonedConn struct{ *net.TCPConn }

func (zonedConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.ParseIP("fe80::1234"), Port: 5555, Zone: "eth0"}
}

func (l zonedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return zonedConn{c.(*net.TCPConn)}, nil
}

// A link-local client is fe80::1234 in $remote_addr, X-Forwarded-For,
// X-Real-IP and the access log, as in nginx (and vipgate's stream proxy),
// not fe80::1234%eth0: backends that check X-Forwarded-For as an address
// refused the zoned form, and hash keys differed from nginx's.
func TestLinkLocalClientAddressHasNoZone(t *testing.T) {
	b := startBackend(t, "one")
	g := startGatewayOn(t, zonedListener{listenLoopback(t)}, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+`
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
proxy_set_header = { X-Remote = "$remote_addr" }
`)
	_, body := rawRequest(t, g.addr, "", "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	s := decodeSeen(t, body)
	for _, h := range []string{"X-Forwarded-For", "X-Real-Ip", "X-Remote"} {
		if got := s.Header.Get(h); got != "fe80::1234" {
			t.Errorf("%s = %q, want fe80::1234 (as nginx's $remote_addr)", h, got)
		}
	}
	if log := g.accessLog(); !strings.HasPrefix(log, "fe80::1234 ") {
		t.Errorf("access log line %q, want it to start with fe80::1234", log)
	}
}

// nginx answers 400 to a Host with no host before its port ("::1", an
// IPv6 address without brackets, made $host ":") and to an IPv6 literal
// with a zone, in the Host field or an absolute-form target.
func TestIPv6HostsNginxRefuses(t *testing.T) {
	b := startBackend(t, "one")
	for _, withTLS := range []bool{false, true} {
		gw := startAppGateway(t, b.addr(), withTLS, "", "")
		for _, req := range []string{
			"GET /x HTTP/1.1\r\nHost: ::1\r\nConnection: close\r\n\r\n",
			"GET /x HTTP/1.1\r\nHost: :80\r\nConnection: close\r\n\r\n",
			"GET http://[fe80::1%25eth0]:8080/x HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
		} {
			if out := rawExchangeMaybeTLS(t, gw.addr, withTLS, req); !strings.HasPrefix(out, "HTTP/1.1 400") {
				t.Errorf("TLS %v: %q answered %.30q, want 400 as nginx", withTLS, req, out)
			}
		}
		if out := rawExchangeMaybeTLS(t, gw.addr, withTLS, "GET /x HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.1 200") {
			t.Errorf("TLS %v: Host [::1]:80 answered %.30q, want 200", withTLS, out)
		}
	}
}
