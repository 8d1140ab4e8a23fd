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

// A server its active check found unhealthy is taken out of the upstream
// by a reload while it still has a connection (a WebSocket): its state is
// kept aside (Table.Forget's "gone"), its check stopped without
// ClearActiveHealth (the upstream still has a check). A later reload lists
// it again, now without any health check: the kept state comes back with
// unhealth and activeChecked set, and no check is left to clear them. The
// server is never picked again until a restart (nginx, without checks,
// would use it).
func TestRemovedCheckDoesNotLeaveServerUnhealthy(t *testing.T) {
	b1, b2 := newBackend(t, 200), newBackend(t, 200)
	tab := balancer.NewTable(nil)
	gen1 := build(t, tab, b1.address(), b2.address())
	m := NewManager(zaptest.NewLogger(t))
	defer m.Stop()
	spec := httpSpec(20 * time.Millisecond)
	m.Apply(map[string]UpstreamChecks{"app": {Spec: spec, Servers: gen1.Servers()}})
	time.Sleep(200 * time.Millisecond)
	// A long connection to b2.
	var held *balancer.Server
	for range 4 {
		s, err := gen1.Pick(balancer.PickRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if s.Status().Address == b2.address() && held == nil {
			held = s
			continue
		}
		s.Release()
	}
	if held == nil {
		t.Fatal("setup: b2 never picked")
	}
	defer held.Release()
	b2.status.Store(500)
	time.Sleep(300 * time.Millisecond)
	if st := held.Status().State; st != balancer.StateUnhealthy {
		t.Fatalf("setup: b2 %s, want unhealthy", st)
	}
	// Reload 1: b2 taken out (its connection lives on).
	gen2 := build(t, tab, b1.address())
	tab.Forget([]balancer.UpstreamSpec{{Name: "app", Servers: []balancer.ServerSpec{{Address: b1.address()}}}})
	m.Apply(map[string]UpstreamChecks{"app": {Spec: spec, Servers: gen2.Servers()}})
	b2.status.Store(200) // fixed meanwhile
	// Reload 2: b2 back, health check removed from the upstream.
	gen3 := build(t, tab, b1.address(), b2.address())
	tab.Forget([]balancer.UpstreamSpec{{Name: "app", Servers: []balancer.ServerSpec{{Address: b1.address()}, {Address: b2.address()}}}})
	m.Apply(map[string]UpstreamChecks{"app": {Servers: gen3.Servers()}})
	time.Sleep(200 * time.Millisecond)
	for _, s := range gen3.Servers() {
		if st := s.Status(); st.State != balancer.StateUp {
			t.Fatalf("after the reloads, %s (no health check configured any more) is %s (%s): never picked again, no check left to bring it back", st.Address, st.State, st.Reason)
		}
	}
}
