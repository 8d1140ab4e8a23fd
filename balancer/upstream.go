package balancer

import (
	"hash/crc32"
	"sync"
)

// Upstream is one config generation's pool of servers for one upstream.
type Upstream struct {
	name    string
	table   *Table
	servers []*Server // as configured; Server.index is the position here
	primary *tier
	backup  *tier // nil without backup servers

	mu  sync.Mutex  // serialises picks: the policies keep unsynchronised state
	ctx pickContext // reused under mu, so nothing of the request escapes

	// pending is the configuration Prepare read, for Commit to record in
	// the shared server states; nil once committed.
	pending []pendingServer
}

// pendingServer is one server's configuration waiting for Commit.
type pendingServer struct {
	key    stateKey
	state  *serverState
	spec   ServerSpec
	single bool
}

// Name returns the upstream's name.
func (u *Upstream) Name() string { return u.name }

// Servers returns the servers in configuration order. Do not modify the slice.
func (u *Upstream) Servers() []*Server { return u.servers }

// Pick returns the server for the request, or ErrNoServer. It counts one
// active connection on the server: the caller calls Server.Release exactly
// once, after the attempt (and ReportFailure or ReportSuccess).
func (u *Upstream) Pick(req PickRequest) (*Server, error) {
	now := u.table.nowNano()
	u.mu.Lock()
	c := &u.ctx
	c.reset(u, &req, now)
	s := u.primary.sel.Select(c)
	if s == nil && u.backup != nil {
		s = u.backup.sel.Select(c)
	}
	if s == nil {
		// The failed servers stay failed until their fail_timeout ends, as
		// in nginx since the "quick recovery" of old versions went: an
		// outage answers at once instead of dialing dead servers per request.
		u.mu.Unlock()
		return nil, ErrNoServer
	}
	st := s.state
	st.conns.Add(1)
	st.requests.Add(1)
	// nginx: picking a server more than fail_timeout after its window began
	// starts a new window; for a failed server this request is the probe.
	if now-st.checked.Load() > s.failTimeout {
		st.checked.Store(now)
	}
	u.mu.Unlock()
	return s, nil
}

// Available reports whether at least one server could be picked now if it
// had no connection limit: neither down, unhealthy nor passively failed
// (a failed server whose fail_timeout elapsed counts, it gets the probe;
// with an active health check, that check decides).
// Servers that are merely full count as available: they are alive.
func (u *Upstream) Available() bool {
	now := u.table.nowNano()
	for _, s := range u.servers {
		if s.down || s.state.unhealth.Load() {
			continue
		}
		// A server an active check says is up counts: a blip in which
		// every server failed a request once (max_fails 1) must not take
		// a tracked upstream down (VRRP FAULT, the VIP moving away and
		// back) for the whole fail_timeout while the checks pass.
		if s.single || s.state.activeChecked.Load() || !s.passivelyFailed(now) {
			return true
		}
	}
	return false
}

// tier is one priority level of an upstream: its primary servers, or its
// backup servers. Each tier has its own selector instance.
type tier struct {
	servers     []*Server
	totalWeight int
	sel         Selector
}

func newTier(servers []*Server, newSelector func(*tier) Selector) *tier {
	t := &tier{servers: servers}
	for _, s := range servers {
		t.totalWeight += s.weight
	}
	t.sel = newSelector(t)
	return t
}

// pickContext is what selectors see of one pick. It lives in the Upstream
// and is reused under its lock: copying the request's key material into it
// keeps Pick free of allocations.
type pickContext struct {
	now     int64
	tried   []uint64 // bit i: Upstream.servers[i] was tried
	ip      [16]byte // client address bytes nginx's ip_hash uses
	ipLen   int
	keyHash uint32 // crc32 of PickRequest.HashKey
	hasKey  bool
}

func (c *pickContext) reset(u *Upstream, req *PickRequest, now int64) {
	c.now = now
	if c.tried == nil {
		c.tried = make([]uint64, (len(u.servers)+63)/64)
	}
	clear(c.tried)
	for _, t := range req.Tried {
		if t == nil {
			continue
		}
		if t.upstream == u {
			c.setTried(t.index)
			continue
		}
		// A server of another generation: the same state is the same server.
		for _, s := range u.servers {
			if s.state == t.state {
				c.setTried(s.index)
			}
		}
	}
	// nginx hashes the first three octets of an IPv4 client, the whole
	// address of an IPv6 one, and three zero bytes for anything else.
	// IPv4-mapped IPv6 clients (dual-stack listeners) count as IPv4, as
	// nginx sees them on its default ipv6only sockets.
	ip := req.ClientIP.Unmap()
	switch {
	case ip.Is4():
		a := ip.As4()
		copy(c.ip[:], a[:3])
		c.ipLen = 3
	case ip.Is6():
		c.ip = ip.As16()
		c.ipLen = 16
	default:
		c.ip = [16]byte{}
		c.ipLen = 3
	}
	c.hasKey = req.HashKey != ""
	if c.hasKey {
		c.keyHash = crc32String(req.HashKey)
	}
}

func (c *pickContext) setTried(i int)     { c.tried[i/64] |= 1 << (i % 64) }
func (c *pickContext) isTried(i int) bool { return c.tried[i/64]&(1<<(i%64)) != 0 }

// usable is nginx's per-peer test: not tried, not down, not failed within
// fail_timeout, not full; plus our active health check.
func (c *pickContext) usable(s *Server) bool {
	if s.down || c.isTried(s.index) {
		return false
	}
	st := s.state
	if st.unhealth.Load() {
		return false
	}
	if s.maxConns > 0 && st.conns.Load() >= s.maxConns {
		return false
	}
	return s.single || !s.passivelyFailed(c.now)
}

// crc32String is crc32.ChecksumIEEE without converting s to a byte slice.
func crc32String(s string) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(s); i++ {
		crc = crc32.IEEETable[byte(crc)^s[i]] ^ (crc >> 8)
	}
	return ^crc
}
