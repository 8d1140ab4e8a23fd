// Package admin serves the node's admin API on global.admin_listen:
// GET /status (JSON), GET /metrics (Prometheus text) and GET /healthz.
// It knows nothing of the proxy or VRRP internals: the daemon hands it a
// Source that assembles a Status snapshot on demand.
package admin

import "time"

// Source produces the snapshot every endpoint reads.
type Source interface {
	Status() Status
}

// SourceFunc adapts a function to Source.
type SourceFunc func() Status

// Status calls f.
func (f SourceFunc) Status() Status { return f() }

// Status is the JSON document of GET /status.
type Status struct {
	Node       string           `json:"node"`
	Version    string           `json:"version"`
	PID        int              `json:"pid"`
	ConfigFile string           `json:"config_file"`
	Generation uint64           `json:"generation"`
	StartedAt  time.Time        `json:"started_at"`
	Reloads    ReloadCounts     `json:"reloads"`
	Listeners  []ListenerStatus `json:"listeners"`
	VRRP       []VRRPStatus     `json:"vrrp"`
	// VRRPInterfaces are the shared VRRP sockets, one per interface and
	// family, with the drops no instance is for (wrong_vrid, truncated).
	VRRPInterfaces []VRRPInterfaceStatus `json:"vrrp_interfaces"`
	Upstreams      []UpstreamStatus      `json:"upstreams"`
	// HTTPResponses counts responses sent to clients by status class ("2xx"...).
	HTTPResponses map[string]uint64 `json:"http_responses"`
	// ActiveStreams is the number of open TCP stream sessions.
	ActiveStreams int `json:"active_streams"`
	// Streams are the TCP stream proxy's counters by upstream and listener.
	Streams StreamCounters `json:"streams"`
	// AccessLog is where access log lines go and how many were written
	// or lost (a failing disk).
	AccessLog AccessLogStatus `json:"access_log"`
	// Unhealthy lists why GET /healthz answers 503; empty when healthy.
	Unhealthy []string `json:"unhealthy"`
}

// AccessLogStatus counts access log lines.
type AccessLogStatus struct {
	Target       string `json:"target"` // path, "stdout", "stderr" or "off"
	LinesWritten uint64 `json:"lines_written"`
	LinesLost    uint64 `json:"lines_lost"` // writes that failed
}

// ReloadCounts counts SIGHUP reloads by outcome.
type ReloadCounts struct {
	OK     uint64 `json:"ok"`
	Failed uint64 `json:"failed"`
}

// ListenerStatus is one listening socket.
type ListenerStatus struct {
	Address      string `json:"address"`
	Serving      bool   `json:"serving"`
	Accepted     uint64 `json:"accepted"`
	AcceptErrors uint64 `json:"accept_errors"`
	LastError    string `json:"last_error,omitempty"`
	// ProxyHeaderRefused: an [[http]] listener's connections closed for
	// their PROXY header, by reason (stream listeners: streams.listeners).
	ProxyHeaderRefused map[string]uint64 `json:"proxy_header_refused,omitempty"`
}

// VRRPStatus is one VRRP instance.
type VRRPStatus struct {
	Name              string            `json:"name"`
	Interface         string            `json:"interface"`
	VirtualRouterID   int               `json:"virtual_router_id"`
	Family            string            `json:"family"` // "IPv4" | "IPv6"
	State             string            `json:"state"`  // INIT | BACKUP | MASTER | FAULT
	Priority          int               `json:"priority"`
	EffectivePriority int               `json:"effective_priority"`
	VIPs              []string          `json:"vips"`      // configured
	VIPsHeld          []string          `json:"vips_held"` // on the interface now
	Master            string            `json:"master,omitempty"`
	LastTransition    Transition        `json:"last_transition"`
	Transitions       uint64            `json:"transitions"`
	AdvertsSent       uint64            `json:"adverts_sent"`
	AdvertsReceived   uint64            `json:"adverts_received"`
	Drops             map[string]uint64 `json:"drops"`
	PeerMismatches    uint64            `json:"peer_config_mismatches"`
	FaultReasons      []string          `json:"fault_reasons,omitempty"`
}

// Transition is a VRRP state change.
type Transition struct {
	At     time.Time `json:"at"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason"`
}

// UpstreamStatus is one upstream and its servers.
type UpstreamStatus struct {
	Name      string         `json:"name"`
	Balance   string         `json:"balance"`
	Available bool           `json:"available"`
	Servers   []ServerStatus `json:"servers"`
}

// ServerStatus is one upstream server.
type ServerStatus struct {
	Address string `json:"address"`
	State   string `json:"state"`  // up | down | failed | unhealthy | ...
	Reason  string `json:"reason"` // why, when not up
	Weight  int    `json:"weight"`
	Backup  bool   `json:"backup"`
	// Pickable: the balancer may give it a request now (a failed server
	// is again once fail_timeout passed: the next request probes it).
	Pickable bool `json:"pickable"`
	// Failures counts failed attempts (passive) since start.
	Failures uint64 `json:"failures"`
	Active   int64  `json:"active"`
	Requests uint64 `json:"requests"`
	// Responses counts upstream responses by status class.
	Responses map[string]uint64 `json:"responses"`
	// ResponseTime is a cumulative histogram of upstream response times.
	ResponseTime Histogram `json:"response_time"`
}

// Histogram is cumulative: Counts[i] observations were <= Buckets[i] seconds.
type Histogram struct {
	Buckets []float64 `json:"buckets"`
	Counts  []uint64  `json:"counts"`
	Count   uint64    `json:"count"`
	Sum     float64   `json:"sum"`
}

// StreamCounters are the stream proxy's process-wide counters.
type StreamCounters struct {
	Upstreams []StreamUpstream `json:"upstreams"`
	Listeners []StreamListener `json:"listeners"`
}

// StreamUpstream is one upstream's (or literal proxy_pass address's) stream counters.
type StreamUpstream struct {
	Upstream        string `json:"upstream"`
	ActiveStreams   int64  `json:"active_streams"`
	Streams         uint64 `json:"streams"`
	BytesFromClient uint64 `json:"bytes_from_client"`
	BytesToClient   uint64 `json:"bytes_to_client"`
	ConnectFailures uint64 `json:"connect_failures"`
	NoServer        uint64 `json:"no_server"`
	UpstreamErrors  uint64 `json:"upstream_errors"`
	ClientErrors    uint64 `json:"client_errors"`
	Timeouts        uint64 `json:"timeouts"`
}

// StreamListener is one stream listener's counters.
type StreamListener struct {
	Listen             string            `json:"listen"`
	Accepted           uint64            `json:"accepted"`
	ProxyHeaderRefused map[string]uint64 `json:"proxy_header_refused,omitempty"`
}

// VRRPInterfaceStatus is one interface's shared VRRP socket.
type VRRPInterfaceStatus struct {
	Interface string            `json:"interface"`
	Family    string            `json:"family"`
	Open      bool              `json:"open"`
	Joined    bool              `json:"joined"`
	Opens     uint64            `json:"opens"`
	VRIDs     []int             `json:"virtual_router_ids"`
	Drops     map[string]uint64 `json:"drops"`
}
