// Package httpproxy is vipgate's HTTP and WebSocket reverse proxy: nginx's
// http { server {} } with its location selection, proxy_pass URI rule,
// proxy_next_upstream retries, header rules and proxy_redirect, plus static
// files, TLS with HTTP/2 and WebSocket tunnels.
//
// A Server is one configuration generation. The daemon hands it accepted
// client connections through Handler; each connection keeps the
// generation's settings until it closes, even after a reload made a newer
// generation current.
//
// Two front ends share routing, the upstream request head (request.go),
// header rules, retries, error pages, the access log and balancer
// accounting:
//   - plain HTTP/1.x connections take the fast path (fast.go,
//     fast_proxy.go, upconn.go): each head is parsed once by the strict
//     ParseRequestHead, the answer relayed by its framing through pooled
//     buffers and per-upstream idle connections, with no allocation per
//     request and no buffer held by an idle keep-alive connection;
//   - TLS (HTTP/2 and HTTP/1.1), and connections the fast path hands over
//     at a request boundary (absolute-form targets, CONNECT, static
//     files), are served by net/http behind the same strict framing check
//     of the raw bytes (head.go, conn.go), so that smuggling attempts are
//     refused instead of being resolved one way here and another way
//     upstream.
package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/vipgate/vipgate/balancer"
	"github.com/vipgate/vipgate/config"
	"github.com/vipgate/vipgate/internal/accesslog"
	"github.com/vipgate/vipgate/proxy"
	"github.com/vipgate/vipgate/proxy/proxyproto"
)

// Deps is what a generation uses from the rest of the process.
type Deps struct {
	Log       *zap.Logger
	AccessLog *accesslog.Writer // nil = off
	// Upstreams are this generation's pools by name (shared with the
	// stream proxy); every upstream a proxy_pass names must be here.
	Upstreams map[string]*balancer.Upstream
	// UpstreamConfig gives keepalive and the hash key template.
	UpstreamConfig map[string]*config.Upstream
	// Responses counts responses to clients by status class; shared by
	// every generation so the counters survive reloads. nil = not counted.
	Responses *ResponseCounts
}

// ResponseCounts counts what clients got: responses by status class, and
// connections closed for their PROXY protocol header, per listener.
type ResponseCounts struct {
	byClass [5]atomic.Uint64

	mu            sync.Mutex
	headerRefused map[string]map[proxyproto.Reason]uint64 // by listen address
}

func (r *ResponseCounts) refusedHeader(listen string, reason proxyproto.Reason) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.headerRefused == nil {
		r.headerRefused = map[string]map[proxyproto.Reason]uint64{}
	}
	m := r.headerRefused[listen]
	if m == nil {
		m = map[proxyproto.Reason]uint64{}
		r.headerRefused[listen] = m
	}
	m[reason]++
}

// HeaderRefusals returns the refused PROXY headers of a listen address by
// reason; nil when there were none.
func (r *ResponseCounts) HeaderRefusals(listen string) map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.headerRefused[listen]
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]uint64, len(m))
	for reason, n := range m {
		out[string(reason)] = n
	}
	return out
}

func (r *ResponseCounts) observe(status int) {
	if r == nil || status < 100 || status > 599 {
		return
	}
	r.byClass[status/100-1].Add(1)
}

// Snapshot returns the counts keyed "1xx" .. "5xx".
func (r *ResponseCounts) Snapshot() map[string]uint64 {
	out := make(map[string]uint64, 5)
	for i := range r.byClass {
		out[fmt.Sprintf("%dxx", i+1)] = r.byClass[i].Load()
	}
	return out
}

// literalKeepalive is the idle pool size for a proxy_pass to a literal
// host:port, which has no [upstream] to say it.
const literalKeepalive = 32

// Server is one configuration generation of the HTTP proxy.
type Server struct {
	log       *zap.Logger
	access    *accesslog.Writer
	responses *ResponseCounts
	groups    map[string]*listenGroup
	pools     map[string]*upstreamPool

	draining atomic.Bool
	stopping atomic.Bool // Shutdown began (shutting, without the lock)
	// cutting: Shutdown's deadline passed and it closes the connections
	// still busy; their failures are the stop's, not the servers'.
	cutting atomic.Bool
	// superseded is retired, without the lock: an error answer of this
	// generation ends its client connection (see errorEndsConnection).
	superseded atomic.Bool

	mu      sync.Mutex
	conns   int
	fast    map[*fastConn]struct{}
	tunnels map[*tunnel]struct{}
	// longLivedEpoch counts CloseLongLived calls: an upgrade that began
	// before one must not become a tunnel after it.
	longLivedEpoch uint64
	retired        bool
	poolsClosed    bool // checkIdleLocked closed them: only tunnels were left
	shutting       bool
	idle           chan struct{}
	idleDone       bool
	serving        sync.WaitGroup
}

// listenGroup is everything served on one listen address.
type listenGroup struct {
	s          *Server
	addr       string
	names      serverNames
	dflt       *vhost
	proxyProto bool
	// realIPFrom: the sources whose PROXY header's address is trusted
	// (set_real_ip_from); empty: all.
	realIPFrom []netip.Prefix
	tlsConfig  *tls.Config
	http       *http.Server
	ln         *chanListener
	// HTTP/2 (TLS with ALPN h2): net/http must see the *tls.Conn itself,
	// so these connections go to their own server; h2Conns carries each
	// connection's facts to ConnContext. Drain replaces the server (new
	// connections still come in) and shuts the old one down gracefully,
	// which sends GOAWAY: HTTP/2's Connection: close.
	h2        atomic.Pointer[h2Front]
	h2Retired []*http.Server // guarded by s.mu
	h2Conns   sync.Map       // *tls.Conn -> *clientConn
	// stdRequests counts requests net/http served (TLS, HTTP/2,
	// handed-over connections), so tests can tell which path ran.
	stdRequests atomic.Int64
	maxHead     int
	hdrTimeout  time.Duration
}

// New builds a generation: routing tables, header templates, upstream
// connection pools, TLS configurations (certificates and error pages are
// read here, so a reload re-reads them). It starts one net/http server per
// listen address; Shutdown stops them.
func New(servers []*config.HTTPServer, deps Deps) (*Server, error) {
	log := deps.Log
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{
		log:       log.Named("http"),
		access:    deps.AccessLog,
		responses: deps.Responses,
		groups:    map[string]*listenGroup{},
		pools:     map[string]*upstreamPool{},
		tunnels:   map[*tunnel]struct{}{},
		fast:      map[*fastConn]struct{}{},
		idle:      make(chan struct{}),
	}
	certs := map[*vhost]tls.Certificate{}
	for i, hc := range servers {
		path := fmt.Sprintf("http[%d]", i)
		v := newVhost(hc, i)
		for code, file := range hc.ErrorPages {
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("%s.error_page %d: %w", path, code, err)
			}
			if v.errorPages == nil {
				v.errorPages = map[int][]byte{}
			}
			v.errorPages[code] = b
		}
		if hc.TLSCertificate != "" {
			cert, err := tls.LoadX509KeyPair(hc.TLSCertificate, hc.TLSCertificateKey)
			if err != nil {
				return nil, fmt.Errorf("%s: load certificate %s: %w", path, hc.TLSCertificate, err)
			}
			certs[v] = cert
		}
		for j, lc := range hc.Location {
			l, err := s.compileLocation(lc, deps)
			if err != nil {
				return nil, fmt.Errorf("%s.location[%d] (%s): %w", path, j, lc.Path, err)
			}
			v.addLocation(l)
		}
		for _, addr := range hc.Listen {
			canon, err := config.ParseListen(addr)
			if err != nil {
				return nil, fmt.Errorf("%s.listen: %w", path, err)
			}
			g := s.groups[canon]
			if g == nil {
				g = &listenGroup{s: s, addr: canon, dflt: v, maxHead: int(hc.ClientHeaderMaxSize.Bytes),
					hdrTimeout: hc.ClientHeaderTimeout.Duration}
				s.groups[canon] = g
			}
			g.names.add(v)
			g.proxyProto = g.proxyProto || hc.AcceptProxyProtocol
			g.realIPFrom = hc.RealIPFrom // the same for every server on it (validated)
		}
	}
	// net/http's own messages (bad TLS records, handler panics) are debug
	// noise next to the proxy's structured logs.
	stdLog, err := zap.NewStdLogAt(s.log, zap.DebugLevel)
	if err != nil {
		return nil, fmt.Errorf("http log: %w", err)
	}
	for _, g := range s.groups {
		if err := g.setupTLS(servers, certs); err != nil {
			return nil, err
		}
		g.ln = newChanListener(g.addr)
		dc := g.dflt.cfg
		g.http = &http.Server{
			Handler:           g,
			ReadHeaderTimeout: dc.ClientHeaderTimeout.Duration,
			IdleTimeout:       dc.KeepaliveTimeout.Duration,
			MaxHeaderBytes:    g.maxHead,
			ErrorLog:          stdLog,
			// OPTIONS * is routed (and logged) like any request, not
			// answered 200 by net/http unseen.
			DisableGeneralOptionsHandler: true,
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				return context.WithValue(ctx, connKey{}, c)
			},
		}
		if g.tlsConfig != nil {
			g.tlsConfig.NextProtos = []string{"h2", "http/1.1"}
		}
	}
	for _, g := range s.groups {
		s.serving.Add(1)
		go func(g *listenGroup) {
			defer s.serving.Done()
			_ = g.http.Serve(g.ln)
		}(g)
		if g.tlsConfig != nil {
			g.h2.Store(g.startH2())
		}
	}
	return s, nil
}

// h2Front is the HTTP/2 server that new h2 connections go to.
type h2Front struct {
	srv *http.Server
	ln  *chanListener
}

func (g *listenGroup) startH2() *h2Front {
	s := g.s
	dc := g.dflt.cfg
	f := &h2Front{ln: newChanListener(g.addr)}
	f.srv = &http.Server{
		Handler:        g,
		TLSConfig:      g.tlsConfig,
		IdleTimeout:    dc.KeepaliveTimeout.Duration,
		MaxHeaderBytes: g.maxHead,
		ErrorLog:       g.http.ErrorLog,
		// As the HTTP/1 server: OPTIONS * routed and logged.
		DisableGeneralOptionsHandler: true,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if cc, ok := g.h2Conns.LoadAndDelete(c); ok {
				return context.WithValue(ctx, connKey{}, cc)
			}
			return ctx
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				s.connClosed()
			}
		},
	}
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		_ = f.srv.Serve(f.ln)
	}()
	return f
}

func (s *Server) compileLocation(lc *config.Location, deps Deps) (*location, error) {
	l := &location{cfg: lc, pattern: lc.Pattern}
	if lc.Target == nil {
		return l, nil
	}
	l.autoRedirect = (lc.Match == config.MatchPrefix || lc.Match == config.MatchExact) && strings.HasSuffix(lc.Pattern, "/") && len(lc.Pattern) > 1
	rules, ignored, err := compileHeaders(lc.ProxySetHeader)
	if err != nil {
		return nil, err
	}
	if len(ignored) > 0 {
		s.log.Debug("proxy_set_header of hop-by-hop headers ignored (managed by the proxy)",
			zap.String("location", lc.Path), zap.Strings("headers", ignored))
	}
	l.headers = rules
	l.next = compileNextUpstream(lc)
	l.redirects = defaultRedirects(lc)
	pool, err := s.pool(lc.Target, deps)
	if err != nil {
		return nil, err
	}
	l.pool = pool
	return l, nil
}

// pool returns the generation's connection pool of a proxy_pass target.
func (s *Server) pool(t *config.ProxyTarget, deps Deps) (*upstreamPool, error) {
	key := t.Upstream
	if key == "" {
		key = "addr " + t.Address
	}
	if p := s.pools[key]; p != nil {
		return p, nil
	}
	p := &upstreamPool{name: t.Upstream}
	keepalive := literalKeepalive
	if t.Upstream != "" {
		p.bal = deps.Upstreams[t.Upstream]
		if p.bal == nil {
			return nil, fmt.Errorf("upstream %q is not built", t.Upstream)
		}
		if uc := deps.UpstreamConfig[t.Upstream]; uc != nil {
			if uc.Keepalive != nil {
				keepalive = *uc.Keepalive
			}
			if uc.Balance == "hash" && uc.Hash != "" {
				tmpl, err := compileTemplate(uc.Hash)
				if err != nil {
					return nil, fmt.Errorf("upstream %s hash: %w", t.Upstream, err)
				}
				p.hashKey = tmpl
			}
		}
	} else {
		p.name = t.Address
		p.literal = &literalPeer{addr: t.Address}
	}
	p.transport = newTransport(keepalive)
	p.conns.max = keepalive
	s.pools[key] = p
	return p, nil
}

func (g *listenGroup) setupTLS(servers []*config.HTTPServer, certs map[*vhost]tls.Certificate) error {
	var withCert serverNames
	byVhost := map[*vhost]*tls.Certificate{}
	for _, v := range g.allVhosts() {
		if c, ok := certs[v]; ok {
			c := c
			byVhost[v] = &c
			withCert.add(v)
		}
	}
	if len(byVhost) == 0 {
		return nil
	}
	g.tlsConfig = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			v := withCert.find(normalizeHost(hello.ServerName))
			return byVhost[v], nil
		},
	}
	return nil
}

// servers lists every net/http server of the address: HTTP/1, the
// current HTTP/2 one and those a Drain retired.
func (g *listenGroup) servers() []*http.Server {
	out := []*http.Server{g.http}
	if f := g.h2.Load(); f != nil {
		out = append(out, f.srv)
	}
	g.s.mu.Lock()
	out = append(out, g.h2Retired...)
	g.s.mu.Unlock()
	return out
}

func (g *listenGroup) allVhosts() []*vhost {
	seen := map[*vhost]bool{}
	var out []*vhost
	add := func(v *vhost) {
		if v != nil && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	add(g.names.dflt)
	for _, v := range g.names.exact {
		add(v)
	}
	for _, w := range g.names.leading {
		add(w.v)
	}
	for _, w := range g.names.trailing {
		add(w.v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].index < out[j].index })
	return out
}

// Handler returns the connection handler of a listen address (canonical
// form, config.ParseListen), or nil when this generation does not serve it.
func (s *Server) Handler(listenAddr string) proxy.Handler {
	g := s.groups[listenAddr]
	if g == nil {
		return nil
	}
	return g
}

// Addresses lists the listen addresses this generation serves.
func (s *Server) Addresses() []string {
	out := make([]string, 0, len(s.groups))
	for a := range s.groups {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

type connKey struct{}

// ServeConn takes one accepted client connection: PROXY protocol header
// and TLS handshake first (within client_header_timeout), then the fast
// path (HTTP/1.x), net/http (HTTP/1.x over TLS) or the HTTP/2 server.
//
// Setting up and serving are two calls so that only run's frames stay on
// the goroutine's stack while a keep-alive connection waits: the runtime
// halves an idle goroutine's stack at a collection only when less than a
// quarter of it is in use, and with open's frames below the wait an idle
// connection kept 8 KiB of stack instead of 4.
func (g *listenGroup) ServeConn(c net.Conn) {
	if fc := g.open(c); fc != nil {
		fc.run()
	}
}

// open sets up c: a fast-path connection to run, or nil when c was refused
// or handed to TLS (and served there).
func (g *listenGroup) open(c net.Conn) *fastConn {
	s := g.s
	accepted := time.Now()
	if !s.connOpened() {
		_ = c.Close()
		return nil
	}
	if pc, ok := c.(*probeConn); ok {
		return g.newFast(pc, netip.AddrPort{}, netip.AddrPort{}, nil, true, accepted)
	}
	var remote netip.AddrPort
	local := c.LocalAddr() // $server_port is the socket's, also behind PROXY protocol (as nginx)
	if g.proxyProto {
		var ok bool
		if c, remote, ok = g.readProxyHeader(c); !ok {
			return nil
		}
	}
	if g.tlsConfig != nil {
		g.serveTLS(c, remote, local)
		return nil
	}
	var pending []byte
	if u, ok := c.(interface{ Unwrap() (net.Conn, []byte) }); ok {
		c, pending = u.Unwrap()
	}
	if !remote.IsValid() {
		remote = addrPortOf(c.RemoteAddr())
	}
	return g.newFast(c, remote, addrPortOf(local), pending, false, accepted)
}

// readProxyHeader reads the PROXY protocol header a listener with
// accept_proxy_protocol requires. It returns the connection to serve (its
// bytes read past the header kept) and the client address the header
// carries when it comes from a trusted address; false: the connection was
// refused, closed and counted.
func (g *listenGroup) readProxyHeader(c net.Conn) (net.Conn, netip.AddrPort, bool) {
	s := g.s
	peer := addrPortOf(c.RemoteAddr())
	pc, src, _, err := proxyproto.ReadHeader(c, g.hdrTimeout)
	if err != nil {
		reason := proxyproto.ReasonOf(err)
		if reason == "" {
			reason = proxyproto.ReasonIO
		}
		s.responses.refusedHeader(g.addr, reason)
		// As the stream proxy: a balancer that stopped sending the
		// header (or a client past it) shows in the log; its TCP
		// health checks (nothing sent) do not.
		level := zap.InfoLevel
		if reason == proxyproto.ReasonEmpty {
			level = zap.DebugLevel
		}
		if ce := s.log.Check(level, "PROXY protocol header refused"); ce != nil {
			ce.Write(zap.String("listen", g.addr), zap.Stringer("client", c.RemoteAddr()), zap.String("reason", string(reason)), zap.Error(err))
		}
		_ = c.Close()
		s.connClosed()
		return nil, netip.AddrPort{}, false
	}
	var remote netip.AddrPort
	if src != nil && proxyproto.Trusted(g.realIPFrom, peer.Addr()) {
		remote = addrPortOf(src)
	}
	return pc, remote, true
}

// serveTLS makes the TLS handshake and hands the connection to HTTP/2 or
// to net/http's HTTP/1.1 server, by what the client negotiated.
func (g *listenGroup) serveTLS(c net.Conn, remote netip.AddrPort, local net.Addr) {
	s := g.s
	tc := tls.Server(c, g.tlsConfig)
	ctx, cancel := context.WithTimeout(context.Background(), g.hdrTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.log.Debug("TLS handshake failed", zap.String("listen", g.addr), zap.Stringer("peer", c.RemoteAddr()), zap.Error(err))
		_ = c.Close()
		s.connClosed()
		return
	}
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		g.serveH2(tc, remote, local)
		return
	}
	cc := newClientConn(tc, g, g.maxHead)
	cc.tls = true
	if remote.IsValid() {
		cc.remote = remote
	}
	cc.local = addrPortOf(local)
	cc.onClose = s.connClosed
	if !g.ln.push(cc) {
		_ = cc.Close()
	}
}

func (g *listenGroup) serveH2(tc *tls.Conn, remote netip.AddrPort, local net.Addr) {
	cc := newClientConn(tc, g, g.maxHead) // connection facts only: HTTP/2 frames itself
	cc.tls = true
	if remote.IsValid() {
		cc.remote = remote
	}
	cc.local = addrPortOf(local)
	g.h2Conns.Store(tc, cc)
	// Twice: a Drain may retire the server between Load and push.
	for i := 0; i < 2; i++ {
		if g.h2.Load().ln.push(tc) {
			return
		}
	}
	g.h2Conns.Delete(tc)
	_ = tc.Close()
	g.s.connClosed()
}

func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	if t, ok := a.(*net.TCPAddr); ok {
		ap = t.AddrPort()
	} else {
		ap, _ = netip.ParseAddrPort(a.String())
	}
	// A link-local client's zone (fe80::1%eth0) is no part of its address
	// in $remote_addr, X-Forwarded-For or a hash key, as in nginx.
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

func (s *Server) addFast(c *fastConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting {
		return false
	}
	s.fast[c] = struct{}{}
	return true
}

func (s *Server) removeFast(c *fastConn) {
	s.mu.Lock()
	delete(s.fast, c)
	s.mu.Unlock()
}

func (s *Server) isShutting() bool { return s.stopping.Load() }

// eachFast runs fn on every fast-path connection and tells how many are
// answering a request. fn runs under s.mu: a connection ends (removeFast)
// before its fastConn goes back to fastConnPool, so fn never touches one
// that already serves another client. fn must not block.
func (s *Server) eachFast(fn func(c *fastConn)) (active int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.fast {
		if fn != nil {
			fn(c)
		}
		if fastState(c.state.Load()) == fastActive {
			active++
		}
	}
	return active
}

func (s *Server) connOpened() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting {
		return false
	}
	s.conns++
	return true
}

func (s *Server) connClosed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns--
	s.checkIdleLocked()
}

func (s *Server) checkIdleLocked() {
	if s.retired && s.conns <= len(s.tunnels) && !s.poolsClosed {
		// Only tunnels (WebSockets) hold the retired generation: no
		// request will take an upstream connection from its pools again,
		// so their idle connections go now, as an exiting nginx worker's
		// do, not when the last tunnel ends (hours later, each reload
		// stranding up to keepalive connections per upstream).
		s.poolsClosed = true
		s.closePools()
	}
	if s.retired && s.conns == 0 && len(s.tunnels) == 0 && !s.idleDone {
		s.idleDone = true
		close(s.idle)
	}
}

// closePools closes the pools' idle upstream connections; connections put
// back later are closed too.
func (s *Server) closePools() {
	for _, p := range s.pools {
		p.transport.CloseIdleConnections()
		p.conns.closeAll()
	}
}

// addTunnel registers t, whose upgrade request arrived at epoch (see
// upgradeEpoch). It refuses when CloseLongLived ran since: the answer
// 101 came after the close, and the tunnel would stay open past it (a stop
// or handover waiting for it until shutdown_timeout).
func (s *Server) addTunnel(t *tunnel, epoch uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch != s.longLivedEpoch {
		return false
	}
	s.tunnels[t] = struct{}{}
	return true
}

// upgradeEpoch is read when an upgrade request arrives, for addTunnel.
func (s *Server) upgradeEpoch() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.longLivedEpoch
}

func (s *Server) removeTunnel(t *tunnel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tunnels, t)
	s.checkIdleLocked()
}

// Retire tells the generation that no new connection will come (a newer
// generation took over): Idle is closed once its last connection is gone.
func (s *Server) Retire() {
	s.superseded.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retired = true
	s.checkIdleLocked()
}

// errorEndsConnection tells whether an error answer (5xx) ends the client's
// keep-alive connection: it does once a reload replaced this generation.
// The connection keeps the settings it started with, but a 502 from a
// server the reload removed (a blue/green switch, then blue stopped) would
// otherwise answer a busy keep-alive client for as long as it stays; on a
// new connection its next request uses the new settings.
func (s *Server) errorEndsConnection(status int) bool {
	return status >= 500 && s.superseded.Load()
}

// Idle is closed when the generation is retired and has no connection left
// (the daemon then calls Shutdown to free its goroutines and pools).
func (s *Server) Idle() <-chan struct{} { return s.idle }

// Drain starts the soft drain of a stop or handover: every response from
// now on carries Connection: close and idle keep-alive client connections
// are closed now; new connections are still served.
func (s *Server) Drain() {
	s.mu.Lock()
	if s.shutting {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.draining.Store(true)
	s.eachFast(func(c *fastConn) { c.closeIfIdle(false) })
	for _, g := range s.groups {
		g.http.SetKeepAlivesEnabled(false)
		if g.tlsConfig == nil {
			continue
		}
		old := g.h2.Swap(g.startH2())
		s.mu.Lock()
		g.h2Retired = append(g.h2Retired, old.srv)
		s.mu.Unlock()
		s.serving.Add(1)
		go func() {
			defer s.serving.Done()
			// Ends when its connections are gone, or at Shutdown's Close.
			_ = old.srv.Shutdown(context.Background())
		}()
	}
}

// CloseLongLived closes the upgraded (WebSocket) connections now, and those
// whose upgrade is under way. Later upgrades are served.
func (s *Server) CloseLongLived() {
	s.mu.Lock()
	s.longLivedEpoch++
	ts := make([]*tunnel, 0, len(s.tunnels))
	for t := range s.tunnels {
		ts = append(ts, t)
	}
	s.mu.Unlock()
	for _, t := range ts {
		t.close()
	}
}

// Shutdown stops accepting, lets in-flight requests and WebSocket tunnels
// finish until ctx is done, then closes everything, upstream idle
// connections included.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutting = true
	s.mu.Unlock()
	s.stopping.Store(true)
	s.eachFast(func(c *fastConn) { c.closeIfIdle(true) })
	var wg sync.WaitGroup
	var cut atomic.Bool // a connection was still busy at the deadline
	for _, g := range s.groups {
		for _, hs := range g.servers() {
			wg.Add(1)
			go func(hs *http.Server) {
				defer wg.Done()
				// Its error may be the listener's close: only the
				// deadline means a busy connection was left.
				if err := hs.Shutdown(ctx); err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
					cut.Store(true)
				}
			}(hs)
		}
	}
	wg.Wait()
	tick := time.NewTicker(20 * time.Millisecond)
	for {
		active := s.eachFast(nil)
		s.mu.Lock()
		n := len(s.tunnels) + active
		s.mu.Unlock()
		if n == 0 {
			break
		}
		if ctx.Err() != nil {
			cut.Store(true)
			break
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	tick.Stop()
	s.cutting.Store(true)
	s.CloseLongLived()
	s.eachFast(func(c *fastConn) {
		_ = c.nc.Close()
		if uc := c.upstream.Load(); uc != nil {
			_ = uc.nc.Close()
		}
	})
	for _, g := range s.groups {
		for _, hs := range g.servers() {
			_ = hs.Close()
		}
	}
	s.serving.Wait()
	s.closePools()
	if cut.Load() {
		return ctx.Err()
	}
	return nil
}

// probeConn marks Probe's in-process connection: its request is answered
// 204 right after routing, so a probe exercises accept, framing, parsing
// and routing (a hung handler chain fails it) without touching any
// upstream, whose health is the health checks' business.
type probeConn struct{ net.Conn }

// Probe sends one in-process request ("GET /") through a listen address's
// handler chain and fails when it cannot be answered or the answer is a
// 5xx (node self-check). It never reaches an upstream.
func (s *Server) Probe(ctx context.Context, listenAddr string) error {
	g := s.groups[listenAddr]
	if g == nil {
		return fmt.Errorf("probe %s: not served by this generation", listenAddr)
	}
	client, server := net.Pipe()
	defer client.Close()
	go g.ServeConn(&probeConn{server})
	if d, ok := ctx.Deadline(); ok {
		_ = client.SetDeadline(d)
	}
	host := "localhost"
	if names := g.dflt.cfg.ServerName; len(names) > 0 && !strings.ContainsAny(names[0], "*") {
		host = names[0]
	}
	req := "GET / HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: vipgate-probe\r\nConnection: close\r\n\r\n"
	if _, err := client.Write([]byte(req)); err != nil {
		return fmt.Errorf("probe %s: %w", listenAddr, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(client), nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", listenAddr, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("probe %s: status %d", listenAddr, resp.StatusCode)
	}
	return nil
}

// chanListener is the net.Listener net/http serves: connections come from
// ServeConn rather than from accept(2).
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr string) *chanListener {
	a, _ := net.ResolveTCPAddr("tcp", addr)
	return &chanListener{addr: a, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// ClientConns is the number of client connections open now, WebSocket
// tunnels included: a retired generation is freed when it reaches zero.
func (s *Server) ClientConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// KeptConns is ClientConns without the WebSocket tunnels: the connections a
// drain closes after their response or a short grace. A stop waits for it
// to reach zero before the VIPs move, since a kept connection still open
// then would be reset; tunnels are closed on purpose right after.
func (s *Server) KeptConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A net/http tunnel's connection may be counted out just before the
	// tunnel is.
	return max(s.conns-len(s.tunnels), 0)
}
