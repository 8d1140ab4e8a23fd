package health

import (
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/vipgate/vipgate/balancer"
)

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
