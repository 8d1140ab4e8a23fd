// Package config turns a vipgate TOML file into a typed, defaulted and
// validated Config. It reports every problem of a file at once, each with
// its key path, and never touches the network.
package config

import (
	"net/netip"
	"regexp"
)

// Config is one whole vipgate file after defaults and validation.
type Config struct {
	Global     Global                 `toml:"global"`
	Upstream   map[string]*Upstream   `toml:"upstream"`
	HTTP       []*HTTPServer          `toml:"http"`
	Stream     []*Stream              `toml:"stream"`
	VRRP       []*VRRP                `toml:"vrrp"`
	VRRPScript map[string]*VRRPScript `toml:"vrrp_script"`

	// Path is the file the configuration was read from.
	Path string `toml:"-"`
	// Warnings are problems that do not make the file invalid (printed by -t).
	Warnings []string `toml:"-"`

	pos *positions // lines of keys, for CheckHost's messages
}

// Global is [global].
type Global struct {
	NodeName        string   `toml:"node_name"`
	LogLevel        string   `toml:"log_level"`
	LogFormat       string   `toml:"log_format"`
	ErrorLog        string   `toml:"error_log"`
	AccessLog       string   `toml:"access_log"`
	AccessLogBuffer Size     `toml:"access_log_buffer"`
	AccessLogFlush  Duration `toml:"access_log_flush"`
	PidFile         string   `toml:"pid_file"`
	AdminListen     *string  `toml:"admin_listen"`
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	ScriptUser      string   `toml:"script_user"`
}

// Upstream is [upstream.NAME], nginx's upstream {} block.
type Upstream struct {
	Balance     string            `toml:"balance"`
	Hash        string            `toml:"hash"`
	Keepalive   *int              `toml:"keepalive"`
	MaxFails    *int              `toml:"max_fails"`
	FailTimeout Duration          `toml:"fail_timeout"`
	Server      []*UpstreamServer `toml:"server"`
	HealthCheck *HealthCheck      `toml:"health_check"`
	Name        string            `toml:"-"`
}

// UpstreamServer is one [[upstream.NAME.server]].
type UpstreamServer struct {
	Address     string   `toml:"address"`
	Weight      *int     `toml:"weight"`
	MaxFails    *int     `toml:"max_fails"`
	FailTimeout Duration `toml:"fail_timeout"`
	Backup      bool     `toml:"backup"`
	Down        bool     `toml:"down"`
	MaxConns    int      `toml:"max_conns"`
}

// HealthCheck is [upstream.NAME.health_check].
type HealthCheck struct {
	Type         string   `toml:"type"`
	Path         string   `toml:"path"`
	Host         string   `toml:"host"`
	ExpectStatus string   `toml:"expect_status"`
	Interval     Duration `toml:"interval"`
	Timeout      Duration `toml:"timeout"`
	Rise         int      `toml:"rise"`
	Fall         int      `toml:"fall"`

	// StatusRanges is ExpectStatus parsed: inclusive [low, high] pairs.
	StatusRanges [][2]int `toml:"-"`
}

// HTTPServer is one [[http]], nginx's server {} inside http {}.
type HTTPServer struct {
	Listen              []string `toml:"listen"`
	ServerName          []string `toml:"server_name"`
	TLSCertificate      string   `toml:"tls_certificate"`
	TLSCertificateKey   string   `toml:"tls_certificate_key"`
	ClientMaxBodySize   Size     `toml:"client_max_body_size"`
	ClientHeaderTimeout Duration `toml:"client_header_timeout"`
	ClientBodyTimeout   Duration `toml:"client_body_timeout"`
	KeepaliveTimeout    Duration `toml:"keepalive_timeout"`
	SendTimeout         Duration `toml:"send_timeout"`
	ClientHeaderMaxSize Size     `toml:"client_header_max_size"`
	AcceptProxyProtocol bool     `toml:"accept_proxy_protocol"`
	// SetRealIPFrom lists the sources whose PROXY header's address is
	// trusted as $remote_addr (nginx's set_real_ip_from with real_ip_header
	// proxy_protocol); empty: every source's.
	SetRealIPFrom []string `toml:"set_real_ip_from"`
	// UnderscoresInHeaders passes client header fields whose name has an
	// underscore; off, they are dropped, as nginx's defaults
	// (underscores_in_headers off, ignore_invalid_headers on) do.
	UnderscoresInHeaders bool              `toml:"underscores_in_headers"`
	ErrorPage            map[string]string `toml:"error_page"`
	Location             []*Location       `toml:"location"`

	// ErrorPages maps a status code to a file, from ErrorPage.
	ErrorPages map[int]string `toml:"-"`
	// RealIPFrom is SetRealIPFrom parsed.
	RealIPFrom []netip.Prefix `toml:"-"`
}

// Location match kinds, from the path's prefix as in nginx.
const (
	MatchPrefix = "prefix"
	MatchExact  = "exact" // "= /x"
	MatchRegex  = "regex" // "~ re"
)

// Location is one [[http.location]].
type Location struct {
	Path                     string            `toml:"path"`
	ProxyPass                string            `toml:"proxy_pass"`
	ProxySetHeader           map[string]string `toml:"proxy_set_header"`
	ProxyNextUpstream        []string          `toml:"proxy_next_upstream"`
	ProxyNextUpstreamTries   int               `toml:"proxy_next_upstream_tries"`
	ProxyNextUpstreamTimeout Duration          `toml:"proxy_next_upstream_timeout"`
	ProxyConnectTimeout      Duration          `toml:"proxy_connect_timeout"`
	ProxyReadTimeout         Duration          `toml:"proxy_read_timeout"`
	ProxySendTimeout         Duration          `toml:"proxy_send_timeout"`
	ProxyBuffering           *bool             `toml:"proxy_buffering"`
	ProxyRedirect            *string           `toml:"proxy_redirect"` // "default" (when unset) or "off"
	Root                     string            `toml:"root"`

	// Derived by validation.
	Match   string         `toml:"-"` // MatchPrefix, MatchExact or MatchRegex
	Pattern string         `toml:"-"` // the path without its "= " or "~ " marker
	Regex   *regexp.Regexp `toml:"-"`
	// Target is proxy_pass parsed; nil for root locations.
	Target *ProxyTarget `toml:"-"`
}

// ProxyTarget is a parsed proxy_pass URL.
type ProxyTarget struct {
	Scheme string // "http" (https upstreams are not supported yet)
	// Upstream names an [upstream.NAME]; empty when Address is a literal host:port.
	Upstream string
	Address  string
	// URI is the path part ("" when proxy_pass has none: the client's URI is sent unchanged).
	URI    string
	HasURI bool
}

// Stream is one [[stream]], nginx's server {} inside stream {}.
type Stream struct {
	Listen               []string `toml:"listen"`
	ProxyPass            string   `toml:"proxy_pass"`
	ProxyProtocol        string   `toml:"proxy_protocol"`
	AcceptProxyProtocol  bool     `toml:"accept_proxy_protocol"`
	SetRealIPFrom        []string `toml:"set_real_ip_from"` // as [[http]]'s
	ProxyProtocolTimeout Duration `toml:"proxy_protocol_timeout"`
	ProxyConnectTimeout  Duration `toml:"proxy_connect_timeout"`
	ProxyTimeout         Duration `toml:"proxy_timeout"`
	TCPNoDelay           *bool    `toml:"tcp_nodelay"`
	SOKeepalive          *bool    `toml:"so_keepalive"`

	// Upstream is set when ProxyPass names an upstream, Address when it is host:port.
	Upstream string `toml:"-"`
	Address  string `toml:"-"`
	// RealIPFrom is SetRealIPFrom parsed.
	RealIPFrom []netip.Prefix `toml:"-"`
}

// VRRP is one [[vrrp]], keepalived's vrrp_instance.
type VRRP struct {
	Name                string   `toml:"name"`
	Interface           string   `toml:"interface"`
	VirtualRouterID     int      `toml:"virtual_router_id"`
	Priority            *int     `toml:"priority"`
	State               string   `toml:"state"`
	Version             int      `toml:"version"`
	AdvertInt           Duration `toml:"advert_int"`
	Preempt             *bool    `toml:"preempt"`
	PreemptDelay        Duration `toml:"preempt_delay"`
	AuthPass            string   `toml:"auth_pass"`
	McastSrcIP          string   `toml:"mcast_src_ip"`
	UnicastPeer         []string `toml:"unicast_peer"`
	VirtualIPAddress    []string `toml:"virtual_ipaddress"`
	GARPMasterDelay     Duration `toml:"garp_master_delay"`
	GARPMasterRepeat    *int     `toml:"garp_master_repeat"`
	GARPMasterRefresh   Duration `toml:"garp_master_refresh"`
	TrackScript         []string `toml:"track_script"`
	TrackInterface      []string `toml:"track_interface"`
	TrackUpstream       []string `toml:"track_upstream"`
	TrackUpstreamWeight int      `toml:"track_upstream_weight"`
	NotifyMaster        string   `toml:"notify_master"`
	NotifyBackup        string   `toml:"notify_backup"`
	NotifyFault         string   `toml:"notify_fault"`
	Notify              string   `toml:"notify"`
	VIPLifetime         string   `toml:"vip_lifetime"`
	// V3ChecksumAsV2 leaves the IPv4 pseudo-header out of the VRRPv3
	// checksum, as keepalived's vrrp_v3_checksum_as_v2 (for old peers).
	V3ChecksumAsV2 bool `toml:"v3_checksum_as_v2"`

	// Derived by validation.
	Family       int          `toml:"-"` // 4 or 6, from the VIPs
	VIPs         []VIP        `toml:"-"`
	SourceIP     netip.Addr   `toml:"-"`
	UnicastPeers []netip.Addr `toml:"-"`
	// VIPLifetimeAuto is true when vip_lifetime is "auto" (the default).
	VIPLifetimeAuto     bool     `toml:"-"`
	VIPLifetimeDuration Duration `toml:"-"`
}

// VIP is one parsed virtual_ipaddress entry ("192.0.2.50/24 dev eth1").
type VIP struct {
	Prefix netip.Prefix
	Device string // "" = the instance's interface
}

// VRRPScript is [vrrp_script.NAME].
type VRRPScript struct {
	Script   string   `toml:"script"`
	Interval Duration `toml:"interval"`
	Timeout  Duration `toml:"timeout"`
	Weight   int      `toml:"weight"`
	Fall     int      `toml:"fall"`
	Rise     int      `toml:"rise"`
	Name     string   `toml:"-"`
}
