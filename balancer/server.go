package balancer

import "time"

// Server is one server of one config generation's Upstream. Its state
// (failures, health, connections, counters) is shared with the same
// upstream name and address in every other generation.
type Server struct {
	upstream *Upstream
	state    *serverState
	index    int
	address  string
	name     string // as configured (ServerSpec.Name)

	weight      int
	maxFails    int32
	failTimeout int64 // ns
	maxConns    int64
	backup      bool
	down        bool
	single      bool // the upstream's only primary server, and no backup: failures never count

	// Smooth weighted round robin state, guarded by upstream.mu.
	currentWeight   int
	effectiveWeight int
}

// Address returns host:port as configured.
func (s *Server) Address() string { return s.address }

// Upstream returns the upstream's name.
func (s *Server) Upstream() string { return s.upstream.name }

// Weight returns the configured weight.
func (s *Server) Weight() int { return s.weight }

// Backup reports whether it is a backup server.
func (s *Server) Backup() bool { return s.backup }

// Release ends the connection that Pick counted.
func (s *Server) Release() { s.state.conns.Add(-1) }

func (s *Server) passivelyFailed(now int64) bool {
	st := s.state
	return s.maxFails > 0 && st.fails.Load() >= s.maxFails && now-st.checked.Load() <= s.failTimeout
}

// ReportFailure records a failed attempt (what the location's
// proxy_next_upstream counts, plus error, timeout and invalid_header).
// max_fails failures, the last one less than fail_timeout ago, make the
// server unavailable until fail_timeout after the last failure; then one
// request is let through as a probe. A single-server upstream is never
// marked failed (nginx).
func (s *Server) ReportFailure() {
	st := s.state
	st.failuresTotal.Add(1)
	if s.single {
		return
	}
	u := s.upstream
	now := u.table.nowNano()
	if s.maxFails > 0 {
		// nginx lowers the weight so that max_fails failures bring it to 0;
		// each later pick of the tier raises it by one.
		u.mu.Lock()
		s.effectiveWeight -= s.weight / int(s.maxFails)
		if s.effectiveWeight < 0 {
			s.effectiveWeight = 0
		}
		u.mu.Unlock()
	}
	st.mu.Lock()
	st.fails.Add(1)
	st.accessed.Store(now)
	st.checked.Store(now)
	c, changed := st.changedLocked(now)
	st.mu.Unlock()
	if changed {
		u.table.notify([]ServerStatus{c})
	}
}

// ReportSuccess records a successful attempt. A success in a fail_timeout
// window that began after the last failure (the probe) clears the failures.
func (s *Server) ReportSuccess() {
	st := s.state
	if s.single || st.fails.Load() == 0 || st.accessed.Load() >= st.checked.Load() {
		return
	}
	now := s.upstream.table.nowNano()
	st.mu.Lock()
	if st.accessed.Load() >= st.checked.Load() {
		st.mu.Unlock()
		return
	}
	st.fails.Store(0)
	st.upReason = "a request succeeded after fail_timeout"
	c, changed := st.changedLocked(now)
	st.mu.Unlock()
	if changed {
		s.upstream.table.notify([]ServerStatus{c})
	}
}

// ObserveResponse counts a response from the server: its status class and
// the time to its header.
func (s *Server) ObserveResponse(status int, d time.Duration) {
	st := s.state
	if class := status/100 - 1; class >= 0 && class < len(st.responses) {
		st.responses[class].Add(1)
	}
	i := 0
	for i < len(ResponseTimeBuckets) && d > ResponseTimeBuckets[i] {
		i++
	}
	st.histogram[i].Add(1)
	st.histSum.Add(int64(d))
}

// AddBytes counts bytes sent to and received from the server.
func (s *Server) AddBytes(sent, received int64) {
	if sent > 0 {
		s.state.bytesSent.Add(uint64(sent))
	}
	if received > 0 {
		s.state.bytesReceived.Add(uint64(received))
	}
}

// SetActiveHealth records the result of the active health check (after its
// rise/fall counting). An unhealthy server is never picked, even when it is
// the only one.
func (s *Server) SetActiveHealth(up bool, reason string) {
	st := s.state
	st.activeChecked.Store(true)
	now := s.upstream.table.nowNano()
	st.mu.Lock()
	st.unhealth.Store(!up)
	if up {
		st.upReason = reason
	} else {
		st.activeReason = reason
	}
	c, changed := st.changedLocked(now)
	st.mu.Unlock()
	if changed {
		s.upstream.table.notify([]ServerStatus{c})
	}
}

// ClearActiveHealth records that the server's active health check was
// removed: it is healthy, and passive failures decide again.
func (s *Server) ClearActiveHealth(reason string) {
	s.SetActiveHealth(true, reason)
	s.state.activeChecked.Store(false)
}

// ForgetActiveHealth drops the verdict of a check that stopped because the
// server (or its upstream) left the configuration. Nothing is reported:
// the server no longer exists for operators, but its state is kept aside
// for a reload that lists it again, and there it must start healthy.
func (s *Server) ForgetActiveHealth() {
	st := s.state
	now := s.upstream.table.nowNano()
	st.mu.Lock()
	st.unhealth.Store(false)
	st.activeChecked.Store(false)
	st.changedLocked(now)
	st.mu.Unlock()
}

// Status returns a snapshot of the server's state and counters.
func (s *Server) Status() ServerStatus {
	return s.state.status(s.upstream.table.nowNano())
}
