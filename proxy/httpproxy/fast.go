package httpproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/vipgate/vipgate/balancer"
	"github.com/vipgate/vipgate/internal/clockfmt"
	"github.com/vipgate/vipgate/internal/rawsys"
)

// The fast path serves plain (non-TLS) HTTP/1.x client connections to
// HTTP/1.1 upstreams without net/http: each request head
// is parsed once by ParseRequestHead (no per-header allocation), routed,
// rewritten into the upstream head by the same code as the net/http path
// (request.go), written to a pooled upstream connection, and the answer
// is relayed by its framing through pooled buffers. Rare cases
// (absolute-form targets, CONNECT, static files) hand the connection over
// to net/http at a request boundary.
//
// An idle keep-alive connection holds no buffer: it waits for readability
// with a RawConn callback that borrows a buffer only when bytes arrive.

// fastState is where a fast connection is, for Drain and Shutdown.
type fastState int32

const (
	fastIdle    fastState = iota // waiting for a request
	fastActive                   // reading or answering a request
	fastClosing                  // Drain/Shutdown closed it while idle
	fastTunnel                   // upgraded: a tunnel owns it
	fastNew                      // waiting for its first request: Drain leaves it
)

// readBufSize is the client read buffer borrowed per request; a head
// longer than it gets a larger one (up to client_header_max_size).
const readBufSize = 4 << 10

var (
	readBufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}
	// upBufPool holds upstream read buffers: a response head and the
	// start of its body, then the relay's copy buffer.
	upBufPool = sync.Pool{New: func() any { b := make([]byte, upBufSize); return &b }}
	// outBufPool holds the heads the fast path writes.
	outBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}
)

// upBufSize is the upstream read buffer: a response whose head and body
// fit in it and have arrived go out in one read and one write, as with
// nginx's proxy_buffers 16 8k. With 32 KiB a 64 KiB answer went out as a
// write and a splice, and cost the server and the client 10% more CPU
// per request (two wake-ups each). It is held only while a request is
// in flight; an idle connection holds none.
const upBufSize = 128 << 10

// maxResponseHead bounds an upstream response head (net/http's client
// used 64 KiB too).
const maxResponseHead = 64 << 10

// fastConn is one client connection on the fast path.
type fastConn struct {
	g     *listenGroup
	s     *Server
	nc    net.Conn
	raw   syscall.RawConn // nil when nc is not a socket (Probe's pipe)
	probe bool

	remote, localAddr                       netip.AddrPort
	remoteStr, portStr, localPort, localStr string
	// upEnd frees the server of the request being relayed (see
	// upstreamEnd).
	upEnd upstreamEnd
	// firstHead is when the first request's head must be complete:
	// client_header_timeout from the accept, as in nginx, with the PROXY
	// header's time in it (not restarted by a first byte).
	firstHead time.Time

	// Read buffer: pending bytes are buf[r:w]; nil while idle.
	buf    *[]byte
	r, w   int
	readN  int
	rerr   error
	readFn func(fd uintptr) bool
	// keepAlive's callback and state.
	kaFn        func(fd uintptr) bool
	kaResult    step
	kaWaitFirst bool
	// inq: TCP_INQ on the socket (1), unavailable (-1), not tried yet (0);
	// inqReader reads with it.
	inq       int8
	inqReader rawsys.InqReader
	// send's state for its RawConn callback (no closure per send).
	wbuf    []byte
	werr    error
	writeFn func(fd uintptr) bool

	state atomic.Int32
	rd    deadline // the client socket's read deadline
	wd    deadline // its write deadline (send_timeout)
	// sendTimeout is send_timeout of the request's server block.
	sendTimeout time.Duration
	// upstream is the connection of the request in flight, for Shutdown
	// to close when its time is up (it may already be back in the pool,
	// which Shutdown closes too).
	upstream atomic.Pointer[upConn]

	// Per request, reused so that a request allocates nothing.
	head    RequestHead
	req     clientRequest
	vars    reqVars
	rec     logRecord
	upHead  upstreamHead
	body    requestBody
	bodyMem []byte
	tried   [8]*balancer.Server
	x       exchange
	limited io.LimitedReader // spliceN's
	closeIt bool             // Connection: close after this response
	// upgradeEpoch is the server's when this upgrade request arrived.
	upgradeEpoch uint64
	// consumedBody is how many bytes after the head the body took.
	consumedBody int
	// pinned stops fill from moving pending bytes while the request's
	// strings alias them (it grows the buffer instead).
	pinned bool
}

// newFast makes nc a fast-path connection, in the server's set; pending
// are bytes already read past a PROXY protocol header. nil: the server is
// shutting down and nc was closed.
func (g *listenGroup) newFast(nc net.Conn, remote, local netip.AddrPort, pending []byte, probe bool, accepted time.Time) *fastConn {
	s := g.s
	c := fastConnPool.Get().(*fastConn)
	c.reset(g, nc, remote, local, probe, accepted.Add(g.dflt.cfg.ClientHeaderTimeout.Duration))
	if sc, ok := nc.(syscall.Conn); ok && !probe {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	if len(pending) > 0 {
		c.grab()
		c.w = copy(*c.buf, pending)
	}
	c.state.Store(int32(fastActive))
	if !s.addFast(c) {
		c.end()
		return nil
	}
	return c
}

// run serves c until it ends or is handed over to net/http.
func (c *fastConn) run() {
	if c.serve() {
		return // handed over to net/http
	}
	c.end()
}

// end closes c and returns it to fastConnPool.
func (c *fastConn) end() {
	s := c.s
	s.removeFast(c)
	c.releaseBuf()
	_ = c.nc.Close()
	s.connClosed()
	c.release()
}

// fastConnPool keeps finished fast connections for the next accept: a new
// connection then allocates no 1.2 KiB struct (and gives the GC nothing to
// sweep), and keeps the capacity of its per-request slices and the
// strings of its local address.
var fastConnPool = sync.Pool{New: func() any { return new(fastConn) }}

// reset makes a pooled fastConn (as release left it) a new connection's.
func (c *fastConn) reset(g *listenGroup, nc net.Conn, remote, local netip.AddrPort, probe bool, firstHead time.Time) {
	c.g, c.s, c.nc, c.probe, c.remote, c.firstHead = g, g.s, nc, probe, remote, firstHead
	if c.readFn == nil {
		// Bound to c once: binding them per connection would allocate.
		c.readFn, c.writeFn, c.kaFn = c.readable, c.writable, c.keepAliveRead
	}
	if remote.IsValid() {
		c.remoteStr = remote.Addr().String()
		c.portStr = strconv.Itoa(int(remote.Port()))
	}
	if local != c.localAddr {
		// Another local address than the connection before: its strings
		// are not the same.
		c.localAddr, c.localStr, c.localPort = local, "", ""
		if local.IsValid() {
			c.localPort = strconv.Itoa(int(local.Port()))
			c.localStr = local.Addr().String()
		}
	}
}

// release returns c to fastConnPool once nothing refers to it any more
// (closed, out of the server's set, no tunnel or spool running). It keeps
// only what the next connection reuses; the socket, the generation and
// the last request go, so that the pool keeps none of them alive.
func (c *fastConn) release() {
	*c = fastConn{
		readFn: c.readFn, writeFn: c.writeFn, kaFn: c.kaFn, bodyMem: c.bodyMem[:0],
		rec:       logRecord{upAddrs: c.rec.upAddrs[:0], upTimes: c.rec.upTimes[:0]},
		localAddr: c.localAddr, localStr: c.localStr, localPort: c.localPort,
	}
	fastConnPool.Put(c)
}

func (c *fastConn) grab() {
	if c.buf == nil {
		c.buf = readBufPool.Get().(*[]byte)
		c.r, c.w = 0, 0
	}
}

func (c *fastConn) releaseBuf() {
	if c.buf != nil {
		if len(*c.buf) == readBufSize {
			readBufPool.Put(c.buf)
		}
		c.buf = nil
		c.r, c.w = 0, 0
	}
}

// readable is the RawConn.Read callback: it borrows a buffer, reads, and
// gives the buffer back at once when there was nothing to read.
func (c *fastConn) readable(fd uintptr) bool {
	c.grab()
	for {
		n, err := rawsys.Read(int(fd), (*c.buf)[c.w:])
		switch {
		case err == nil:
			c.readN = n
			if n == 0 && c.r == c.w {
				c.releaseBuf()
			}
			return true
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if c.r == c.w {
				c.releaseBuf()
			}
			return false
		default:
			c.rerr = err
			if c.r == c.w {
				c.releaseBuf()
			}
			return true
		}
	}
}

// fill reads more bytes behind the pending ones; limit bounds the buffer
// growth (a head of up to client_header_max_size).
func (c *fastConn) fill(limit int) error {
	if c.buf != nil && c.w == len(*c.buf) {
		if c.r > 0 && !c.pinned {
			c.w = copy(*c.buf, (*c.buf)[c.r:c.w])
			c.r = 0
		} else {
			if len(*c.buf) >= limit+readBufSize {
				return errBufferFull
			}
			nb := make([]byte, 2*len(*c.buf))
			copy(nb, (*c.buf)[:c.w])
			if len(*c.buf) == readBufSize && !c.pinned {
				readBufPool.Put(c.buf)
			}
			c.buf = &nb
		}
	}
	if c.raw != nil {
		c.readN, c.rerr = 0, nil
		if err := c.raw.Read(c.readFn); err != nil {
			return err
		}
		if c.rerr != nil {
			return c.rerr
		}
		if c.readN == 0 {
			return io.EOF
		}
		c.w += c.readN
		return nil
	}
	c.grab()
	n, err := c.nc.Read((*c.buf)[c.w:])
	c.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

var errBufferFull = errors.New("request head larger than the buffer")

func (c *fastConn) pending() []byte {
	if c.buf == nil {
		return nil
	}
	return (*c.buf)[c.r:c.w]
}

// setIdle marks the connection idle between requests; false when a
// Drain or Shutdown means it must close instead.
func (c *fastConn) setIdle(first bool) bool {
	st := fastIdle
	if first {
		st = fastNew
	}
	if !c.state.CompareAndSwap(int32(fastActive), int32(st)) {
		return false
	}
	// A draining connection whose last response went out without
	// Connection: close (it started before the drain) still waits
	// drainGrace for a request already on its way; serve shortens the wait.
	return !c.s.isShutting()
}

// setActive marks a request started; false when Drain or Shutdown closed
// the idle connection meanwhile.
func (c *fastConn) setActive() bool {
	return c.state.CompareAndSwap(int32(fastIdle), int32(fastActive)) ||
		c.state.CompareAndSwap(int32(fastNew), int32(fastActive))
}

// closeIfIdle is Drain's (new connections are still served) and, with
// all, Shutdown's: an idle connection is woken (its wait ends at once) and
// closes.
func (c *fastConn) closeIfIdle(all bool) {
	if all && (c.state.CompareAndSwap(int32(fastIdle), int32(fastClosing)) || c.state.CompareAndSwap(int32(fastNew), int32(fastClosing))) {
		_ = c.nc.SetReadDeadline(time.Unix(1, 0))
		return
	}
	if !all && c.state.CompareAndSwap(int32(fastIdle), int32(fastClosing)) {
		// A drain closes an idle keep-alive connection only after a short
		// grace: a client that just got its previous response may already
		// be sending the next request, and closing under it would fail
		// that request. One that arrives in time is answered with
		// Connection: close.
		_ = c.nc.SetReadDeadline(time.Now().Add(drainGrace))
	}
}

// drainGrace is how long a draining idle keep-alive connection waits for a
// request already on its way before it closes.
const drainGrace = 50 * time.Millisecond

// serve runs the request loop; it returns true when the connection was
// handed to net/http (which then owns it).
func (c *fastConn) serve() bool {
	g := c.g
	headerTimeout := g.dflt.cfg.ClientHeaderTimeout.Duration
	first := true
	// The first request's whole head is due at firstHead: the wait for
	// its first byte and the head itself share it.
	c.rd.at = c.firstHead
	_ = c.nc.SetReadDeadline(c.firstHead)
	for {
		firstHead := first
		if c.r == c.w {
			if !c.idle(first) {
				return false
			}
			if first || c.raw == nil {
				if c.fill(g.maxHead) != nil {
					return false
				}
				c.activate()
			} else {
				switch c.keepAlive() {
				case stepClose:
					return false
				case stepHandoff:
					return c.handoff()
				case stepRead:
					c.activate()
				case stepNext:
					// Served in the wait, with bytes of the next request
					// pending: the connection is active already.
				}
			}
		}
		first = false
		if he := c.readHead(headerTimeout, firstHead); he != nil {
			switch {
			case he.Unanswered:
				c.s.logRefusedFrom(c.remote, he.withLine(c.pending()))
			case he.Status != 0:
				c.refuse(he)
			}
			return false
		}
		switch c.answer() {
		case stepClose:
			return false
		case stepHandoff:
			return c.handoff()
		}
	}
}

// step is where a request left its connection.
type step int

const (
	stepNext    step = iota // on to the next request
	stepClose               // close the connection
	stepHandoff             // hand it to net/http
	stepRead                // keepAlive: bytes read, the request not served
)

// idle readies the wait for the next request: the buffer goes back, the
// connection is marked idle and its read deadline is keepalive_timeout
// (the first request's was set at the accept), or a drain's grace. False:
// close instead.
func (c *fastConn) idle(first bool) bool {
	c.releaseBuf()
	wait := c.g.dflt.cfg.KeepaliveTimeout.Duration
	if !c.setIdle(first) {
		return false
	}
	if !first && c.s.draining.Load() {
		wait = drainGrace
		c.rd.forget()
	}
	if !first {
		c.rd.set(time.Now(), wait, c.nc.SetReadDeadline)
	}
	if c.state.Load() == int32(fastClosing) {
		// Drain or Shutdown marked the connection closing and moved
		// its deadline just before the line above moved it back.
		c.rd.forget()
		c.rd.set(time.Now(), drainGrace, c.nc.SetReadDeadline)
	}
	return true
}

// activate marks a request started once its first bytes are in.
func (c *fastConn) activate() {
	if !c.setActive() {
		// Drain or Shutdown closed it while the request was arriving:
		// answer it (with Connection: close) rather than drop bytes
		// already read. Its deadline was moved.
		c.state.Store(int32(fastActive))
		c.rd.forget()
	}
}

// answer serves the head parsed into c.head.
func (c *fastConn) answer() step {
	h := &c.head
	if len(h.Target) == 0 || h.Target[0] != '/' || equalFold(h.Method, "CONNECT") {
		// Absolute-form, asterisk-form and CONNECT are net/http's
		// (the same routing and forwarding behind it).
		return stepHandoff
	}
	c.pinned = true
	handoff, ok := c.serveRequest()
	c.pinned = false
	switch {
	case handoff:
		return stepHandoff
	case !ok || c.closeIt:
		return stepClose
	}
	c.r += h.Len + c.consumedBody
	return stepNext
}

// keepAlive waits for the next request on a keep-alive connection (idle
// done) and serves, within that one wait, every request that needs
// nothing more of the client than its head. Why: Go's poller forgets, at
// the start of each wait, readiness it saw before, so a wait must begin
// with a read, which before a keep-alive wait finds nothing (EAGAIN): one
// system call in five per request. Inside one wait nothing is forgotten:
// after a read that left the socket empty the next read waits for
// readiness first, as nginx's event loop does. Empty is what TCP_INQ
// reports with each read (bytes left, or 1 for an end of stream left: a
// client that shuts down right behind its last request is closed at once,
// which a short read alone would not tell); without TCP_INQ every wait
// begins with a read, as before. A request with a body, an
// upgrade, an Expect field, a head that is not whole, or anything else
// goes back to serve's loop (stepRead), as does a pipelined request
// (stepNext). Serving here never reads the client otherwise (its read
// lock is held); writes, splices and peeks are the client's to take.
func (c *fastConn) keepAlive() step {
	c.kaResult, c.kaWaitFirst = stepClose, false
	if err := c.raw.Read(c.kaFn); err != nil {
		return stepClose // keepalive_timeout, a drain's deadline, closed
	}
	return c.kaResult
}

// keepAliveRead is keepAlive's RawConn.Read callback.
func (c *fastConn) keepAliveRead(fd uintptr) bool {
	for {
		if c.kaWaitFirst {
			c.kaWaitFirst = false
			return false
		}
		if c.inq == 0 {
			c.inq = -1
			if rawsys.EnableInq(int(fd)) == nil {
				c.inq = 1
			}
		}
		c.grab()
		n, left, err := c.inqReader.Read(int(fd), (*c.buf)[c.w:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if c.r == c.w {
				c.releaseBuf()
			}
			return false
		case err != nil || n == 0:
			// An error or the end of the stream between requests: closed
			// silently, as fill's callers do.
			c.releaseBuf()
			c.kaResult = stepClose
			return true
		}
		c.w += n
		skip, h, perr := parseNextHead(c.pending(), c.g.maxHead)
		if perr != nil || h.ContentLength > 0 || h.Chunked || h.Upgrade || h.Expect {
			c.kaResult = stepRead
			return true
		}
		c.activate()
		c.r += skip
		c.head = h
		if res := c.answer(); res != stepNext || c.r != c.w {
			c.kaResult = res
			return true
		}
		if !c.idle(false) {
			c.kaResult = stepClose
			return true
		}
		// The socket is empty (TCP_INQ says so, and it says so only
		// when no end of stream waits either): whatever comes later
		// makes it readable, which this wait has not forgotten.
		c.kaWaitFirst = left == 0
	}
}

// readHead reads until a complete head is pending at c.r and parses it. A
// nil result is a head; a HeadError with Status 0 ends the connection
// silently (EOF or timeout before any byte). armed: the read deadline
// already bounds this head (the first request's); otherwise timeout
// starts when a head is found incomplete.
func (c *fastConn) readHead(timeout time.Duration, armed bool) *HeadError {
	for {
		// Empty lines before a request line are skipped (RFC 9112 2.2).
		skip, h, err := parseNextHead(c.pending(), c.g.maxHead)
		c.r += skip
		if err == nil {
			c.head = h
			return nil
		}
		if err != errIncomplete {
			var he *HeadError
			if !errors.As(err, &he) {
				he = badRequest("%v", err)
			}
			return he
		}
		if !armed {
			// client_header_timeout runs once a head is incomplete; a
			// head that came whole in one read needs no timer.
			c.rd.set(time.Now(), timeout, c.nc.SetReadDeadline)
			armed = true
		}
		if err := c.fill(c.g.maxHead); err != nil {
			var ne net.Error
			switch {
			case len(c.pending()) > 0 && errors.As(err, &ne) && ne.Timeout() && c.state.Load() == int32(fastActive):
				return &HeadError{Status: 408, Reason: "client_header_timeout"}
			case err == errBufferFull:
				return &HeadError{Status: 431, Reason: "request header fields too large"}
			case err == io.EOF && len(bytes.TrimLeft(c.pending(), "\r\n")) > 0:
				return &HeadError{Status: 400, Reason: "the client closed the connection in the middle of a request head", Unanswered: true}
			}
			return &HeadError{}
		}
	}
}

// refuse answers a refused head and logs it, as the net/http path does.
func (c *fastConn) refuse(he *HeadError) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	c.wd.forget()
	_, _ = c.nc.Write(errorResponse(he.Status))
	c.s.logRefusedFrom(c.remote, he.withLine(c.pending()))
}

// handoff gives the connection, with the bytes read and not yet served,
// to the listen address's net/http server.
func (c *fastConn) handoff() bool {
	c.s.removeFast(c)
	_ = c.nc.SetDeadline(time.Time{})
	c.rd.forget()
	c.wd.forget()
	cc := newClientConn(c.nc, c.g, c.g.maxHead)
	if c.remote.IsValid() {
		cc.remote = c.remote
	}
	if p := c.pending(); len(p) > 0 {
		if len(p) > bufSize {
			// The bytes must live in cc.buf, which the connection moves
			// them within (releaseIfEmpty): appended past a pool buffer
			// they would be cut to its size.
			nb := make([]byte, 0, 2*len(p))
			cc.buf, cc.in = &nb, nb
		} else {
			cc.grab()
		}
		cc.in = append(cc.in, p...)
		cc.scan()
		cc.partial = cc.framer.state == stateHead && len(cc.in) > 0
	}
	c.releaseBuf()
	cc.onClose = c.s.connClosed
	if !c.g.ln.push(cc) {
		_ = cc.Close()
	}
	return true
}

// serveRequest answers the head at c.r. handoff asks for net/http; ok
// false closes the connection.
func (c *fastConn) serveRequest() (handoff, ok bool) {
	g, h := c.g, &c.head
	p := c.pending()
	c.consumedBody = 0
	// An answer before the body was read ends the connection: the body's
	// bytes would otherwise be taken for the next request.
	c.closeIt = h.Close || c.probe || h.ContentLength > 0 || h.Chunked
	proto := "HTTP/1.1"
	if h.Minor == 0 {
		proto = "HTTP/1.0"
	}
	c.req = clientRequest{
		method: bstr(h.Method), target: bstr(h.Target), proto: proto, host: bstr(h.Host),
		hdr: headerView{raw: p[:h.Len]},
	}
	// The field lines start after the request line.
	if i := indexByteBytes(c.req.hdr.raw, '\n'); i >= 0 {
		c.req.hdr.raw = c.req.hdr.raw[i+1:]
	}
	rawPath, query := splitTarget(c.req.target)
	c.req.query = query
	c.rec = logRecord{start: time.Now(), remote: c.remoteStr, upAddrs: c.rec.upAddrs[:0], upTimes: c.rec.upTimes[:0]}
	defer c.logAccess()

	host := normalizeHost(c.req.host)
	v := g.names.find(host)
	c.sendTimeout = g.dflt.cfg.SendTimeout.Duration
	if v != nil {
		c.sendTimeout = v.cfg.SendTimeout.Duration
	}
	if c.req.method == http.MethodTrace {
		// As nginx: TRACE would echo the client's cookies and
		// credentials back from the server (cross-site tracing).
		return false, c.answerError(v, http.StatusMethodNotAllowed, "")
	}
	uri, quoted, err := normalizePath(rawPath)
	if err != nil {
		return false, c.answerError(v, http.StatusBadRequest, "")
	}
	loc, redirect := v.findLocation(uri)
	if c.probe && loc != nil {
		// Node self-check: accept, framing, parsing and routing ran;
		// upstreams are checked by their own health checks.
		return false, c.answerStatus(http.StatusNoContent)
	}
	if loc == nil {
		return false, c.answerError(v, http.StatusNotFound, "")
	}
	if redirect {
		target := escapeURI(uri) + "/"
		if c.req.query != "" {
			target += "?" + c.req.query
		}
		return false, c.answerError(v, http.StatusMovedPermanently, target)
	}
	if loc.cfg.Root != "" {
		c.rec = logRecord{} // net/http logs it
		return true, false
	}
	vars := &c.vars
	*vars = reqVars{req: &c.req, uri: uri, server: v, scheme: "http", remote: c.remoteStr, port: c.portStr,
		local: c.localPort, lcAddr: c.localStr, host: host, proxy: loc.pool.name}
	if vars.host == "" && len(v.cfg.ServerName) > 0 {
		vars.host = v.cfg.ServerName[0]
	}

	c.closeIt = h.Close
	if status := c.readBody(v); status != 0 {
		c.closeIt = true
		c.answerError(v, status, "")
		return false, false
	}
	defer c.body.close()
	c.upHead = upstreamHead{req: &c.req, target: upstreamURI(loc, c.req.target, uri, quoted), rules: loc.headers,
		vars: vars, bodySize: c.body.size}
	if h.Upgrade && h.Minor == 1 { // no protocol switch in HTTP/1.0
		if u := c.req.hdr.get("Upgrade"); switchableProtocol(u) {
			c.upHead.upgrade = u
			c.upgradeEpoch = c.s.upgradeEpoch()
		}
	}
	return false, c.proxy(loc, v)
}

func indexByteBytes(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func (c *fastConn) logAccess() {
	// Self-check probes are no client traffic: neither logged nor counted.
	if c.rec.start.IsZero() || c.probe {
		return
	}
	c.s.logAccess(&c.rec, &c.req, nil)
}

// readBody reads the request body completely (it is kept for retries,
// as nginx's proxy_request_buffering), answering Expect: 100-continue. It
// returns an error status, or 0.
func (c *fastConn) readBody(v *vhost) int {
	h := &c.head
	c.body = requestBody{}
	expect := ""
	if h.Expect {
		expect = c.req.hdr.get("Expect")
	}
	if expect != "" && !equalFold([]byte(expect), "100-continue") {
		return http.StatusExpectationFailed
	}
	if h.ContentLength <= 0 && !h.Chunked {
		return 0
	}
	max := v.cfg.ClientMaxBodySize.Bytes
	if max > 0 && h.ContentLength > max {
		return http.StatusRequestEntityTooLarge
	}
	if expect != "" && h.Minor == 1 { // net/http ignores it in HTTP/1.0 too
		if err := c.send(continueLine); err != nil {
			return http.StatusBadRequest
		}
	}
	timeout := v.cfg.ClientBodyTimeout.Duration
	c.body.mem = c.bodyMem[:0]
	pos := c.r + h.Len // body bytes start here in the buffer
	var dec chunkDecoder
	if h.Chunked {
		dec = newChunkDecoder(c.g.maxHead)
	}
	remaining := h.ContentLength
	for {
		p := (*c.buf)[pos:c.w]
		if h.Chunked {
			used, done, status := dec.decode(p, func(data []byte) int { return c.keepBody(data, max) })
			if status != 0 {
				return status
			}
			pos += used
			if done {
				break
			}
		} else {
			n := int64(len(p))
			if n > remaining {
				n = remaining
			}
			if err := c.keepBody(p[:n], max); err != 0 {
				return err
			}
			pos += int(n)
			if remaining -= n; remaining == 0 {
				break
			}
			if remaining > readBufSize {
				// The rest of a large body is read in large pieces, never
				// past its end (a next request may follow it).
				if status := c.readBodyDirect(remaining, max, timeout); status != 0 {
					return status
				}
				break
			}
		}
		// Keep the head where it is (the request's strings alias it):
		// move consumed body bytes out of the way by compacting behind it.
		if pos > c.r+h.Len {
			n := copy((*c.buf)[c.r+h.Len:], (*c.buf)[pos:c.w])
			c.w = c.r + h.Len + n
			pos = c.r + h.Len
		}
		c.rd.set(time.Now(), timeout, c.nc.SetReadDeadline)
		if err := c.fill(len(*c.buf) + readBufSize); err != nil {
			c.body.close()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return http.StatusRequestTimeout
			}
			return http.StatusBadRequest
		}
	}
	c.consumedBody = pos - (c.r + h.Len)
	if c.body.file == nil && cap(c.body.mem) <= bodyMemLimit {
		c.bodyMem = c.body.mem[:0]
	}
	return 0
}

// readBodyDirect reads the last n bytes of a Content-Length body straight
// from the socket through a pooled upstream buffer.
func (c *fastConn) readBodyDirect(n, max int64, timeout time.Duration) int {
	bp := upBufPool.Get().(*[]byte)
	defer upBufPool.Put(bp)
	buf := *bp
	for n > 0 {
		want := buf
		if int64(len(want)) > n {
			want = want[:n]
		}
		c.rd.set(time.Now(), timeout, c.nc.SetReadDeadline)
		k, err := c.nc.Read(want)
		if k > 0 {
			if st := c.keepBody(want[:k], max); st != 0 {
				return st
			}
			n -= int64(k)
			continue
		}
		c.body.close()
		if isTimeout(err) {
			return http.StatusRequestTimeout
		}
		return http.StatusBadRequest
	}
	return 0
}

// keepBody appends body bytes, in memory up to bodyMemLimit, then to an
// unlinked temporary file.
func (c *fastConn) keepBody(b []byte, max int64) int {
	body := &c.body
	body.size += int64(len(b))
	if max > 0 && body.size > max {
		body.close()
		return http.StatusRequestEntityTooLarge
	}
	if body.file == nil && len(body.mem)+len(b) <= bodyMemLimit {
		body.mem = append(body.mem, b...)
		return 0
	}
	if body.file == nil {
		f, err := os.CreateTemp("", "vipgate-body-")
		if err != nil {
			c.s.log.Error("request body: temporary file", zap.Error(err))
			return http.StatusInternalServerError
		}
		_ = os.Remove(f.Name())
		body.file = f
		if _, err := f.Write(body.mem); err != nil {
			body.close()
			return http.StatusInternalServerError
		}
		body.mem = nil
	}
	if _, err := body.file.Write(b); err != nil {
		body.close()
		return http.StatusInternalServerError
	}
	return 0
}

// continueLine is the interim answer to Expect: 100-continue.
var continueLine = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// send writes b to the client. send_timeout bounds the wait of a write
// that cannot go on, as nginx's bounds the time between two successive
// writes: a client that stops reading cannot hold its connection, an
// upstream connection and a max_conns slot for good. As in nginx, the
// timer starts only when a write would block: a response that the socket
// takes at once (nearly every one) costs no timer. Once armed (a write
// blocked, or a splice armed it), the deadline is moved at every send, so
// that one set long ago cannot have passed.
func (c *fastConn) send(b []byte) error {
	if c.raw == nil {
		c.armSend()
		_, err := c.nc.Write(b)
		return err
	}
	if !c.wd.at.IsZero() {
		c.armSend()
	}
	c.wbuf, c.werr = b, nil
	err := c.raw.Write(c.writeFn)
	c.wbuf = nil
	if c.werr != nil {
		return c.werr
	}
	return err
}

// writable is the RawConn.Write callback of send (raw system calls, see
// internal/rawsys); a write that would block arms send_timeout before the
// wait.
func (c *fastConn) writable(fd uintptr) bool {
	for len(c.wbuf) > 0 {
		n, err := rawsys.Write(int(fd), c.wbuf)
		switch {
		case err == nil:
			c.wbuf = c.wbuf[n:]
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			if c.wd.at.IsZero() {
				c.armSend()
			}
			return false
		default:
			c.werr = &net.OpError{Op: "write", Net: "tcp", Source: c.nc.LocalAddr(), Addr: c.nc.RemoteAddr(), Err: os.NewSyscallError("write", err)}
			return true
		}
	}
	return true
}

// armSend sets the client socket's write deadline to send_timeout from now
// (rarely re-armed on a busy connection, see deadline).
func (c *fastConn) armSend() {
	if c.sendTimeout > 0 {
		c.wd.set(time.Now(), c.sendTimeout, c.nc.SetWriteDeadline)
	}
}

// sendTimedOut tells whether a timeout while copying to the client was
// send_timeout's (not the upstream's proxy_read_timeout).
func (c *fastConn) sendTimedOut() bool {
	return c.sendTimeout > 0 && !c.wd.at.IsZero() && !time.Now().Before(c.wd.at)
}

// answerStatus writes a response without body.
func (c *fastConn) answerStatus(status int) bool {
	bp := outBufPool.Get().(*[]byte)
	defer outBufPool.Put(bp)
	b := append((*bp)[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, statusText(status)...)
	b = append(b, "\r\n"...)
	b = c.appendConnection(b)
	b = append(b, "\r\n"...)
	*bp = b
	c.rec.status = status
	return c.send(b) == nil
}

// answerError writes an error page (error_page or the built-in one);
// location is a redirect target.
func (c *fastConn) answerError(v *vhost, status int, location string) bool {
	body := errorPage(v, status)
	if c.s.errorEndsConnection(status) {
		c.closeIt = true
	}
	bp := outBufPool.Get().(*[]byte)
	defer outBufPool.Put(bp)
	b := append((*bp)[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, statusText(status)...)
	b = append(b, "\r\nContent-Type: text/html\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n"...)
	b = appendDate(b)
	if location != "" {
		b = appendField(b, "Location", location)
	}
	b = c.appendConnection(b)
	b = append(b, "\r\n"...)
	// An answer to HEAD has no body (RFC 9110 9.3.2): its bytes would be
	// read as the start of the next response on the connection.
	if c.req.method != http.MethodHead {
		b = append(b, body...)
		c.rec.bytes += int64(len(body))
	}
	*bp = b
	c.rec.status = status
	return c.send(b) == nil
}

// errorPage is the body of an error answer: the server block's error_page
// file or nginx's short page.
func errorPage(v *vhost, status int) string {
	if v != nil {
		if page, ok := v.errorPages[status]; ok {
			return bstr(page)
		}
	}
	return errorBody(status)
}

// appendConnection adds Connection: close when the connection ends after
// this response (the client asked, Drain, Shutdown), and keep-alive for an
// HTTP/1.0 client whose connection stays.
func (c *fastConn) appendConnection(b []byte) []byte {
	if c.s.draining.Load() || c.s.isShutting() {
		c.closeIt = true
	}
	switch {
	case c.closeIt:
		b = append(b, "Connection: close\r\n"...)
	case c.head.Minor == 0:
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	return b
}

// httpDate is the Date header's value, formatted once per second.
var httpDate = clockfmt.New(http.TimeFormat)

func appendDate(b []byte) []byte {
	b = append(b, "Date: "...)
	b = httpDate.Append(b, time.Now().UTC())
	return append(b, "\r\n"...)
}

// chunkDecoder decodes a chunked request body with the framer's strict
// chunk rules (CRLF line ends, valid extensions and trailer fields, size
// lines up to 4096 bytes).
type chunkDecoder struct{ fr framer }

func newChunkDecoder(maxTrailer int) chunkDecoder {
	return chunkDecoder{fr: framer{state: stateChunkSize, maxHead: maxTrailer, stopAtData: true, stopAtEnd: true}}
}

// decode consumes what it can of p, passing chunk data to keep (which
// returns an error status, or 0). done is set at the end of the body;
// bytes after used are an incomplete line to present again with more.
func (d *chunkDecoder) decode(p []byte, keep func([]byte) int) (used int, done bool, status int) {
	fr := &d.fr
	for len(p) > 0 && fr.state != stateHead {
		if fr.state == stateChunkData {
			n := int64(len(p))
			if n > fr.remaining {
				n = fr.remaining
			}
			if st := keep(p[:n]); st != 0 {
				return used, false, st
			}
			p, used = p[n:], used+int(n)
			if fr.remaining -= n; fr.remaining == 0 {
				fr.state = stateChunkDataEnd
			}
			continue
		}
		k, _, err := fr.feed(p)
		if err != nil {
			var he *HeadError
			if errors.As(err, &he) {
				return used, false, he.Status
			}
			return used, false, http.StatusBadRequest
		}
		if k == 0 {
			break
		}
		p, used = p[k:], used+k
	}
	return used, fr.state == stateHead, 0
}

// parseNextHead skips the empty lines allowed before a request line (RFC
// 9112 2.2) and parses the head behind them; skip is how many bytes the
// empty lines took.
func parseNextHead(p []byte, maxHead int) (skip int, h RequestHead, err error) {
	for skip < len(p) && (p[skip] == '\n' || p[skip] == '\r' && skip+1 < len(p) && p[skip+1] == '\n') {
		if p[skip] == '\r' {
			skip++
		}
		skip++
	}
	p = p[skip:]
	switch {
	case len(p) == 0 || len(p) == 1 && p[0] == '\r':
		return skip, h, errIncomplete
	case p[0] == '\r':
		return skip, h, badRequest("bare CR before request line")
	}
	h, err = ParseRequestHead(p, maxHead)
	return skip, h, err
}
