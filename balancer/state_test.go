package balancer

import (
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPassiveFailuresFollowNginxTiming(t *testing.T) {
	tab, clk := newTestTable()
	specs := servers(1, 1)
	specs[0].MaxFails = 2
	u := mustBuild(t, tab, UpstreamSpec{Servers: specs})
	a := u.Servers()[0]

	a.ReportFailure()
	if got := pickSeq(t, u, 2, PickRequest{}); got != "ab" && got != "ba" {
		t.Fatalf("after 1 of max_fails 2: %s, want a still used", got)
	}
	clk.Advance(time.Second)
	a.ReportFailure()
	if st := a.Status(); st.State != StateFailed || st.Failures != 2 {
		t.Fatalf("after 2 failures: state %s failures %d, want failed 2", st.State, st.Failures)
	}
	if got := pickSeq(t, u, 4, PickRequest{}); got != "bbbb" {
		t.Fatalf("within fail_timeout: %s, want only b", got)
	}
	clk.Advance(10 * time.Second) // exactly fail_timeout: still out (nginx: <=)
	if got := pickSeq(t, u, 2, PickRequest{}); got != "bb" {
		t.Fatalf("at exactly fail_timeout: %s, want only b", got)
	}
	clk.Advance(time.Millisecond)
	// One probe goes to a, then a is out for another fail_timeout.
	got := pickSeq(t, u, 6, PickRequest{})
	if count(got)['a'] != 1 {
		t.Fatalf("after fail_timeout: %s, want exactly one probe to a", got)
	}
	// The probe fails: out again for fail_timeout.
	a.ReportFailure()
	clk.Advance(5 * time.Second)
	if got := pickSeq(t, u, 4, PickRequest{}); got != "bbbb" {
		t.Fatalf("after a failed probe: %s, want only b", got)
	}
	clk.Advance(5*time.Second + time.Millisecond)
	probe := pickOne(t, u, PickRequest{})
	for probe != a {
		probe.Release()
		probe = pickOne(t, u, PickRequest{})
	}
	probe.ReportSuccess()
	probe.Release()
	if st := a.Status(); st.State != StateUp || st.Failures != 0 {
		t.Fatalf("after a successful probe: %s with %d failures, want up with 0", st.State, st.Failures)
	}
	if got := pickSeq(t, u, 4, PickRequest{}); count(got)['a'] != 2 {
		t.Errorf("a recovered: %s, want it back in rotation", got)
	}
}

func TestFailuresCountOnlyWithinFailTimeout(t *testing.T) {
	tab, clk := newTestTable()
	specs := servers(1, 1)
	specs[0].MaxFails = 2
	u := mustBuild(t, tab, UpstreamSpec{Servers: specs})
	a := u.Servers()[0]
	pickAndReport := func(fail bool) {
		t.Helper()
		for {
			s := pickOne(t, u, PickRequest{})
			if s == a {
				if fail {
					s.ReportFailure()
				} else {
					s.ReportSuccess()
				}
				s.Release()
				return
			}
			s.Release()
		}
	}
	pickAndReport(true)
	clk.Advance(11 * time.Second) // a new window begins at the next pick of a
	pickAndReport(false)          // and its success clears the old failure
	pickAndReport(true)
	if st := a.Status(); st.State != StateUp || st.Failures != 1 {
		t.Errorf("two failures 11s apart with max_fails 2, fail_timeout 10s: %s with %d failures, want up with 1", st.State, st.Failures)
	}
	// A success inside the window of a failure does not clear it (nginx).
	clk.Advance(time.Second)
	pickAndReport(false)
	pickAndReport(true)
	if st := a.Status(); st.State != StateFailed {
		t.Errorf("two failures 1s apart with a success between: %s, want failed", st.State)
	}
}

func TestSingleServerIsNeverMarkedFailed(t *testing.T) {
	tab, _ := newTestTable()
	u := mustBuild(t, tab, UpstreamSpec{Servers: servers(1)})
	s := u.Servers()[0]
	for range 5 {
		s.ReportFailure()
	}
	if got := pickSeq(t, u, 3, PickRequest{}); got != "aaa" {
		t.Errorf("single server after 5 failures: %s, want it still used", got)
	}
	if st := s.Status(); st.State != StateUp || st.FailuresTotal != 5 {
		t.Errorf("status %s, total failures %d; want up, 5 counted", st.State, st.FailuresTotal)
	}
	if !u.Available() {
		t.Error("single server upstream not available after failures")
	}
	// With a backup it is no longer single: failures count.
	specs := servers(1, 1)
	specs[1].Backup = true
	u2 := mustBuild(t, tab, UpstreamSpec{Name: "withbackup", Servers: specs})
	u2.Servers()[0].ReportFailure()
	if got := pickSeq(t, u2, 2, PickRequest{}); got != "bb" {
		t.Errorf("one primary plus backup after max_fails: %s, want the backup", got)
	}
}

func TestMaxFailsZeroDisablesPassiveAccounting(t *testing.T) {
	tab, _ := newTestTable()
	specs := servers(1, 1)
	specs[0].MaxFails = 0
	u := mustBuild(t, tab, UpstreamSpec{Servers: specs})
	for range 10 {
		u.Servers()[0].ReportFailure()
	}
	if got := pickSeq(t, u, 4, PickRequest{}); count(got)['a'] != 2 {
		t.Errorf("max_fails 0 after failures: %s, want a still in rotation", got)
	}
}

func TestFailureLowersRoundRobinWeightAsNginx(t *testing.T) {
	// nginx lowers effective_weight by weight/max_fails per failure and
	// raises it by one per pick of the tier: a server that just failed
	// gets less traffic for a while even before max_fails.
	tab, _ := newTestTable()
	specs := servers(4, 4)
	specs[0].MaxFails = 2
	u := mustBuild(t, tab, UpstreamSpec{Servers: specs})
	u.Servers()[0].ReportFailure() // effective weight 4 -> 2
	if got := pickSeq(t, u, 4, PickRequest{}); got != "baba" {
		t.Errorf("after one failure: %s, want baba", got)
	}
}

// When every server failed, nginx 1.22 answers "no live upstreams" until a
// fail_timeout ends, then lets one request through as a probe (checked
// against Debian's nginx); the old "quick recovery" that cleared the
// failures made every other request dial the dead servers again.
func TestNoServerKeepsFailuresUntilFailTimeout(t *testing.T) {
	tab, clk := newTestTable()
	u := mustBuild(t, tab, UpstreamSpec{Servers: servers(1, 1)})
	for _, s := range u.Servers() {
		s.ReportFailure()
	}
	if u.Available() {
		t.Fatal("available with every server failed")
	}
	for i := range 3 {
		if got := pickSeq(t, u, 1, PickRequest{}); got != "-" {
			t.Fatalf("pick %d with every server failed: %s, want ErrNoServer", i+1, got)
		}
	}
	for _, s := range u.Servers() {
		if st := s.Status(); st.State != StateFailed || st.Failures != 1 {
			t.Errorf("%s after no server could be picked: %s with %d failures, want failed with 1", s.Address(), st.State, st.Failures)
		}
	}
	clk.Advance(time.Duration(u.Servers()[0].failTimeout) + time.Second)
	if got := pickSeq(t, u, 1, PickRequest{}); got == "-" {
		t.Errorf("after fail_timeout: %s, want a server (the probe)", got)
	}
}

func TestStateSurvivesNewGeneration(t *testing.T) {
	tab, _ := newTestTable()
	gen1 := mustBuild(t, tab, UpstreamSpec{Servers: servers(1, 1)})
	a1 := gen1.Servers()[0]
	a1.ReportFailure()
	held := pickOne(t, gen1, PickRequest{}) // b, a is failed
	held.ObserveResponse(200, 3*time.Millisecond)

	specs := servers(1, 1, 1) // reload adds c, keeps a and b
	gen2 := mustBuild(t, tab, UpstreamSpec{Servers: specs})
	a2, b2 := gen2.Servers()[0], gen2.Servers()[1]
	if st := a2.Status(); st.State != StateFailed {
		t.Errorf("a after reload: %s, want still failed", st.State)
	}
	if st := b2.Status(); st.ActiveConns != 1 || st.Requests != 1 || st.Responses[1] != 1 {
		t.Errorf("b after reload: conns %d requests %d 2xx %d, want the counts of the old generation", st.ActiveConns, st.Requests, st.Responses[1])
	}
	if got := pickSeq(t, gen2, 4, PickRequest{}); count(got)['a'] != 0 {
		t.Errorf("new generation picks failed a: %s", got)
	}
	// A retry in the new generation knows what the old one tried.
	if s := pickOne(t, gen2, PickRequest{Tried: []*Server{held}}); letter(s) != "c" {
		t.Errorf("retry after b of gen1 was tried: %s, want c", letter(s))
	} else {
		s.Release()
	}
	held.Release() // an old-generation release lands in the shared state
	if st := b2.Status(); st.ActiveConns != 0 {
		t.Errorf("b conns %d after release through the old generation", st.ActiveConns)
	}
}

func TestForgetDropsRemovedServers(t *testing.T) {
	tab, _ := newTestTable()
	spec := UpstreamSpec{Name: "app", Servers: servers(1, 1)}
	u := mustBuild(t, tab, spec)
	u.Servers()[1].ReportFailure()
	u.Servers()[1].ObserveResponse(500, time.Millisecond)

	keep := UpstreamSpec{Name: "app", Servers: servers(1)}
	tab.Forget([]UpstreamSpec{keep})
	if n := len(tab.Statuses()); n != 1 {
		t.Fatalf("%d states after Forget, want 1", n)
	}
	// b configured again later starts afresh.
	u2 := mustBuild(t, tab, spec)
	if st := u2.Servers()[1].Status(); st.State != StateUp || st.Failures != 0 || st.Responses[4] != 0 {
		t.Errorf("re-added b: %s, %d failures, %d 5xx; want a fresh state", st.State, st.Failures, st.Responses[4])
	}
	// The forgotten generation still works on its own.
	u.Servers()[1].Release()
}

func TestOnChangeReportsEachChangeOnceWithReason(t *testing.T) {
	tab, clk := newTestTable()
	var mu sync.Mutex
	var events []string
	tab.OnChange(func(upstream, address string, st ServerStatus) {
		mu.Lock()
		events = append(events, upstream+" "+address+" "+st.State+": "+st.Reason)
		mu.Unlock()
	})
	u := mustBuild(t, tab, UpstreamSpec{Servers: servers(1, 1)})
	a := u.Servers()[0]
	a.ReportFailure()
	a.ReportFailure() // already failed: no second event
	clk.Advance(11 * time.Second)
	for s := pickOne(t, u, PickRequest{}); ; s = pickOne(t, u, PickRequest{}) {
		if s == a {
			s.ReportSuccess()
			s.Release()
			break
		}
		s.Release()
	}
	a.SetActiveHealth(false, "GET / returned 503")
	a.SetActiveHealth(false, "GET / returned 503")
	a.SetActiveHealth(true, "3 checks passed")
	specs := servers(1, 1)
	specs[0].Down = true
	mustBuild(t, tab, UpstreamSpec{Servers: specs})

	want := []string{
		"app 127.0.0.1:8001 failed: failed attempts 1 >= max_fails 1: unavailable for fail_timeout 10s",
		"app 127.0.0.1:8001 up: a request succeeded after fail_timeout",
		"app 127.0.0.1:8001 unhealthy: GET / returned 503",
		"app 127.0.0.1:8001 up: 3 checks passed",
		"app 127.0.0.1:8001 down: configured down",
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != len(want) {
		t.Fatalf("events:\n%s\nwant %d", strings.Join(events, "\n"), len(want))
	}
	for i := range want {
		if events[i] != want[i] {
			t.Errorf("event %d = %q, want %q", i, events[i], want[i])
		}
	}
}

func TestActiveHealthGovernsEvenASingleServer(t *testing.T) {
	tab, _ := newTestTable()
	u := mustBuild(t, tab, UpstreamSpec{Servers: servers(1)})
	u.Servers()[0].SetActiveHealth(false, "connect refused")
	if u.Available() {
		t.Error("available with its only server unhealthy")
	}
	if got := pickSeq(t, u, 1, PickRequest{}); got != "-" {
		t.Errorf("pick with the only server unhealthy: %s, want ErrNoServer", got)
	}
	if st := u.Servers()[0].Status(); st.State != StateUnhealthy || st.Reason != "connect refused" {
		t.Errorf("status %s (%s)", st.State, st.Reason)
	}
}

func TestStatusCounters(t *testing.T) {
	tab, _ := newTestTable()
	specs := servers(1, 1)
	specs[1].Backup = true
	specs[0].MaxConns = 1
	u := mustBuild(t, tab, UpstreamSpec{Servers: specs})
	a := pickOne(t, u, PickRequest{})
	a.ObserveResponse(204, 4*time.Millisecond)
	a.ObserveResponse(502, 2*time.Second)
	a.ObserveResponse(101, 20*time.Second)
	a.AddBytes(100, 2000)
	st := a.Status()
	if st.State != StateFull {
		t.Errorf("state %s with max_conns reached, want full", st.State)
	}
	if st.Responses != [5]uint64{1, 1, 0, 0, 1} || st.BytesSent != 100 || st.BytesReceived != 2000 || st.Requests != 1 {
		t.Errorf("counters %+v", st)
	}
	h := st.ResponseTime
	if h.Count != 3 || h.Counts[0] != 1 || h.Counts[len(h.Counts)-1] != 2 || h.Sum != 4*time.Millisecond+22*time.Second {
		t.Errorf("histogram %+v", h)
	}
	a.Release()
	if st := u.Servers()[1].Status(); st.State != StateBackup {
		t.Errorf("idle backup state %s, want backup", st.State)
	}
}

func TestBuildRejectsBadSpecs(t *testing.T) {
	ok := ServerSpec{Address: "127.0.0.1:1", Weight: 1}
	tests := []struct {
		name string
		spec UpstreamSpec
		want string
	}{
		{"no name", UpstreamSpec{Servers: []ServerSpec{ok}}, "empty name"},
		{"unknown policy", UpstreamSpec{Name: "u", Balance: "fastest", Servers: []ServerSpec{ok}}, `unknown balance "fastest"`},
		{"no servers", UpstreamSpec{Name: "u"}, "no non-backup server"},
		{"only backups", UpstreamSpec{Name: "u", Servers: []ServerSpec{{Address: "a:1", Weight: 1, Backup: true}}}, "no non-backup server"},
		{"zero weight", UpstreamSpec{Name: "u", Servers: []ServerSpec{{Address: "a:1"}}}, "weight 0 < 1"},
		{"negative", UpstreamSpec{Name: "u", Servers: []ServerSpec{{Address: "a:1", Weight: 1, MaxConns: -1}}}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, _ := newTestTable()
			_, err := tab.Build(tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
			if n := len(tab.Statuses()); n != 0 {
				t.Errorf("a rejected spec left %d states", n)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	tab := NewTable(nil)
	tab.OnChange(func(string, string, ServerStatus) {})
	specs := servers(3, 1, 4, 1)
	specs[3].Backup = true
	specs[2].MaxConns = 3
	for _, policy := range Policies() {
		u := mustBuild(t, tab, UpstreamSpec{Name: policy, Balance: policy, Servers: specs})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				var tried []*Server
				for i := range 300 {
					s, err := u.Pick(PickRequest{ClientIP: ip("192.0.2.1"), HashKey: "k" + string(rune('a'+i%7)), Tried: tried})
					if err != nil {
						tried = nil
						continue
					}
					switch i % 5 {
					case 0:
						s.ReportFailure()
						tried = append(tried[:0], s)
					default:
						s.ReportSuccess()
						s.ObserveResponse(200, time.Millisecond)
						tried = nil
					}
					s.Release()
					if g == 0 && i%50 == 0 {
						u.Servers()[1].SetActiveHealth(i%100 == 0, "flap")
						_ = u.Available()
						_ = tab.Statuses()
					}
				}
			})
		}
		wg.Go(func() { // reloads meanwhile
			for range 20 {
				mustBuild(t, tab, UpstreamSpec{Name: policy, Balance: policy, Servers: specs})
			}
		})
		wg.Wait()
		for _, s := range u.Servers() {
			if c := s.Status().ActiveConns; c != 0 {
				t.Errorf("%s %s: %d active connections after every release", policy, s.Address(), c)
			}
		}
	}
}

func TestAddressListedTwiceSharesOneState(t *testing.T) {
	// Two host names resolving to one address give two pool entries, as
	// nginx does; their state is the one of that address.
	tab, _ := newTestTable()
	specs := servers(1, 1, 1)
	specs[2].Address = specs[0].Address
	u := mustBuild(t, tab, UpstreamSpec{Servers: specs})
	if n := len(tab.Statuses()); n != 2 {
		t.Fatalf("%d states, want 2 (one per address)", n)
	}
	u.Servers()[2].ReportFailure()
	if got := pickSeq(t, u, 4, PickRequest{}); got != "bbbb" {
		t.Errorf("after a failure of the address: %s, want both of its entries skipped", got)
	}
}

// A server removed by a reload while connections of the older generation
// still use it (long-lived streams, WebSockets), then configured again,
// picks its state up with those connections: max_conns and least_conn
// count them, instead of starting from zero.
func TestReaddedServerKeepsItsOpenConnections(t *testing.T) {
	tab, _ := newTestTable()
	spec := UpstreamSpec{Name: "app", Balance: "least_conn", Servers: servers(1, 1)}
	spec.Servers[0].MaxConns = 1
	gen1 := mustBuild(t, tab, spec)
	held := pickOne(t, gen1, PickRequest{}) // a: a long-lived stream
	if letter(held) != "a" {
		t.Fatalf("first pick %s, want a", letter(held))
	}
	without := UpstreamSpec{Name: "app", Balance: "least_conn", Servers: servers(1, 1)[1:]}
	mustBuild(t, tab, without)
	tab.Forget([]UpstreamSpec{without}) // a removed
	gen3 := mustBuild(t, tab, spec)     // a back
	tab.Forget([]UpstreamSpec{spec})
	if n := gen3.Servers()[0].Status().ActiveConns; n != 1 {
		t.Fatalf("a configured again reports %d active connections, want 1 (still open from the first generation)", n)
	}
	s := pickOne(t, gen3, PickRequest{})
	if letter(s) == "a" {
		t.Errorf("picked a although its one open connection is its max_conns")
	}
	s.Release()
	// Removed again while held; once its last connection has ended, the
	// state goes for good.
	tab.Forget([]UpstreamSpec{without})
	gone := func() int {
		tab.mu.Lock()
		defer tab.mu.Unlock()
		return len(tab.gone)
	}
	if n := gone(); n != 1 {
		t.Fatalf("%d states kept for removed servers, want a's (a connection is open)", n)
	}
	held.Release()
	tab.Forget([]UpstreamSpec{without})
	if n := gone(); n != 0 {
		t.Errorf("%d states kept for removed servers without connections", n)
	}
}

// Pickable says what the balancer does: a failed server is not pickable
// within fail_timeout and is again after it (the next request probes it),
// although its state stays "failed" until a request succeeds. The metric
// server_up follows it: on an idle node a recovered server kept server_up
// at 0, and alerts firing, for as long as no request came.
func TestPickableFollowsFailTimeout(t *testing.T) {
	tab, clk := newTestTable()
	specs := servers(1, 1)
	specs[0].MaxFails = 1
	u := mustBuild(t, tab, UpstreamSpec{Servers: specs})
	a := u.Servers()[0]
	if !a.Status().Pickable {
		t.Fatal("a new server is not pickable")
	}
	a.ReportFailure()
	if st := a.Status(); st.State != StateFailed || st.Pickable {
		t.Fatalf("within fail_timeout: %s, pickable %v; want failed, not pickable", st.State, st.Pickable)
	}
	clk.Advance(10*time.Second + time.Millisecond)
	if st := a.Status(); st.State != StateFailed || !st.Pickable {
		t.Fatalf("after fail_timeout: %s, pickable %v; want failed and pickable (the next request probes it)", st.State, st.Pickable)
	}
}
