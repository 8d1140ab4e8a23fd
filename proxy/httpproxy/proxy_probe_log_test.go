package httpproxy

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
)

// The L4 balancer in front of an accept_proxy_protocol listener probes it
// with TCP health checks: connect, close, not a byte sent (AWS NLB,
// HAProxy "check" without send-proxy). nginx logs such a connection at
// info level ("client closed connection while waiting for request"),
// below its default error_log level: nothing shows. An info line per
// probe would be several lines a minute per balancer node, forever,
// drowning real refusals; they are counted apart, as "empty".
func TestHTTPProxyEmptyProbeNotLoggedAtInfo(t *testing.T) {
	b := startBackend(t, "b")
	gw, logs := startGatewayObserved(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+
		strings.Replace(proxyAllToApp, "[[http.location]]", "accept_proxy_protocol = true\n[[http.location]]", 1))
	before := logs.Len()
	for range 5 {
		c, err := net.Dial("tcp", gw.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	n := 0
	for _, e := range logs.All()[before:] {
		if strings.Contains(e.Message, "PROXY") && e.Level >= zapcore.InfoLevel {
			n++
			if n == 1 {
				t.Logf("logged: %s %s %v", e.Level, e.Message, e.ContextMap())
			}
		}
	}
	if n > 0 {
		t.Errorf("5 TCP health-check probes (connect, close) logged %d lines at info or above, want 0 (debug)", n)
	}
	if got := gw.responses.HeaderRefusals(gw.addr); got["empty"] != 5 || got["missing"] != 0 {
		t.Errorf("5 probes counted %v, want empty: 5", got)
	}
}
