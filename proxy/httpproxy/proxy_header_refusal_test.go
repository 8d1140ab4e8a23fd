package httpproxy

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestHTTPProxyHeaderRefusalIsLoggedAndCounted: on an [[http]] listener with
// accept_proxy_protocol, a missing, truncated or too-long PROXY header
// closes the connection (issue #6, point 3: "closed and counted"; Bad
// input: "each ends only that connection with a log line and a
// counter"). At the default log level (info) the refusal must leave a
// line in the error log, as the [[stream]] listener's "stream: PROXY
// protocol header refused" does.
func TestHTTPProxyHeaderRefusalIsLoggedAndCounted(t *testing.T) {
	b := startBackend(t, "b")
	gw, logs := startGatewayObserved(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+
		strings.Replace(proxyAllToApp, "[[http.location]]", "accept_proxy_protocol = true\n[[http.location]]", 1))
	for _, tc := range []struct{ name, send string }{
		{"missing", "GET / HTTP/1.0\r\nHost: x\r\n\r\n"},
		{"too_long", "PROXY UNKNOWN " + strings.Repeat("f", 100) + "\r\nGET / HTTP/1.0\r\n\r\n"},
		{"bad_family", "\r\n\r\n\x00\r\nQUIT\n\x21\x13\x00\x0c" + strings.Repeat("\x01", 12)},
	} {
		before := logs.Len()
		c, err := net.Dial("tcp", gw.addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, tc.send)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		out, err := io.ReadAll(c)
		c.Close()
		if err != nil || len(out) != 0 {
			t.Fatalf("%s: %q, %v; want the connection closed with nothing sent", tc.name, out, err)
		}
		time.Sleep(50 * time.Millisecond)
		found := false
		for _, e := range logs.All()[before:] {
			if strings.Contains(e.Message, "PROXY") && e.ContextMap()["reason"] == tc.name {
				found = true
			}
		}
		if n := gw.responses.HeaderRefusals(gw.addr)[tc.name]; n != 1 {
			t.Errorf("%s PROXY header on an [[http]] listener: counted %d times under its reason, want 1 (%v)", tc.name, n, gw.responses.HeaderRefusals(gw.addr))
		}
		if !found {
			t.Errorf("%s PROXY header on an [[http]] listener: connection closed with no error-log line at log_level info naming the reason", tc.name)
		}
	}
}
