package balancer

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// ServerSpec is one configured upstream server.
type ServerSpec struct {
	Address     string // host:port to connect to (already resolved by the caller)
	Name        string // the server as configured, before resolution; "hash" places it on the ring by this name, as nginx does (default Address)
	Weight      int    // >= 1
	MaxFails    int    // 0 disables passive failure accounting
	FailTimeout time.Duration
	Backup      bool // used only while every non-backup server is unavailable
	Down        bool // never used
	MaxConns    int  // 0 = unlimited; full servers are skipped
}

// UpstreamSpec is one configured upstream.
type UpstreamSpec struct {
	Name    string
	Balance string // "round_robin" (default when "") | "ip_hash" | "hash" | "least_conn" | "random" | "random_two"
	Servers []ServerSpec
}

// ChangeFunc receives a server's new state after an event changed it.
type ChangeFunc func(upstream, address string, st ServerStatus)

// Table holds the state of every upstream server, keyed by upstream name and
// address. It outlives config reloads.
type Table struct {
	now    func() time.Time
	mu     sync.Mutex
	states map[stateKey]*serverState
	// gone are states Forget dropped while connections of an older
	// generation still used them: a server configured again picks its
	// state up, connections included (max_conns, least_conn).
	gone     map[stateKey]*serverState
	onChange atomic.Pointer[ChangeFunc]
}

type stateKey struct{ upstream, address string }

// NewTable returns an empty table reading time from now (time.Now when nil).
func NewTable(now func() time.Time) *Table {
	if now == nil {
		now = time.Now
	}
	return &Table{now: now, states: make(map[stateKey]*serverState), gone: make(map[stateKey]*serverState)}
}

// OnChange registers fn to be called, outside every lock of the package,
// each time a server's state ("up", "down", "unhealthy", "failed", "backup")
// changes, with the reason in ServerStatus.Reason. The caller logs it once.
// Reaching or leaving max_conns ("full") is not reported: it changes with
// every request. fn must not block.
func (t *Table) OnChange(fn ChangeFunc) {
	if fn == nil {
		t.onChange.Store(nil)
		return
	}
	t.onChange.Store(&fn)
}

func (t *Table) nowNano() int64 { return t.now().UnixNano() }

func (t *Table) notify(changes []ServerStatus) {
	fn := t.onChange.Load()
	if fn == nil {
		return
	}
	for _, c := range changes {
		(*fn)(c.Upstream, c.Address, c)
	}
}

// Build validates spec and returns its pool for one config generation. The
// servers share their state (failures, health, connections, counters) with
// every other generation that configures the same upstream name and address.
// It is Prepare and Commit at once.
func (t *Table) Build(spec UpstreamSpec) (*Upstream, error) {
	u, err := t.Prepare(spec)
	if err != nil {
		return nil, err
	}
	t.Commit(u)
	return u, nil
}

// Prepare is Build without touching what the table reports: a reload
// builds every part of its generation first and may still fail, and the
// running servers' status (configured down, weight, the admin API and the
// state-change log) must not show a configuration that never ran. Commit
// records it once the generation runs.
func (t *Table) Prepare(spec UpstreamSpec) (*Upstream, error) {
	if err := validate(spec); err != nil {
		return nil, err
	}
	newSelector := policies[spec.Balance]
	if spec.Balance == "" {
		newSelector = policies["round_robin"]
	}

	u := &Upstream{name: spec.Name, table: t, servers: make([]*Server, 0, len(spec.Servers))}
	var nPrimary, nBackup int
	for _, ss := range spec.Servers {
		if ss.Backup {
			nBackup++
		} else {
			nPrimary++
		}
	}
	// nginx: a lone primary server without backups is "single": its failures
	// are never counted, so it is never taken out of rotation passively.
	single := nPrimary == 1 && nBackup == 0

	fresh := map[stateKey]*serverState{} // in the table at Commit
	t.mu.Lock()
	for i, ss := range spec.Servers {
		key := stateKey{spec.Name, ss.Address}
		st := t.states[key]
		if st == nil {
			st = t.gone[key]
		}
		if st == nil {
			// An address listed twice shares one state, as with the table's.
			if st = fresh[key]; st == nil {
				st = newServerState(spec.Name, ss.Address)
				fresh[key] = st
			}
		}
		u.pending = append(u.pending, pendingServer{key: key, state: st, spec: ss, single: single})
		name := ss.Name
		if name == "" {
			name = ss.Address
		}
		s := &Server{
			upstream:        u,
			state:           st,
			index:           i,
			address:         ss.Address,
			name:            name,
			weight:          ss.Weight,
			effectiveWeight: ss.Weight,
			maxFails:        int32(ss.MaxFails),
			failTimeout:     int64(ss.FailTimeout),
			maxConns:        int64(ss.MaxConns),
			backup:          ss.Backup,
			down:            ss.Down,
			single:          single,
		}
		u.servers = append(u.servers, s)
	}
	t.mu.Unlock()

	primary := make([]*Server, 0, nPrimary)
	backup := make([]*Server, 0, nBackup)
	for _, s := range u.servers {
		if s.backup {
			backup = append(backup, s)
		} else {
			primary = append(primary, s)
		}
	}
	u.primary = newTier(primary, newSelector)
	if len(backup) > 0 {
		u.backup = newTier(backup, newSelector)
	}
	return u, nil
}

// Commit records the configuration Prepare read in the shared server
// states (new servers join the table) and reports the changes of state it
// makes (a server now configured down). A second Commit does nothing.
func (t *Table) Commit(u *Upstream) {
	var changes []ServerStatus
	now := t.nowNano()
	t.mu.Lock()
	for _, p := range u.pending {
		if t.states[p.key] == nil {
			t.states[p.key] = p.state
			delete(t.gone, p.key)
		}
		if c, changed := p.state.configure(p.spec, p.single, now); changed {
			changes = append(changes, c)
		}
	}
	u.pending = nil
	t.mu.Unlock()
	t.notify(changes)
}

func validate(spec UpstreamSpec) error {
	if spec.Name == "" {
		return errors.New("upstream: empty name")
	}
	if _, ok := policies[spec.Balance]; !ok && spec.Balance != "" {
		return fmt.Errorf("upstream %s: unknown balance %q (want one of %s)", spec.Name, spec.Balance, policyNames())
	}
	var errs []error
	primaries := 0
	for i, s := range spec.Servers {
		if s.Address == "" {
			errs = append(errs, fmt.Errorf("upstream %s: server %d: empty address", spec.Name, i))
		}
		if s.Weight < 1 {
			errs = append(errs, fmt.Errorf("upstream %s: server %s: weight %d < 1", spec.Name, s.Address, s.Weight))
		}
		if s.MaxFails < 0 || s.MaxConns < 0 || s.FailTimeout < 0 {
			errs = append(errs, fmt.Errorf("upstream %s: server %s: negative max_fails, max_conns or fail_timeout", spec.Name, s.Address))
		}
		if !s.Backup {
			primaries++
		}
	}
	if primaries == 0 {
		errs = append(errs, fmt.Errorf("upstream %s: no non-backup server", spec.Name))
	}
	return errors.Join(errs...)
}

// Forget drops the state of every server that keep does not configure. Call
// it after a reload succeeded; servers of older generations still work (their
// state simply is no longer shared).
func (t *Table) Forget(keep []UpstreamSpec) {
	want := make(map[stateKey]bool)
	for _, u := range keep {
		for _, s := range u.Servers {
			want[stateKey{u.Name, s.Address}] = true
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, st := range t.states {
		if !want[k] {
			delete(t.states, k)
			if st.conns.Load() > 0 {
				t.gone[k] = st
			}
		}
	}
	for k, st := range t.gone {
		if st.conns.Load() == 0 {
			delete(t.gone, k)
		}
	}
}

// Statuses returns the state of every server the table knows, for the admin
// API, in no particular order.
func (t *Table) Statuses() []ServerStatus {
	t.mu.Lock()
	states := make([]*serverState, 0, len(t.states))
	for _, st := range t.states {
		states = append(states, st)
	}
	t.mu.Unlock()
	now := t.nowNano()
	out := make([]ServerStatus, 0, len(states))
	for _, st := range states {
		out = append(out, st.status(now))
	}
	return out
}

// PickRequest carries what the policies need to know about one request.
type PickRequest struct {
	ClientIP netip.Addr // for ip_hash
	HashKey  string     // for hash: the evaluated key template
	Tried    []*Server  // servers already tried for this request: never picked again
}

// ErrNoServer means no server can take the request: all down, failed,
// unhealthy, full or already tried.
var ErrNoServer = errors.New("no upstream server available")
