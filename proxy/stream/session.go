package stream

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/vipgate/vipgate/balancer"
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
	endShutdown       endReason = "shutdown"        // Shutdown's deadline passed
	endInternal       endReason = "internal_error"  // e.g. the outbound header could not be built
)

// session is one client connection and its stream.
type session struct {
	r      *route
	start  time.Time
	client net.Conn
	ctx    context.Context // cancelled by abort: stops a connect in progress
	cancel context.CancelFunc

	mu       sync.Mutex
	upstream net.Conn // set once connected
	aborted  bool

	server         *balancer.Server // the picked server, released at teardown
	dirUp, dirDown *direction       // client->upstream, upstream->client
	running        atomic.Int32     // directions not finished yet

	end        atomic.Pointer[endReason] // first reason wins
	lastActive atomic.Int64              // ns since start of the last byte moved either way

	clientAddr, localAddr netip.AddrPort
	tried                 []string
	status                int
	fromClient, toClient  atomic.Int64
}

// ServeConn serves one accepted client connection; it owns c. It returns
// once the stream is set up: the two directions then run on goroutines of
// their own, fresh and with small stacks, which is what an idle stream
// keeps (the deep stack of connecting is not kept for hours).
func (r *route) ServeConn(c net.Conn) {
	r.listenCounters.accepted.Add(1)
	ctx, cancel := context.WithCancel(context.Background())
	ss := &session{r: r, start: time.Now(), client: c, ctx: ctx, cancel: cancel, status: 200}
	if !r.srv.add(ss) {
		cancel()
		_ = c.Close()
		return
	}
	if !ss.serve() {
		ss.teardown()
	}
}

func (ss *session) setEnd(why endReason) {
	ss.end.CompareAndSwap(nil, &why)
}

// abort ends the stream from outside: both sockets are closed, which
// unblocks every wait of the session.
func (ss *session) abort(why endReason) {
	ss.setEnd(why)
	ss.cancel()
	ss.mu.Lock()
	ss.aborted = true
	up := ss.upstream
	ss.mu.Unlock()
	_ = ss.client.Close()
	if up != nil {
		_ = up.Close()
	}
}

// teardown releases everything the session holds and writes its log line.
// It runs once: on the goroutine of ServeConn when the stream never started,
// or on the last direction to finish.
func (ss *session) teardown() {
	_ = ss.client.Close()
	if ss.upstream != nil {
		_ = ss.upstream.Close()
		ss.r.upCounters.active.Add(-1)
	}
	if ss.server != nil {
		ss.server.Release()
	}
	ss.cancel()
	ss.finish()
	ss.r.srv.remove(ss)
}

// serve reads the inbound header, connects, sends the outbound header and
// starts the two directions. It reports false when the stream did not
// start (the caller tears the session down).
func (ss *session) serve() bool {
	r := ss.r
	cfg := r.cfg

	client := ss.client
	var pending []byte
	var hdrSrc, hdrDst net.Addr
	if cfg.AcceptProxyProtocol {
		pc, src, dst, err := proxyproto.ReadHeader(client, cfg.ProxyProtocolTimeout.Duration)
		if err != nil {
			reason := proxyproto.ReasonOf(err)
			if reason == "" {
				reason = proxyproto.ReasonIO
			}
			if i, ok := reasonIndex[reason]; ok {
				r.listenCounters.headerRefused[i].Add(1)
			}
			ss.status = 400
			ss.setEnd(endProxyHeader + endReason(reason))
			ss.clientAddr = addrPort(client.RemoteAddr())
			ss.localAddr = addrPort(client.LocalAddr())
			if ce := r.srv.log.Check(zap.InfoLevel, "stream: PROXY protocol header refused"); ce != nil {
				ce.Write(zap.String("listen", r.listen), zap.Stringer("client", client.RemoteAddr()), zap.String("reason", string(reason)), zap.Error(err))
			}
			return false
		}
		hdrSrc, hdrDst = src, dst
		client, pending = pc.(*proxyproto.Conn).Unwrap()
	}
	ss.clientAddr = addrPort(client.RemoteAddr())
	ss.localAddr = addrPort(client.LocalAddr())
	if hdrSrc != nil {
		ss.clientAddr = addrPort(hdrSrc)
		ss.localAddr = addrPort(hdrDst)
	}
	if tc, ok := client.(*net.TCPConn); ok {
		setSocketOptions(tc, keepalive(cfg), nodelay(cfg))
	}

	up, srv, err := ss.connect()
	if err != nil {
		ss.status = 502
		return false
	}
	ss.server = srv
	r.upCounters.active.Add(1)
	r.upCounters.streams.Add(1)
	ss.mu.Lock()
	aborted := ss.aborted
	ss.upstream = up
	ss.mu.Unlock()
	if aborted {
		return false
	}
	if !nodelay(cfg) {
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(false)
		}
	}

	// The outbound header and the bytes read past the inbound one go out in
	// one write, before anything else the client sends.
	var first []byte
	if cfg.ProxyProtocol != "" {
		src, dst := hdrSrc, hdrDst
		if src == nil {
			src, dst = client.RemoteAddr(), client.LocalAddr()
		}
		h, err := proxyproto.Header(cfg.ProxyProtocol, src, dst)
		if err != nil {
			ss.status = 500
			ss.setEnd(endInternal)
			r.srv.log.Error("stream: cannot build the PROXY protocol header", zap.String("listen", r.listen), zap.Error(err))
			return false
		}
		first = h
	}
	if len(pending) > 0 {
		first = append(first, pending...)
		ss.fromClient.Add(int64(len(pending)))
		r.upCounters.bytesFromClient.Add(uint64(len(pending)))
		if srv != nil {
			srv.AddBytes(int64(len(pending)), 0)
		}
	}
	timeout := cfg.ProxyTimeout.Duration
	if len(first) > 0 {
		_ = up.SetWriteDeadline(time.Now().Add(timeout))
		if _, err := up.Write(first); err != nil {
			ss.setEnd(endUpstreamError)
			return false
		}
	}
	ss.pipe(client, up, srv, timeout)
	return true
}

// connect picks servers and dials them until one connection is up, trying
// each server at most once. Nothing is written to a server here.
func (ss *session) connect() (net.Conn, *balancer.Server, error) {
	r := ss.r
	if r.upstream == nil {
		ss.tried = append(ss.tried, r.name)
		c, err := r.dial(ss.ctx, r.name)
		if err != nil {
			r.upCounters.connectFailures.Add(1)
			r.upCounters.noServer.Add(1)
			ss.connectFailed(r.name, err)
			ss.setEnd(endConnectFailed)
			return nil, nil, err
		}
		return c, nil, nil
	}
	req := balancer.PickRequest{ClientIP: ss.clientAddr.Addr()}
	if r.hashKey != "" {
		req.HashKey = expandHashKey(r.hashKey, ss.clientAddr, ss.localAddr)
	}
	var lastErr error = errNoServer
	for range r.tries {
		srv, err := r.upstream.Pick(req)
		if err != nil {
			if lastErr == errNoServer {
				ss.setEnd(endNoServer)
				r.srv.log.Error("stream: no live upstream server", zap.String("listen", r.listen), zap.String("upstream", r.name))
			}
			break
		}
		ss.tried = append(ss.tried, srv.Address())
		c, err := r.dial(ss.ctx, srv.Address())
		if err == nil {
			srv.ReportSuccess()
			return c, srv, nil
		}
		lastErr = err
		if ss.ctx.Err() != nil {
			// Aborted by a handover or shutdown: not the server's fault.
			srv.Release()
			return nil, nil, err
		}
		srv.ReportFailure()
		srv.Release()
		r.upCounters.connectFailures.Add(1)
		ss.connectFailed(srv.Address(), err)
		req.Tried = append(req.Tried, srv)
	}
	r.upCounters.noServer.Add(1)
	ss.setEnd(endConnectFailed)
	return nil, nil, lastErr
}

func (ss *session) connectFailed(addr string, err error) {
	r := ss.r
	if ss.ctx.Err() != nil {
		return
	}
	if ce := r.srv.log.Check(zap.WarnLevel, "stream: connect to upstream server failed"); ce != nil {
		ce.Write(zap.String("listen", r.listen), zap.String("upstream", r.name), zap.String("server", addr),
			zap.Stringer("client", ss.clientAddr), zap.Error(err))
	}
}

// pipe starts moving bytes both ways; the last direction to finish
// tears the session down.
func (ss *session) pipe(client, up net.Conn, srv *balancer.Server, timeout time.Duration) {
	ss.touch()
	ss.dirUp = newDirection(ss, client, up, timeout, true, srv)
	ss.dirDown = newDirection(ss, up, client, timeout, false, srv)
	first := time.Duration(ss.lastActive.Load()) + timeout
	if err := ss.dirUp.setReadDeadline(first); err != nil {
		ss.abort(endClientError)
	}
	if err := ss.dirDown.setReadDeadline(first); err != nil {
		ss.abort(endUpstreamError)
	}
	ss.running.Store(2)
	go ss.dirUp.run()
	go ss.dirDown.run()
}

// directionDone is called by each direction when it has finished.
func (ss *session) directionDone() {
	if ss.running.Add(-1) > 0 {
		return
	}
	if a, b := ss.dirUp.eofAt, ss.dirDown.eofAt; a > 0 && b > 0 {
		if a <= b {
			ss.setEnd(endClientClosed)
		} else {
			ss.setEnd(endUpstreamClosed)
		}
	}
	ss.teardown()
}

// touch records that bytes moved now.
func (ss *session) touch() {
	ss.lastActive.Store(int64(time.Since(ss.start)))
}

// finish writes the access log line.
func (ss *session) finish() {
	why := endInternal
	if p := ss.end.Load(); p != nil {
		why = *p
	}
	r := ss.r
	if ce := r.srv.log.Check(zap.DebugLevel, "stream: ended"); ce != nil {
		ce.Write(zap.String("listen", r.listen), zap.Stringer("client", ss.clientAddr), zap.Strings("upstream", ss.tried),
			zap.String("end", string(why)), zap.Int64("bytes_from_client", ss.fromClient.Load()),
			zap.Int64("bytes_to_client", ss.toClient.Load()), zap.Duration("duration", time.Since(ss.start)))
	}
	if !r.srv.access.On() {
		return
	}
	// The writer copies or writes the line before Write returns, so the
	// buffer goes back to the pool at once.
	bp := logLinePool.Get().(*[]byte)
	*bp = appendAccessLine((*bp)[:0], r.srv.now(), ss.clientAddr, ss.status,
		ss.toClient.Load(), ss.fromClient.Load(), time.Since(ss.start), ss.tried, why)
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

// setSocketOptions applies so_keepalive and tcp_nodelay to the client's
// socket with as few system calls as possible (a short connection's budget
// is a few dozen): accepted sockets inherit SO_KEEPALIVE from the listening
// socket (proxy.Listeners sets it) and Go sets TCP_NODELAY on every socket,
// so only "off" needs a call.
func setSocketOptions(c *net.TCPConn, keepalive, nodelay bool) {
	if !keepalive {
		_ = c.SetKeepAlive(false)
	}
	if !nodelay {
		_ = c.SetNoDelay(false)
	}
}

// isTimeout reports a deadline expiry.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
