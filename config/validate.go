package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
)

type validator struct {
	cfg  *Config
	errs *multierror.Error
	pos  *positions
	// typeProblems are the values dropped for their type; problems that
	// follow from the drop are not reported again.
	typeProblems []*Problem

	listens []listenClaim
	// httpByListen is, per canonical listen address, the [[http]] blocks
	// sharing it (first = default server), for per-socket settings.
	httpByListen map[string][]int
	// vips maps each VIP address to the instance that holds it.
	vips map[netip.Addr]string
}

// listenClaim is one listen address of a block, to find conflicts.
type listenClaim struct {
	addr  netip.AddrPort
	canon string
	owner string // "http[0]", "stream[1]", "global.admin_listen"
	kind  string // "http", "stream", "admin"
}

func (v *validator) problem(path, format string, args ...any) *Problem {
	return &Problem{File: v.cfg.Path, Line: v.pos.line(path), Key: path, Message: fmt.Sprintf(format, args...)}
}

func (v *validator) fail(path, format string, args ...any) {
	for _, tp := range v.typeProblems {
		if related(path, tp.Key) {
			return // a consequence of the value dropped for its type
		}
	}
	v.errs = multierror.Append(v.errs, v.problem(path, format, args...))
}

// related tells whether one key path is the other or inside it.
func related(a, b string) bool {
	inside := func(x, y string) bool {
		return x == y || strings.HasPrefix(x, y) && (x[len(y)] == '.' || x[len(y)] == '[')
	}
	return inside(a, b) || inside(b, a)
}

func (v *validator) warn(path, format string, args ...any) {
	v.cfg.Warnings = append(v.cfg.Warnings, v.problem(path, format, args...).Error())
}

func (v *validator) validate() {
	v.httpByListen = map[string][]int{}
	v.vips = map[netip.Addr]string{}
	v.global()
	for _, name := range sortedKeys(v.cfg.Upstream) {
		v.upstream(name, v.cfg.Upstream[name])
	}
	for i, h := range v.cfg.HTTP {
		v.httpServer(i, h)
	}
	for i, s := range v.cfg.Stream {
		v.stream(fmt.Sprintf("stream[%d]", i), s)
	}
	for _, name := range sortedKeys(v.cfg.VRRPScript) {
		v.vrrpScript("vrrp_script."+name, v.cfg.VRRPScript[name])
	}
	identities := map[string]string{}
	names := map[string]string{}
	for i, r := range v.cfg.VRRP {
		v.vrrp(fmt.Sprintf("vrrp[%d]", i), r, identities, names)
	}
	v.unusedUpstreams()
	if v.errs == nil && len(v.typeProblems) == 0 && len(v.cfg.HTTP) == 0 && len(v.cfg.Stream) == 0 && len(v.cfg.VRRP) == 0 {
		// TOML has no closing brackets: a file emptied or cut short at a
		// table boundary parses. Applied by a reload, it would close every
		// listener; nginx refuses an empty file too.
		v.fail("", "nothing to serve: no [[http]], [[stream]] or [[vrrp]] section (is the file empty or cut short?)")
	}
}

// unusedUpstreams warns about upstreams nothing refers to: usually a typo
// in a proxy_pass that then names a host:port instead.
func (v *validator) unusedUpstreams() {
	used := map[string]bool{}
	for _, h := range v.cfg.HTTP {
		if h == nil {
			continue
		}
		for _, l := range h.Location {
			if l != nil && l.Target != nil {
				used[l.Target.Upstream] = true
			}
		}
	}
	for _, s := range v.cfg.Stream {
		if s != nil {
			used[s.Upstream] = true
		}
	}
	for _, r := range v.cfg.VRRP {
		if r != nil {
			for _, name := range r.TrackUpstream {
				used[name] = true
			}
		}
	}
	for _, name := range sortedKeys(v.cfg.Upstream) {
		if !used[name] {
			v.warn("upstream."+name, "not used by any proxy_pass or track_upstream")
		}
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

// maxAccessLogBuffer bounds access_log_buffer: lines wait in memory, and a
// crash loses them, so a buffer is for batching writes, not for storage.
const maxAccessLogBuffer = 64 << 20

func (v *validator) global() {
	g := &v.cfg.Global
	if !oneOf(g.LogLevel, "debug", "info", "warn", "error") {
		v.fail("global.log_level", "must be debug, info, warn or error, not %q", g.LogLevel)
	}
	if !oneOf(g.LogFormat, "console", "json") {
		v.fail("global.log_format", "must be console or json, not %q", g.LogFormat)
	}
	if *g.AdminListen != "" {
		v.claimListen("global.admin_listen", *g.AdminListen, "global.admin_listen", "admin")
	}
	if g.ShutdownTimeout.Duration <= 0 {
		v.fail("global.shutdown_timeout", "must be greater than 0")
	}
	if g.AccessLogBuffer.Bytes > maxAccessLogBuffer {
		v.fail("global.access_log_buffer", "must be at most 64m, not %d bytes", g.AccessLogBuffer.Bytes)
	}
	if g.AccessLogFlush.Duration <= 0 {
		v.fail("global.access_log_flush", "must be greater than 0")
	}
	if strings.TrimSpace(g.NodeName) == "" || strings.ContainsAny(g.NodeName, " \t\r\n") {
		v.fail("global.node_name", "must be a non-empty name without spaces, got %q", g.NodeName)
	}
	if strings.TrimSpace(g.ScriptUser) == "" {
		v.fail("global.script_user", "must name a user")
	}
	for _, f := range []struct{ key, value string }{
		{"global.error_log", g.ErrorLog}, {"global.access_log", g.AccessLog}, {"global.pid_file", g.PidFile},
	} {
		if strings.ContainsAny(f.value, "\x00\r\n") {
			v.fail(f.key, "must be a path without control characters")
		}
	}
	// nginx's "access_log PATH FORMAT buffer=32k flush=5s" and "error_log
	// PATH LEVEL", copied whole, would name a file with a space in it (a
	// path may have spaces: only nginx's words after one are refused).
	if path, ok := nginxLogParams(g.AccessLog, isAccessLogParam); ok {
		v.fail("global.access_log", "%q: nginx's access_log parameters are keys here: access_log = %q, access_log_buffer = \"32k\", access_log_flush = \"5s\" (the format is nginx's combined; log_format is the error log's)", g.AccessLog, path)
	}
	if path, ok := nginxLogParams(g.ErrorLog, isLogLevel); ok {
		level := g.ErrorLog[strings.LastIndexAny(g.ErrorLog, " \t")+1:]
		v.fail("global.error_log", "%q: nginx's error_log level is a key here: error_log = %q, log_level = %q", g.ErrorLog, path, level)
	}
}

// nginxLogParams splits "PATH WORD..." when every word after the path is
// one of nginx's log parameters (param), and returns the path.
func nginxLogParams(value string, param func(string) bool) (string, bool) {
	fields := strings.Fields(value)
	if len(fields) < 2 {
		return "", false
	}
	for _, f := range fields[1:] {
		if !param(f) {
			return "", false
		}
	}
	return fields[0], true
}

// isAccessLogParam: one of access_log's key=value parameters, or the usual
// format names (a file named "access log" stays a file name).
func isAccessLogParam(f string) bool {
	if k, _, ok := strings.Cut(f, "="); ok {
		return oneOf(k, "buffer", "flush", "gzip", "if")
	}
	return oneOf(f, "main", "combined", "gzip")
}

func isLogLevel(f string) bool {
	return oneOf(f, "debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")
}

// realIPFrom checks set_real_ip_from: addresses or CIDR ranges, only
// with accept_proxy_protocol.
func (v *validator) realIPFrom(path string, list []string, accept bool) []netip.Prefix {
	if len(list) > 0 && !accept {
		v.fail(path+".set_real_ip_from", "needs accept_proxy_protocol = true: it names the sources whose PROXY header is trusted")
	}
	var out []netip.Prefix
	for i, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				v.fail(fmt.Sprintf("%s.set_real_ip_from[%d]", path, i), "%q is not an address or CIDR range (192.0.2.0/24, 2001:db8::/32)", s)
				continue
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		out = append(out, p.Masked())
	}
	return out
}

// ParseListen checks a listen address ("0.0.0.0:80", "[::]:443",
// "192.0.2.50:8888") and returns it in canonical form.
func ParseListen(addr string) (string, error) {
	if msg, ok := nginxParameters(addr); ok {
		return "", errors.New("invalid listen address " + msg)
	}
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
	// [::ffff:127.0.0.1] is bound as 127.0.0.1: the same listener, so
	// overlaps are found before the bind fails at start.
	ip = ip.Unmap()
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
// unbracketedIPv6 tells an IPv6 host:port written without brackets
// ("::1:8080"), for a message that says how to write it.
func unbracketedIPv6(hostPort string) bool {
	return strings.Count(hostPort, ":") > 1 && !strings.Contains(hostPort, "[")
}

func checkHostPort(addr string) error {
	if msg, ok := nginxParameters(addr); ok {
		return errors.New("invalid address " + msg)
	}
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

// upstreamName is what proxy_pass = "http://NAME/..." can refer to.
var upstreamName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

func (v *validator) upstream(name string, u *Upstream) {
	path := "upstream." + name
	if u == nil {
		v.fail(path, "must be a table")
		return
	}
	if !upstreamName.MatchString(name) {
		v.fail(path, "upstream name %q must be letters, digits, '_', '-' or '.' (it is the host part of proxy_pass)", name)
	}
	if !oneOf(u.Balance, balancePolicies...) {
		v.fail(path+".balance", "must be one of %s, not %q", strings.Join(balancePolicies, ", "), u.Balance)
	}
	if u.Balance == "hash" && strings.TrimSpace(u.Hash) == "" {
		v.fail(path+".hash", "required with balance = \"hash\" (e.g. \"$remote_addr\")")
	}
	if u.Hash != "" && u.Balance != "hash" {
		// The contract's own example sets it beside round_robin: ignored,
		// not refused.
		v.warn(path+".hash", "only used with balance = \"hash\": ignored with balance = %q", u.Balance)
	} else if u.Hash != "" {
		v.checkTemplate(path+".hash", "key", u.Hash)
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
		if *s.MaxFails < 0 && *s.MaxFails != *u.MaxFails { // an inherited value is reported once, above
			v.fail(sp+".max_fails", "must be >= 0")
		}
		if s.MaxConns < 0 {
			v.fail(sp+".max_conns", "must be >= 0")
		}
	}
	usable := false
	for _, s := range u.Server {
		if s != nil && !s.Down {
			usable = true
		}
	}
	if len(u.Server) > 0 && !usable {
		v.warn(path+".server", "every server is down = true: requests get 502")
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

// claimListen records a listen address of owner and reports conflicts: the
// same address in two blocks of different kinds (only [[http]] blocks share
// a socket, told apart by server_name), the same address twice in one
// block, and addresses that overlap without being equal (a wildcard takes
// the port for every address, and "[::]" also for IPv4, so the kernel
// refuses the second bind). Returns the canonical address, "" on error.
func (v *validator) claimListen(path, addr, owner, kind string) string {
	canon, err := ParseListen(addr)
	if err != nil {
		v.fail(path, "%v", err)
		return ""
	}
	ap := netip.MustParseAddrPort(canon)
	shared := false
	for _, c := range v.listens {
		switch {
		case c.canon == canon && c.owner == owner:
			v.fail(path, "%s is listed twice", addr)
			return ""
		case c.canon == canon && kind == "http" && c.kind == "http":
			shared = true
		case c.canon == canon:
			v.fail(path, "%s is already a listen address of %s", addr, c.owner)
			return ""
		case listenOverlap(c.addr, ap):
			if ap.Addr().Is6() && ap.Addr().IsUnspecified() || c.addr.Addr().Is6() && c.addr.Addr().IsUnspecified() {
				// nginx's "listen 80; listen [::]:80;".
				v.fail(path, "%s overlaps %s of %s: [::]:%d alone already accepts IPv4 and IPv6 (a dual-stack socket); keep only that one", addr, c.canon, c.owner, ap.Port())
				return ""
			}
			v.fail(path, "%s overlaps %s of %s: a wildcard address takes the port for every address; use the same listen address in both", addr, c.canon, c.owner)
			return ""
		}
	}
	_ = shared // shared [[http]] sockets are fine; kept in the list to catch "listed twice"
	v.listens = append(v.listens, listenClaim{addr: ap, canon: canon, owner: owner, kind: kind})
	return canon
}

// listenOverlap tells whether two different listen addresses cannot both be
// bound: same port and one is a wildcard covering the other (Go listens on
// "[::]" dual-stack, so it covers IPv4 addresses too).
func listenOverlap(a, b netip.AddrPort) bool {
	if a.Port() != b.Port() || a.Addr() == b.Addr() {
		return false
	}
	covers := func(w, x netip.Addr) bool {
		return w.IsUnspecified() && (w.Is6() || x.Is4())
	}
	return covers(a.Addr(), b.Addr()) || covers(b.Addr(), a.Addr())
}

func (v *validator) httpServer(index int, h *HTTPServer) {
	path := fmt.Sprintf("http[%d]", index)
	if h == nil {
		return
	}
	h.RealIPFrom = v.realIPFrom(path, h.SetRealIPFrom, h.AcceptProxyProtocol)
	if len(h.Listen) == 0 {
		v.fail(path+".listen", "at least one address is required")
	}
	hasTLS := h.TLSCertificate != "" || h.TLSCertificateKey != ""
	if (h.TLSCertificate == "") != (h.TLSCertificateKey == "") {
		v.fail(path, "tls_certificate and tls_certificate_key must be set together")
	}
	for i, name := range h.ServerName {
		sp := fmt.Sprintf("%s.server_name[%d]", path, i)
		switch {
		case len(strings.Fields(name)) > 1:
			v.fail(sp, "%q holds several names: write each as an item of the list, server_name = [\"%s\"]", name, strings.Join(strings.Fields(name), "\", \""))
		case strings.TrimSpace(name) == "" || strings.ContainsAny(name, " /\t\r\n"):
			v.fail(sp, "invalid server name %q", name)
		case strings.HasPrefix(name, "~"):
			// Taken as a plain name it would never match: refused, not
			// ignored.
			v.fail(sp, "regular expression server names are not supported (%q): list the names, or use *.example.com / www.example.*", name)
		case strings.Contains(name, "*") && (strings.Count(name, "*") > 1 || !strings.HasPrefix(name, "*.") && !strings.HasSuffix(name, ".*")):
			v.fail(sp, "%q: a wildcard name has one * at its start (*.example.com) or its end (www.example.*)", name)
		}
	}
	for i, addr := range h.Listen {
		lp := fmt.Sprintf("%s.listen[%d]", path, i)
		canon := v.claimListen(lp, addr, path, "http")
		if canon == "" {
			continue
		}
		// TLS and PROXY protocol belong to the socket, so every [[http]]
		// sharing it must agree; a server_name can answer only once on it.
		for _, j := range v.httpByListen[canon] {
			other := v.cfg.HTTP[j]
			otherTLS := other.TLSCertificate != "" || other.TLSCertificateKey != ""
			if otherTLS != hasTLS {
				v.fail(lp, "http[%d] also listens on %s, %s TLS; one address is either HTTPS or plain HTTP", j, addr, map[bool]string{true: "with", false: "without"}[otherTLS])
			}
			if other.AcceptProxyProtocol != h.AcceptProxyProtocol {
				v.fail(lp, "http[%d] also listens on %s with a different accept_proxy_protocol; the PROXY header belongs to the socket", j, addr)
			}
			if !slices.Equal(other.SetRealIPFrom, h.SetRealIPFrom) {
				v.fail(lp, "http[%d] also listens on %s with a different set_real_ip_from; the PROXY header belongs to the socket", j, addr)
			}
			for k, name := range h.ServerName {
				if oneOf(name, other.ServerName...) {
					v.fail(fmt.Sprintf("%s.server_name[%d]", path, k), "%q is already a server_name of http[%d] on %s (only the first would answer)", name, j, addr)
				}
			}
		}
		v.httpByListen[canon] = append(v.httpByListen[canon], index)
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
	if h.SendTimeout.Duration <= 0 {
		v.fail(path+".send_timeout", "must be greater than 0")
	}
	h.ErrorPages = map[int]string{}
	for _, codes := range sortedKeys(h.ErrorPage) {
		ep := fmt.Sprintf("%s.error_page.%q", path, codes)
		file := h.ErrorPage[codes]
		if !strings.HasPrefix(file, "/") {
			v.fail(ep, "%q must be an absolute file path", file)
		}
		if len(strings.Fields(codes)) == 0 {
			v.fail(ep, "list one or more status codes, e.g. \"502 503 504\"")
		}
		for _, c := range strings.Fields(codes) {
			n, err := strconv.Atoi(c)
			if err != nil || n < 300 || n > 599 {
				v.fail(ep, "%q is not a status code from 300 to 599", c)
				continue
			}
			if _, dup := h.ErrorPages[n]; dup {
				v.fail(ep, "status %d already has an error page", n)
			}
			h.ErrorPages[n] = file
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
	case strings.HasPrefix(p, "="):
		// "= /x", and "=/x" as nginx also accepts.
		l.Match, l.Pattern = MatchExact, strings.TrimSpace(p[1:])
	case strings.HasPrefix(p, "~"):
		// "~ re", or "~* re" for nginx's case-insensitive match; the space
		// may be left out, as in nginx.
		expr := strings.TrimPrefix(p, "~")
		icase := strings.HasPrefix(expr, "*")
		expr = strings.TrimSpace(strings.TrimPrefix(expr, "*"))
		l.Match, l.Pattern = MatchRegex, expr
		if icase {
			expr = "(?i)" + expr
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			v.fail(path+".path", "invalid regex: %v", err)
		} else if l.Pattern == "" {
			v.fail(path+".path", "empty regex")
		}
		l.Regex = re
	case strings.HasPrefix(p, "^~"):
		v.fail(path+".path", "nginx's \"^~\" modifier is not supported; write the prefix alone or use \"= /exact\"")
		l.Match, l.Pattern = MatchPrefix, strings.TrimSpace(p[2:])
		return
	default:
		l.Match, l.Pattern = MatchPrefix, p
	}
	if l.Match != MatchRegex && !strings.HasPrefix(l.Pattern, "/") {
		v.fail(path+".path", "must start with / (or \"= /exact\", \"~ regex\"), got %q", l.Path)
	}
	key := l.Match + " " + l.Pattern
	if l.Regex != nil {
		key = l.Match + " " + l.Regex.String()
	}
	if seen[key] {
		v.fail(path+".path", "duplicate location %q in this server", l.Path)
	}
	seen[key] = true
	switch {
	case l.ProxyPass != "" && l.Root != "":
		v.fail(path, "proxy_pass and root cannot both be set")
	case l.ProxyPass == "" && l.Root == "":
		v.fail(path, "one of proxy_pass or root is required")
	case l.Root != "" && !strings.HasPrefix(l.Root, "/"):
		v.fail(path+".root", "%q must be an absolute directory path", l.Root)
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
	seenHeader := map[string]string{} // canonical name -> the key written
	for _, name := range sortedKeys(l.ProxySetHeader) {
		if !validHeaderName(name) {
			v.fail(path+".proxy_set_header", "invalid header name %q", name)
		}
		// Header names ignore case: two keys naming one header would
		// send either value, whichever the map gives last.
		canon := strings.ToLower(name)
		if first, dup := seenHeader[canon]; dup {
			v.fail(path+".proxy_set_header", "%s and %s name the same header (names ignore case): keep one", first, name)
		}
		seenHeader[canon] = name
		if strings.ContainsAny(l.ProxySetHeader[name], "\r\n\x00") {
			v.fail(path+".proxy_set_header", "value of %s must not contain CR, LF or NUL", name)
		} else {
			v.checkTemplate(path+".proxy_set_header", name, l.ProxySetHeader[name])
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
	v.positive(path, []namedDuration{
		{"proxy_connect_timeout", l.ProxyConnectTimeout},
		{"proxy_read_timeout", l.ProxyReadTimeout},
		{"proxy_send_timeout", l.ProxySendTimeout},
	})
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
		if host, _, _ := strings.Cut(strings.TrimPrefix(s, "http://"), "/"); unbracketedIPv6(host) {
			return nil, fmt.Errorf("invalid URL %q: write an IPv6 address in brackets (http://[2001:db8::1]:8080)", s)
		}
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
		if unbracketedIPv6(u.Host) {
			return nil, err
		}
		return nil, fmt.Errorf("%q names no [upstream.%s] and is not host:port", u.Host, u.Host)
	}
	t.Address = u.Host
	return t, nil
}

func (v *validator) stream(path string, s *Stream) {
	if s == nil {
		return
	}
	s.RealIPFrom = v.realIPFrom(path, s.SetRealIPFrom, s.AcceptProxyProtocol)
	if len(s.Listen) == 0 {
		v.fail(path+".listen", "at least one address is required")
	}
	for i, addr := range s.Listen {
		v.claimListen(fmt.Sprintf("%s.listen[%d]", path, i), addr, path, "stream")
	}
	switch {
	case s.ProxyPass == "":
		v.fail(path+".proxy_pass", "required: an upstream name or host:port")
	case v.cfg.Upstream[s.ProxyPass] != nil:
		s.Upstream = s.ProxyPass
		if u := v.cfg.Upstream[s.ProxyPass]; u.Balance == "hash" {
			v.checkStreamHashKey(path+".proxy_pass", s.ProxyPass, u.Hash)
		}
	default:
		if err := checkHostPort(s.ProxyPass); err != nil {
			if unbracketedIPv6(s.ProxyPass) {
				v.fail(path+".proxy_pass", "%v", err)
			} else {
				v.fail(path+".proxy_pass", "%q names no [upstream.%s] and is not host:port", s.ProxyPass, s.ProxyPass)
			}
		}
		s.Address = s.ProxyPass
	}
	if !oneOf(s.ProxyProtocol, "", "v1", "v2") {
		v.fail(path+".proxy_protocol", "must be \"v1\", \"v2\" or \"\" (off), not %q", s.ProxyProtocol)
	}
	v.positive(path, []namedDuration{
		{"proxy_protocol_timeout", s.ProxyProtocolTimeout},
		{"proxy_connect_timeout", s.ProxyConnectTimeout},
		{"proxy_timeout", s.ProxyTimeout},
	})
}

type namedDuration struct {
	key string
	d   Duration
}

// positive reports each duration that is not greater than 0, in the order
// given (so messages come out in a stable order).
func (v *validator) positive(path string, ds []namedDuration) {
	for _, nd := range ds {
		if nd.d.Duration <= 0 {
			v.fail(path+"."+nd.key, "must be greater than 0")
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
	} else if err := checkInterfaceName(r.Interface); err != nil {
		v.fail(path+".interface", "%v", err)
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
		if vip.Device != "" {
			if err := checkInterfaceName(vip.Device); err != nil {
				v.fail(vp, "dev: %v", err)
			}
		}
		addr := vip.Prefix.Addr()
		if !addr.IsGlobalUnicast() && !addr.IsLinkLocalUnicast() {
			v.fail(vp, "%s is not a unicast address", addr)
			continue
		}
		if addr.Is4() && vip.Prefix.Bits() < 31 {
			network := vip.Prefix.Masked().Addr()
			broadcast := lastAddr(vip.Prefix)
			if addr == network || addr == broadcast {
				v.fail(vp, "%s is the network or broadcast address of %s; a VIP needs a host address (\"192.0.2.100/24\")", addr, vip.Prefix.Masked())
				continue
			}
		}
		if prev, dup := v.vips[addr]; dup {
			v.fail(vp, "%s is already a VIP of %s", addr, prev)
			continue
		}
		v.vips[addr] = path
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
		} else if z := a.Zone(); z != "" && z != r.Interface {
			v.fail(path+".mcast_src_ip", "zone %%%s is not the instance's interface %s", z, r.Interface)
		} else {
			// The interface is the scope; received adverts carry no zone.
			r.SourceIP = a.WithZone("")
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
		if z := a.Zone(); z != "" && z != r.Interface {
			v.fail(pp, "zone %%%s is not the instance's interface %s", z, r.Interface)
			continue
		}
		// A link-local peer is often written with its zone (fe80::2%eth0,
		// as ping wants it); adverts are received without one, and a
		// zoned peer never matched: both nodes became MASTER.
		a = a.WithZone("")
		if a == r.SourceIP {
			v.fail(pp, "%s is this node's own mcast_src_ip; list the other nodes", a)
			continue
		}
		if slices.Contains(r.UnicastPeers, a) {
			v.fail(pp, "%s is listed twice", a)
			continue
		}
		r.UnicastPeers = append(r.UnicastPeers, a)
	}
	// A VIP comes and goes with the MASTER role; a node's own address must
	// not (keepalived's "address owner" with priority 255 is not supported).
	for _, vip := range r.VIPs {
		a := vip.Prefix.Addr()
		if a == r.SourceIP {
			v.fail(path+".mcast_src_ip", "%s is also a VIP; the source must be the node's own address", a)
		}
		for i, peer := range r.UnicastPeer {
			if pa, err := netip.ParseAddr(peer); err == nil && pa.WithZone("") == a {
				v.fail(fmt.Sprintf("%s.unicast_peer[%d]", path, i), "%s is also a VIP; list the peers' own addresses", a)
			}
		}
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
		d, err := ParseDuration(r.VIPLifetime)
		if err != nil {
			v.fail(path+".vip_lifetime", "must be \"auto\" or a duration: %v", err)
		} else if d != 0 && d < time.Second {
			v.fail(path+".vip_lifetime", "must be \"auto\", \"0s\" (forever) or at least 1s")
		}
		r.VIPLifetimeDuration = Duration{Duration: d, Set: err == nil}
	}
	if r.V3ChecksumAsV2 && r.Version != 3 {
		v.warn(path+".v3_checksum_as_v2", "only applies to version = 3")
	}
	if r.State == "MASTER" {
		// As keepalived ("nopreempt will not work with initial state
		// MASTER - clearing"): a file moved from it keeps its failover
		// behaviour, the MASTER taking the VIP back once it is up.
		if !*r.Preempt {
			v.warn(path+".preempt", "preempt = false is ignored with state = \"MASTER\" (as keepalived ignores nopreempt there): this node takes the VIP back; set state = \"BACKUP\" on every node to keep it from doing so")
			preempt := true
			r.Preempt = &preempt
		}
		if r.PreemptDelay.Duration > 0 {
			v.warn(path+".preempt_delay", "ignored with state = \"MASTER\" (as in keepalived); set state = \"BACKUP\" for a delayed takeover")
			r.PreemptDelay.Duration = 0
		}
	}
	if r.PreemptDelay.Duration > 0 && !*r.Preempt {
		v.warn(path+".preempt_delay", "has no effect with preempt = false")
	}
	if r.PreemptDelay.Duration > time.Hour {
		v.fail(path+".preempt_delay", "must be at most 1h (keepalived allows 1000s)")
	}
	weakensPriority := false
	for i, name := range r.TrackScript {
		tp := fmt.Sprintf("%s.track_script[%d]", path, i)
		if slices.Contains(r.TrackScript[:i], name) {
			v.fail(tp, "%q is listed twice (its weight would count twice)", name)
			continue
		}
		s, ok := v.cfg.VRRPScript[name]
		if !ok {
			if f := strings.Fields(name); len(f) > 1 {
				v.fail(tp, "%q: list the script's name alone, track_script = [%q]; its weight is the weight key of [vrrp_script.%s] (keepalived's per-instance weight has no counterpart)", name, f[0], f[0])
				continue
			}
			v.fail(tp, "no [vrrp_script.%s] is defined", name)
			continue
		}
		if s != nil && s.Weight < 0 {
			weakensPriority = true
		}
	}
	for i, name := range r.TrackInterface {
		tp := fmt.Sprintf("%s.track_interface[%d]", path, i)
		if err := checkInterfaceName(name); err != nil {
			v.fail(tp, "%v", err)
		} else if slices.Contains(r.TrackInterface[:i], name) {
			v.fail(tp, "%q is listed twice", name)
		}
	}
	for i, name := range r.TrackUpstream {
		tp := fmt.Sprintf("%s.track_upstream[%d]", path, i)
		u, ok := v.cfg.Upstream[name]
		switch {
		case slices.Contains(r.TrackUpstream[:i], name):
			v.fail(tp, "%q is listed twice", name)
		case !ok:
			v.fail(tp, "no [upstream.%s] is defined", name)
		case u != nil && u.HealthCheck == nil:
			v.fail(tp, "[upstream.%s] needs a [upstream.%s.health_check] to be tracked (a node without traffic must still know its backends)", name, name)
		}
	}
	if r.TrackUpstreamWeight > 0 || r.TrackUpstreamWeight < -253 {
		v.fail(path+".track_upstream_weight", "must be 0 (FAULT) or from -253 to -1 (lowers priority)")
	}
	if r.TrackUpstreamWeight < 0 && len(r.TrackUpstream) > 0 {
		weakensPriority = true
	}
	if weakensPriority && !*r.Preempt {
		v.warn(path+".preempt", "a negative track weight with preempt = false: a BACKUP without preemption never takes over from a master whose priority merely dropped")
	}
}

// checkInterfaceName applies the kernel's rules for a link name (at most 15
// bytes, no '/', ':' or white space), so a typo is caught before the host
// check.
func checkInterfaceName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty interface name")
	case len(name) > 15:
		return fmt.Errorf("interface name %q is longer than 15 characters", name)
	case name == "." || name == "..", strings.ContainsAny(name, "/: \t\r\n\x00"):
		return fmt.Errorf("invalid interface name %q", name)
	}
	return nil
}

// lastAddr is the highest address of an IPv4 prefix (its broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	n |= host
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}
