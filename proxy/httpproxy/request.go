package httpproxy

import (
	"bytes"
	"net/http"
	"strconv"
	"unsafe"
)

// clientRequest is what routing, $variables, header rules and the access
// log read of one client request, whichever front end parsed it: the
// HTTP/1.1 fast path (fast.go; its strings alias the connection's read
// buffer and are valid until the request is done) or net/http (TLS,
// HTTP/2, handed-over connections). Both paths go through the same
// functions from here on, so they behave the same.
type clientRequest struct {
	method string
	target string // request-target as received ($request_uri)
	proto  string // "HTTP/1.1"
	host   string // Host header, "" without one
	query  string // raw query string ($args)
	hdr    headerView
}

// stdRequest is the clientRequest of a net/http request.
func stdRequest(r *http.Request) *clientRequest {
	return &clientRequest{method: r.Method, target: r.RequestURI, proto: r.Proto, host: r.Host,
		query: r.URL.RawQuery, hdr: headerView{std: r.Header}}
}

// headerView reads a request's header fields: net/http's map, or the raw
// field lines of a head that ParseRequestHead validated.
type headerView struct {
	std http.Header
	raw []byte
}

// bstr views b as a string without copying; b must not change while the
// string is in use (the fast path keeps its read buffer for the request).
func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// headerLines iterates the field lines of a validated head.
type headerLines struct{ b []byte }

func (h *headerLines) next() (name, value []byte, ok bool) {
	for len(h.b) > 0 {
		var line []byte
		if i := bytes.IndexByte(h.b, '\n'); i < 0 {
			line, h.b = h.b, nil
		} else {
			line, h.b = h.b[:i], h.b[i+1:]
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			h.b = nil
			return nil, nil, false
		}
		if c := bytes.IndexByte(line, ':'); c > 0 {
			return line[:c], trimOWS(line[c+1:]), true
		}
	}
	return nil, nil, false
}

// equalFold compares ASCII case-insensitively.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// appendJoined appends every value of the header name (canonical form),
// joined by sep, and reports whether there was one.
func (h *headerView) appendJoined(b []byte, name, sep string) ([]byte, bool) {
	found := false
	if h.std != nil {
		for i, x := range h.std[name] {
			if i > 0 {
				b = append(b, sep...)
			}
			b = append(b, x...)
			found = true
		}
		return b, found
	}
	it := headerLines{h.raw}
	for {
		n, v, ok := it.next()
		if !ok {
			return b, found
		}
		if equalFold(n, name) {
			if found {
				b = append(b, sep...)
			}
			b = append(b, v...)
			found = true
		}
	}
}

// get returns the first value of the header name (canonical form).
func (h *headerView) get(name string) string {
	if h.std != nil {
		if vv := h.std[name]; len(vv) > 0 {
			return vv[0]
		}
		return ""
	}
	it := headerLines{h.raw}
	for {
		n, v, ok := it.next()
		if !ok {
			return ""
		}
		if equalFold(n, name) {
			return bstr(v)
		}
	}
}

// get2 is get of two names in one pass over the fields (the access line's
// Referer and User-Agent).
func (h *headerView) get2(a, b string) (va, vb string) {
	if h.std != nil {
		return h.get(a), h.get(b)
	}
	it := headerLines{h.raw}
	foundA, foundB := false, false
	for !foundA || !foundB {
		n, v, ok := it.next()
		if !ok {
			break
		}
		switch {
		case !foundA && equalFold(n, a):
			va, foundA = bstr(v), true
		case !foundB && equalFold(n, b):
			vb, foundB = bstr(v), true
		}
	}
	return va, vb
}

// cookie returns the value of the first cookie called name in the Cookie
// headers ($cookie_NAME), without surrounding double quotes.
func (h *headerView) cookie(name string) string {
	if h.std != nil {
		for _, line := range h.std["Cookie"] {
			if v, ok := findCookie(line, name); ok {
				return v
			}
		}
		return ""
	}
	it := headerLines{h.raw}
	for {
		n, v, ok := it.next()
		if !ok {
			return ""
		}
		if equalFold(n, "Cookie") {
			if c, ok := findCookie(bstr(v), name); ok {
				return c
			}
		}
	}
}

func findCookie(line, name string) (string, bool) {
	for len(line) > 0 {
		var part string
		if i := indexByteString(line, ';'); i >= 0 {
			part, line = line[:i], line[i+1:]
		} else {
			part, line = line, ""
		}
		part = trimSpaceString(part)
		eq := indexByteString(part, '=')
		if eq < 0 || part[:eq] != name {
			continue
		}
		v := part[eq+1:]
		if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v, true
	}
	return "", false
}

// queryArg returns the raw value of the first argument called name
// (case-insensitively) in a query string, as nginx's $arg_NAME.
func queryArg(query, name string) string {
	for len(query) > 0 {
		var part string
		if i := indexByteString(query, '&'); i >= 0 {
			part, query = query[:i], query[i+1:]
		} else {
			part, query = query, ""
		}
		k, v := part, ""
		if eq := indexByteString(part, '='); eq >= 0 {
			k, v = part[:eq], part[eq+1:]
		}
		if equalFold([]byte(k), name) {
			return v
		}
	}
	return ""
}

func indexByteString(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func trimSpaceString(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// connectionTokens holds the option names of a Connection header: those
// headers are hop-by-hop for this message (RFC 9110 7.6.1).
type connectionTokens struct {
	vals [4]string
	n    int
	more []string // beyond four Connection lines (rare)
}

func (c *connectionTokens) add(v string) {
	if c.n < len(c.vals) {
		c.vals[c.n] = v
		c.n++
		return
	}
	c.more = append(c.more, v)
}

// names reports whether name is listed.
func (c *connectionTokens) names(name []byte) bool {
	for i := 0; i < c.n; i++ {
		if hasToken(c.vals[i], name) {
			return true
		}
	}
	for _, v := range c.more {
		if hasToken(v, name) {
			return true
		}
	}
	return false
}

func hasToken(list string, tok []byte) bool {
	for len(list) > 0 {
		var t string
		if i := indexByteString(list, ','); i >= 0 {
			t, list = list[:i], list[i+1:]
		} else {
			t, list = list, ""
		}
		if equalFold(tok, trimSpaceString(t)) {
			return true
		}
	}
	return false
}

// hopByHopName reports whether a field never passes the proxy in either
// direction (see hopByHop).
func hopByHopName(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFold(name, "Te")
	case 6:
		return equalFold(name, "Expect")
	case 7:
		return equalFold(name, "Upgrade") || equalFold(name, "Trailer")
	case 10:
		return equalFold(name, "Connection") || equalFold(name, "Keep-Alive")
	case 14:
		return equalFold(name, "Http2-Settings")
	case 16:
		return equalFold(name, "Proxy-Connection")
	case 17:
		return equalFold(name, "Transfer-Encoding")
	}
	return false
}

// ruleNamed reports whether a proxy_set_header rule (set or remove) owns
// the field name, so the client's own value is not passed.
func ruleNamed(rules []headerRule, name []byte) bool {
	for i := range rules {
		if equalFold(name, rules[i].name) {
			return true
		}
	}
	return false
}

// passRequestField is the one rule for which client request fields go
// upstream as they are: not hop-by-hop, not named by Connection, not
// replaced by a header rule, and not Host or Content-Length (the proxy
// writes those).
func passRequestField(name []byte, conn *connectionTokens, rules []headerRule) bool {
	return !hopByHopName(name) && !equalFold(name, "Host") && !equalFold(name, "Content-Length") &&
		!conn.names(name) && !ruleNamed(rules, name)
}

// upstreamHead is what the request head sent upstream is made from.
type upstreamHead struct {
	req      *clientRequest
	target   string // mapped by proxy_pass
	rules    []headerRule
	vars     *reqVars
	upgrade  string // Upgrade value of a protocol switch, "" if none
	bodySize int64
}

// appendTo writes the upstream request head for the server at addr:
// request line, Host (the Host rule, else addr), the client's fields that
// pass, the header rules' values (an empty or invalid value is not sent,
// as in nginx), the protocol switch, Content-Length of the kept body.
func (u *upstreamHead) appendTo(b []byte, addr string) []byte {
	req := u.req
	b = append(b, req.method...)
	b = append(b, ' ')
	b = append(b, u.target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	hostAt := len(b)
	for i := range u.rules {
		if r := &u.rules[i]; r.name == "Host" && r.tmpl != nil {
			b = r.tmpl.appendTo(b, u.vars)
		}
	}
	if len(b) == hostAt || !fieldValueOK(b[hostAt:]) {
		b = append(b[:hostAt], addr...)
	}
	b = append(b, "\r\n"...)

	// nginx drops client fields with an underscore in their name unless
	// underscores_in_headers is on: a CGI-style server maps X_Real_IP and
	// X-Real-IP alike, so one would spoof a field the proxy sets.
	dropUnderscored := u.vars == nil || u.vars.server == nil || !u.vars.server.cfg.UnderscoresInHeaders
	var conn connectionTokens
	if req.hdr.std != nil {
		for _, v := range req.hdr.std["Connection"] {
			conn.add(v)
		}
		for name, vv := range req.hdr.std {
			// net/http validated what it read; a map filled otherwise
			// must not break the head either.
			if n := []byte(name); !isToken(n) || !passRequestField(n, &conn, u.rules) || dropUnderscored && indexByteString(name, '_') >= 0 {
				continue
			}
			for _, v := range vv {
				if fieldValueOK([]byte(v)) {
					b = appendField(b, name, v)
				}
			}
		}
	} else {
		it := headerLines{req.hdr.raw}
		for {
			n, v, ok := it.next()
			if !ok {
				break
			}
			if equalFold(n, "Connection") {
				conn.add(bstr(v))
			}
		}
		it = headerLines{req.hdr.raw}
		for {
			n, v, ok := it.next()
			if !ok {
				break
			}
			if passRequestField(n, &conn, u.rules) && !(dropUnderscored && indexByteBytes(n, '_') >= 0) {
				b = append(b, n...)
				b = append(b, ": "...)
				b = append(b, v...)
				b = append(b, "\r\n"...)
			}
		}
	}
	for i := range u.rules {
		r := &u.rules[i]
		if r.tmpl == nil || r.name == "Host" {
			continue
		}
		start := len(b)
		b = append(b, r.name...)
		b = append(b, ": "...)
		valAt := len(b)
		b = r.tmpl.appendTo(b, u.vars)
		if len(b) == valAt || !fieldValueOK(b[valAt:]) {
			// nginx: a header whose value is empty is not passed. A value
			// with a control character (a decoded %0A in $uri) would make
			// the upstream request invalid, so it is not passed either.
			b = b[:start]
			continue
		}
		b = append(b, "\r\n"...)
	}
	if u.upgrade != "" {
		b = append(b, "Connection: Upgrade\r\nUpgrade: "...)
		b = append(b, u.upgrade...)
		b = append(b, "\r\n"...)
	}
	switch {
	case u.bodySize > 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, u.bodySize, 10)
		b = append(b, "\r\n"...)
	case req.method == http.MethodPost || req.method == http.MethodPut || req.method == http.MethodPatch:
		b = append(b, "Content-Length: 0\r\n"...)
	}
	return append(b, "\r\n"...)
}

func appendField(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	return append(b, "\r\n"...)
}
