package httpproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/vipgate/vipgate/balancer"
	"github.com/vipgate/vipgate/config"
)

// nextUpstream is a location's proxy_next_upstream, compiled.
type nextUpstream struct {
	error, timeout, invalidHeader, nonIdempotent, off bool
	status                                            map[int]bool
	tries                                             int
	timeoutAfter                                      time.Duration
}

func compileNextUpstream(l *config.Location) nextUpstream {
	n := nextUpstream{status: map[int]bool{}, tries: l.ProxyNextUpstreamTries, timeoutAfter: l.ProxyNextUpstreamTimeout.Duration}
	for _, c := range l.ProxyNextUpstream {
		switch c {
		case "error":
			n.error = true
		case "timeout":
			n.timeout = true
		case "invalid_header":
			n.invalidHeader = true
		case "non_idempotent":
			n.nonIdempotent = true
		case "off":
			n.off = true
		default:
			if code, ok := strings.CutPrefix(c, "http_"); ok {
				if v, err := strconv.Atoi(code); err == nil {
					n.status[v] = true
				}
			}
		}
	}
	return n
}

// failKind is why an attempt failed, in proxy_next_upstream's words.
type failKind int

const (
	failNone failKind = iota
	failError
	failTimeout
	failInvalidHeader
	failStatus
	// failLocal: this process could not connect (no descriptor, no local
	// port): not the server's fault, and every server would fail alike.
	failLocal
)

// localDialFailure reports whether a failed connect is this process's own
// (out of descriptors, buffers or local ports) rather than the server's.
func localDialFailure(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EADDRNOTAVAIL} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// failureStatus is the answer when no attempt succeeded: 504 after a
// timeout, 500 for the proxy's own failure (as nginx), 502 otherwise.
func failureStatus(k failKind) int {
	switch k {
	case failTimeout:
		return http.StatusGatewayTimeout
	case failLocal:
		return http.StatusInternalServerError
	}
	return http.StatusBadGateway
}

// failedAttempt is an attempt that failed without a usable answer (a
// transport error or timeout), for the error log: like nginx's error line,
// it says whose request it was.
type failedAttempt struct {
	kind     failKind
	upstream string
	server   string
	// next is the server tried after this one; "" when the request ends
	// with an error answer.
	next    string
	client  string // $remote_addr
	host    string
	request string // method and target
	err     error
}

// log writes one line per failed attempt, as nginx does, also when the
// request then succeeded on another server: a server failing now and then
// shows in the error log.
func (f *failedAttempt) log(log *zap.Logger) {
	fields := []zap.Field{zap.String("upstream", f.upstream), zap.String("server", f.server),
		zap.String("client", f.client), zap.String("host", f.host), zap.String("request", f.request), zap.Error(f.err)}
	switch {
	case f.kind == failLocal:
		log.Error("cannot connect to upstream server: this process is out of resources (not counted against the server)", fields...)
	case f.next != "":
		log.Warn("upstream request failed, trying the next server", append(fields, zap.String("next", f.next))...)
	default:
		log.Warn("upstream request failed", fields...)
	}
}

func (n *nextUpstream) allows(k failKind) bool {
	if n.off {
		return false
	}
	switch k {
	case failError:
		return n.error
	case failTimeout:
		return n.timeout
	case failInvalidHeader:
		return n.invalidHeader
	case failStatus:
		return true // the caller checked the status list
	}
	return false
}

// maxTries is how many servers a request may try: every server of the
// upstream, bounded by proxy_next_upstream_tries.
func (n *nextUpstream) maxTries(pool *upstreamPool) int {
	m := 1
	if pool.bal != nil {
		m = len(pool.bal.Servers())
	}
	if n.tries > 0 && n.tries < m {
		m = n.tries
	}
	return m
}

// retry decides, for both front ends, whether a failed attempt goes to
// the next server: the failure is listed, tries and
// proxy_next_upstream_timeout are left, and a non-idempotent request that
// reached a server is not sent again unless non_idempotent is listed.
func (n *nextUpstream) retry(k failKind, attempt, maxTries int, sent bool, method string, start time.Time) bool {
	return k != failNone && n.allows(k) && attempt < maxTries &&
		!(sent && nonIdempotent(method) && !n.nonIdempotent) &&
		!(n.timeoutAfter > 0 && time.Since(start) >= n.timeoutAfter)
}

// judge is what both front ends do with an attempt's outcome: a listed
// status becomes failStatus, and the server's accounting is updated. error,
// timeout and invalid_header always count as a failure. A listed status
// counts only when it makes the request go to the next server (the caller
// reports it then); passed to the client (no retry allowed or possible) it
// does not, as nginx frees the peer then without NGX_PEER_FAILED: a POST
// answered 502 does not mark its server down.
func (n *nextUpstream) judge(p peer, kind failKind, answered bool, status int, elapsed time.Duration) failKind {
	if answered && n.status[status] && !n.off {
		kind = failStatus
	}
	if kind != failNone && kind != failStatus && kind != failLocal {
		p.ReportFailure()
	}
	if answered {
		p.ObserveResponse(status, elapsed)
	}
	return kind
}

// statusFails reports whether a listed status that sends the request to
// the next server counts against the server's max_fails: 403 and 404 do
// not (nginx frees the server as "next", not "failed", for them), so a
// 404 of a sharded store or a "try the other node" setup does not take
// a healthy server out for fail_timeout.
func statusFails(status int) bool {
	return status != http.StatusForbidden && status != http.StatusNotFound
}

// nonIdempotent are the methods nginx does not retry once sent.
func nonIdempotent(method string) bool {
	return method == http.MethodPost || method == http.MethodPatch || method == "LOCK"
}

var (
	errReadTimeout = errors.New("upstream timed out (proxy_read_timeout)")
	errSendTimeout = errors.New("upstream timed out (proxy_send_timeout)")
)

// watchdog cancels an attempt when the current phase's timeout passes.
type watchdog struct {
	t     *time.Timer
	cause atomic.Pointer[error]
}

func newWatchdog(cancel context.CancelCauseFunc) *watchdog {
	w := &watchdog{}
	w.t = time.AfterFunc(time.Hour, func() {
		if c := w.cause.Load(); c != nil {
			cancel(*c)
		}
	})
	w.t.Stop()
	return w
}

func (w *watchdog) arm(d time.Duration, cause error) {
	w.cause.Store(&cause)
	w.t.Reset(d)
}

func (w *watchdog) stop() { w.t.Stop() }

// upstreamURL is the URL from which the transport writes the request line
// with target as it is. Opaque keeps any target byte for byte, but one
// starting with "//" (nginx sends "//users/1" for /api/users/1 with
// location /api and proxy_pass http://app/) would be written as the
// absolute URL "http://users/1", naming another host; such a target goes
// in RawPath instead. ok is false when it cannot be written as it is.
func upstreamURL(addr, target string) (u *url.URL, ok bool) {
	u = &url.URL{Scheme: "http", Host: addr}
	if !strings.HasPrefix(target, "//") {
		u.Opaque = target
		return u, true
	}
	path, query, hasQuery := strings.Cut(target, "?")
	unescaped, err := url.PathUnescape(path)
	if err != nil {
		return u, false
	}
	u.Path, u.RawPath, u.RawQuery = unescaped, path, query
	u.ForceQuery = hasQuery && query == ""
	return u, u.RequestURI() == target
}

// upstreamTarget is upstreamURL for a target route has accepted.
func upstreamTarget(addr, target string) *url.URL {
	u, _ := upstreamURL(addr, target)
	return u
}

// armingReader is a request body that re-arms proxy_send_timeout each
// time the transport takes more of it, that is after each write: the
// timeout bounds the time between two writes to the server, as nginx's
// does, not the whole upload.
type armingReader struct {
	io.ReadCloser
	dog     *watchdog
	timeout time.Duration
}

func (r *armingReader) Read(p []byte) (int, error) {
	r.dog.arm(r.timeout, errSendTimeout)
	return r.ReadCloser.Read(p)
}

// attemptResult is one try of a request on one server.
type attemptResult struct {
	resp   *http.Response
	kind   failKind
	err    error
	sent   bool
	cancel context.CancelCauseFunc
	dog    *watchdog
}

// proxyRequest is the state of one proxied client request.
type proxyRequest struct {
	s    *Server
	loc  *location
	r    *http.Request
	w    http.ResponseWriter
	vars *reqVars
	rec  *logRecord

	header  http.Header
	host    string
	target  string
	upgrade string
	// upgradeEpoch is the server's when an upgrade request arrived.
	upgradeEpoch uint64
	body         *requestBody
}

func (pr *proxyRequest) attempt(p peer) attemptResult {
	l := pr.loc.cfg
	ctx, cancel := context.WithCancelCause(pr.r.Context())
	dog := newWatchdog(cancel)
	var sent atomic.Bool
	trace := &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) {
			sent.Store(true)
			dog.arm(l.ProxySendTimeout.Duration, errSendTimeout)
		},
		WroteRequest: func(httptrace.WroteRequestInfo) {
			dog.arm(l.ProxyReadTimeout.Duration, errReadTimeout)
		},
	}
	ctx = context.WithValue(ctx, connectTimeoutKey{}, l.ProxyConnectTimeout.Duration)
	ctx = httptrace.WithClientTrace(ctx, trace)
	out := &http.Request{
		Method:     pr.r.Method,
		URL:        upstreamTarget(p.Address(), pr.target),
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     pr.header,
		Host:       pr.host,
		Body:       &armingReader{pr.body.reader(), dog, l.ProxySendTimeout.Duration},
		GetBody: func() (io.ReadCloser, error) {
			return &armingReader{pr.body.reader(), dog, l.ProxySendTimeout.Duration}, nil
		},
	}
	out.ContentLength = pr.body.size
	if pr.body.size == 0 {
		out.Body, out.GetBody = nil, nil
	}
	out = out.WithContext(ctx)
	resp, err := pr.loc.pool.transport.RoundTrip(out)
	res := attemptResult{resp: resp, err: err, sent: sent.Load(), cancel: cancel, dog: dog}
	if err != nil {
		dog.stop()
		res.kind = failError
		var de *dialError
		var ne net.Error
		switch cause := context.Cause(ctx); {
		case cause == errReadTimeout || cause == errSendTimeout:
			res.kind, res.err = failTimeout, cause
		case errors.As(err, &de):
			res.sent = false
			if errors.As(err, &ne) && ne.Timeout() {
				res.kind = failTimeout
			} else if localDialFailure(err) {
				res.kind = failLocal
			}
		case strings.Contains(err.Error(), "malformed"):
			res.kind = failInvalidHeader
		}
		cancel(nil)
		return res
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		dog.arm(l.ProxyReadTimeout.Duration, errReadTimeout)
	} else {
		dog.stop()
	}
	return res
}

func (res *attemptResult) discard() {
	if res.resp != nil {
		_ = res.resp.Body.Close()
	}
	res.dog.stop()
	res.cancel(nil)
}

// serveProxy sends the request to the location's upstream, trying further
// servers as proxy_next_upstream allows, and relays the answer.
func (pr *proxyRequest) serve() {
	loc, r := pr.loc, pr.r
	pool := loc.pool
	next := &loc.next
	start := time.Now()

	maxTries := next.maxTries(pool)
	hashKey := ""
	if pool.hashKey != nil {
		hashKey = pool.hashKey.eval(pr.vars)
	}
	var clientIP netip.Addr
	if pr.vars.conn != nil {
		clientIP = pr.vars.conn.remote.Addr()
	}
	var tried []*balancer.Server
	failed := func(kind failKind, server, next string, err error) {
		f := failedAttempt{kind: kind, upstream: pool.name, server: server, next: next,
			client: pr.vars.remote, host: r.Host, request: r.Method + " " + r.RequestURI, err: err}
		f.log(pr.s.log)
	}
	p, bs, err := pool.pick(clientIP, hashKey, tried, 0)
	if err != nil {
		pr.s.log.Warn("no live upstream server", zap.String("upstream", pool.name), zap.String("client", pr.vars.remote),
			zap.String("host", r.Host), zap.String("request", r.Method+" "+r.RequestURI), zap.Error(err))
		// As nginx: $upstream_addr names the upstream, which had no server.
		pr.rec.upstream(pool.name, 0)
		pr.s.errorResponse(pr.w, pr.vars.server, http.StatusBadGateway)
		return
	}
	if bs != nil {
		tried = append(tried, bs)
	}
	for attempt := 1; ; attempt++ {
		t0 := time.Now()
		res := pr.attempt(p)
		elapsed := time.Since(t0)
		pr.rec.upstream(p.Address(), elapsed)

		if res.err != nil && r.Context().Err() != nil {
			// The client went away: not the server's fault, nothing to send.
			p.Release()
			res.discard()
			pr.rec.status = 499
			return
		}
		kind := next.judge(p, res.kind, res.err == nil, statusOf(res.resp), elapsed)
		if next.retry(kind, attempt, maxTries, res.sent, r.Method, start) {
			np, nbs, perr := pool.pick(clientIP, hashKey, tried, attempt)
			if perr == nil {
				if kind == failStatus && statusFails(statusOf(res.resp)) {
					p.ReportFailure()
				}
				if res.err != nil {
					failed(kind, p.Address(), np.Address(), res.err)
				} else {
					pr.s.log.Debug("next upstream", zap.String("upstream", pool.name), zap.String("failed", p.Address()),
						zap.String("next", np.Address()), zap.Int("status", statusOf(res.resp)))
				}
				p.Release()
				res.discard()
				p = np
				if nbs != nil {
					tried = append(tried, nbs)
				}
				continue
			}
		}
		if res.err != nil {
			p.Release()
			failed(kind, p.Address(), "", res.err)
			res.discard()
			pr.s.errorResponse(pr.w, pr.vars.server, failureStatus(kind))
			return
		}
		p.ReportSuccess()
		end := &upstreamEnd{}
		end.reset(p, t0)
		// The server's slot is freed and $upstream_response_time taken
		// when the whole response was received, as in nginx: when the
		// relay ends (also when it aborts), or earlier when a spool took
		// it all.
		defer func() {
			end.end()
			pr.rec.upTimes[len(pr.rec.upTimes)-1] = end.elapsed()
		}()
		pr.relay(p, &res, end)
		return
	}
}

func statusOf(r *http.Response) int {
	if r == nil {
		return 0
	}
	return r.StatusCode
}

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// relay writes the upstream response to the client. Once its header is
// written nothing can be retried: a failure mid-body aborts the client
// connection so the client sees a truncated response, not a complete one.
func (pr *proxyRequest) relay(p peer, res *attemptResult, end *upstreamEnd) {
	defer res.discard()
	resp := res.resp
	if resp.StatusCode == http.StatusSwitchingProtocols {
		pr.tunnel(p, res)
		return
	}
	h := pr.w.Header()
	copyResponseHeader(h, resp.Header)
	if len(pr.loc.redirects) > 0 {
		if v := h.Get("Location"); v != "" {
			h.Set("Location", rewriteRedirect(v, pr.loc.redirects, p.Address()))
		}
		if v := h.Get("Refresh"); v != "" {
			h.Set("Refresh", rewriteRefresh(v, pr.loc.redirects, p.Address()))
		}
	}
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	if _, ok := resp.Header["Content-Type"]; !ok {
		// net/http would sniff the body and name a type the server did
		// not (text/html for a user's upload): sent as it came, as the
		// fast path does.
		h["Content-Type"] = nil
	}
	pr.w.WriteHeader(resp.StatusCode)
	flush := !*pr.loc.cfg.ProxyBuffering || resp.ContentLength == -1 && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	rc := http.NewResponseController(pr.w)
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	readTimeout := pr.loc.cfg.ProxyReadTimeout.Duration
	// send_timeout between two writes to the client: clientConn.Write
	// (HTTP/1), countingWriter (HTTP/2).
	var received int64
	defer func() { p.AddBytes(pr.body.size, received) }()
	// A large body goes through a spool with proxy_buffering on, so that
	// a slow client does not hold the server (as the fast path).
	var src io.Reader = resp.Body
	var sp *spool
	spooling := false
	if *pr.loc.cfg.ProxyBuffering && !flush && pr.r.Method != http.MethodHead && resp.Body != http.NoBody &&
		resp.ContentLength >= spoolMin && resp.ContentLength <= spoolMax {
		var err error
		if sp, err = newSpool(""); err != nil {
			pr.s.log.Warn("proxy_buffering: cannot make a temporary file, relaying at the client's pace", zap.Error(err))
		} else {
			sp.start(func(dst *os.File, progress func(int64)) error {
				fb := copyBufPool.Get().(*[]byte)
				defer copyBufPool.Put(fb)
				err := sp.fillFrom(dst, progress, resp.Body, -1, *fb, func() { res.dog.arm(readTimeout, errReadTimeout) })
				res.dog.stop()
				if err == nil {
					// Read to its end, the body has freed its
					// connection for reuse: the server is done.
					end.end()
				}
				return err
			})
			defer sp.close()
			src, spooling = sp, true
		}
	}
	for {
		if !spooling {
			res.dog.arm(readTimeout, errReadTimeout)
		}
		n, err := src.Read(buf)
		// proxy_read_timeout is the server's: not running while a slow
		// client takes the bytes (send_timeout bounds that).
		if !spooling {
			res.dog.stop()
		}
		if spooling && errors.Is(err, errSpoolFull) {
			// The file is full (disk, size limit): what fill read and
			// could not write goes first, then the rest straight from the
			// server at the client's pace.
			pr.s.log.Warn("proxy_buffering: the temporary file is full, the rest goes at the client's pace",
				zap.String("upstream", pr.loc.pool.name), zap.String("uri", pr.r.RequestURI), zap.Error(err))
			src, spooling = resp.Body, false
			n, err = copy(buf, sp.tail), nil // tail: at most one read of a buffer this size
		}
		received += int64(n)
		if n > 0 {
			if _, werr := pr.w.Write(buf[:n]); werr != nil {
				// The client left after the head: logged with the status
				// it was sent, as nginx does.
				if spooling {
					res.cancel(errClientGone) // ends the spool's reads
				}
				return
			}
			if flush {
				_ = rc.Flush()
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if pr.r.Context().Err() != nil {
				// The client left (an HTTP/2 stream reset): the read from
				// the server (or its spool) was cancelled for it. Its line
				// keeps the status it was sent, as nginx's.
				res.dog.stop()
				return
			}
			if c := context.Cause(resp.Request.Context()); c != nil && c != context.Canceled {
				err = c
			}
			pr.s.log.Warn("upstream response cut", zap.String("upstream", pr.loc.pool.name), zap.String("server", p.Address()),
				zap.String("uri", pr.r.RequestURI), zap.Error(err))
			res.dog.stop()
			panic(http.ErrAbortHandler)
		}
	}
	res.dog.stop()
	for k, vv := range resp.Trailer {
		pr.w.Header()[http.TrailerPrefix+k] = vv
	}
}
