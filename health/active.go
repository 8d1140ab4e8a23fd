// Package health runs the active health checks of upstream servers
// (`[upstream.X.health_check]`) and feeds their rise/fall-counted result
// into the balancer's server state, the one truth that the balancers, the
// admin API and VRRP's track_upstream read.
//
// Initial state: a server starts usable (as nginx and HAProxy assume) and
// the first check decides at once: a first failure marks it unhealthy
// within one timeout, a first pass confirms it. From then on it takes
// `fall` consecutive failures to mark it unhealthy and `rise` consecutive
// passes to bring it back, so a flapping backend does not flap the VIP.
// This is HAProxy's "init-state up": no FAULT at start-up while checks have
// not run, yet a dead backend is found after one check, not after `fall`.
package health

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/vipgate/vipgate/balancer"
)

// CheckSpec is one upstream's active health check.
type CheckSpec struct {
	Type          string   // "http" | "tcp"
	Path          string   // http: request path, "/" when empty
	Host          string   // http: Host header, the server's address when empty
	ExpectStatus  [][2]int // http: inclusive status ranges, e.g. {{200, 399}}; 200-399 when empty
	Interval      time.Duration
	Timeout       time.Duration
	Rise, Fall    int
	ProxyProtocol string // tcp: "" | "v1" | "v2": send PROXY UNKNOWN (v1) or a LOCAL command (v2) first
}

// Validate reports what is wrong with spec, for the config layer.
func (s CheckSpec) Validate() error {
	var errs []error
	switch s.Type {
	case "http", "tcp":
	default:
		errs = append(errs, fmt.Errorf("type %q: want http or tcp", s.Type))
	}
	if s.Interval <= 0 {
		errs = append(errs, fmt.Errorf("interval %s: must be positive", s.Interval))
	}
	if s.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout %s: must be positive", s.Timeout))
	}
	if s.Rise < 1 || s.Fall < 1 {
		errs = append(errs, fmt.Errorf("rise %d, fall %d: both must be at least 1", s.Rise, s.Fall))
	}
	if s.Path != "" && s.Path[0] != '/' {
		errs = append(errs, fmt.Errorf("path %q: must start with /", s.Path))
	}
	for _, r := range s.ExpectStatus {
		if r[0] < 100 || r[1] > 599 || r[0] > r[1] {
			errs = append(errs, fmt.Errorf("expect_status %d-%d: not a range within 100-599", r[0], r[1]))
		}
	}
	switch s.ProxyProtocol {
	case "", "v1", "v2":
	default:
		errs = append(errs, fmt.Errorf("proxy_protocol %q: want v1, v2 or empty", s.ProxyProtocol))
	}
	return errors.Join(errs...)
}

func (s CheckSpec) equal(o CheckSpec) bool {
	return s.Type == o.Type && s.Path == o.Path && s.Host == o.Host &&
		slices.Equal(s.ExpectStatus, o.ExpectStatus) && s.Interval == o.Interval &&
		s.Timeout == o.Timeout && s.Rise == o.Rise && s.Fall == o.Fall &&
		s.ProxyProtocol == o.ProxyProtocol
}

// UpstreamChecks is the check of one upstream and the servers it applies to
// (the current generation's, usually Upstream.Servers()).
type UpstreamChecks struct {
	Spec    CheckSpec // Type "": the upstream is configured without a check
	Servers []*balancer.Server
}

// Manager owns one goroutine per checked server.
type Manager struct {
	log       *zap.Logger
	transport *http.Transport
	// transportV1 and transportV2 send a PROXY header first.
	transportV1, transportV2 *http.Transport

	mu      sync.Mutex
	checks  map[checkKey]*checker
	stopped bool
}

type checkKey struct{ upstream, address string }

// NewManager returns a manager with no checks running.
func NewManager(log *zap.Logger) *Manager {
	if log == nil {
		log = zap.NewNop()
	}
	return &Manager{
		log:       log,
		transport: checkTransport(""),
		// Servers behind a stream with proxy_protocol require the header
		// on the check's connection too.
		transportV1: checkTransport("v1"),
		transportV2: checkTransport("v2"),
		checks:      make(map[checkKey]*checker),
	}
}

// checkTransport makes a fresh connection per check (as HAProxy), with no
// proxy from the environment and a bounded response head, so the check
// sees what a new client would. With proxyProtocol, the connection starts
// with a PROXY header saying "no client address" (v1 UNKNOWN, v2 LOCAL).
func checkTransport(proxyProtocol string) *http.Transport {
	var d net.Dialer
	dial := d.DialContext
	if header := localProxyHeader(proxyProtocol); header != nil {
		dial = func(ctx context.Context, network, address string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, address)
			if err != nil {
				return nil, err
			}
			if deadline, ok := ctx.Deadline(); ok {
				_ = conn.SetWriteDeadline(deadline)
			}
			if _, err := conn.Write(header); err != nil {
				conn.Close()
				return nil, fmt.Errorf("send PROXY %s header: %w", proxyProtocol, err)
			}
			_ = conn.SetWriteDeadline(time.Time{})
			return conn, nil
		}
	}
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            dial,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
	}
}

// Apply makes the running checks those of checks (key: upstream name,
// every configured upstream, with an empty Spec when it has no check).
// A check whose upstream, address and spec are unchanged keeps running with
// its rise/fall counts; removed ones stop; new or changed ones start, their
// first result deciding. When an upstream that is still configured loses
// its health check, its servers are marked healthy again (the passive
// state is untouched); a removed upstream's servers are left alone (not
// reported "up" for servers nobody uses any more).
// Invalid specs are logged and skipped; the config layer validates first.
func (m *Manager) Apply(checks map[string]UpstreamChecks) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		m.log.Warn("health: Apply after Stop ignored")
		return
	}
	type want struct {
		spec   CheckSpec
		server *balancer.Server
	}
	wanted := make(map[checkKey]want)
	for name, uc := range checks {
		if uc.Spec.Type == "" {
			continue
		}
		if err := uc.Spec.Validate(); err != nil {
			m.log.Error("health check not started: invalid spec", zap.String("upstream", name), zap.Error(err))
			continue
		}
		for _, s := range uc.Servers {
			wanted[checkKey{name, s.Address()}] = want{uc.Spec, s}
		}
	}
	// A server whose check changed (interval, path...) keeps the state its
	// old check decided: counts start again, but one failure right after
	// the reload must not undo fall (nor one pass undo rise).
	decided := make(map[checkKey]int32)
	for key, c := range m.checks {
		w, ok := wanted[key]
		if ok && w.spec.equal(c.spec) {
			c.server.Store(w.server)
			delete(wanted, key)
			continue
		}
		c.stop()
		delete(m.checks, key)
		if ok {
			decided[key] = c.decided.Load()
		}
		if !ok {
			// No check replaces it: healthy, passive failures decide
			// again. A server still configured says so; one that left
			// the configuration (its state kept for a reload that brings
			// it back) is cleared without a word.
			if uc, configured := checks[key.upstream]; configured && uc.Spec.Type == "" {
				c.server.Load().ClearActiveHealth("active health check removed")
			} else {
				c.server.Load().ForgetActiveHealth()
			}
		}
	}
	for key, w := range wanted {
		c := m.start(key, w.spec, w.server, decided[key])
		m.checks[key] = c
	}
}

// Stop stops every check and waits for them to end. Server states are left
// as they are.
func (m *Manager) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, c := range m.checks {
		c.stop()
		delete(m.checks, key)
	}
	m.stopped = true
	for _, t := range []*http.Transport{m.transport, m.transportV1, m.transportV2} {
		t.CloseIdleConnections()
	}
}

// checker is one server's check loop.
type checker struct {
	spec   CheckSpec
	server atomic.Pointer[balancer.Server]
	cancel context.CancelFunc
	done   chan struct{}
	// decided is what the check has decided: undecided, checkUp or
	// checkDown (for the check that replaces it at a reload).
	decided atomic.Int32
}

const (
	undecided int32 = iota
	checkUp
	checkDown
)

func (c *checker) stop() {
	c.cancel()
	<-c.done
}

func (m *Manager) start(key checkKey, spec CheckSpec, server *balancer.Server, decided int32) *checker {
	ctx, cancel := context.WithCancel(context.Background())
	c := &checker{spec: spec, cancel: cancel, done: make(chan struct{})}
	c.decided.Store(decided)
	c.server.Store(server)
	probe := m.probeFor(spec, key.address)
	log := m.log.With(zap.String("upstream", key.upstream), zap.String("server", key.address), zap.String("check", spec.Type))
	go c.run(ctx, probe, log)
	return c
}

func (c *checker) run(ctx context.Context, probe func(context.Context) error, log *zap.Logger) {
	defer close(c.done)
	h := hysteresis{rise: c.spec.Rise, fall: c.spec.Fall}
	if d := c.decided.Load(); d != undecided {
		h.decided, h.up = true, d == checkUp
	}
	// Spread the first checks of many servers a little, then check at the
	// interval with +-10% jitter so checks of both nodes do not align.
	timer := time.NewTimer(jitter(0, c.spec.Interval/10))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		cctx, cancel := context.WithTimeout(ctx, c.spec.Timeout)
		err := probe(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if ce := log.Check(zapcore.DebugLevel, "health check failed"); ce != nil {
				ce.Write(zap.Error(err))
			}
		}
		if changed, up := h.observe(err == nil); changed {
			c.server.Load().SetActiveHealth(up, h.reason(err))
			if up {
				c.decided.Store(checkUp)
			} else {
				c.decided.Store(checkDown)
			}
		}
		d := c.spec.Interval / 10
		timer.Reset(jitter(c.spec.Interval-d, 2*d))
	}
}

// jitter returns base plus a random duration in [0, spread].
func jitter(base, spread time.Duration) time.Duration {
	if spread <= 0 {
		return base
	}
	return base + rand.N(spread+1)
}

// hysteresis counts consecutive results: the first result decides, then
// fall failures mark down and rise passes mark up.
type hysteresis struct {
	rise, fall    int
	passes, fails int
	decided, up   bool
	first         bool // the last observation was the first one
}

// observe records one result and reports whether the state changed (the
// first result always counts as a change, so the server state is set).
func (h *hysteresis) observe(ok bool) (changed, up bool) {
	if ok {
		h.passes++
		h.fails = 0
	} else {
		h.fails++
		h.passes = 0
	}
	h.first = !h.decided
	switch {
	case !h.decided:
		h.decided, h.up = true, ok
		return true, h.up
	case h.up && h.fails >= h.fall:
		h.up = false
		return true, false
	case !h.up && h.passes >= h.rise:
		h.up = true
		return true, true
	}
	return false, h.up
}

func (h *hysteresis) reason(err error) string {
	switch {
	case h.up && h.first:
		return "first health check passed"
	case h.up:
		return fmt.Sprintf("health check passed %d times in a row (rise %d)", h.passes, h.rise)
	case h.first:
		return "first health check failed: " + err.Error()
	default:
		return fmt.Sprintf("health check failed %d times in a row (fall %d): %v", h.fails, h.fall, err)
	}
}
