package balancer

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// When every server of an upstream is dead, each request must not turn
// into a fresh pair of "state changed" events per server: the daemon logs
// every event (WARN "failed", INFO "up"), so an outage under load floods the
// error log with 2 lines per server per request, and /status shows servers
// flapping "up" while they refuse every connection. nginx 1.22 (Debian) in
// the same setup logs one "no live upstreams" line per request and leaves
// the servers failed until fail_timeout ends.
func TestAllServersDeadDoNotFlapStatePerRequest(t *testing.T) {
	tab, clk := newTestTable()
	var mu sync.Mutex
	var events []string
	tab.OnChange(func(upstream, address string, st ServerStatus) {
		mu.Lock()
		events = append(events, address+" "+st.State+": "+st.Reason)
		mu.Unlock()
	})
	u := mustBuild(t, tab, UpstreamSpec{Servers: servers(1, 1)})
	const requests = 100
	for range requests {
		// One proxied request: try servers until one is picked no more
		// (every attempt fails: the servers refuse connections).
		for range len(u.Servers()) {
			s, err := u.Pick(PickRequest{})
			if err != nil {
				break
			}
			s.ReportFailure()
			s.Release()
		}
		clk.Advance(time.Millisecond) // 100 requests within 0.1 s, well inside fail_timeout 10s
	}
	mu.Lock()
	defer mu.Unlock()
	// Each server failing once in the fail_timeout window is one event each.
	if len(events) > 2*len(u.Servers()) {
		t.Fatalf("%d requests to an upstream whose 2 servers are dead made %d state-change events (each one an error-log line); want at most %d. First ones:\n%s",
			requests, len(events), 2*len(u.Servers()), strings.Join(events[:min(6, len(events))], "\n"))
	}
}
