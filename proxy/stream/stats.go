package stream

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/vipgate/vipgate/proxy/proxyproto"
)

// Stats holds the stream counters of the whole process. One Stats is shared
// by every config generation (Deps.Stats), so counters do not restart on a
// reload and streams of an old generation still count.
type Stats struct {
	mu        sync.Mutex
	upstreams map[string]*upstreamCounters
	listeners map[string]*listenerCounters
}

// NewStats returns empty counters.
func NewStats() *Stats {
	return &Stats{upstreams: map[string]*upstreamCounters{}, listeners: map[string]*listenerCounters{}}
}

type upstreamCounters struct {
	active          atomic.Int64
	streams         atomic.Uint64
	bytesFromClient atomic.Uint64
	bytesToClient   atomic.Uint64
	connectFailures atomic.Uint64
	noServer        atomic.Uint64
	// Connected streams that ended badly, by how.
	upstreamErrors atomic.Uint64
	clientErrors   atomic.Uint64
	timeouts       atomic.Uint64
}

type listenerCounters struct {
	accepted      atomic.Uint64
	headerRefused []atomic.Uint64 // by position in proxyproto.Reasons
}

// reasonIndex numbers proxyproto.Reasons for listenerCounters.headerRefused.
var reasonIndex = func() map[proxyproto.Reason]int {
	m := make(map[proxyproto.Reason]int, len(proxyproto.Reasons))
	for i, r := range proxyproto.Reasons {
		m[r] = i
	}
	return m
}()

func (s *Stats) upstream(name string) *upstreamCounters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.upstreams[name]
	if c == nil {
		c = &upstreamCounters{}
		s.upstreams[name] = c
	}
	return c
}

func (s *Stats) listener(addr string) *listenerCounters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.listeners[addr]
	if c == nil {
		c = &listenerCounters{headerRefused: make([]atomic.Uint64, len(proxyproto.Reasons))}
		s.listeners[addr] = c
	}
	return c
}

// UpstreamStats is one upstream's stream counters. Upstream is the
// [upstream.NAME] name, or the host:port of a literal proxy_pass.
type UpstreamStats struct {
	Upstream        string `json:"upstream"`
	ActiveStreams   int64  `json:"active_streams"`
	Streams         uint64 `json:"streams"`           // connected streams since start
	BytesFromClient uint64 `json:"bytes_from_client"` // forwarded to servers
	BytesToClient   uint64 `json:"bytes_to_client"`   // forwarded from servers
	ConnectFailures uint64 `json:"connect_failures"`  // failed or timed-out connects
	NoServer        uint64 `json:"no_server"`         // clients closed because no server could be picked or reached
	UpstreamErrors  uint64 `json:"upstream_errors"`   // connected streams ended by a reset or error on the server's side
	ClientErrors    uint64 `json:"client_errors"`     // ... on the client's side
	Timeouts        uint64 `json:"timeouts"`          // ... by proxy_timeout (nothing moved, or a peer that did not read)
}

// ListenerStats is one stream listener's counters.
type ListenerStats struct {
	Listen   string `json:"listen"`
	Accepted uint64 `json:"accepted"`
	// ProxyHeaderRefused counts refused inbound PROXY headers by reason
	// (proxyproto.Reason); only non-zero reasons are listed.
	ProxyHeaderRefused map[string]uint64 `json:"proxy_header_refused,omitempty"`
}

// Snapshot returns the counters, sorted by name.
func (s *Stats) Snapshot() (upstreams []UpstreamStats, listeners []ListenerStats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, c := range s.upstreams {
		upstreams = append(upstreams, UpstreamStats{
			Upstream:        name,
			ActiveStreams:   c.active.Load(),
			Streams:         c.streams.Load(),
			BytesFromClient: c.bytesFromClient.Load(),
			BytesToClient:   c.bytesToClient.Load(),
			ConnectFailures: c.connectFailures.Load(),
			NoServer:        c.noServer.Load(),
			UpstreamErrors:  c.upstreamErrors.Load(),
			ClientErrors:    c.clientErrors.Load(),
			Timeouts:        c.timeouts.Load(),
		})
	}
	for addr, c := range s.listeners {
		ls := ListenerStats{Listen: addr, Accepted: c.accepted.Load()}
		for i, r := range proxyproto.Reasons {
			if n := c.headerRefused[i].Load(); n > 0 {
				if ls.ProxyHeaderRefused == nil {
					ls.ProxyHeaderRefused = map[string]uint64{}
				}
				ls.ProxyHeaderRefused[string(r)] = n
			}
		}
		listeners = append(listeners, ls)
	}
	sort.Slice(upstreams, func(i, j int) bool { return upstreams[i].Upstream < upstreams[j].Upstream })
	sort.Slice(listeners, func(i, j int) bool { return listeners[i].Listen < listeners[j].Listen })
	return upstreams, listeners
}
