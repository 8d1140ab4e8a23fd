package stream

import (
	"testing"

	"github.com/vipgate/vipgate/config"
)

// Regression: with Go's default MPTCP dialing the upstream socket was bound
// to port 0 before connect, and bind cannot reuse a TIME_WAIT port, so a
// benchmark of short connections got "bind: address already in use" for
// most of them once ~28k ports sat in TIME_WAIT. Plain TCP connects choose
// a port per destination and reuse TIME_WAIT ones.
func TestUpstreamDialIsPlainTCPNotBoundFirst(t *testing.T) {
	cfg, err := config.Parse([]byte(`
[global]
admin_listen = ""
[[stream]]
listen = ["127.0.0.1:17777"]
proxy_pass = "127.0.0.1:9"
`), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg.Stream, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	for addr, r := range s.routes {
		if r.dialer.MultipathTCP() {
			t.Errorf("route %s dials with MPTCP (binds before connect)", addr)
		}
	}
}
