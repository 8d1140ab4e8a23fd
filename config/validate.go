package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
)

type validator struct {
	cfg  *Config
	errs *multierror.Error
}

func (v *validator) fail(path, format string, args ...any) {
	v.errs = multierror.Append(v.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (v *validator) warn(path, format string, args ...any) {
	v.cfg.Warnings = append(v.cfg.Warnings, fmt.Sprintf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (v *validator) validate() {
	v.global()
	for _, name := range sortedKeys(v.cfg.Upstream) {
		v.upstream(name, v.cfg.Upstream[name])
	}
	listeners := map[string]string{} // normalised address -> owner ("http[0]", ...)
	httpTLS := map[string]bool{}
	for i, h := range v.cfg.HTTP {
		v.httpServer(fmt.Sprintf("http[%d]", i), h, listeners, httpTLS)
	}
	for i, s := range v.cfg.Stream {
		v.stream(fmt.Sprintf("stream[%d]", i), s, listeners)
	}
	for _, name := range sortedKeys(v.cfg.VRRPScript) {
		v.vrrpScript("vrrp_script."+name, v.cfg.VRRPScript[name])
	}
	identities := map[string]string{}
	names := map[string]string{}
	for i, r := range v.cfg.VRRP {
		v.vrrp(fmt.Sprintf("vrrp[%d]", i), r, identities, names)
	}
}

func oneOf(s string, allowed ...string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}

func (v *validator) global() {
	g := &v.cfg.Global
	if !oneOf(g.LogLevel, "debug", "info", "warn", "error") {
		v.fail("global.log_level", "must be debug, info, warn or error, not %q", g.LogLevel)
	}
	if !oneOf(g.LogFormat, "console", "json") {
		v.fail("global.log_format", "must be console or json, not %q", g.LogFormat)
	}
	if *g.AdminListen != "" {
		if _, err := ParseListen(*g.AdminListen); err != nil {
			v.fail("global.admin_listen", "%v", err)
		}
	}
	if g.ShutdownTimeout.Duration <= 0 {
		v.fail("global.shutdown_timeout", "must be greater than 0")
	}
}

// ParseListen checks a listen address ("0.0.0.0:80", "[::]:443",
// "192.0.2.50:8888") and returns it in canonical form.
func ParseListen(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("invalid listen address %q: want host:port, IPv6 in brackets ([::]:80)", addr)
	}
	if _, err := parsePort(port); err != nil {
		return "", fmt.Errorf("invalid listen address %q: %v", addr, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "", fmt.Errorf("invalid listen address %q: host must be an IP address", addr)
	}
	return net.JoinHostPort(ip.String(), port), nil
}

func parsePort(port string) (int, error) {
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q must be a number from 1 to 65535", port)
	}
	return n, nil
}

// checkHostPort validates an upstream address: a host name or IP and a port.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q: want host:port, IPv6 in brackets ([2001:db8::1]:80)", addr)
	}
	if host == "" {
		return fmt.Errorf("invalid address %q: missing host", addr)
	}
	if strings.Contains(host, ":") {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("invalid address %q: bad IPv6 address", addr)
		}
	}
	if _, err := parsePort(port); err != nil {
		return fmt.Errorf("invalid address %q: %v", addr, err)
	}
	return nil
}

var balancePolicies = []string{"round_robin", "ip_hash", "hash", "least_conn", "random", "random_two"}

func (v *validator) upstream(name string, u *Upstream) {
	path := "upstream." + name
	if u == nil {
		v.fail(path, "must be a table")
		return
	}
	if !oneOf(u.Balance, balancePolicies...) {
		v.fail(path+".balance", "must be one of %s, not %q", strings.Join(balancePolicies, ", "), u.Balance)
	}
	if u.Balance == "hash" && strings.TrimSpace(u.Hash) == "" {
		v.fail(path+".hash", "required with balance = \"hash\" (e.g. \"$remote_addr\")")
	}
	if u.Hash != "" && u.Balance != "hash" {
		v.fail(path+".hash", "only used with balance = \"hash\"")
	}
	if *u.Keepalive < 0 {
		v.fail(path+".keepalive", "must be >= 0")
	}
	if *u.MaxFails < 0 {
		v.fail(path+".max_fails", "must be >= 0")
	}
	if len(u.Server) == 0 {
		v.fail(path+".server", "at least one [[%s.server]] is required", path)
	}
	seen := map[string]int{}
	for i, s := range u.Server {
		sp := fmt.Sprintf("%s.server[%d]", path, i)
		if s == nil {
			continue
		}
		if err := checkHostPort(s.Address); err != nil {
			v.fail(sp+".address", "%v", err)
		} else if j, dup := seen[s.Address]; dup {
			v.fail(sp+".address", "%s is already server[%d] of this upstream", s.Address, j)
		} else {
			seen[s.Address] = i
		}
		if *s.Weight < 1 {
			v.fail(sp+".weight", "must be >= 1")
		}
		if *s.MaxFails < 0 {
			v.fail(sp+".max_fails", "must be >= 0")
		}
		if s.MaxConns < 0 {
			v.fail(sp+".max_conns", "must be >= 0")
		}
	}
	if hc := u.HealthCheck; hc != nil {
		hp := path + ".health_check"
		switch hc.Type {
		case "http":
			if !strings.HasPrefix(hc.Path, "/") {
				v.fail(hp+".path", "must start with /")
			}
			ranges, err := parseStatusRanges(hc.ExpectStatus)
			if err != nil {
				v.fail(hp+".expect_status", "%v", err)
			}
			hc.StatusRanges = ranges
		case "tcp":
			if hc.Path != "" || hc.ExpectStatus != "" {
				v.fail(hp, "path and expect_status apply only to type = \"http\"")
			}
		default:
			v.fail(hp+".type", "must be http or tcp, not %q", hc.Type)
		}
		if hc.Interval.Duration <= 0 {
			v.fail(hp+".interval", "must be greater than 0")
		}
		if hc.Timeout.Duration <= 0 {
			v.fail(hp+".timeout", "must be greater than 0")
		}
		if hc.Rise < 1 {
			v.fail(hp+".rise", "must be >= 1")
		}
		if hc.Fall < 1 {
			v.fail(hp+".fall", "must be >= 1")
		}
	}
}

// parseStatusRanges parses "200-399", "200 204", "200,301-302".
func parseStatusRanges(s string) ([][2]int, error) {
	var out [][2]int
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' }) {
		lo, hi, isRange := strings.Cut(part, "-")
		if !isRange {
			hi = lo
		}
		l, err1 := strconv.Atoi(lo)
		h, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || l < 100 || h > 599 || l > h {
			return nil, fmt.Errorf("invalid status range %q (want e.g. \"200-399\" or \"200 204\")", part)
		}
		out = append(out, [2]int{l, h})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("must list at least one status or range")
	}
	return out, nil
}

var nextUpstreamConditions = []string{"error", "timeout", "invalid_header", "http_500", "http_502", "http_503", "http_504", "http_403", "http_404", "http_429", "non_idempotent", "off"}

func (v *validator) claimListen(path, addr, owner string, listeners map[string]string) string {
	canon, err := ParseListen(addr)
	if err != nil {
		v.fail(path, "%v", err)
		return ""
	}
	if prev, ok := listeners[canon]; ok {
		kind := strings.SplitN(owner, "[", 2)[0]
		prevKind := strings.SplitN(prev, "[", 2)[0]
		if kind != "http" || prevKind != "http" {
			v.fail(path, "%s is already a listen address of %s", addr, prev)
			return ""
		}
		return canon
	}
	listeners[canon] = owner
	return canon
}

func (v *validator) httpServer(path string, h *HTTPServer, listeners map[string]string, httpTLS map[string]bool) {
	if h == nil {
		return
	}
	if len(h.Listen) == 0 {
		v.fail(path+".listen", "at least one address is required")
	}
	hasTLS := h.TLSCertificate != "" || h.TLSCertificateKey != ""
	if (h.TLSCertificate == "") != (h.TLSCertificateKey == "") {
		v.fail(path, "tls_certificate and tls_certificate_key must be set together")
	}
	for i, addr := range h.Listen {
		lp := fmt.Sprintf("%s.listen[%d]", path, i)
		canon := v.claimListen(lp, addr, path, listeners)
		if canon == "" {
			continue
		}
		if prev, ok := httpTLS[canon]; ok && prev != hasTLS {
			v.fail(lp, "%s is served with TLS by one [[http]] and without by another", addr)
		}
		httpTLS[canon] = hasTLS
	}
	for i, name := range h.ServerName {
		if strings.TrimSpace(name) == "" || strings.ContainsAny(name, " /") {
			v.fail(fmt.Sprintf("%s.server_name[%d]", path, i), "invalid server name %q", name)
		}
	}
	if h.ClientHeaderMaxSize.Bytes < 1024 {
		v.fail(path+".client_header_max_size", "must be at least 1k")
	}
	if h.ClientHeaderTimeout.Duration <= 0 {
		v.fail(path+".client_header_timeout", "must be greater than 0")
	}
	if h.ClientBodyTimeout.Duration <= 0 {
		v.fail(path+".client_body_timeout", "must be greater than 0")
	}
	if h.KeepaliveTimeout.Duration <= 0 {
		v.fail(path+".keepalive_timeout", "must be greater than 0")
	}
	h.ErrorPages = map[int]string{}
	for _, codes := range sortedKeys(h.ErrorPage) {
		for _, c := range strings.Fields(codes) {
			n, err := strconv.Atoi(c)
			if err != nil || n < 300 || n > 599 {
				v.fail(fmt.Sprintf("%s.error_page.%q", path, codes), "%q is not a status code from 300 to 599", c)
				continue
			}
			h.ErrorPages[n] = h.ErrorPage[codes]
		}
	}
	if len(h.Location) == 0 {
		v.fail(path+".location", "at least one [[http.location]] is required")
	}
	exact := map[string]bool{}
	for i, l := range h.Location {
		v.location(fmt.Sprintf("%s.location[%d]", path, i), l, exact)
	}
}

func (v *validator) location(path string, l *Location, seen map[string]bool) {
	if l == nil {
		return
	}
	p := strings.TrimSpace(l.Path)
	switch {
	case strings.HasPrefix(p, "= "):
		l.Match, l.Pattern = MatchExact, strings.TrimSpace(p[2:])
	case strings.HasPrefix(p, "~ "):
		l.Match, l.Pattern = MatchRegex, strings.TrimSpace(p[2:])
		re, err := regexp.Compile(l.Pattern)
		if err != nil {
			v.fail(path+".path", "invalid regex: %v", err)
		}
		l.Regex = re
	default:
		l.Match, l.Pattern = MatchPrefix, p
	}
	if l.Match != MatchRegex && !strings.HasPrefix(l.Pattern, "/") {
		v.fail(path+".path", "must start with / (or \"= /exact\", \"~ regex\"), got %q", l.Path)
	}
	key := l.Match + " " + l.Pattern
	if seen[key] {
		v.fail(path+".path", "duplicate location %q in this server", l.Path)
	}
	seen[key] = true
	switch {
	case l.ProxyPass != "" && l.Root != "":
		v.fail(path, "proxy_pass and root cannot both be set")
	case l.ProxyPass == "" && l.Root == "":
		v.fail(path, "one of proxy_pass or root is required")
	case l.ProxyPass != "":
		t, err := v.parseProxyPass(l.ProxyPass)
		if err != nil {
			v.fail(path+".proxy_pass", "%v", err)
		} else {
			if t.HasURI && l.Match == MatchRegex {
				v.fail(path+".proxy_pass", "cannot have a URI part in a regex location (as in nginx)")
			}
			l.Target = t
		}
	}
	for name := range l.ProxySetHeader {
		if !validHeaderName(name) {
			v.fail(path+".proxy_set_header", "invalid header name %q", name)
		}
	}
	off := false
	for _, c := range l.ProxyNextUpstream {
		if !oneOf(c, nextUpstreamConditions...) {
			v.fail(path+".proxy_next_upstream", "unknown condition %q (one of %s)", c, strings.Join(nextUpstreamConditions, ", "))
		}
		if c == "off" {
			off = true
		}
	}
	if off && len(l.ProxyNextUpstream) > 1 {
		v.fail(path+".proxy_next_upstream", "\"off\" cannot be combined with other conditions")
	}
	if l.ProxyNextUpstreamTries < 0 {
		v.fail(path+".proxy_next_upstream_tries", "must be >= 0")
	}
	for name, d := range map[string]time.Duration{
		"proxy_connect_timeout": l.ProxyConnectTimeout.Duration,
		"proxy_read_timeout":    l.ProxyReadTimeout.Duration,
		"proxy_send_timeout":    l.ProxySendTimeout.Duration,
	} {
		if d <= 0 {
			v.fail(path+"."+name, "must be greater than 0")
		}
	}
	if !oneOf(*l.ProxyRedirect, "default", "off") {
		v.fail(path+".proxy_redirect", "must be \"default\" or \"off\"")
	}
}

func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if r > 127 || !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' ||
			strings.ContainsRune("!#$%&'*+.^`|~", r)) {
			return false
		}
	}
	return true
}

// parseProxyPass parses "http://NAME_OR_HOST:PORT/uri".
func (v *validator) parseProxyPass(s string) (*ProxyTarget, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("invalid URL %q: want http://UPSTREAM[/uri] or http://host:port[/uri]", s)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("scheme %q is not supported (want http://)", u.Scheme)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("%q: only scheme, host and path are allowed", s)
	}
	t := &ProxyTarget{Scheme: u.Scheme}
	if rest := strings.TrimPrefix(s, "http://"); strings.Contains(rest, "/") {
		t.HasURI = true
		t.URI = rest[strings.Index(rest, "/"):]
	}
	if _, ok := v.cfg.Upstream[u.Host]; ok {
		t.Upstream = u.Host
		return t, nil
	}
	if err := checkHostPort(u.Host); err != nil {
		return nil, fmt.Errorf("%q names no [upstream.%s] and is not host:port", u.Host, u.Host)
	}
	t.Address = u.Host
	return t, nil
}

func (v *validator) stream(path string, s *Stream, listeners map[string]string) {
	if s == nil {
		return
	}
	if len(s.Listen) == 0 {
		v.fail(path+".listen", "at least one address is required")
	}
	for i, addr := range s.Listen {
		v.claimListen(fmt.Sprintf("%s.listen[%d]", path, i), addr, path, listeners)
	}
	switch {
	case s.ProxyPass == "":
		v.fail(path+".proxy_pass", "required: an upstream name or host:port")
	case v.cfg.Upstream[s.ProxyPass] != nil:
		s.Upstream = s.ProxyPass
	default:
		if err := checkHostPort(s.ProxyPass); err != nil {
			v.fail(path+".proxy_pass", "%q names no [upstream.%s] and is not host:port", s.ProxyPass, s.ProxyPass)
		}
		s.Address = s.ProxyPass
	}
	if !oneOf(s.ProxyProtocol, "", "v1", "v2") {
		v.fail(path+".proxy_protocol", "must be \"v1\", \"v2\" or \"\" (off), not %q", s.ProxyProtocol)
	}
	for name, d := range map[string]time.Duration{
		"proxy_protocol_timeout": s.ProxyProtocolTimeout.Duration,
		"proxy_connect_timeout":  s.ProxyConnectTimeout.Duration,
		"proxy_timeout":          s.ProxyTimeout.Duration,
	} {
		if d <= 0 {
			v.fail(path+"."+name, "must be greater than 0")
		}
	}
}

func (v *validator) vrrpScript(path string, s *VRRPScript) {
	if s == nil {
		return
	}
	if strings.TrimSpace(s.Script) == "" {
		v.fail(path+".script", "required: the path of the check script")
	}
	if s.Interval.Duration <= 0 {
		v.fail(path+".interval", "must be greater than 0")
	}
	if s.Timeout.Duration <= 0 {
		v.fail(path+".timeout", "must be greater than 0")
	}
	if s.Weight < -253 || s.Weight > 253 {
		v.fail(path+".weight", "must be from -253 to 253")
	}
	if s.Fall < 1 {
		v.fail(path+".fall", "must be >= 1")
	}
	if s.Rise < 1 {
		v.fail(path+".rise", "must be >= 1")
	}
}

// ParseVIP parses a virtual_ipaddress entry: "ADDR[/LEN] [dev IFNAME]".
func ParseVIP(s string) (VIP, error) {
	fields := strings.Fields(s)
	if len(fields) != 1 && !(len(fields) == 3 && fields[1] == "dev") {
		return VIP{}, fmt.Errorf("invalid VIP %q: want \"ADDRESS/PREFIX\" or \"ADDRESS/PREFIX dev IFNAME\"", s)
	}
	var vip VIP
	if len(fields) == 3 {
		vip.Device = fields[2]
	}
	if strings.Contains(fields[0], "/") {
		p, err := netip.ParsePrefix(fields[0])
		if err != nil {
			return VIP{}, fmt.Errorf("invalid VIP %q: %v", s, err)
		}
		vip.Prefix = p
	} else {
		a, err := netip.ParseAddr(fields[0])
		if err != nil {
			return VIP{}, fmt.Errorf("invalid VIP %q: %v", s, err)
		}
		vip.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	if vip.Prefix.Addr().Zone() != "" || vip.Prefix.Addr().Is4In6() {
		return VIP{}, fmt.Errorf("invalid VIP %q: zones and IPv4-mapped addresses are not allowed", s)
	}
	return vip, nil
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

func (v *validator) vrrp(path string, r *VRRP, identities, names map[string]string) {
	if r == nil {
		return
	}
	if r.Name == "" {
		v.fail(path+".name", "required (keepalived's vrrp_instance name, e.g. \"VI_1\")")
	} else if prev, dup := names[r.Name]; dup {
		v.fail(path+".name", "%q is already the name of %s", r.Name, prev)
	} else {
		names[r.Name] = path
	}
	if r.Interface == "" {
		v.fail(path+".interface", "required")
	}
	if r.VirtualRouterID < 1 || r.VirtualRouterID > 255 {
		v.fail(path+".virtual_router_id", "must be from 1 to 255")
	}
	if *r.Priority < 1 || *r.Priority > 254 {
		v.fail(path+".priority", "must be from 1 to 254")
	}
	if !oneOf(r.State, "MASTER", "BACKUP") {
		v.fail(path+".state", "must be MASTER or BACKUP, not %q", r.State)
	}
	adv := r.AdvertInt.Duration
	switch r.Version {
	case 2:
		if adv%time.Second != 0 || adv < time.Second || adv > 255*time.Second {
			v.fail(path+".advert_int", "VRRP version 2 needs whole seconds from 1s to 255s, got %s", adv)
		}
		if len(r.AuthPass) > 8 {
			v.warn(path+".auth_pass", "only the first 8 characters are used (as in keepalived)")
		}
	case 3:
		if adv%(10*time.Millisecond) != 0 || adv < 10*time.Millisecond || adv > 40950*time.Millisecond {
			v.fail(path+".advert_int", "VRRP version 3 needs a multiple of 10ms from 10ms to 40.95s, got %s", adv)
		}
		if r.AuthPass != "" {
			v.fail(path+".auth_pass", "VRRP version 3 has no authentication (RFC 5798); remove auth_pass or use version = 2")
		}
	default:
		v.fail(path+".version", "must be 2 or 3")
	}
	if len(r.VirtualIPAddress) == 0 {
		v.fail(path+".virtual_ipaddress", "at least one VIP is required")
	}
	r.VIPs = nil
	for i, s := range r.VirtualIPAddress {
		vp := fmt.Sprintf("%s.virtual_ipaddress[%d]", path, i)
		vip, err := ParseVIP(s)
		if err != nil {
			v.fail(vp, "%v", err)
			continue
		}
		f := family(vip.Prefix.Addr())
		if r.Family == 0 {
			r.Family = f
		} else if f != r.Family {
			v.fail(vp, "mixes IPv4 and IPv6 in one instance; use a second [[vrrp]] with the same virtual_router_id for the other family")
			continue
		}
		r.VIPs = append(r.VIPs, vip)
	}
	if r.Family == 6 && r.Version == 2 {
		v.fail(path+".version", "IPv6 VIPs need version = 3 (VRRPv2 is IPv4 only)")
	}
	if r.McastSrcIP != "" {
		a, err := netip.ParseAddr(r.McastSrcIP)
		if err != nil {
			v.fail(path+".mcast_src_ip", "invalid address %q", r.McastSrcIP)
		} else if r.Family != 0 && family(a) != r.Family {
			v.fail(path+".mcast_src_ip", "address family differs from the VIPs'")
		} else {
			r.SourceIP = a
		}
	}
	r.UnicastPeers = nil
	for i, p := range r.UnicastPeer {
		a, err := netip.ParseAddr(p)
		pp := fmt.Sprintf("%s.unicast_peer[%d]", path, i)
		if err != nil {
			v.fail(pp, "invalid address %q", p)
			continue
		}
		if r.Family != 0 && family(a) != r.Family {
			v.fail(pp, "address family differs from the VIPs'")
			continue
		}
		r.UnicastPeers = append(r.UnicastPeers, a)
	}
	if r.Interface != "" && r.VirtualRouterID > 0 && r.Family != 0 {
		id := fmt.Sprintf("%s/%d/IPv%d", r.Interface, r.VirtualRouterID, r.Family)
		if prev, dup := identities[id]; dup {
			v.fail(path+".virtual_router_id", "%s already uses virtual_router_id %d on %s for IPv%d", prev, r.VirtualRouterID, r.Interface, r.Family)
		} else {
			identities[id] = path
		}
	}
	if *r.GARPMasterRepeat < 0 {
		v.fail(path+".garp_master_repeat", "must be >= 0")
	}
	if r.VIPLifetime == "auto" {
		r.VIPLifetimeAuto = true
	} else {
		var d Duration
		if err := d.UnmarshalTOML(r.VIPLifetime); err != nil {
			v.fail(path+".vip_lifetime", "must be \"auto\" or a duration: %v", err)
		} else if d.Duration != 0 && d.Duration < time.Second {
			v.fail(path+".vip_lifetime", "must be \"auto\", \"0s\" (forever) or at least 1s")
		}
		r.VIPLifetimeDuration = d
	}
	weakensPriority := false
	for i, name := range r.TrackScript {
		s, ok := v.cfg.VRRPScript[name]
		if !ok {
			v.fail(fmt.Sprintf("%s.track_script[%d]", path, i), "no [vrrp_script.%s] is defined", name)
			continue
		}
		if s != nil && s.Weight < 0 {
			weakensPriority = true
		}
	}
	for i, name := range r.TrackInterface {
		if strings.TrimSpace(name) == "" {
			v.fail(fmt.Sprintf("%s.track_interface[%d]", path, i), "empty interface name")
		}
	}
	for i, name := range r.TrackUpstream {
		tp := fmt.Sprintf("%s.track_upstream[%d]", path, i)
		u, ok := v.cfg.Upstream[name]
		switch {
		case !ok:
			v.fail(tp, "no [upstream.%s] is defined", name)
		case u != nil && u.HealthCheck == nil:
			v.fail(tp, "[upstream.%s] needs a [upstream.%s.health_check] to be tracked (a node without traffic must still know its backends)", name, name)
		}
	}
	if r.TrackUpstreamWeight > 0 {
		v.fail(path+".track_upstream_weight", "must be 0 (FAULT) or negative (lowers priority)")
	}
	if r.TrackUpstreamWeight < 0 && len(r.TrackUpstream) > 0 {
		weakensPriority = true
	}
	if weakensPriority && !*r.Preempt {
		v.warn(path+".preempt", "a negative track weight with preempt = false: a BACKUP without preemption never takes over from a master whose priority merely dropped")
	}
}
