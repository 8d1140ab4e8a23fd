package httpproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vipgate/vipgate/internal/rawsys"
)

// This file is the HTTP/1.1 client side of the fast path: a small idle
// pool of upstream connections per upstream (sized by keepalive), and a
// strict reader of response heads.

// upConn is one connection to an upstream server.
type upConn struct {
	nc        net.Conn
	addr      string
	idleSince time.Time
	reused    bool // taken from the idle pool (it may have been closed by the server meanwhile)
	raw       syscall.RawConn
	// sendThenRead is sendCallback bound to this connection; send is the
	// state of the sendAndRead in progress.
	sendThenRead func(uintptr) bool
	send         sendState
	// peekIdle is peekCallback bound to this connection; idleDirty is its
	// finding.
	peekIdle  func(uintptr)
	idleDirty bool
	peekBuf   [1]byte
	rd, wd    deadline
	// readFn is readCallback bound to this connection, with read's state.
	readFn func(uintptr) bool
	rbuf   []byte
	rn     int
	rerr   error
}

// deadline skips re-arming a socket deadline that is already within a
// sixteenth of the timeout of the wanted one: a timeout then fires at most
// 6% early, and a busy connection re-arms its timers rarely instead of
// twice per request.
type deadline struct{ at time.Time }

func (d *deadline) set(now time.Time, timeout time.Duration, apply func(time.Time) error) {
	want := now.Add(timeout)
	if !d.at.IsZero() && !d.at.After(want) && want.Sub(d.at) < timeout/16 {
		return
	}
	d.at = want
	_ = apply(want)
}

// forget makes the next set apply (the deadline was changed elsewhere).
func (d *deadline) forget() { d.at = time.Time{} }

// upIdleTimeout is how long an idle upstream connection is kept (nginx's
// keepalive_timeout for upstreams, 60s).
const upIdleTimeout = 60 * time.Second

// connPool holds at most max idle connections of one upstream, most
// recently used last.
type connPool struct {
	mu     sync.Mutex
	idle   []*upConn
	max    int
	closed bool
	// sweeper runs sweep every sweepInterval while the pool holds idle
	// connections (nil otherwise).
	sweeper *time.Timer
}

// sweepInterval is how often idle connections are checked: one the server
// closed (a restart, its own keep-alive timeout) or that idled past
// upIdleTimeout is closed within about this long, as nginx watches its
// cached connections, instead of sitting in CLOSE_WAIT until a request
// walks the pool.
const sweepInterval = time.Second

// get returns an idle connection to addr that has nothing to read, or nil.
func (p *connPool) get(addr string, now time.Time) *upConn {
	for {
		c := p.take(addr, now)
		if c == nil || c.surelyOpen(now) || c.idleClean() {
			return c
		}
		_ = c.nc.Close()
	}
}

// take removes the most recently used idle connection to addr from the
// pool and closes those idle for too long.
func (p *connPool) take(addr string, now time.Time) *upConn {
	var stale []*upConn
	p.mu.Lock()
	var found *upConn
	for i := len(p.idle) - 1; i >= 0; i-- {
		c := p.idle[i]
		if now.Sub(c.idleSince) > upIdleTimeout {
			stale = append(stale, c)
			p.remove(i)
			continue
		}
		if c.addr == addr {
			found = c
			p.remove(i)
			break
		}
	}
	p.mu.Unlock()
	for _, c := range stale {
		_ = c.nc.Close()
	}
	if found != nil {
		found.reused = true
	}
	return found
}

func (p *connPool) remove(i int) {
	copy(p.idle[i:], p.idle[i+1:])
	p.idle[len(p.idle)-1] = nil
	p.idle = p.idle[:len(p.idle)-1]
}

// put keeps c for reuse; the least recently used connection goes when the
// pool is full, as nginx's keepalive cache does.
func (p *connPool) put(c *upConn, now time.Time) {
	c.idleSince = now
	p.mu.Lock()
	if p.closed || p.max <= 0 {
		p.mu.Unlock()
		_ = c.nc.Close()
		return
	}
	var evict *upConn
	if len(p.idle) >= p.max {
		evict = p.idle[0]
		p.remove(0)
	}
	p.idle = append(p.idle, c)
	if p.sweeper == nil {
		p.sweeper = time.AfterFunc(sweepInterval, p.sweep)
	}
	p.mu.Unlock()
	if evict != nil {
		_ = evict.nc.Close()
	}
}

// sweep closes the idle connections that idled past upIdleTimeout or have
// something to read (the server closed them, or wrote unasked). The peeks
// run outside the lock, on a copy: a connection a request takes meanwhile
// is left alone.
func (p *connPool) sweep() {
	p.mu.Lock()
	if p.closed || len(p.idle) == 0 {
		p.sweeper = nil
		p.mu.Unlock()
		return
	}
	type seen struct {
		c         *upConn
		idleSince time.Time
	}
	idle := make([]seen, len(p.idle))
	for i, c := range p.idle {
		idle[i] = seen{c, c.idleSince}
	}
	p.mu.Unlock()
	now := time.Now()
	var gone []seen
	for _, e := range idle {
		// peekGone touches no field of the connection: a request may
		// take it meanwhile and check it itself.
		if now.Sub(e.idleSince) > upIdleTimeout || peekGone(e.c.nc) {
			gone = append(gone, e)
		}
	}
	p.mu.Lock()
	var closing []*upConn
	for _, e := range gone {
		for i, ic := range p.idle {
			// Still idle since the check: not taken and put back meanwhile
			// (what the peek saw then was an answer in flight).
			if ic == e.c && ic.idleSince.Equal(e.idleSince) {
				p.remove(i)
				closing = append(closing, ic)
				break
			}
		}
	}
	if p.closed || len(p.idle) == 0 {
		p.sweeper = nil
	} else {
		p.sweeper.Reset(sweepInterval)
	}
	p.mu.Unlock()
	for _, c := range closing {
		_ = c.nc.Close()
	}
}

// closeAll closes the idle connections; later puts close theirs.
func (p *connPool) closeAll() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	if p.sweeper != nil {
		p.sweeper.Stop()
		p.sweeper = nil
	}
	p.mu.Unlock()
	for _, c := range idle {
		_ = c.nc.Close()
	}
}

// dialUpstream connects within timeout (proxy_connect_timeout).
func dialUpstream(addr string, timeout time.Duration) (*upConn, error) {
	d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	// Plain TCP: Go's MPTCP dialing binds port 0 before connect, which
	// cannot reuse TIME_WAIT ports and runs out of them under churn.
	d.SetMultipathTCP(false)
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, &dialError{err: err}
	}
	return &upConn{nc: nc, addr: addr}, nil
}

// awaitIdleLimit bounds how long a pooled connection may have been idle for
// sendAndRead. A server that closed it meanwhile with a full close answers
// the request with a reset, which ends the wait at once; one that closes
// lingeringly (shutdown, then read and discard for a while: Apache) sends
// nothing more, and the wait would last a read slice before the request is
// retried. Servers do not time idle connections out this fast, so a
// connection idle for less than this is open; one idle for longer is
// checked before it is used (idleClean).
const awaitIdleLimit = 250 * time.Millisecond

// surelyOpen reports whether c cannot have been closed by its server while
// idle: it is new, or was idle only briefly.
func (c *upConn) surelyOpen(now time.Time) bool {
	return !c.reused || now.Sub(c.idleSince) < awaitIdleLimit
}

// sendAndRead writes b and, when all of it went out at once, waits until
// the answer is readable (or the read deadline passes) and reads it into
// p, all in one RawConn wait: a first read never fails with EAGAIN (one
// system call fewer per request) and the wait and the read share the
// poller's lock and calls. The write happens inside the RawConn read
// callback, after the poller's read state was reset: an answer that
// arrives at once is never missed. A server that closed the idle
// connection answers the write with a reset, which ends the wait too. It
// returns how much of b was written, and, when read is true, what the
// read gave (n 0 and io.EOF at the end of the stream), as read would. The
// caller writes the rest of b the usual way (with the send timeout) and
// then reads; a wait that ended on its deadline or a closed socket read
// nothing, and the read that follows reports why.
func (c *upConn) sendAndRead(b, p []byte) sendRead {
	if !c.bindRaw() {
		return sendRead{}
	}
	c.send = sendState{b: b, first: true}
	c.rbuf, c.rn, c.rerr = p, 0, nil
	_ = c.raw.Read(c.sendThenRead)
	r := sendRead{sent: c.send.sent, err: c.send.err, read: c.send.read, n: c.rn, rerr: c.rerr}
	c.send, c.rbuf = sendState{}, nil
	if r.read && r.rerr == nil && r.n == 0 {
		r.rerr = io.EOF
	}
	return r
}

// sendRead is what sendAndRead did: sent bytes of the request (err: the
// write's error) and, when read, n bytes of the answer or rerr.
type sendRead struct {
	sent int
	err  error
	read bool
	n    int
	rerr error
}

// bindRaw sets c.raw and the callbacks bound to c, once: binding them per
// request would allocate.
func (c *upConn) bindRaw() bool {
	if c.raw != nil {
		return true
	}
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	c.raw = raw
	c.sendThenRead = c.sendCallback
	c.peekIdle = c.peekCallback
	c.readFn = c.readCallback
	return true
}

// idleClean reports whether c, taken from the idle pool, has nothing to
// read. While it idled its server may have closed it (end of stream) or
// written to it unasked (a 408 before closing, a body after a 204 or a
// HEAD answer): sent on such a connection, a request would get a reset or
// those bytes as its answer, which may be another client's. nginx watches
// its idle upstream connections for the same reason; here one
// non-blocking peek asks when a connection is taken, if it idled for
// awaitIdleLimit or longer: the peek is a system call, about 12% of the
// CPU a small keep-alive request costs, and servers close idle connections (with a
// 408 or without) after seconds, not milliseconds. Bytes a server sends
// late and unasked within that time are the window left, as nginx has
// one until its event loop sees them.
func (c *upConn) idleClean() bool {
	if !c.bindRaw() {
		return true
	}
	c.idleDirty = false
	if err := c.raw.Control(c.peekIdle); err != nil {
		return false
	}
	return !c.idleDirty
}

// peekGone reports whether nc, idle, has something to read (see
// idleClean), for the sweeper: it uses nothing kept in the connection.
func peekGone(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	var b [1]byte
	dirty := false
	if err := raw.Control(func(fd uintptr) {
		for {
			_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if err == unix.EINTR {
				continue
			}
			dirty = err != unix.EAGAIN
			return
		}
	}); err != nil {
		return true
	}
	return dirty
}

// peekCallback is the RawConn.Control callback of idleClean.
func (c *upConn) peekCallback(fd uintptr) {
	for {
		_, _, err := unix.Recvfrom(int(fd), c.peekBuf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if err == unix.EINTR {
			continue
		}
		// Bytes, end of stream or an error (a reset): not reusable.
		c.idleDirty = err != unix.EAGAIN
		return
	}
}

// read reads from the server like nc.Read (deadlines included), with a
// raw system call (see internal/rawsys).
func (c *upConn) read(p []byte) (int, error) {
	if len(p) == 0 || !c.bindRaw() {
		return c.nc.Read(p)
	}
	c.rbuf, c.rn, c.rerr = p, 0, nil
	err := c.raw.Read(c.readFn)
	c.rbuf = nil
	switch {
	case c.rerr != nil:
		return 0, c.rerr
	case err != nil:
		return 0, err
	case c.rn == 0:
		return 0, io.EOF
	}
	return c.rn, nil
}

// readCallback is the RawConn.Read callback of read.
func (c *upConn) readCallback(fd uintptr) bool {
	for {
		n, err := rawsys.Read(int(fd), c.rbuf)
		switch {
		case err == nil:
			c.rn = n
			return true
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return false
		default:
			c.rerr = &net.OpError{Op: "read", Net: "tcp", Source: c.nc.LocalAddr(), Addr: c.nc.RemoteAddr(), Err: os.NewSyscallError("read", err)}
			return true
		}
	}
}

// sendState is one sendAndRead, kept in the connection so that the
// callback needs no closure.
type sendState struct {
	b     []byte
	sent  int
	first bool
	read  bool // the answer was read (into c.rbuf: c.rn, c.rerr)
	err   error
}

// sendCallback is the RawConn.Read callback of sendAndRead: the first call
// writes, the next ones (after a wait) read the answer.
func (c *upConn) sendCallback(fd uintptr) bool {
	s := &c.send
	if !s.first {
		s.read = c.readCallback(fd)
		return s.read
	}
	s.first = false
	for s.sent < len(s.b) {
		n, err := rawsys.Write(int(fd), s.b[s.sent:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if err != unix.EAGAIN {
				s.err = &net.OpError{Op: "write", Net: "tcp", Source: c.nc.LocalAddr(), Addr: c.nc.RemoteAddr(), Err: os.NewSyscallError("write", err)}
			}
			return true // the caller finishes or reports the write
		}
		s.sent += n
	}
	return false
}

// errBadResponse is an upstream answer that is not valid HTTP/1.x
// (invalid_header in proxy_next_upstream).
var errBadResponse = errors.New("malformed HTTP response from upstream")

// upResponse is a parsed upstream response head.
type upResponse struct {
	status int
	// head is the status line and fields, final empty line included.
	head []byte
	// contentLength is the body length, -1 without one.
	contentLength int64
	chunked       bool
	// close: the server closes after this response (Connection: close,
	// HTTP/1.0 without keep-alive), or the body ends with the connection.
	close bool
}

// bodyless reports whether a response to method has no body (RFC 9112
// 6.3: HEAD, 1xx, 204, 304).
func (r *upResponse) bodyless(method string) bool {
	return method == "HEAD" || r.status < 200 || r.status == 204 || r.status == 304
}

// parseResponseHead parses the response head at the start of b strictly:
// anything net/http's client would refuse, and header lines it would
// resolve silently (obs-fold, bad names, conflicting lengths), is
// errBadResponse. It returns errIncomplete when b ends first.
func parseResponseHead(b []byte, max int) (upResponse, error) {
	r := upResponse{contentLength: -1}
	line, pos, err := nextLine(b, 0)
	if err != nil {
		if err == errIncomplete {
			if len(b) > max {
				return r, errBadResponse
			}
			return r, errIncomplete
		}
		return r, errBadResponse
	}
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[7] < '0' || line[7] > '9' || line[8] != ' ' ||
		len(line) > 12 && line[12] != ' ' {
		return r, errBadResponse
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return r, errBadResponse
		}
	}
	r.status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if r.status < 100 {
		return r, errBadResponse
	}
	http10 := line[7] == '0'
	keepAlive := false
	te := 0
	for {
		line, next, err := nextLine(b, pos)
		if err != nil {
			if err == errIncomplete && len(b) <= max {
				return r, errIncomplete
			}
			return r, errBadResponse
		}
		pos = next
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return r, errBadResponse
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return r, errBadResponse
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !fieldValueOK(value) {
			return r, errBadResponse
		}
		switch {
		case equalFold(name, "Content-Length"):
			n, ok := parseContentLength(value)
			if !ok || r.contentLength >= 0 && r.contentLength != n {
				return r, errBadResponse
			}
			r.contentLength = n
		case equalFold(name, "Transfer-Encoding"):
			te++
			if !equalFold(value, "chunked") {
				return r, errBadResponse
			}
			r.chunked = true
		case equalFold(name, "Connection"):
			forEachToken(value, func(tok []byte) {
				switch {
				case equalFold(tok, "close"):
					r.close = true
				case equalFold(tok, "keep-alive"):
					keepAlive = true
				}
			})
		}
		if pos > max {
			return r, errBadResponse
		}
	}
	if te > 1 {
		return r, errBadResponse
	}
	if r.chunked {
		// RFC 9112 6.3: Transfer-Encoding overrides Content-Length.
		r.contentLength = -1
	}
	if http10 && !keepAlive {
		r.close = true
	}
	r.head = b[:pos]
	return r, nil
}
