// Package stream is the TCP stream proxy, nginx's stream {} block: each
// accepted connection is forwarded to a server of an upstream (or a literal
// host:port), optionally behind a PROXY protocol header, with the bytes
// moved by the kernel (splice) both ways.
//
// A Server is one config generation. A reload builds a new Server and the
// listeners hand new connections to it; streams already running stay with
// the generation that accepted them, on its settings, until they end.
//
// Streams run on the event loops of an Engine (see loop.go), not on
// goroutines of their own: an idle stream costs its two sockets and a small
// struct, and a splice pipe is held only while bytes wait in it.
package stream

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/vipgate/vipgate/balancer"
	"github.com/vipgate/vipgate/config"
	"github.com/vipgate/vipgate/internal/accesslog"
	"github.com/vipgate/vipgate/proxy"
)

// Deps is what a generation uses from the rest of the process.
type Deps struct {
	Log       *zap.Logger       // nil: no logs
	AccessLog *accesslog.Writer // nil: no access log
	// Upstreams are this generation's pools, by [upstream.NAME].
	Upstreams map[string]*balancer.Upstream
	// UpstreamConfig is the configuration of the same upstreams (hash key
	// template, number of servers).
	UpstreamConfig map[string]*config.Upstream
	// Stats are the process-wide counters, shared by every generation; nil
	// gives this generation counters of its own.
	Stats *Stats
	// Now is the clock of access log lines; nil means time.Now.
	Now func() time.Time
	// Engine runs the streams; one is shared by the generations of a
	// process. Nil: the Server starts its own and stops it at the end of
	// Shutdown.
	Engine *Engine
}

// Server is one config generation of the stream proxy.
type Server struct {
	log    *zap.Logger
	access *accesslog.Writer
	stats  *Stats
	now    func() time.Time
	routes map[string]*route // by canonical listen address
	eng    *Engine
	ownEng bool

	mu       sync.Mutex
	sessions map[*session]struct{}
	draining bool // Shutdown began: new connections are closed at once
	wg       sync.WaitGroup
}

// route is one [[stream]] on one listen address.
type route struct {
	srv    *Server
	cfg    *config.Stream
	listen string

	upstream *balancer.Upstream // nil when proxy_pass is host:port
	tries    int                // servers to try before giving up
	name     string             // upstream name or host:port, for counters and logs
	hashKey  string             // balance = "hash" key template, "" otherwise
	addrs    []netip.AddrPort   // proxy_pass host:port, resolved when the generation is built

	upCounters     *upstreamCounters
	listenCounters *listenerCounters
}

// New builds one generation from the [[stream]] sections of a validated
// config.
func New(streams []*config.Stream, deps Deps) (*Server, error) {
	s := &Server{
		log:      deps.Log,
		access:   deps.AccessLog,
		stats:    deps.Stats,
		now:      deps.Now,
		routes:   map[string]*route{},
		sessions: map[*session]struct{}{},
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.stats == nil {
		s.stats = NewStats()
	}
	if s.now == nil {
		s.now = time.Now
	}
	for i, sc := range streams {
		if sc == nil {
			continue
		}
		path := fmt.Sprintf("stream[%d]", i)
		proto := route{srv: s, cfg: sc, tries: 1, name: sc.Address}
		switch {
		case sc.Upstream != "":
			u := deps.Upstreams[sc.Upstream]
			if u == nil {
				return nil, fmt.Errorf("%s: proxy_pass %q: no such upstream in this generation", path, sc.Upstream)
			}
			proto.upstream, proto.name = u, sc.Upstream
			proto.tries = len(u.Servers())
			if uc := deps.UpstreamConfig[sc.Upstream]; uc != nil && uc.Balance == "hash" {
				proto.hashKey = uc.Hash
			}
		case sc.Address == "":
			return nil, fmt.Errorf("%s: proxy_pass %q is neither an upstream nor host:port", path, sc.ProxyPass)
		}
		if proto.tries < 1 {
			proto.tries = 1
		}
		if proto.upstream == nil {
			addrs, err := resolve(sc.Address)
			if err != nil {
				return nil, fmt.Errorf("%s: proxy_pass %s: %w", path, sc.Address, err)
			}
			proto.addrs, proto.tries = addrs, len(addrs)
		}
		proto.upCounters = s.stats.upstream(proto.name)
		for _, l := range sc.Listen {
			addr, err := config.ParseListen(l)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			if _, dup := s.routes[addr]; dup {
				return nil, fmt.Errorf("%s: listen %s is already a stream listener", path, addr)
			}
			r := proto
			r.listen = addr
			r.listenCounters = s.stats.listener(addr)
			s.routes[addr] = &r
		}
	}
	s.eng = deps.Engine
	if s.eng == nil {
		eng, err := NewEngine(0)
		if err != nil {
			return nil, err
		}
		s.eng, s.ownEng = eng, true
	}
	return s, nil
}

// resolve turns host:port into addresses, as nginx does for a proxy_pass
// host when it loads the configuration: a name with several addresses is
// tried address by address.
func resolve(hostport string) ([]netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return []netip.AddrPort{ap}, nil
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", port, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	out := make([]netip.AddrPort, 0, len(ips))
	for _, ip := range ips {
		out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(p)))
	}
	return out, nil
}

// resolveTimeout bounds the lookup of a proxy_pass host name.
const resolveTimeout = 5 * time.Second

func keepalive(sc *config.Stream) bool { return sc.SOKeepalive == nil || *sc.SOKeepalive }
func nodelay(sc *config.Stream) bool   { return sc.TCPNoDelay == nil || *sc.TCPNoDelay }

// Listens returns the canonical listen addresses of this generation.
func (s *Server) Listens() []string {
	out := make([]string, 0, len(s.routes))
	for a := range s.routes {
		out = append(out, a)
	}
	return out
}

// Handler returns the handler of the [[stream]] listening on listenAddr
// (canonical, as config.ParseListen returns it). For an address this
// generation does not serve, the handler closes every connection and logs
// why.
func (s *Server) Handler(listenAddr string) proxy.Handler {
	if r := s.routes[listenAddr]; r != nil {
		return r
	}
	return unserved{log: s.log, listen: listenAddr}
}

// unserved closes every connection of a listener a generation does not
// serve, and says why.
type unserved struct {
	log    *zap.Logger
	listen string
}

func (u unserved) ServeConn(c net.Conn) {
	u.log.Error("stream: connection on a listener this generation does not serve", zap.String("listen", u.listen))
	_ = c.Close()
}

// Stats returns the counters this generation writes to.
func (s *Server) Stats() *Stats { return s.stats }

// Active returns the number of streams of this generation (from accept to
// close, the PROXY header read and connect included).
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// CloseLongLived closes every stream of this generation now (handover step
// 3: the VIP has moved, so clients should reconnect to the new master at
// once). New connections are still served.
func (s *Server) CloseLongLived() {
	s.abortAll(endHandover)
}

// CloseForStop closes every stream of this generation now because the
// node stops (their access lines say "stop", not "handover").
func (s *Server) CloseForStop() {
	s.abortAll(endStop)
}

// Shutdown stops serving new connections, waits for the streams to end
// until ctx is done, then closes the rest and waits for them to finish.
// It returns ctx.Err() when streams had to be closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.closeEngine()
		return nil
	case <-ctx.Done():
	}
	cut := s.abortAll(endShutdown)
	<-done
	s.closeEngine()
	if cut == 0 {
		return nil // nothing was left to cut after all
	}
	return ctx.Err()
}

// closeEngine stops the Server's own engine once its streams have ended.
func (s *Server) closeEngine() {
	if s.ownEng {
		s.eng.Close()
	}
}

// abortAll ends every stream (why says how, in its access log line) and
// returns how many there were.
func (s *Server) abortAll(why endReason) int {
	s.mu.Lock()
	list := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		list = append(list, ss)
	}
	s.mu.Unlock()
	for _, ss := range list {
		ss.lp.post(posted{op: opAbort, ss: ss, why: why})
	}
	return len(list)
}

// add registers a new session, or reports false when draining.
func (s *Server) add(ss *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.sessions[ss] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) remove(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
	s.wg.Done()
}

// expandHashKey evaluates a hash key template with the stream variables
// nginx offers at that point ($remote_addr, $remote_port, $server_addr,
// $server_port); other text is kept as is.
func expandHashKey(tmpl string, client, local netip.AddrPort) string {
	return config.ExpandTemplate(tmpl, func(name string) string {
		switch name {
		case "remote_addr":
			return client.Addr().Unmap().String()
		case "remote_port":
			return strconv.Itoa(int(client.Port()))
		case "server_addr":
			return local.Addr().Unmap().String()
		case "server_port":
			return strconv.Itoa(int(local.Port()))
		}
		return "" // refused by the config check for upstreams of streams
	})
}
