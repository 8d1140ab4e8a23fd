package health

import (
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/vipgate/vipgate/balancer"
)

// Upstream.Available ignores passive failures of a server an active
// check reports on. A check kept across a reload only points itself at the
// new generation's server and reports again only when its verdict
// changes: the flag must survive the reload, or after any SIGHUP a blip in
// which every server failed one request takes a tracked upstream down for
// the whole fail_timeout (VRRP FAULT, the VIP away and back).
func TestActiveCheckedSurvivesReload(t *testing.T) {
	b1, b2 := newBackend(t, 200), newBackend(t, 200)
	tab := balancer.NewTable(nil)
	gen1 := build(t, tab, b1.address(), b2.address())
	m := NewManager(zaptest.NewLogger(t))
	defer m.Stop()
	spec := httpSpec(20 * time.Millisecond)
	m.Apply(map[string]UpstreamChecks{"app": {Spec: spec, Servers: gen1.Servers()}})
	time.Sleep(200 * time.Millisecond) // the first checks passed: both decided up

	// SIGHUP with the same file: a new generation, the checks kept.
	gen2 := build(t, tab, b1.address(), b2.address())
	m.Apply(map[string]UpstreamChecks{"app": {Spec: spec, Servers: gen2.Servers()}})
	time.Sleep(200 * time.Millisecond) // ten more passing checks

	// A blip: one request per server fails (max_fails 1).
	for range len(gen2.Servers()) {
		s, err := gen2.Pick(balancer.PickRequest{})
		if err != nil {
			t.Fatal(err)
		}
		s.ReportFailure()
		s.Release()
	}
	t.Logf("Available: generation 1 (before the reload) %v, generation 2 (after) %v", gen1.Available(), gen2.Available())
	if !gen2.Available() {
		t.Fatalf("after a reload, with every active health check passing, one failed request per server makes Available() false (tracked upstream down: VRRP FAULT for fail_timeout); before the reload it stays true (%v)", gen1.Available())
	}
}
