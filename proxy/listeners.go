// Package proxy owns the listening sockets shared by the HTTP and stream
// proxies: they are kept by address across reloads (the same socket, so no
// connection is refused while a reload happens), bound with IP_FREEBIND so a
// listener on a VIP works on a node that does not hold the VIP yet, and each
// accepted connection goes to the handler of the configuration generation
// current at accept time.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Handler serves one accepted client connection; it owns c and must close
// it. The accept loop runs ServeConn on a warm goroutine, one that served a
// connection before and is waiting for the next, or on a new one that then
// stays warm: serving a connection (connecting upstream, the HTTP request
// path) grows a fresh goroutine's 2 KiB stack two or three times, copying
// it each time, which was 3-5% of the CPU a short connection costs.
type Handler interface {
	ServeConn(c net.Conn)
}

// An AcceptEngine accepts on listening sockets itself, on event loops of
// its own (the stream proxy's), instead of Go's net: it skips what Go's net
// does for each connection (an address lookup, a netpoller registration,
// TCP_NODELAY whatever the config says, and an epoll removal at close) and
// the hand-over from an accept goroutine. Attach starts accepting on l, handing each connection
// to the handler current at that moment (l.Handler); Detach stops, and
// once it returns nothing more is accepted through the engine.
type AcceptEngine interface {
	Attach(l *Listener) error
	Detach(l *Listener)
}

// EngineHandler is a Handler whose connections an AcceptEngine accepts.
// While a listener's handler is one, the listener's own accept loop waits
// and the engine accepts; ServeConn is still used for connections Go's net
// accepted before a reload made the handler current.
type EngineHandler interface {
	Handler
	AcceptEngine() AcceptEngine
}

// warmIdle is how long a warm goroutine waits for the next connection
// before it ends.
const warmIdle = time.Second

type connWork struct {
	h Handler
	c net.Conn
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(c net.Conn)

// ServeConn calls f(c).
func (f HandlerFunc) ServeConn(c net.Conn) { f(c) }

// Listeners is the set of listening sockets of the process.
type Listeners struct {
	log *zap.Logger

	mu     sync.Mutex
	byAddr map[string]*Listener
	closed bool
}

// NewListeners returns an empty set.
func NewListeners(log *zap.Logger) *Listeners {
	return &Listeners{log: log, byAddr: map[string]*Listener{}}
}

// Apply makes the set listen on exactly the addresses of handlers (keys in
// config.ParseListen's canonical form) and hands each new connection to its
// handler. Kept addresses keep their socket; new ones are bound first, and a
// bind failure closes them again and leaves the old set untouched. Removed
// listeners are closed; connections they accepted stay with their handler.
func (ls *Listeners) Apply(handlers map[string]Handler) error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closed {
		return errors.New("listeners: already closed")
	}
	opened := map[string]*Listener{}
	for addr := range handlers {
		if _, ok := ls.byAddr[addr]; ok {
			continue
		}
		l, err := Listen(addr)
		if err != nil {
			for _, o := range opened {
				_ = o.ln.Close()
			}
			return err
		}
		opened[addr] = &Listener{addr: addr, ln: l, log: ls.log.With(zap.String("listen", addr)), done: make(chan struct{}),
			warm: make(chan connWork), stopWarm: make(chan struct{}), closing: make(chan struct{}), changed: make(chan struct{}, 1)}
	}
	for addr, l := range ls.byAddr {
		if _, keep := handlers[addr]; !keep {
			l.close()
			delete(ls.byAddr, addr)
			ls.log.Info("listener closed", zap.String("listen", addr))
		}
	}
	for addr, h := range handlers {
		l, ok := ls.byAddr[addr]
		if !ok {
			l = opened[addr]
			ls.byAddr[addr] = l
			l.handler.Store(&h)
			l.loopRunning.Store(true) // before the goroutine runs: Status must not see a gap
			go l.acceptLoop()
			ls.log.Info("listening", zap.String("listen", addr))
			continue
		}
		l.handler.Store(&h)
		select {
		case l.changed <- struct{}{}:
		default:
		}
	}
	return nil
}

// Close closes every listener and waits for their accept loops to end.
func (ls *Listeners) Close() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.closed = true
	for addr, l := range ls.byAddr {
		l.close()
		delete(ls.byAddr, addr)
	}
}

// Status reports each listener's accept health, sorted by address.
func (ls *Listeners) Status() []ListenerStatus {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	out := make([]ListenerStatus, 0, len(ls.byAddr))
	for _, l := range ls.byAddr {
		out = append(out, l.Status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out
}

// Get returns the listener on addr, or nil.
func (ls *Listeners) Get(addr string) *Listener {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.byAddr[addr]
}

// Listener is one listening socket and its accept loop.
type Listener struct {
	addr    string
	ln      net.Listener
	log     *zap.Logger
	handler atomic.Pointer[Handler]
	done    chan struct{}
	// warm hands connections to an idle warm goroutine; stopWarm (closed
	// with the listener) ends the idle ones.
	warm     chan connWork
	stopWarm chan struct{}

	accepted      atomic.Uint64
	acceptErrors  atomic.Uint64
	failingSince  atomic.Int64 // unix nanos of the first of the current run of accept errors; 0 = accepting fine
	lastErr       atomic.Pointer[string]
	loopRunning   atomic.Bool
	closeOnce     sync.Once
	stopWarmOnce  sync.Once
	closedByOwner atomic.Bool
	closing       chan struct{} // closed when the owner closes the listener
	changed       chan struct{} // a new handler was stored (capacity 1)
}

// ListenerStatus is what the node self-check and the admin API see.
type ListenerStatus struct {
	Address      string
	Serving      bool   // the accept loop runs and is not failing
	Accepted     uint64 // connections accepted since start
	AcceptErrors uint64
	LastError    string
}

// Status reports the listener's accept health.
func (l *Listener) Status() ListenerStatus {
	st := ListenerStatus{
		Address:      l.addr,
		Accepted:     l.accepted.Load(),
		AcceptErrors: l.acceptErrors.Load(),
	}
	if e := l.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	st.Serving = l.loopRunning.Load() && l.failingSince.Load() == 0
	return st
}

// Addr is the socket's bound address (useful when listening on port 0 in tests).
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

func (l *Listener) close() {
	l.closeOnce.Do(func() {
		l.closedByOwner.Store(true)
		close(l.closing)
		_ = l.ln.Close()
	})
	<-l.done
	l.stopWarmOnce.Do(func() { close(l.stopWarm) })
}

// serveWarm runs h.ServeConn(c) on an idle warm goroutine, or on a new one
// that stays warm for the next connection.
func (l *Listener) serveWarm(h Handler, c net.Conn) {
	select {
	case l.warm <- connWork{h, c}:
	default:
		go l.warmLoop(connWork{h, c})
	}
}

// warmLoop serves connections until none comes for warmIdle or the listener
// closes. A goroutine busy in ServeConn when the listener closes ends when
// that returns; the handler bounds it (connect timeout, session abort).
//
// The idle timer is not reset per connection (a timer change takes the
// timer heap's lock, 2% of the CPU a new HTTP connection costs): when it
// fires, the goroutine looks at how long it has really been idle.
func (l *Listener) warmLoop(w connWork) {
	idle := time.NewTimer(warmIdle)
	defer idle.Stop()
	for {
		w.h.ServeConn(w.c)
		w = connWork{}
		idleSince := time.Now()
	wait:
		select {
		case w = <-l.warm:
		case <-idle.C:
			if left := warmIdle - time.Since(idleSince); left > 0 {
				idle.Reset(left)
				goto wait
			}
			return
		case <-l.stopWarm:
			return
		}
	}
}

func (l *Listener) acceptLoop() {
	defer func() {
		l.loopRunning.Store(false)
		close(l.done)
	}()
	backoff := 5 * time.Millisecond
	var refusedBy AcceptEngine // not asked again: Go's net accepts instead
	for {
		if eh, ok := l.Handler().(EngineHandler); ok {
			if eng := eh.AcceptEngine(); eng != nil && eng != refusedBy {
				if err := eng.Attach(l); err != nil {
					refusedBy = eng
					l.log.Error("accept engine refused the listener: accepting through Go's net", zap.Error(err))
				} else {
					closing := l.waitEngineDone(eng)
					eng.Detach(l)
					if closing {
						return
					}
					continue
				}
			}
		}
		c, err := l.ln.Accept()
		if err != nil {
			if l.closedByOwner.Load() {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				l.AcceptFailed(err)
				// The socket is gone without us closing it: nothing left to retry.
				l.log.Error("listener socket closed unexpectedly", zap.Error(err))
				return
			}
			// EMFILE/ENFILE and friends: back off (as net/http does) and keep
			// trying; the node self-check sees the failing state meanwhile.
			l.AcceptFailed(err)
			l.log.Warn("accept failed", zap.Error(err), zap.Duration("retry_in", backoff))
			time.Sleep(backoff)
			if backoff < time.Second {
				backoff *= 2
			}
			continue
		}
		backoff = 5 * time.Millisecond
		l.Accepted()
		l.Serve(c)
	}
}

// waitEngineDone waits while eng accepts for the listener: until a reload
// stores a handler of another kind (false) or the listener closes (true).
func (l *Listener) waitEngineDone(eng AcceptEngine) (closing bool) {
	for {
		select {
		case <-l.closing:
			return true
		case <-l.changed:
			if eh, ok := l.Handler().(EngineHandler); !ok || eh.AcceptEngine() != eng {
				return false
			}
		}
	}
}

// Handler is the handler of the generation current now.
func (l *Listener) Handler() Handler { return *l.handler.Load() }

// Serve hands an accepted connection to the current handler, on a warm
// goroutine.
func (l *Listener) Serve(c net.Conn) { l.serveWarm(l.Handler(), c) }

// Accepted records an accepted connection (and that accepting works).
func (l *Listener) Accepted() {
	l.failingSince.Store(0)
	l.accepted.Add(1)
}

// AcceptFailed records a failed accept; the listener counts as failing
// until the next Accepted.
func (l *Listener) AcceptFailed(err error) {
	l.acceptErrors.Add(1)
	msg := err.Error()
	l.lastErr.Store(&msg)
	l.failingSince.CompareAndSwap(0, time.Now().UnixNano())
}

// Log is the listener's logger.
func (l *Listener) Log() *zap.Logger { return l.log }

// DupFD returns a duplicate of the listening socket's descriptor (the same
// non-blocking socket), owned by the caller, who must close it for the
// socket to close.
func (l *Listener) DupFD() (int, error) {
	sc, ok := l.ln.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket listener")
	}
	return DupSocket(sc)
}

// DupSocket duplicates a socket's descriptor (close-on-exec), for an event
// loop that takes the socket over from Go's net; the caller owns the copy.
func DupSocket(sc syscall.Conn) (int, error) {
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	dup := -1
	var derr error
	if err := raw.Control(func(fd uintptr) { dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", derr)
	}
	return dup, nil
}

// Listen binds addr with SO_REUSEADDR and IP_FREEBIND / IPV6_FREEBIND:
// the listening socket of every proxy listener (tests use it to listen as
// the daemon does).
func Listen(addr string) (net.Listener, error) {
	// KeepAlive -1: accepted sockets get no Go keep-alive timers (four
	// setsockopt calls per accept). Instead the listening socket has
	// SO_KEEPALIVE, which every accepted socket inherits from it at no cost:
	// keep-alive with the system's timers, as nginx's so_keepalive=on. A
	// stream with so_keepalive = false turns it off on its connections.
	lc := net.ListenConfig{KeepAlive: -1, Control: func(network, address string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1); serr != nil {
				return
			}
			// Accepted sockets inherit TCP_NODELAY too: Go's net sets it
			// again on each, the stream proxy's raw accept does not.
			if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); serr != nil {
				return
			}
			if network == "tcp6" {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
				return
			}
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	// Plain TCP, not Go's MPTCP default: the stop sequence attaches a socket
	// filter to hold new connections, which MPTCP listeners refuse.
	lc.SetMultipathTCP(false)
	l, err := lc.Listen(context.Background(), Network(addr), addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return l, nil
}

// Network is the network to listen on addr with: "tcp4" for an IPv4
// address, so that 0.0.0.0 is IPv4 only as nginx's "listen 80" (Go's "tcp"
// makes it a dual-stack [::] socket, which also serves IPv6 clients and
// takes [::1]'s port); "tcp" for the rest ([::] stays dual-stack).
func Network(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err == nil {
		if ip, perr := netip.ParseAddr(host); perr == nil && ip.Is4() {
			return "tcp4"
		}
	}
	return "tcp"
}
