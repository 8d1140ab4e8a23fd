package httpproxy

import (
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/vipgate/vipgate/internal/accesslog"
)

// ServeHTTP routes one request: server block by Host, location by URI,
// then static file or proxy.
func (g *listenGroup) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := g.s
	g.stdRequests.Add(1)
	cc, _ := r.Context().Value(connKey{}).(*clientConn)
	if cc != nil {
		cc.handlers.Add(1)
		defer cc.handlers.Add(-1)
		defer cc.answered.Add(1)
	}
	rec := &logRecord{start: time.Now()}
	cw := &countingWriter{ResponseWriter: w, rec: rec}
	defer func() { s.logAccess(rec, stdRequest(r), cc) }()
	s.route(g, cc, cw, r, rec)
}

func (s *Server) route(g *listenGroup, cc *clientConn, w http.ResponseWriter, r *http.Request, rec *logRecord) {
	if hostRefused(r.Host) {
		s.errorResponse(w, g.names.dflt, http.StatusBadRequest)
		return
	}
	host := normalizeHost(r.Host)
	v := g.names.find(host)
	if v != nil {
		if r.ProtoMajor == 1 && cc != nil {
			cc.sendTimeout.Store(int64(v.cfg.SendTimeout.Duration))
		}
		if cw, ok := w.(*countingWriter); ok && r.ProtoMajor == 2 {
			cw.sendTimeout = v.cfg.SendTimeout.Duration
		}
	}
	if s.draining.Load() && r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	rawTarget := r.RequestURI
	if !validTarget(rawTarget) {
		// HTTP/2's :path may carry what a request line cannot (a space
		// would split the upstream's request line): refused as the
		// HTTP/1.1 parsers refuse it.
		s.errorResponse(w, v, http.StatusBadRequest)
		return
	}
	if !strings.HasPrefix(rawTarget, "/") {
		if r.URL.IsAbs() || r.URL.Host != "" {
			rawTarget = r.URL.RequestURI()
		} else {
			s.errorResponse(w, v, http.StatusBadRequest)
			return
		}
	}
	if r.Method == http.MethodConnect || r.Method == http.MethodTrace {
		s.errorResponse(w, v, http.StatusMethodNotAllowed)
		return
	}
	rawPath, _ := splitTarget(rawTarget)
	uri, quoted, err := normalizePath(rawPath)
	if err != nil {
		s.errorResponse(w, v, http.StatusBadRequest)
		return
	}
	loc, redirect := v.findLocation(uri)
	if loc == nil {
		s.errorResponse(w, v, http.StatusNotFound)
		return
	}
	if redirect {
		target := escapeURI(uri) + "/"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		w.Header().Set("Location", target)
		s.errorResponse(w, v, http.StatusMovedPermanently)
		return
	}
	if loc.cfg.Root != "" {
		s.serveStatic(w, r, v, loc.cfg.Root, uri, rec)
		return
	}
	vars := &reqVars{req: stdRequest(r), conn: cc, uri: uri, server: v, scheme: "http"}
	if cc != nil {
		if cc.tls {
			vars.scheme = "https"
		}
		if cc.remote.IsValid() { // not for Probe's in-process pipe
			vars.remote = cc.remote.Addr().String()
			vars.port = strconv.Itoa(int(cc.remote.Port()))
		}
		if cc.local.IsValid() {
			vars.local = strconv.Itoa(int(cc.local.Port()))
			vars.lcAddr = cc.local.Addr().String()
		}
	}
	vars.host = host
	if vars.host == "" && len(v.cfg.ServerName) > 0 {
		vars.host = v.cfg.ServerName[0]
	}
	vars.proxy = loc.pool.name
	rec.remote = vars.remote

	maxBody := v.cfg.ClientMaxBodySize.Bytes
	body, err := readRequestBody(w, r, maxBody, v.cfg.ClientBodyTimeout.Duration)
	if err != nil {
		status := http.StatusBadRequest
		switch {
		case errors.Is(err, errBodyTooLarge):
			status = http.StatusRequestEntityTooLarge
		case errors.Is(err, errBodyTimeout):
			status = http.StatusRequestTimeout
		}
		s.log.Debug("request body refused", zap.String("uri", r.RequestURI), zap.Int("status", status), zap.Error(err))
		if r.ProtoMajor == 1 {
			// Unread body bytes would be taken for the next request; an
			// HTTP/2 stream ends alone (Connection: close there would
			// end the whole connection, every other stream with it).
			w.Header().Set("Connection", "close")
		}
		s.errorResponse(w, v, status)
		return
	}
	defer body.close()

	pr := &proxyRequest{s: s, loc: loc, r: r, w: w, vars: vars, rec: rec, body: body}
	pr.target = upstreamURI(loc, rawTarget, uri, quoted)
	if _, ok := upstreamURL("", pr.target); !ok {
		s.log.Warn("request target cannot be sent as it is", zap.String("uri", r.RequestURI), zap.String("target", pr.target))
		s.errorResponse(w, v, http.StatusBadRequest)
		return
	}
	// No protocol switch in HTTP/1.0 (RFC 9110 7.8) nor HTTP/2.
	if r.ProtoMajor == 1 && r.ProtoMinor >= 1 && headerHasToken(r.Header["Connection"], "upgrade") &&
		switchableProtocol(r.Header.Get("Upgrade")) {
		pr.upgrade = r.Header.Get("Upgrade")
		pr.upgradeEpoch = s.upgradeEpoch()
	}
	pr.header, pr.host = upstreamHeader(r.Header, loc.headers, vars, pr.upgrade)
	pr.serve()
}

// validTarget reports whether a request target has no byte a request line
// cannot carry (controls, space, DEL).
func validTarget(t string) bool {
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] == 0x7f {
			return false
		}
	}
	return t != ""
}

func headerHasToken(values []string, token string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// errorResponse answers with status and the server block's error_page
// file, or a short built-in page.
func (s *Server) errorResponse(w http.ResponseWriter, v *vhost, status int) {
	h := w.Header()
	h.Set("Content-Type", "text/html")
	h.Del("Content-Length")
	if s.errorEndsConnection(status) {
		// HTTP/1: close after this answer; HTTP/2: GOAWAY once idle.
		h.Set("Connection", "close")
	}
	if v != nil {
		if page, ok := v.errorPages[status]; ok {
			h.Set("Content-Length", strconv.Itoa(len(page)))
			w.WriteHeader(status)
			_, _ = w.Write(page)
			return
		}
	}
	body := errorBody(status)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func statusText(status int) string {
	if t := http.StatusText(status); t != "" {
		return t
	}
	return "Error"
}

// errorBody is nginx's short error page.
func errorBody(status int) string {
	line := strconv.Itoa(status) + " " + statusText(status)
	return "<html>\r\n<head><title>" + line + "</title></head>\r\n<body>\r\n<center><h1>" + line +
		"</h1></center>\r\n<hr><center>vipgate</center>\r\n</body>\r\n</html>\r\n"
}

// Unwrap lets http.ResponseController reach Flush, Hijack and deadlines.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// logRecord collects one request's access log fields.
type logRecord struct {
	start   time.Time
	remote  string
	status  int
	bytes   int64
	upAddrs []string
	upTimes []time.Duration
}

func (l *logRecord) upstream(addr string, d time.Duration) {
	l.upAddrs = append(l.upAddrs, addr)
	l.upTimes = append(l.upTimes, d)
}

// logAccess writes the nginx-combined-like line:
// $remote_addr - - [$time_local] "$request" $status $body_bytes_sent
// "$http_referer" "$http_user_agent" "$upstream_addr" $request_time
// $upstream_response_time
func (s *Server) logAccess(rec *logRecord, r *clientRequest, cc *clientConn) {
	s.responses.observe(rec.status)
	if !s.access.On() {
		return
	}
	remote := rec.remote
	if remote == "" && cc != nil && cc.remote.IsValid() {
		remote = cc.remote.Addr().String()
	}
	if remote == "" {
		remote = "-"
	}
	bp := logBufPool.Get().(*[]byte)
	defer logBufPool.Put(bp)
	b := (*bp)[:0]
	b = append(b, remote...)
	// $time_local is when the line is written, as in nginx: a long
	// request's line does not land hours in the past.
	now := time.Now()
	b = append(b, " - - ["...)
	b = accesslog.AppendTimeLocal(b, now)
	b = append(b, "] \""...)
	b = appendEscaped(b, r.method)
	b = append(b, ' ')
	b = appendEscaped(b, r.target)
	b = append(b, ' ')
	b = appendEscaped(b, r.proto)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(rec.status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, rec.bytes, 10)
	b = append(b, " \""...)
	referer, userAgent := r.hdr.get2("Referer", "User-Agent")
	b = appendEscapedOrDash(b, referer)
	b = append(b, "\" \""...)
	b = appendEscapedOrDash(b, userAgent)
	b = append(b, "\" \""...)
	if len(rec.upAddrs) == 0 {
		b = append(b, '-')
	}
	for i, a := range rec.upAddrs {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, a...)
	}
	b = append(b, "\" "...)
	b = appendSeconds(b, now.Sub(rec.start))
	b = append(b, ' ')
	if len(rec.upTimes) == 0 {
		b = append(b, '-')
	}
	for i, d := range rec.upTimes {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendSeconds(b, d)
	}
	b = append(b, '\n')
	s.access.Write(b)
	*bp = b
}

var logBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// logRefused logs a request refused by the framing check, which net/http
// never saw: nginx logs those 400s too, with the request line it read and
// the error page's bytes (fail2ban filters key on the line).
func (s *Server) logRefused(c *clientConn, he *HeadError) { s.logRefusedFrom(c.remote, he) }

func (s *Server) logRefusedFrom(remote netip.AddrPort, he *HeadError) {
	s.log.Debug("request refused", zap.Stringer("client", remote), zap.Int("status", he.Status), zap.String("reason", he.Reason))
	if !s.access.On() {
		return
	}
	b := make([]byte, 0, 128)
	if remote.IsValid() {
		b = append(b, remote.Addr().String()...)
	} else {
		b = append(b, '-')
	}
	b = append(b, " - - ["...)
	b = accesslog.AppendTimeLocal(b, time.Now())
	b = append(b, "] \""...)
	b = appendEscapedOrDash(b, he.Line)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(he.Status), 10)
	b = append(b, ' ')
	sent := len(errorBody(he.Status)) // the error page
	if he.Unanswered {
		sent = 0
	}
	b = strconv.AppendInt(b, int64(sent), 10)
	b = append(b, " \"-\" \"-\" \"-\" 0.000 -\n"...)
	s.access.Write(b)
}

// appendSeconds formats d as nginx does: seconds with millisecond
// resolution ("0.012").
func appendSeconds(b []byte, d time.Duration) []byte {
	ms := d.Milliseconds()
	b = strconv.AppendInt(b, ms/1000, 10)
	b = append(b, '.')
	frac := ms % 1000
	b = append(b, byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	return b
}

func appendEscapedOrDash(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return appendEscaped(b, s)
}

// appendEscaped escapes '"', '\' and bytes outside printable ASCII as
// \xHH, as nginx's log escaping does, so a line cannot be forged.
func appendEscaped(b []byte, s string) []byte {
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '\\' || c < 0x20 || c >= 0x7f {
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&15])
			continue
		}
		b = append(b, c)
	}
	return b
}
