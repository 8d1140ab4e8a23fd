package balancer

import (
	"testing"
	"time"
)

// TestTransientFailureKeepsTrackedUpstreamDown: the daemon feeds
// track_upstream from Upstream.Available (and /healthz answers 503 from
// it). Every server of an upstream failing once (one timeout each during
// a short blip, max_fails 1 by default) used to make it unavailable only
// until the next request, whose empty pick cleared the counts. Now it
// stays unavailable for the whole fail_timeout, even while the active
// health check (required for track_upstream) reports every server up:
// the node goes FAULT and the VIP moves to the peer (whose counts are
// clean: it has no traffic), and back when fail_timeout ends.
func TestTransientFailureKeepsTrackedUpstreamDown(t *testing.T) {
	tab, clk := newTestTable()
	u := mustBuild(t, tab, UpstreamSpec{Servers: servers(1, 1)})
	for _, s := range u.Servers() {
		s.SetActiveHealth(true, "health check passed")
	}
	// One request during the blip: both servers time out.
	for range len(u.Servers()) {
		s, err := u.Pick(PickRequest{})
		if err != nil {
			t.Fatal(err)
		}
		s.ReportFailure()
		s.Release()
	}
	// The blip is over; the health checks keep passing; requests come.
	clk.Advance(time.Second)
	for _, s := range u.Servers() {
		s.SetActiveHealth(true, "health check passed")
	}
	_, _ = u.Pick(PickRequest{}) // answered 502 at once (no live upstreams)
	clk.Advance(time.Second)
	if !u.Available() {
		t.Fatalf("2 s after one failed request per server, with every active health check passing and a request since, Available() = false (tracked upstream down: VRRP FAULT, /healthz 503) until fail_timeout (10 s) ends")
	}
}
