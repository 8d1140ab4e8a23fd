package httpproxy

import (
	"bytes"
	"errors"
	"sort"
	"strings"

	"github.com/vipgate/vipgate/config"
)

// vhost is one [[http]] server block on one listen address.
type vhost struct {
	cfg *config.HTTPServer
	// index is the block's position in the file, for logs.
	index int

	exact    map[string]*location // "= /x"
	prefixes []*location          // longest pattern first
	regexes  []*location          // file order

	errorPages map[int][]byte // error_page files, read at New (so a reload re-reads them)
}

// location is one [[http.location]] compiled.
type location struct {
	cfg     *config.Location
	pattern string
	// autoRedirect: a prefix ending in "/" that proxies answers the same
	// URI without the slash with a 301, as nginx does.
	autoRedirect bool

	// Proxying (nil target for root locations).
	pool    *upstreamPool
	headers []headerRule
	next    nextUpstream
	// redirects are proxy_redirect's rewrites (nil when "off").
	redirects []redirectRule
}

func newVhost(cfg *config.HTTPServer, index int) *vhost {
	v := &vhost{cfg: cfg, index: index, exact: map[string]*location{}}
	return v
}

func (v *vhost) addLocation(l *location) {
	switch l.cfg.Match {
	case config.MatchExact:
		v.exact[l.pattern] = l
	case config.MatchRegex:
		v.regexes = append(v.regexes, l)
	default:
		v.prefixes = append(v.prefixes, l)
		sort.SliceStable(v.prefixes, func(i, j int) bool { return len(v.prefixes[i].pattern) > len(v.prefixes[j].pattern) })
	}
}

// findLocation applies nginx's selection to a normalised URI: an exact
// location first; then, when no prefix location is the URI itself, a
// location ending in "/" whose pattern is the URI plus "/" (prefix or
// exact) answers with a redirect (auto redirect, before regexes as in
// nginx); then regexes in file order, the first match winning over any
// prefix; then the longest prefix. redirect is true for the auto redirect.
func (v *vhost) findLocation(uri string) (l *location, redirect bool) {
	if l := v.exact[uri]; l != nil {
		return l, false
	}
	var best, slashed *location
	for _, p := range v.prefixes {
		if p.autoRedirect && len(p.pattern) == len(uri)+1 && strings.HasPrefix(p.pattern, uri) {
			slashed = p
		}
		if best == nil && strings.HasPrefix(uri, p.pattern) {
			best = p
		}
	}
	if slashed == nil {
		if e := v.exact[uri+"/"]; e != nil && e.autoRedirect {
			slashed = e
		}
	}
	// nginx's static location tree returns a prefix equal to the URI at
	// once; otherwise it meets the redirect node and returns there.
	if slashed != nil && (best == nil || len(best.pattern) != len(uri)) {
		return slashed, true
	}
	for _, r := range v.regexes {
		if r.cfg.Regex.MatchString(uri) {
			return r, false
		}
	}
	return best, false
}

// serverNames selects a vhost by Host on one listen address.
type serverNames struct {
	dflt     *vhost
	exact    map[string]*vhost
	leading  []wildName // "*.example.com" / ".example.com", longest first
	trailing []wildName // "www.example.*", longest first
}

type wildName struct {
	part string // ".example.com" or "www.example."
	bare string // for ".example.com": "example.com" also matches
	v    *vhost
}

func (s *serverNames) add(v *vhost) {
	if s.dflt == nil {
		s.dflt = v
	}
	if s.exact == nil {
		s.exact = map[string]*vhost{}
	}
	for _, n := range v.cfg.ServerName {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		switch {
		case strings.HasPrefix(n, "*."):
			s.leading = append(s.leading, wildName{part: n[1:], v: v})
		case strings.HasPrefix(n, "."):
			s.leading = append(s.leading, wildName{part: n, bare: n[1:], v: v})
		case strings.HasSuffix(n, ".*"):
			s.trailing = append(s.trailing, wildName{part: n[:len(n)-1], v: v})
		default:
			if _, dup := s.exact[n]; !dup {
				s.exact[n] = v
			}
		}
	}
	byLen := func(w []wildName) {
		sort.SliceStable(w, func(i, j int) bool { return len(w[i].part) > len(w[j].part) })
	}
	byLen(s.leading)
	byLen(s.trailing)
}

// find follows nginx: exact name, longest leading wildcard, longest
// trailing wildcard, else the default (first) server of the address.
func (s *serverNames) find(host string) *vhost {
	if host == "" {
		return s.dflt
	}
	if v := s.exact[host]; v != nil {
		return v
	}
	for _, w := range s.leading {
		if strings.HasSuffix(host, w.part) || (w.bare != "" && host == w.bare) {
			return w.v
		}
	}
	for _, w := range s.trailing {
		if strings.HasPrefix(host, w.part) {
			return w.v
		}
	}
	return s.dflt
}

// normalizeHost lower-cases a Host value and strips its port and a
// trailing dot, as nginx's $host.
func normalizeHost(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return strings.ToLower(h[:i+1])
		}
		return strings.ToLower(h)
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if 'A' <= h[i] && h[i] <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

var errBadURI = errors.New("invalid request URI")

// normalizePath turns the raw path of a request target into nginx's $uri:
// percent-decoded, slashes merged, "." and ".." segments resolved. A ".."
// above the root, a decoded NUL or a bad escape is an error (nginx: 400).
// quoted reports whether the raw path held an escape, which nginx uses to
// decide whether to escape the path again when it rewrites it.
func normalizePath(raw string) (uri string, quoted bool, err error) {
	if raw == "" || raw[0] != '/' {
		return "", false, errBadURI
	}
	dec := raw
	if strings.IndexByte(raw, 0) >= 0 {
		return "", false, errBadURI
	}
	if strings.IndexByte(raw, '%') >= 0 {
		quoted = true
		b := make([]byte, 0, len(raw))
		for i := 0; i < len(raw); i++ {
			c := raw[i]
			if c == '%' {
				if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
					return "", false, errBadURI
				}
				c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
				if c == 0 {
					return "", false, errBadURI
				}
				i += 2
			}
			b = append(b, c)
		}
		dec = string(b)
	}
	if !needsCleaning(dec) {
		return dec, quoted, nil
	}
	out := make([]byte, 0, len(dec))
	i := 0
	for i < len(dec) {
		if dec[i] == '/' {
			if len(out) == 0 || out[len(out)-1] != '/' {
				out = append(out, '/')
			}
			i++
			continue
		}
		j := strings.IndexByte(dec[i:], '/')
		if j < 0 {
			j = len(dec)
		} else {
			j += i
		}
		dot := true
		switch seg := dec[i:j]; seg {
		case ".":
		case "..":
			if len(out) <= 1 {
				return "", false, errBadURI
			}
			out = out[:len(out)-1]
			out = out[:bytes.LastIndexByte(out, '/')+1]
		default:
			dot = false
			out = append(out, seg...)
		}
		i = j
		if dot && i < len(dec) {
			i++ // the "/" after a dot segment: out already ends with one
		}
	}
	return string(out), quoted, nil
}

// needsCleaning reports whether p has "//" or a "." / ".." segment.
func needsCleaning(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		if i+1 < len(p) && p[i+1] == '/' {
			return true
		}
		if i+1 < len(p) && p[i+1] == '.' {
			rest := p[i+2:]
			if rest == "" || rest[0] == '/' || rest[0] == '.' && (len(rest) == 1 || rest[1] == '/') {
				return true
			}
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// escapeURI escapes what nginx's NGX_ESCAPE_URI table (1.21.1 on)
// escapes: controls, space, '"', '#', '%', '<', '>', '?', '\\', '^', '`',
// '{', '|', '}', DEL and bytes >= 0x80. Strict servers (Tomcat) refuse a
// request line carrying the unescaped ones.
func escapeURI(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if uriEscape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if uriEscape(c) {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func uriEscape(c byte) bool {
	switch c {
	case '"', '#', '%', '<', '>', '?', '\\', '^', '`', '{', '|', '}':
		return true
	}
	return c <= 0x20 || c >= 0x7f
}

// splitTarget splits an origin-form request target into its path and
// query. A raw '#' ends the path as in nginx: a fragment (which clients
// should not send) is not part of what routing sees.
func splitTarget(target string) (path, query string) {
	i := strings.IndexAny(target, "?#")
	switch {
	case i < 0:
		return target, ""
	case target[i] == '#':
		return target[:i], ""
	}
	return target[:i], target[i+1:]
}

// upstreamURI is the request target sent to the upstream, by nginx's
// proxy_pass rule: without a URI part the client's raw target unchanged;
// with one, the location's matched part of the normalised URI replaced by
// it (the whole URI for an exact location), escaped again if the client's
// was escaped, and the query string kept.
func upstreamURI(l *location, rawTarget, uri string, quoted bool) string {
	t := l.cfg.Target
	if t == nil || !t.HasURI {
		return rawTarget
	}
	rest := ""
	if l.cfg.Match == config.MatchPrefix && strings.HasPrefix(uri, l.pattern) {
		rest = uri[len(l.pattern):]
	}
	if quoted {
		rest = escapeURI(rest)
	}
	out := t.URI + rest
	if i := strings.IndexAny(rawTarget, "?#"); i >= 0 && rawTarget[i] == '?' {
		out += rawTarget[i:]
	}
	return out
}
