package balancer

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Server states reported by ServerStatus.State.
const (
	StateUp        = "up"        // usable
	StateBackup    = "backup"    // usable, but only while no primary server can be picked
	StateDown      = "down"      // configured down
	StateUnhealthy = "unhealthy" // the active health check failed (rise/fall counted by package health)
	StateFailed    = "failed"    // max_fails passive failures; see Reason for the fail_timeout window
	StateFull      = "full"      // max_conns active connections (never reported through OnChange)
)

// ResponseTimeBuckets are the upper bounds of the response-time histogram
// (the Prometheus default buckets).
var ResponseTimeBuckets = []time.Duration{
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// ServerStatus is a snapshot of one server's state and counters.
type ServerStatus struct {
	Upstream string
	Address  string
	State    string // one of the State constants
	Reason   string // why it is in that state, for logs and the admin API
	Since    time.Time

	Backup   bool
	Weight   int
	MaxConns int
	// Pickable: the balancer may give it a request now (ignoring
	// max_conns): not down, not unhealthy, and not passively failed
	// within fail_timeout (past it, the next request probes the server).
	Pickable bool

	Failures      int    // current passive failure count (nginx "fails"), reset by a success after fail_timeout
	FailuresTotal uint64 // every reported failure since the server was first configured
	ActiveConns   int64
	Requests      uint64    // times it was picked (HTTP requests / stream connections)
	Responses     [5]uint64 // responses by status class: [0] = 1xx ... [4] = 5xx
	BytesSent     uint64    // to the server
	BytesReceived uint64    // from the server

	ResponseTime Histogram
}

// Histogram is a cumulative response-time histogram in the Prometheus form.
type Histogram struct {
	Bounds []time.Duration // upper bounds (ResponseTimeBuckets)
	Counts []uint64        // Counts[i] = observations <= Bounds[i]
	Count  uint64
	Sum    time.Duration
}

// serverState is the part of a server that outlives a config generation.
// Hot-path fields are atomics; mu serialises the compound updates that may
// change the reported state, so each change is reported exactly once.
type serverState struct {
	upstream, address string

	fails    atomic.Int32 // nginx peer->fails
	accessed atomic.Int64 // unix ns of the last failure (nginx peer->accessed)
	checked  atomic.Int64 // unix ns when the current fail_timeout window began (nginx peer->checked)
	unhealth atomic.Bool  // the active check says down
	// activeChecked: an active health check reports on it, so Available
	// follows that check, not passive failures (shared by generations: a
	// check kept across a reload reports only changes).
	activeChecked atomic.Bool
	conns         atomic.Int64

	requests      atomic.Uint64
	failuresTotal atomic.Uint64
	responses     [5]atomic.Uint64
	bytesSent     atomic.Uint64
	bytesReceived atomic.Uint64
	histogram     [12]atomic.Uint64 // len(ResponseTimeBuckets)+1: the last counts > 10s
	histSum       atomic.Int64

	mu           sync.Mutex
	cfg          ServerSpec // from the latest Build
	single       bool
	lastState    string
	lastChange   int64
	upReason     string
	activeReason string
}

func newServerState(upstream, address string) *serverState {
	return &serverState{upstream: upstream, address: address}
}

// configure records the latest configuration; it reports a change of state
// (for example a server now configured down) but not the first state of a
// new server.
func (st *serverState) configure(ss ServerSpec, single bool, now int64) (ServerStatus, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.cfg = ss
	st.single = single
	if st.lastState == "" {
		st.lastState, _ = st.stateLocked(now)
		st.lastChange = now
		return ServerStatus{}, false
	}
	st.upReason = "configuration reloaded"
	return st.changedLocked(now)
}

func (st *serverState) failedLocked() bool {
	mf := st.cfg.MaxFails
	return !st.single && mf > 0 && int(st.fails.Load()) >= mf
}

// stateLocked is the state without "full", which changes too often to be
// reported as an event.
func (st *serverState) stateLocked(now int64) (state, reason string) {
	switch {
	case st.cfg.Down:
		return StateDown, "configured down"
	case st.unhealth.Load():
		return StateUnhealthy, st.activeReason
	case st.failedLocked():
		fails := st.fails.Load()
		if now-st.checked.Load() <= int64(st.cfg.FailTimeout) {
			return StateFailed, fmt.Sprintf("failed attempts %d >= max_fails %d: unavailable for fail_timeout %s", fails, st.cfg.MaxFails, st.cfg.FailTimeout)
		}
		return StateFailed, fmt.Sprintf("failed attempts %d >= max_fails %d: fail_timeout %s elapsed, the next request probes it", fails, st.cfg.MaxFails, st.cfg.FailTimeout)
	case st.cfg.Backup:
		return StateBackup, st.upReasonOr("backup server: used while no primary server can be picked")
	default:
		return StateUp, st.upReasonOr("")
	}
}

func (st *serverState) upReasonOr(def string) string {
	if st.upReason != "" {
		return st.upReason
	}
	return def
}

// changedLocked compares the state with the last reported one.
func (st *serverState) changedLocked(now int64) (ServerStatus, bool) {
	state, _ := st.stateLocked(now)
	if state == st.lastState {
		return ServerStatus{}, false
	}
	st.lastState = state
	st.lastChange = now
	return st.statusLocked(now), true
}

func (st *serverState) status(now int64) ServerStatus {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.statusLocked(now)
}

func (st *serverState) statusLocked(now int64) ServerStatus {
	state, reason := st.stateLocked(now)
	conns := st.conns.Load()
	if (state == StateUp || state == StateBackup) && st.cfg.MaxConns > 0 && conns >= int64(st.cfg.MaxConns) {
		state, reason = StateFull, fmt.Sprintf("%d active connections (max_conns %d)", conns, st.cfg.MaxConns)
	}
	s := ServerStatus{
		Upstream: st.upstream,
		Address:  st.address,
		State:    state,
		Reason:   reason,
		Since:    time.Unix(0, st.lastChange),
		Backup:   st.cfg.Backup,
		Weight:   st.cfg.Weight,
		MaxConns: st.cfg.MaxConns,
		Pickable: !st.cfg.Down && !st.unhealth.Load() &&
			!(st.failedLocked() && now-st.checked.Load() <= int64(st.cfg.FailTimeout)),
		Failures:      int(st.fails.Load()),
		FailuresTotal: st.failuresTotal.Load(),
		ActiveConns:   conns,
		Requests:      st.requests.Load(),
		BytesSent:     st.bytesSent.Load(),
		BytesReceived: st.bytesReceived.Load(),
	}
	for i := range s.Responses {
		s.Responses[i] = st.responses[i].Load()
	}
	h := Histogram{Bounds: ResponseTimeBuckets, Counts: make([]uint64, len(ResponseTimeBuckets))}
	var cum uint64
	for i := range st.histogram {
		cum += st.histogram[i].Load()
		if i < len(h.Counts) {
			h.Counts[i] = cum
		}
	}
	h.Count = cum
	h.Sum = time.Duration(st.histSum.Load())
	s.ResponseTime = h
	return s
}
