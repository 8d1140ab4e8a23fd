package health

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/vipgate/vipgate/balancer"
)

// backend is an HTTP server whose answer the test switches.
type backend struct {
	srv    *httptest.Server
	status atomic.Int32 // 0 = hang until the client gives up
	hits   atomic.Int64
}

func newBackend(t *testing.T, status int) *backend {
	b := &backend{}
	b.status.Store(int32(status))
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		code := int(b.status.Load())
		if code == 0 {
			<-r.Context().Done()
			return
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) address() string { return strings.TrimPrefix(b.srv.URL, "http://") }

// events collects the table's state changes.
func events(tab *balancer.Table) chan string {
	ch := make(chan string, 64)
	tab.OnChange(func(_, address string, st balancer.ServerStatus) {
		ch <- address + " " + st.State + ": " + st.Reason
	})
	return ch
}

func waitEvent(t *testing.T, ch chan string, prefix string, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case e := <-ch:
			if strings.HasPrefix(e, prefix) {
				return e
			}
			t.Logf("other event: %s", e)
		case <-deadline:
			t.Fatalf("no event %q within %s", prefix, within)
		}
	}
}

func build(t *testing.T, tab *balancer.Table, addrs ...string) *balancer.Upstream {
	t.Helper()
	spec := balancer.UpstreamSpec{Name: "app"}
	for _, a := range addrs {
		spec.Servers = append(spec.Servers, balancer.ServerSpec{Address: a, Weight: 1, MaxFails: 1, FailTimeout: 10 * time.Second})
	}
	u, err := tab.Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func httpSpec(interval time.Duration) CheckSpec {
	return CheckSpec{Type: "http", Path: "/", Interval: interval, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 3}
}

func TestStalledBackendIsMarkedDownBeforeAnyRequest(t *testing.T) {
	stalled, healthy := newBackend(t, 0), newBackend(t, 200)
	tab := balancer.NewTable(nil)
	ev := events(tab)
	u := build(t, tab, stalled.address(), healthy.address())
	m := NewManager(zaptest.NewLogger(t))
	defer m.Stop()

	// The interval is long: only the first check (after at most a tenth of
	// the interval, then its 500ms timeout) can be what finds it.
	m.Apply(map[string]UpstreamChecks{"app": {Spec: httpSpec(10 * time.Second), Servers: u.Servers()}})
	e := waitEvent(t, ev, stalled.address()+" unhealthy", 3*time.Second)
	if !strings.Contains(e, "first health check failed") || !strings.Contains(e, "deadline exceeded") {
		t.Errorf("event %q, want the first check's timeout as reason", e)
	}
	for range 10 {
		s, err := u.Pick(balancer.PickRequest{})
		if err != nil {
			t.Fatal(err)
		}
		s.Release()
		if s.Address() == stalled.address() {
			t.Fatal("picked the stalled backend after its check failed")
		}
	}
	if st := u.Servers()[1].Status(); st.State != balancer.StateUp {
		t.Errorf("healthy backend %s (%s)", st.State, st.Reason)
	}
}

func TestFlappingBackendNeedsRiseAndFall(t *testing.T) {
	b := newBackend(t, 200)
	tab := balancer.NewTable(nil)
	ev := events(tab)
	u := build(t, tab, b.address(), "127.0.0.1:1")
	m := NewManager(zaptest.NewLogger(t))
	defer m.Stop()
	// Only b is checked.
	m.Apply(map[string]UpstreamChecks{"app": {Spec: httpSpec(20 * time.Millisecond), Servers: u.Servers()[:1]}})
	waitHits(t, b, 2)

	b.status.Store(503)
	before := b.hits.Load()
	e := waitEvent(t, ev, b.address()+" unhealthy", 5*time.Second)
	if n := b.hits.Load() - before; n < 3 {
		t.Errorf("marked unhealthy after %d failed checks, want fall = 3", n)
	}
	if !strings.Contains(e, "failed 3 times in a row (fall 3)") || !strings.Contains(e, "status 503") {
		t.Errorf("event %q", e)
	}

	b.status.Store(200)
	before = b.hits.Load()
	e = waitEvent(t, ev, b.address()+" up", 5*time.Second)
	if n := b.hits.Load() - before; n < 2 {
		t.Errorf("marked up after %d passed checks, want rise = 2", n)
	}
	if !strings.Contains(e, "passed 2 times in a row (rise 2)") {
		t.Errorf("event %q", e)
	}
}

func waitHits(t *testing.T, b *backend, n int64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for b.hits.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("backend got %d checks, want %d", b.hits.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestApplyKeepsUnchangedChecksAcrossReloads(t *testing.T) {
	b := newBackend(t, 503)
	tab := balancer.NewTable(nil)
	ev := events(tab)
	gen1 := build(t, tab, b.address(), "127.0.0.1:1")
	m := NewManager(zaptest.NewLogger(t))
	defer m.Stop()
	spec := httpSpec(20 * time.Millisecond)
	m.Apply(map[string]UpstreamChecks{"app": {Spec: spec, Servers: gen1.Servers()[:1]}})
	waitEvent(t, ev, b.address()+" unhealthy: first health check failed", 5*time.Second)
	key := checkKey{"app", b.address()}
	first := m.checks[key]

	// Reload with the same check: the same checker goes on, and the
	// server stays unhealthy (no reset, no second "first check").
	b.status.Store(200)
	gen2 := build(t, tab, b.address(), "127.0.0.1:1")
	m.Apply(map[string]UpstreamChecks{"app": {Spec: spec, Servers: gen2.Servers()[:1]}})
	if m.checks[key] != first {
		t.Fatal("an unchanged check was restarted by Apply")
	}
	if first.server.Load() != gen2.Servers()[0] {
		t.Error("the kept check still reports to the old generation's server")
	}
	e := waitEvent(t, ev, b.address()+" up", 5*time.Second)
	if !strings.Contains(e, "passed 2 times in a row") {
		t.Errorf("after reload: %q, want rise counted by the same check", e)
	}

	// A changed spec restarts the check.
	changed := spec
	changed.Path = "/other"
	m.Apply(map[string]UpstreamChecks{"app": {Spec: changed, Servers: gen2.Servers()[:1]}})
	if m.checks[key] == first {
		t.Error("a changed check kept running with the old spec")
	}

	// Removing the health check stops it and leaves the server usable.
	b.status.Store(503)
	waitEvent(t, ev, b.address()+" unhealthy", 5*time.Second)
	m.Apply(map[string]UpstreamChecks{"app": {}})
	waitEvent(t, ev, b.address()+" up: active health check removed", 5*time.Second)
	hits := b.hits.Load()
	time.Sleep(100 * time.Millisecond)
	if n := b.hits.Load() - hits; n != 0 {
		t.Errorf("%d checks after the check was removed", n)
	}
	if len(m.checks) != 0 {
		t.Errorf("%d checks still registered", len(m.checks))
	}
}

func TestTCPCheckThroughManager(t *testing.T) {
	b := newBackend(t, 200)
	tab := balancer.NewTable(nil)
	ev := events(tab)
	u := build(t, tab, b.address(), "127.0.0.1:1") // nothing listens on port 1
	m := NewManager(zaptest.NewLogger(t))
	defer m.Stop()
	spec := CheckSpec{Type: "tcp", Interval: 50 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1}
	m.Apply(map[string]UpstreamChecks{"app": {Spec: spec, Servers: u.Servers()}})
	e := waitEvent(t, ev, "127.0.0.1:1 unhealthy", 5*time.Second)
	if !strings.Contains(e, "refused") {
		t.Errorf("event %q, want connection refused", e)
	}
	if !u.Available() {
		t.Error("upstream unavailable although one server accepts connections")
	}
	b.srv.Close()
	waitEvent(t, ev, b.address()+" unhealthy", 5*time.Second)
	if u.Available() {
		t.Error("upstream available with every server refusing connections")
	}
}

func TestApplyAfterStopIsIgnored(t *testing.T) {
	b := newBackend(t, 200)
	tab := balancer.NewTable(nil)
	u := build(t, tab, b.address())
	m := NewManager(nil)
	m.Stop()
	m.Apply(map[string]UpstreamChecks{"app": {Spec: httpSpec(10 * time.Millisecond), Servers: u.Servers()}})
	time.Sleep(50 * time.Millisecond)
	if n := b.hits.Load(); n != 0 {
		t.Errorf("%d checks after Stop", n)
	}
}

func TestInvalidSpecIsSkipped(t *testing.T) {
	b := newBackend(t, 200)
	tab := balancer.NewTable(nil)
	u := build(t, tab, b.address())
	m := NewManager(zaptest.NewLogger(t))
	defer m.Stop()
	m.Apply(map[string]UpstreamChecks{"app": {Spec: CheckSpec{Type: "http"}, Servers: u.Servers()}})
	if len(m.checks) != 0 {
		t.Errorf("a spec without interval started %d checks", len(m.checks))
	}
}

// A check that a reload changes (here its interval) starts its counts
// again but keeps what the old one decided: one failure right after the
// reload is not enough to mark a healthy server down (fall = 3), which
// with a tracked one-server upstream would have moved the VIP.
func TestChangedCheckKeepsItsDecision(t *testing.T) {
	b := newBackend(t, 200)
	tab := balancer.NewTable(nil)
	ev := events(tab)
	u := build(t, tab, b.address(), "127.0.0.1:1")
	m := NewManager(zaptest.NewLogger(t))
	defer m.Stop()
	m.Apply(map[string]UpstreamChecks{"app": {Spec: httpSpec(50 * time.Millisecond), Servers: u.Servers()[:1]}})
	waitHits(t, b, 1)
	time.Sleep(20 * time.Millisecond) // the first result is recorded

	b.status.Store(503) // a transient failure: one check sees it
	m.Apply(map[string]UpstreamChecks{"app": {Spec: httpSpec(30 * time.Millisecond), Servers: u.Servers()[:1]}})
	hits := b.hits.Load()
	waitHits(t, b, hits+1)
	b.status.Store(200)
	time.Sleep(200 * time.Millisecond)
	for {
		select {
		case e := <-ev:
			if strings.HasPrefix(e, b.address()+" unhealthy") {
				t.Fatalf("one failed check after the reload marked the server down: %s", e)
			}
			continue
		default:
		}
		break
	}
	if st := u.Servers()[0].Status(); st.State != "up" {
		t.Errorf("server %s after one failure past a reload, want up", st.State)
	}
}

// Removing a whole upstream (its check with it) reports nothing about its
// servers: they were reported "up: active health check removed", a dead
// server coming back, for an upstream that no longer exists.
func TestRemovedUpstreamIsNotReportedUp(t *testing.T) {
	b := newBackend(t, 503)
	tab := balancer.NewTable(nil)
	ev := events(tab)
	u := build(t, tab, b.address(), "127.0.0.1:1")
	m := NewManager(zaptest.NewLogger(t))
	defer m.Stop()
	m.Apply(map[string]UpstreamChecks{"app": {Spec: httpSpec(20 * time.Millisecond), Servers: u.Servers()[:1]}})
	waitEvent(t, ev, b.address()+" unhealthy", 5*time.Second)
	m.Apply(map[string]UpstreamChecks{})
	select {
	case e := <-ev:
		t.Errorf("after the upstream was removed: event %q", e)
	case <-time.After(200 * time.Millisecond):
	}
	if len(m.checks) != 0 {
		t.Errorf("%d checks still registered", len(m.checks))
	}
}
