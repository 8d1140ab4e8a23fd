package stream

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/vipgate/vipgate/balancer"
	"github.com/vipgate/vipgate/internal/rawsys"
	"github.com/vipgate/vipgate/proxy"
	"github.com/vipgate/vipgate/proxy/proxyproto"
)

// endReason says how a stream ended, in access log lines and debug logs.
type endReason string

const (
	endClientClosed   endReason = "client_closed"   // the client finished first, then the server
	endUpstreamClosed endReason = "upstream_closed" // the server finished first, then the client
	endIdle           endReason = "idle_timeout"    // proxy_timeout without a byte either way
	endWriteTimeout   endReason = "write_timeout"   // a peer did not read for proxy_timeout
	endClientError    endReason = "client_error"    // reset or other error on the client side
	endUpstreamError  endReason = "upstream_error"  // reset or other error on the server side
	endConnectFailed  endReason = "connect_failed"  // every server tried failed or timed out
	endNoServer       endReason = "no_server"       // nothing could be picked (all down, failed, full)
	endProxyHeader    endReason = "proxy_header_"   // + proxyproto.Reason
	endHandover       endReason = "handover"        // CloseLongLived
	endStop           endReason = "stop"            // CloseForStop: the node stops
	endShutdown       endReason = "shutdown"        // Shutdown's deadline passed
	endInternal       endReason = "internal_error"  // e.g. the outbound header could not be built
)

type sessionState uint8

const (
	stNew        sessionState = iota // accepted, setting up
	stHeader                         // reading the inbound PROXY header
	stConnecting                     // a connect to a server is in progress
	stRelay                          // bytes flow both ways
	stDone                           // torn down
)

// session is one client connection and its stream. Everything in it
// belongs to its loop's goroutine; the goroutine that accepted the
// connection only fills in the socket and the peer before handing it over.
type session struct {
	r     *route
	lp    *loop
	id    uint32 // tells this stream's events from those of an earlier user of the descriptor numbers
	start time.Time
	state sessionState

	c, u     side // client and server sockets
	up, down dir  // client->server, server->client

	hdr             []byte   // inbound PROXY header bytes read so far
	hdrSrc, hdrDst  net.Addr // the inbound header's addresses
	first           []byte   // to the server before anything else: outbound header, bytes past the inbound one
	firstFromClient int      // of which client bytes (past the inbound header)
	server          *balancer.Server
	pick            balancer.PickRequest
	attempts        int
	upActive        bool // counted in the upstream's active streams

	due        time.Time // next timer: header, connect or idle check
	heapIndex  int
	lastActive time.Time
	firstEOF   *dir // the direction whose source ended first

	end                   endReason // first reason wins
	status                int
	clientAddr, localAddr netip.AddrPort
	tried                 []string
	fromClient, toClient  int64
	registered            bool // in the Server's set: remove at teardown
}

// side is one socket of a stream and what the loop knows about it.
type side struct {
	fd       int // -1: none
	readable bool
	writable bool
	rdhup    bool // the peer shut down writing (or the connection is gone)
}

// dir moves bytes from src to dst. Small reads are copied through the
// loop's buffer and written at once; a read that fills the buffer makes the
// direction bulk, and bulk bytes go through a splice pipe (no copy) until a
// burst is smaller than the buffer. A direction holds a pipe or a buffer
// only while it has bytes in hand that dst cannot take yet.
type dir struct {
	ss         *session
	src, dst   *side
	fromClient bool

	pend       []byte  // bytes in hand (copy path)
	pendBuf    *[]byte // pooled buffer behind pend, nil when pend is ss.first
	pipe       *pipe
	inPipe     int
	bulk       bool
	eof        bool      // src ended
	closed     bool      // src ended and that was passed on
	blockedAt  time.Time // dst has been full with bytes in hand since; zero when not
	muted      bool      // src's readability is not watched (block)
	lowat      bool      // dst's TCP_NOTSENT_LOWAT is set (bulkNotSentLowat)
	firstBytes bool      // pend is ss.first: its client bytes were counted already
}

// AcceptEngine implements proxy.EngineHandler: the generation's engine
// accepts on the route's listener.
func (r *route) AcceptEngine() proxy.AcceptEngine { return r.srv.eng }

// serve starts a stream for an accepted client socket, on the loop lp.
func (r *route) serve(lp *loop, fd int, peer netip.AddrPort) {
	r.listenCounters.accepted.Add(1)
	lp.nextID++
	if lp.nextID == 0 {
		lp.nextID = 1 // 0 marks listening sockets in the epoll set
	}
	ss := &session{r: r, lp: lp, id: lp.nextID, start: time.Now(), status: 200, heapIndex: -1,
		c: side{fd: fd}, u: side{fd: -1}, clientAddr: peer}
	ss.up = dir{ss: ss, src: &ss.c, dst: &ss.u, fromClient: true}
	ss.down = dir{ss: ss, src: &ss.u, dst: &ss.c}
	if !r.srv.add(ss) {
		// Shutdown began: closed at once, as by a listener that is gone.
		ss.state = stDone
		_ = sysClose(fd)
		return
	}
	ss.registered = true
	if err := lp.watch(ss, fd); err != nil {
		ss.setEnd(endInternal)
		r.srv.log.Error("stream: cannot watch the client socket", zap.String("listen", r.listen), zap.Error(err))
		ss.teardown()
		return
	}
	ss.setup()
}

// ServeConn serves a connection Go's net accepted (one accepted just
// before a reload gave the address to the stream proxy, and tests): the
// socket is duplicated for a loop and the net.Conn closed.
func (r *route) ServeConn(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		r.srv.log.Error("stream: not a TCP connection", zap.String("listen", r.listen), zap.Stringer("client", c.RemoteAddr()))
		_ = c.Close()
		return
	}
	defer tc.Close()
	fd, err := proxy.DupSocket(tc)
	if err != nil {
		r.srv.log.Error("stream: cannot take over the connection", zap.String("listen", r.listen), zap.Error(err))
		return
	}
	r.srv.eng.pick().post(posted{op: opServe, r: r, fd: fd, peer: addrPort(tc.RemoteAddr())})
}

// setEnd records why the stream ends; the first reason wins.
func (ss *session) setEnd(why endReason) {
	if ss.end == "" {
		ss.end = why
	}
}

// onEvent is the loop's entry for an event on one of the stream's sockets.
func (ss *session) onEvent(fd int, ev uint32) {
	var sd *side
	switch fd {
	case ss.c.fd:
		sd = &ss.c
	case ss.u.fd:
		sd = &ss.u
	default:
		return
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		sd.readable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		sd.rdhup = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		sd.writable = true
	}
	switch ss.state {
	case stHeader:
		if ss.c.readable {
			ss.readHeader()
		}
	case stConnecting:
		if ss.u.writable {
			ss.connected()
		}
	case stRelay:
		ss.pump()
	}
}

// onTimer is the loop's entry when the stream's due time has come.
func (ss *session) onTimer(now time.Time) {
	switch ss.state {
	case stHeader:
		ss.refuseHeader(&proxyproto.HeaderError{Reason: proxyproto.ReasonTimeout, Err: errors.New("proxy_protocol_timeout")})
	case stConnecting:
		ss.attemptFailed(errors.New("proxy_connect_timeout"))
	case stRelay:
		timeout := ss.r.cfg.ProxyTimeout.Duration
		for _, d := range []*dir{&ss.up, &ss.down} {
			if !d.blockedAt.IsZero() && now.Sub(d.blockedAt) >= timeout {
				ss.setEnd(endWriteTimeout)
				ss.teardown()
				return
			}
		}
		if now.Sub(ss.lastActive) >= timeout {
			ss.setEnd(endIdle)
			ss.teardown()
			return
		}
		ss.scheduleIdle()
	}
}

// setup applies the socket options and starts reading the inbound header
// or connecting.
func (ss *session) setup() {
	cfg := ss.r.cfg
	if !keepalive(cfg) {
		_ = sysSetsockoptInt(ss.c.fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0)
	}
	if !nodelay(cfg) {
		_ = sysSetsockoptInt(ss.c.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 0)
	}
	if cfg.AcceptProxyProtocol {
		ss.state = stHeader
		if t := cfg.ProxyProtocolTimeout.Duration; t > 0 {
			ss.setDue(time.Now().Add(t))
		}
		ss.c.readable = true // bytes may be queued already: read, do not wait
		ss.readHeader()
		return
	}
	ss.startConnect()
}

// readHeader reads the inbound PROXY header, all of it before anything
// else happens; the bytes read past it go to the server first.
func (ss *session) readHeader() {
	for {
		n, err := rawsys.Read(ss.c.fd, ss.lp.buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			ss.c.readable = false
			return
		case err != nil:
			ss.refuseHeader(&proxyproto.HeaderError{Reason: proxyproto.ReasonIO, Err: err})
			return
		}
		ss.hdr = append(ss.hdr, ss.lp.buf[:n]...)
		hn, src, dst, perr := proxyproto.Parse(ss.hdr, n == 0)
		if perr != nil {
			ss.refuseHeader(perr)
			return
		}
		if hn > 0 {
			// From a source set_real_ip_from does not list, the header
			// is read and dropped: the peer stays the client.
			if src != nil && proxyproto.Trusted(ss.r.cfg.RealIPFrom, ss.clientAddr.Addr()) {
				ss.hdrSrc, ss.hdrDst = src, dst
				ss.clientAddr = addrPort(src)
				ss.localAddr = addrPort(dst)
			}
			if rest := ss.hdr[hn:]; len(rest) > 0 {
				ss.first = append(ss.first, rest...) // the outbound header goes before them (startConnect)
				ss.firstFromClient = len(rest)
			}
			ss.hdr = nil
			ss.startConnect()
			return
		}
		if n < len(ss.lp.buf) && !ss.c.rdhup {
			ss.c.readable = false
			return
		}
	}
}

func (ss *session) refuseHeader(err error) {
	r := ss.r
	reason := proxyproto.ReasonOf(err)
	if reason == "" {
		reason = proxyproto.ReasonIO
	}
	if i, ok := reasonIndex[reason]; ok {
		r.listenCounters.headerRefused[i].Add(1)
	}
	ss.status = 400
	ss.setEnd(endProxyHeader + endReason(reason))
	level := zap.InfoLevel
	if reason == proxyproto.ReasonEmpty {
		level = zap.DebugLevel // the TCP health check of the balancer in front
	}
	if ce := r.srv.log.Check(level, "stream: PROXY protocol header refused"); ce != nil {
		ce.Write(zap.String("listen", r.listen), zap.Stringer("client", ss.clientAddr), zap.String("reason", string(reason)), zap.Error(err))
	}
	ss.teardown()
}

// startConnect builds what goes to the server first and connects to the
// first server.
func (ss *session) startConnect() {
	r := ss.r
	cfg := r.cfg
	if cfg.ProxyProtocol != "" {
		src, dst := ss.hdrSrc, ss.hdrDst
		if src == nil {
			if !ss.localAddr.IsValid() {
				ss.localAddr = getsockname(ss.c.fd)
			}
			src, dst = net.TCPAddrFromAddrPort(ss.clientAddr), net.TCPAddrFromAddrPort(ss.localAddr)
		}
		h, err := proxyproto.Header(cfg.ProxyProtocol, src, dst)
		if err != nil {
			ss.status = 500
			ss.setEnd(endInternal)
			r.srv.log.Error("stream: cannot build the PROXY protocol header", zap.String("listen", r.listen), zap.Error(err))
			ss.teardown()
			return
		}
		ss.first = append(h, ss.first...)
	}
	ss.state = stConnecting
	if r.upstream != nil {
		ss.pick = balancer.PickRequest{ClientIP: ss.clientAddr.Addr()}
		if r.hashKey != "" {
			if !ss.localAddr.IsValid() {
				ss.localAddr = getsockname(ss.c.fd)
			}
			ss.pick.HashKey = expandHashKey(r.hashKey, ss.clientAddr, ss.localAddr)
		}
	}
	ss.nextServer()
}

// nextServer starts connecting to the next server to try; with none left
// it ends the stream. Nothing is written to a server until its connect
// has completed.
func (ss *session) nextServer() {
	r := ss.r
	addr, name, ok := ss.pickNext()
	if !ok {
		r.upCounters.noServer.Add(1)
		ss.setEnd(endConnectFailed)
		ss.status = 502
		ss.teardown()
		return
	}
	ss.tried = append(ss.tried, name)
	fd, err := ss.dial(addr)
	if err != nil {
		var local *localError
		if errors.As(err, &local) {
			ss.localFailure(err)
		} else {
			ss.attemptFailed(err) // and on to the next server
		}
		return
	}
	ss.u = side{fd: fd}
	if t := r.cfg.ProxyConnectTimeout.Duration; t > 0 {
		ss.setDue(time.Now().Add(t))
	}
	if err := ss.lp.watch(ss, fd); err != nil {
		ss.localFailure(err)
	}
}

// localError is a failure of this process, not of the server it was about
// to connect to: no descriptor left, an address it cannot use.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// localFailure ends the stream on a localError or an epoll_ctl refusal. The
// server is not blamed and no other one is tried: all would fail alike, and
// marking healthy servers failed would also fail HTTP traffic and VRRP's
// upstream tracking. nginx answers 500 here too.
func (ss *session) localFailure(err error) {
	r := ss.r
	ss.status = 500
	ss.setEnd(endInternal)
	r.srv.log.Error("stream: cannot connect to upstream server", zap.String("listen", r.listen), zap.String("upstream", r.name),
		zap.String("server", ss.tried[len(ss.tried)-1]), zap.Stringer("client", ss.clientAddr), zap.Error(err))
	ss.teardown() // closes the server's socket and releases the server, without a failure
}

// pickNext chooses the next server to try (each at most once), if one is
// left.
func (ss *session) pickNext() (addr netip.AddrPort, name string, ok bool) {
	r := ss.r
	if ss.attempts >= r.tries {
		return addr, "", false
	}
	ss.attempts++
	if r.upstream == nil {
		return r.addrs[ss.attempts-1], r.name, true
	}
	srv, err := r.upstream.Pick(ss.pick)
	if err != nil {
		if len(ss.pick.Tried) == 0 {
			ss.setEnd(endNoServer)
			r.srv.log.Error("stream: no live upstream server", zap.String("listen", r.listen), zap.String("upstream", r.name))
		}
		return addr, "", false
	}
	ss.server = srv
	// An IP and port: the daemon resolves names when it builds the upstream.
	addr, _ = netip.ParseAddrPort(srv.Address())
	return addr, srv.Address(), true
}

// dial starts a non-blocking connect.
func (ss *session) dial(addr netip.AddrPort) (int, error) {
	sa, err := addrSockaddr(addr)
	if err != nil {
		return -1, &localError{err}
	}
	family := unix.AF_INET
	if _, v6 := sa.(*unix.SockaddrInet6); v6 {
		family = unix.AF_INET6
	}
	fd, err := sysSocket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		return -1, &localError{os.NewSyscallError("socket", err)}
	}
	cfg := ss.r.cfg
	if nodelay(cfg) {
		_ = sysSetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	if keepalive(cfg) {
		// As nginx's so_keepalive=on: SO_KEEPALIVE with the system's timers.
		_ = sysSetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	}
	err = sysConnect(fd, sa)
	for err == unix.EINTR {
		// The connect goes on in the background; the loop learns its
		// outcome from the socket becoming writable.
		err = unix.EINPROGRESS
	}
	if err != nil && err != unix.EINPROGRESS {
		_ = sysClose(fd)
		return -1, err
	}
	return fd, nil
}

// attemptFailed ends a connect attempt that failed or timed out and tries
// the next server.
func (ss *session) attemptFailed(err error) {
	r := ss.r
	if ss.u.fd >= 0 {
		ss.lp.forget(ss.u.fd)
		ss.u = side{fd: -1}
	}
	if srv := ss.server; srv != nil {
		ss.server = nil
		srv.ReportFailure()
		srv.Release()
		ss.pick.Tried = append(ss.pick.Tried, srv)
	}
	r.upCounters.connectFailures.Add(1)
	if ce := r.srv.log.Check(zap.WarnLevel, "stream: connect to upstream server failed"); ce != nil {
		server := r.name
		if len(ss.tried) > 0 {
			server = ss.tried[len(ss.tried)-1]
		}
		ce.Write(zap.String("listen", r.listen), zap.String("upstream", r.name), zap.String("server", server),
			zap.Stringer("client", ss.clientAddr), zap.Error(err))
	}
	ss.nextServer()
}

// connected runs when the server's socket became writable while
// connecting: the connect either completed or failed.
func (ss *session) connected() {
	v, err := sysGetsockoptInt(ss.u.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && v != 0 {
		err = syscall.Errno(v)
	}
	if err != nil {
		ss.attemptFailed(err)
		return
	}
	r := ss.r
	if ss.server != nil {
		ss.server.ReportSuccess()
	}
	r.upCounters.active.Add(1)
	r.upCounters.streams.Add(1)
	ss.upActive = true
	ss.state = stRelay
	if len(ss.first) > 0 {
		ss.up.pend, ss.up.firstBytes = ss.first, true
		ss.first = nil
		ss.countBytes(&ss.up, int64(ss.firstFromClient))
	}
	ss.lastActive = time.Now()
	ss.scheduleIdle()
	ss.pump()
}

// pump moves what can be moved both ways and ends the stream when both
// directions are done.
func (ss *session) pump() {
	if !ss.up.move() || !ss.down.move() {
		return
	}
	if ss.up.closed && ss.down.closed {
		if ss.firstEOF == &ss.up {
			ss.setEnd(endClientClosed)
		} else {
			ss.setEnd(endUpstreamClosed)
		}
		ss.teardown()
	}
}

// move runs the direction until it has to wait. It reports false when it
// ended the stream.
func (d *dir) move() bool {
	ss := d.ss
	lp := ss.lp
	for {
		// Bytes in hand go first.
		if out, ok := d.flush(); !ok {
			return false
		} else if !out {
			return true
		}
		if d.pipe != nil && !d.bulk {
			lp.putPipe(d.pipe)
			d.pipe = nil
		}
		if d.eof {
			if !d.closed {
				d.closed = true
				if ss.firstEOF == nil {
					ss.firstEOF = d
				}
				// Pass the half-close on, unless the other direction is
				// done too: then the teardown right after closes dst,
				// which sends the same FIN.
				if other := ss.other(d); !other.closed {
					_ = sysShutdown(d.dst.fd, unix.SHUT_WR)
				}
			}
			return true
		}
		if !d.src.readable {
			return true
		}
		if d.bulk {
			if d.pipe == nil {
				p, err := lp.getPipe()
				if err != nil {
					// No descriptor for a pipe (a connection flood took
					// them): copy through the buffer instead, as nginx
					// always does, rather than end a healthy stream.
					d.bulk = false
					if now := time.Now(); now.Sub(lp.pipeWarned) >= time.Minute {
						lp.pipeWarned = now
						ss.srvLog().Warn("stream: no splice pipe, copying instead", zap.Error(err))
					}
					continue
				}
				d.pipe = p
			}
			n, err := sysSplice(d.src.fd, d.pipe.w, pipeSize)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				d.src.readable = false
				d.bulk = false // the burst is over: copy until the next one
				continue       // gives the pipe back
			case err != nil:
				ss.fail(d, false, err)
				return false
			case n == 0:
				d.eof = true
				d.bulk = false
				continue
			}
			d.inPipe = int(n)
			continue
		}
		n, err := rawsys.Read(d.src.fd, lp.buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			d.src.readable = false
			return true
		case err != nil:
			ss.fail(d, false, err)
			return false
		case n == 0:
			d.eof = true
			continue
		}
		if n < len(lp.buf) && !d.src.rdhup {
			// A short read drained the socket; the next bytes or the FIN
			// raise a new event (EPOLLRDHUP would have said if the FIN was
			// already there).
			d.src.readable = false
		}
		if n == len(lp.buf) {
			d.bulk = true
			if !d.lowat {
				// Once per direction: a bulk transfer's unsent bytes
				// stay bounded (what is in flight is still TCP's).
				_ = sysSetsockoptInt(d.dst.fd, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, bulkNotSentLowat)
				d.lowat = true
			}
		}
		w := 0
		if d.dst.writable {
			w, err = rawsys.Write(d.dst.fd, lp.buf[:n])
			for err == unix.EINTR {
				w, err = rawsys.Write(d.dst.fd, lp.buf[:n])
			}
			if err == unix.EAGAIN {
				w, err = 0, nil
			}
			if err != nil {
				ss.fail(d, true, err)
				return false
			}
			ss.countBytes(d, int64(w))
		}
		if w < n {
			d.dst.writable = false
			d.pendBuf = copyBufPool.Get().(*[]byte)
			d.pend = append((*d.pendBuf)[:0], lp.buf[w:n]...)
			d.firstBytes = false
			d.block()
			return true
		}
	}
}

// flush writes the bytes in hand (in the pipe, or in pend) to dst. It
// reports whether they are all out, and in ok false when it ended the
// stream.
func (d *dir) flush() (out, ok bool) {
	for d.inPipe > 0 || len(d.pend) > 0 {
		if !d.dst.writable {
			d.block()
			return false, true
		}
		var n int
		var err error
		if d.inPipe > 0 {
			n, err = sysSplice(d.pipe.r, d.dst.fd, d.inPipe)
		} else {
			n, err = rawsys.Write(d.dst.fd, d.pend)
		}
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			d.dst.writable = false
			d.block()
			return false, true
		case err != nil:
			d.ss.fail(d, true, err)
			return false, false
		}
		d.blockedAt = time.Time{}
		if d.inPipe > 0 {
			d.inPipe -= n
			d.ss.countBytes(d, int64(n))
			continue
		}
		if !d.firstBytes {
			d.ss.countBytes(d, int64(n))
		}
		d.pend = d.pend[n:]
		if len(d.pend) > 0 {
			d.dst.writable = false // a short write: the socket's buffer is full
			d.block()
			return false, true
		}
		d.releasePend()
	}
	if d.muted {
		return d.unmute()
	}
	return true, true
}

// bulkNotSentLowat is TCP_NOTSENT_LOWAT on the destination of a bulk
// direction: how many bytes TCP has not sent yet it may hold. Without a
// bound, autotuning let 3-4 MB wait there behind a fast sender, pages that
// went cold before the receiver copied them (bounding the socket buffers
// themselves showed the same: 17.4 against 13.3 Gbit/s, but it switches
// autotuning off). With 1 MiB, alternating runs with one stream (make
// bench's two loads): iperf3 15.6-15.9 against 14.4-15.1 Gbit/s, from
// memory 12.4-12.8 against 11.7-12.0; proxy CPU per GB 0.28-0.29 against
// 0.24-0.26 with iperf3 (nginx: 0.31-0.34), 0.32-0.38 against 0.37-0.40
// from memory. It bounds only what waits, not what is in flight, so a
// long fat path keeps its window; the loop refills when the socket reports
// room. Streams of small messages never set it.
const bulkNotSentLowat = 4 * pipeSize

// block notes that dst cannot take bytes in hand: proxy_timeout of that
// is a write timeout. Until they are out, nothing more is read from src,
// so its readability is not watched meanwhile: each segment arriving would
// wake the loop for nothing (three epoll calls and a park of its
// goroutine), and a bulk transfer to a slightly slower receiver spends
// most of its time here. Measured with one such transfer: two thirds of
// the loop's epoll calls went, and 8% of its CPU per byte.
func (d *dir) block() {
	if d.blockedAt.IsZero() {
		d.blockedAt = time.Now()
	}
	if !d.muted && d.ss.lp.watchInput(d.ss, d.src.fd, false) == nil {
		d.muted = true
	}
}

// unmute watches src's readability again once the bytes in hand are out.
// What arrived while it was not watched raised no event, so src counts as
// readable: a read that finds nothing costs one EAGAIN. It reports what
// flush does (out, ok).
func (d *dir) unmute() (out, ok bool) {
	d.muted = false
	if err := d.ss.lp.watchInput(d.ss, d.src.fd, true); err != nil {
		// Only a closed descriptor fails this; without the reports the
		// stream would stall, so end it.
		d.ss.srvLog().Error("stream: cannot watch a socket", zap.String("listen", d.ss.r.listen), zap.Stringer("client", d.ss.clientAddr), zap.Error(err))
		d.ss.setEnd(endInternal)
		d.ss.teardown()
		return false, false
	}
	d.src.readable = true
	return true, true
}

func (d *dir) releasePend() {
	if d.pendBuf != nil {
		copyBufPool.Put(d.pendBuf)
		d.pendBuf = nil
	}
	d.pend = nil
	d.firstBytes = false
}

// copyBufSize is the loop's copy buffer; a read that fills it makes the
// direction bulk (spliced).
const copyBufSize = 16 << 10

var copyBufPool = sync.Pool{New: func() any {
	b := make([]byte, copyBufSize)
	return &b
}}

func (ss *session) other(d *dir) *dir {
	if d == &ss.up {
		return &ss.down
	}
	return &ss.up
}

// fail ends the stream on a socket error: reading d's source, or writing
// its destination.
func (ss *session) fail(d *dir, write bool, err error) {
	if d.fromClient != write { // reading from the client, or writing to it
		ss.setEnd(endClientError)
		// Clients vanish all the time (mobile devices): debug only, as
		// nginx logs a client's reset at info.
		if ce := ss.srvLog().Check(zap.DebugLevel, "stream: client connection failed"); ce != nil {
			ce.Write(zap.String("listen", ss.r.listen), zap.Stringer("client", ss.clientAddr), zap.Bool("write", write), zap.Error(err))
		}
	} else {
		ss.setEnd(endUpstreamError)
		// A server resetting its streams (a broker crashing, a firewall
		// dropping state) is what an operator looks for: nginx logs it
		// at error ("recv() failed ... while proxying and reading from
		// upstream").
		if ce := ss.srvLog().Check(zap.WarnLevel, "stream: upstream server connection failed"); ce != nil {
			ce.Write(zap.String("listen", ss.r.listen), zap.String("upstream", ss.r.name), zap.String("server", ss.tried[len(ss.tried)-1]),
				zap.Stringer("client", ss.clientAddr), zap.Bool("write", write), zap.Error(err))
		}
	}
	ss.teardown()
}

func (ss *session) srvLog() *zap.Logger { return ss.r.srv.log }

// countBytes records n bytes moved in d's direction.
func (ss *session) countBytes(d *dir, n int64) {
	if n <= 0 {
		return
	}
	ss.lastActive = time.Now()
	c := ss.r.upCounters
	if d.fromClient {
		ss.fromClient += n
		c.bytesFromClient.Add(uint64(n))
		if ss.server != nil {
			ss.server.AddBytes(n, 0)
		}
	} else {
		ss.toClient += n
		c.bytesToClient.Add(uint64(n))
		if ss.server != nil {
			ss.server.AddBytes(0, n)
		}
	}
}

// setDue moves the stream's timer.
func (ss *session) setDue(at time.Time) {
	ss.due = at
	ss.lp.schedule(ss)
}

// scheduleIdle sets the timer to the earliest of proxy_timeout after the
// last byte moved and proxy_timeout after a direction blocked.
func (ss *session) scheduleIdle() {
	timeout := ss.r.cfg.ProxyTimeout.Duration
	at := ss.lastActive.Add(timeout)
	for _, d := range []*dir{&ss.up, &ss.down} {
		if !d.blockedAt.IsZero() {
			if b := d.blockedAt.Add(timeout); b.Before(at) {
				at = b
			}
		}
	}
	ss.setDue(at)
}

// abort ends the stream from outside (posted to the loop).
func (ss *session) abort(why endReason) {
	if ss.state == stDone {
		return
	}
	ss.setEnd(why)
	ss.teardown()
}

// teardown releases everything the stream holds and writes its log line.
func (ss *session) teardown() {
	if ss.state == stDone {
		return
	}
	ss.state = stDone
	if !ss.due.IsZero() {
		ss.due = time.Time{}
		ss.lp.schedule(ss)
	}
	for _, d := range []*dir{&ss.up, &ss.down} {
		d.releasePend()
		if d.pipe != nil {
			d.pipe.close() // it may hold bytes: not for reuse
			d.pipe = nil
		}
	}
	ss.lp.forget(ss.c.fd)
	if ss.u.fd >= 0 {
		ss.lp.forget(ss.u.fd)
	}
	if ss.upActive {
		c := ss.r.upCounters
		c.active.Add(-1)
		switch ss.end {
		case endUpstreamError:
			c.upstreamErrors.Add(1)
		case endClientError:
			c.clientErrors.Add(1)
		case endIdle, endWriteTimeout:
			c.timeouts.Add(1)
		}
	}
	if ss.server != nil {
		ss.server.Release()
	}
	ss.finish()
	if ss.registered {
		ss.r.srv.remove(ss)
	}
}

// finish writes the access log line.
func (ss *session) finish() {
	why := ss.end
	if why == "" {
		why = endInternal
	}
	r := ss.r
	if ce := r.srv.log.Check(zap.DebugLevel, "stream: ended"); ce != nil {
		ce.Write(zap.String("listen", r.listen), zap.Stringer("client", ss.clientAddr), zap.Strings("upstream", ss.tried),
			zap.String("end", string(why)), zap.Int64("bytes_from_client", ss.fromClient),
			zap.Int64("bytes_to_client", ss.toClient), zap.Duration("duration", time.Since(ss.start)))
	}
	if !r.srv.access.On() {
		return
	}
	// The writer copies or writes the line before Write returns, so the
	// buffer goes back to the pool at once.
	bp := logLinePool.Get().(*[]byte)
	*bp = appendAccessLine((*bp)[:0], r.srv.now(), ss.clientAddr, ss.status,
		ss.toClient, ss.fromClient, time.Since(ss.start), ss.tried, why)
	r.srv.access.Write(*bp)
	logLinePool.Put(bp)
}

var logLinePool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func addrSockaddr(ap netip.AddrPort) (unix.Sockaddr, error) {
	if !ap.IsValid() {
		return nil, errors.New("not an IP address and port")
	}
	a := ap.Addr()
	if a.Unmap().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}, nil
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	if zone := a.Zone(); zone != "" {
		// A link-local address needs its interface (fe80::1%eth0): the
		// kernel refuses to connect without one.
		if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
			sa.ZoneId = uint32(n)
		} else if ifi, err := net.InterfaceByName(zone); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		} else {
			return nil, fmt.Errorf("zone of %s: %w", a, err)
		}
	}
	return sa, nil
}
