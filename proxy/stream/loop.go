package stream

import (
	"container/heap"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/vipgate/vipgate/internal/rawsys"
	"github.com/vipgate/vipgate/proxy"
)

// Engine runs the event loops that serve every stream: one loop per
// GOMAXPROCS, each an epoll set of its own. Go's netpoller watches the
// set's descriptor, so a loop's goroutine parks like any other while none
// of its sockets is ready, and then serves every ready socket of every
// stream on the loop in one turn.
//
// Why not a goroutine per direction on Go's net: per short connection Go's
// net makes about nine system calls more than an event loop needs (address
// lookups on accept and dial, an EAGAIN read before every wait, because a
// new wait forgets readiness that arrived before it, and an epoll removal
// before every close), and those were most of the gap to nginx's CPU per
// connection. The loop also knows from EPOLLRDHUP when a short read
// drained the socket, so it never reads just to learn that.
//
// An Engine is shared by the generations of a process; streams stay on the
// loop they started on.
type Engine struct {
	loops []*loop
	next  atomic.Uint32
	wg    sync.WaitGroup
	once  sync.Once

	mu       sync.Mutex
	closed   bool
	attached map[*proxy.Listener]int // the duplicate descriptor the loops watch
}

// NewEngine starts n loops (runtime.GOMAXPROCS when n <= 0).
func NewEngine(n int) (*Engine, error) {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	e := &Engine{attached: map[*proxy.Listener]int{}}
	for range n {
		lp, err := newLoop(e)
		if err != nil {
			e.Close()
			return nil, err
		}
		e.loops = append(e.loops, lp)
		e.wg.Add(1)
		go lp.run(&e.wg)
	}
	return e, nil
}

// Close stops the loops and waits for them. Sockets of streams still open
// on them are closed without a log line or counters: stop every Server
// first (Shutdown), as the daemon does.
func (e *Engine) Close() {
	e.once.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		for _, lp := range e.loops {
			lp.post(posted{op: opStop})
		}
	})
	e.wg.Wait()
}

// attachment is a listening socket a loop accepts on: a duplicate of its
// descriptor, in the epoll set of every loop of the engine. A new
// connection makes every loop's set ready: EPOLLEXCLUSIVE limits the
// wake-up to one waiter only for threads waiting on the set itself, and
// Go's netpoller waits on the sets from its own. Each loop accepts until
// the queue is empty; the others find it empty (one accept4 each).
type attachment struct {
	l       *proxy.Listener
	fd      int
	backoff time.Duration // after an accept error (EMFILE...), per loop
	retryAt time.Time
}

// Attach implements proxy.AcceptEngine.
func (e *Engine) Attach(l *proxy.Listener) error {
	fd, err := l.DupFD()
	if err != nil {
		return fmt.Errorf("stream engine: %w", err)
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		_ = sysClose(fd)
		return errors.New("stream engine: closed")
	}
	if _, dup := e.attached[l]; dup {
		e.mu.Unlock()
		_ = sysClose(fd)
		return nil
	}
	e.attached[l] = fd
	// Under mu: Close waits for this, so no loop stops before it ran it.
	var refused attachRefusal
	e.onEveryLoop(posted{op: opAttach, fd: fd, l: l, refused: &refused})
	if err := refused.get(); err != nil {
		// Left half attached, the listener would accept on some loops
		// only, or on none while reporting itself serving: give it back
		// to Go's net whole.
		delete(e.attached, l)
		e.onEveryLoop(posted{op: opDetach, fd: fd})
		e.mu.Unlock()
		_ = sysClose(fd)
		return fmt.Errorf("stream engine: watch the listening socket: %w", err)
	}
	e.mu.Unlock()
	return nil
}

// attachRefusal is the first error a loop met adding a listening socket.
type attachRefusal struct {
	mu  sync.Mutex
	err error
}

func (r *attachRefusal) set(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

func (r *attachRefusal) get() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Detach implements proxy.AcceptEngine.
func (e *Engine) Detach(l *proxy.Listener) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fd, ok := e.attached[l]
	if !ok {
		return
	}
	delete(e.attached, l)
	if !e.closed {
		e.onEveryLoop(posted{op: opDetach, fd: fd})
	}
	_ = sysClose(fd)
}

// onEveryLoop posts p to every loop and waits until they all ran it.
func (e *Engine) onEveryLoop(p posted) {
	var wg sync.WaitGroup
	wg.Add(len(e.loops))
	p.done = &wg
	for _, lp := range e.loops {
		lp.post(p)
	}
	wg.Wait()
}

func (e *Engine) pick() *loop {
	return e.loops[int(e.next.Add(1))%len(e.loops)]
}

type postOp uint8

const (
	opStop   postOp = iota // end the loop
	opAbort                // end a stream from outside (handover, shutdown)
	opServe                // serve a connection accepted elsewhere (ServeConn)
	opAttach               // accept on a listening socket
	opDetach               // stop accepting on it
)

type posted struct {
	op   postOp
	ss   *session
	why  endReason
	r    *route
	fd   int
	peer netip.AddrPort
	l    *proxy.Listener
	done *sync.WaitGroup // opAttach, opDetach: Done once run

	refused *attachRefusal // opAttach: where a loop reports failing to watch
}

// loop is one event loop. Everything about its streams is touched only on
// its goroutine; other goroutines hand work over with post.
type loop struct {
	eng      *Engine
	epfd     int
	wakefd   int // eventfd in the set: posted work is waiting
	file     *os.File
	raw      syscall.RawConn
	events   []unix.EpollEvent
	buf      []byte    // copy buffer, used within one call
	timers   timerHeap // streams by due time
	wakeAt   time.Time // the epoll descriptor's read deadline, zero for none
	stopped  bool
	pipes    []*pipe   // spare splice pipes
	pipeUsed time.Time // last time a pipe was taken or given back
	// pipeWarned is when a failed pipe2 was last logged (at most once a
	// minute: under descriptor exhaustion every burst fails).
	pipeWarned time.Time
	nextID     uint32
	byFD       map[int32]*session    // every socket of the loop's streams
	accepts    map[int32]*attachment // listening sockets, by descriptor
	retry      bool                  // an attachment waits for its retryAt

	mu     sync.Mutex // guards the three below: other goroutines post
	posts  []posted
	woken  bool // wakefd written since the loop last read it
	closed bool // the loop has stopped: wakefd is closed
}

func newLoop(e *Engine) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("stream engine: epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = sysClose(epfd)
		return nil, fmt.Errorf("stream engine: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(wakefd)}
	if err := sysEpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		_ = sysClose(epfd)
		_ = sysClose(wakefd)
		return nil, fmt.Errorf("stream engine: add eventfd: %w", err)
	}
	// A non-blocking descriptor is one os.NewFile registers with Go's
	// netpoller; an epoll descriptor is readable while its set has events.
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = sysClose(epfd)
		_ = sysClose(wakefd)
		return nil, fmt.Errorf("stream engine: epoll descriptor non-blocking: %w", err)
	}
	file := os.NewFile(uintptr(epfd), "stream-engine-epoll")
	raw, err := file.SyscallConn()
	if err != nil {
		_ = file.Close()
		_ = sysClose(wakefd)
		return nil, fmt.Errorf("stream engine: %w", err)
	}
	return &loop{
		eng: e, epfd: epfd, wakefd: wakefd, file: file, raw: raw, accepts: map[int32]*attachment{},
		events: make([]unix.EpollEvent, 128),
		buf:    make([]byte, copyBufSize),
		byFD:   map[int32]*session{},
	}, nil
}

func (lp *loop) run(wg *sync.WaitGroup) {
	defer wg.Done()
	defer func() {
		for fd := range lp.byFD {
			_ = sysClose(int(fd))
		}
		for _, p := range lp.pipes {
			p.close()
		}
		_ = lp.file.Close()
		lp.mu.Lock()
		lp.closed = true
		left := lp.posts
		lp.posts = nil
		_ = sysClose(lp.wakefd)
		lp.mu.Unlock()
		for _, p := range left {
			p.drop()
		}
	}()
	for !lp.stopped {
		// One Read runs turns until the set is empty, then waits; it
		// returns on the read deadline (the next timer) or when stopped.
		// A new Read forgets readiness seen before it, which is why poll
		// always asks the set first.
		err := lp.raw.Read(lp.poll)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			// Only closing the descriptor ends the wait with an error,
			// and only this goroutine closes it.
			panic(fmt.Sprintf("stream engine: wait on epoll descriptor: %v", err))
		}
		now := time.Now()
		lp.runTimers(now)
		lp.retryAccepts(now)
		lp.trimPipes(now)
		// A deadline that has passed fails the next wait before poll
		// runs, so move it here as well.
		lp.setWake()
	}
}

// poll is the RawConn.Read callback: it runs turns while the set has
// events and reports false (wait) once it has none.
func (lp *loop) poll(uintptr) bool {
	for {
		n, err := sysEpollWait(lp.epfd, lp.events)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			panic(fmt.Sprintf("stream engine: epoll_wait: %v", err))
		}
		if n > 0 {
			lp.turn(lp.events[:n])
		}
		if lp.stopped {
			return true
		}
		if n < len(lp.events) {
			// The set was empty when asked: anything ready from now on
			// makes the descriptor readable again, which wakes the wait.
			lp.setWake()
			return false
		}
		// A full batch: more may be waiting. Timers must not wait for a
		// quiet moment that may not come.
		if len(lp.timers) > 0 || lp.retry {
			now := time.Now()
			lp.runTimers(now)
			lp.retryAccepts(now)
		}
	}
}

// turn serves one batch of events.
func (lp *loop) turn(evs []unix.EpollEvent) {
	for i := range evs {
		fd := evs[i].Fd
		if ss := lp.byFD[fd]; ss != nil {
			// A stream that ended earlier in this batch is gone from byFD;
			// one that took its descriptor number since has another id.
			if ss.id == uint32(evs[i].Pad) {
				ss.onEvent(int(fd), evs[i].Events)
			}
			continue
		}
		if a := lp.accepts[fd]; a != nil && evs[i].Pad == 0 {
			// Backing off after EMFILE: each new connection would fail
			// (and log) again; retryAccepts takes the queue when due.
			if a.retryAt.IsZero() {
				lp.accept(a)
			}
		} else if int(fd) == lp.wakefd {
			lp.runPosted()
		}
	}
}

// accept takes every connection queued on a listening socket (the set
// reports it edge-triggered, so the queue is emptied) and serves each with
// the handler current now.
func (lp *loop) accept(a *attachment) {
	for {
		fd, peer, err := accept4(a.fd)
		switch err {
		case nil:
		case unix.EINTR, unix.ECONNABORTED,
			// Errors pending on the new connection, which accept(2)
			// reports and says to treat as EAGAIN: that connection is
			// gone, the next one may be fine.
			unix.EPROTO, unix.ENOPROTOOPT, unix.EHOSTDOWN, unix.ENONET, unix.EHOSTUNREACH,
			unix.EOPNOTSUPP, unix.ENETDOWN, unix.ENETUNREACH, unix.EPERM:
			continue
		case unix.EAGAIN:
			a.backoff = 0
			return
		default:
			// EMFILE, ENFILE, ENOBUFS: try again later (no new event
			// comes for what is already queued), as net/http does.
			a.l.AcceptFailed(err)
			a.backoff = min(max(2*a.backoff, 5*time.Millisecond), time.Second)
			a.l.Log().Warn("accept failed", zap.Error(os.NewSyscallError("accept4", err)), zap.Duration("retry_in", a.backoff))
			a.retryAt = time.Now().Add(a.backoff)
			lp.retry = true
			return
		}
		a.l.Accepted()
		lp.serveAccepted(a.l, fd, peer)
	}
}

// serveAccepted hands a new connection to the listener's current handler.
func (lp *loop) serveAccepted(l *proxy.Listener, fd int, peer netip.AddrPort) {
	switch h := l.Handler().(type) {
	case *route:
		if h.srv.eng == lp.eng {
			h.serve(lp, fd, peer)
		} else {
			h.srv.eng.pick().post(posted{op: opServe, r: h, fd: fd, peer: peer})
		}
	default:
		// A reload gave the address to another kind of handler (HTTP)
		// and the accept loop has not taken over yet.
		f := os.NewFile(uintptr(fd), "accepted")
		c, err := net.FileConn(f)
		_ = f.Close()
		if err != nil {
			l.Log().Warn("accepted connection dropped", zap.Error(err))
			return
		}
		l.Serve(c)
	}
}

// retryAccepts accepts again on listening sockets whose back-off ended.
func (lp *loop) retryAccepts(now time.Time) {
	if !lp.retry {
		return
	}
	lp.retry = false
	for _, a := range lp.accepts {
		if a.retryAt.IsZero() {
			continue
		}
		if a.retryAt.After(now) {
			lp.retry = true
			continue
		}
		a.retryAt = time.Time{}
		lp.accept(a)
	}
}

// runPosted runs the work other goroutines handed over.
func (lp *loop) runPosted() {
	var count [8]byte
	_, _ = rawsys.Read(lp.wakefd, count[:])
	lp.mu.Lock()
	posts := lp.posts
	lp.posts = nil
	lp.woken = false
	lp.mu.Unlock()
	for _, p := range posts {
		switch p.op {
		case opStop:
			lp.stopped = true
		case opAbort:
			p.ss.abort(p.why)
		case opServe:
			p.r.serve(lp, p.fd, p.peer)
		case opAttach:
			lp.attach(p)
			p.done.Done()
		case opDetach:
			if lp.accepts[int32(p.fd)] != nil {
				_ = sysEpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, p.fd, nil)
				delete(lp.accepts, int32(p.fd))
			}
			p.done.Done()
		}
	}
}

// post hands work to the loop from any goroutine; a loop that has stopped
// drops it.
func (lp *loop) post(p posted) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if lp.closed {
		p.drop()
		return
	}
	lp.posts = append(lp.posts, p)
	if !lp.woken {
		lp.woken = true
		// Under mu: the stopping loop closes wakefd under it too, so the
		// number cannot have been reused by then.
		one := [8]byte{1} // little-endian 1
		_, _ = rawsys.Write(lp.wakefd, one[:])
	}
}

// drop disposes of work a stopped loop will not run: a connection handed
// over is closed, a waiter released.
func (p posted) drop() {
	if p.op == opServe {
		_ = sysClose(p.fd)
	}
	if p.done != nil {
		p.done.Done()
	}
}

// attach starts accepting on a listening socket.
func (lp *loop) attach(p posted) {
	a := &attachment{l: p.l, fd: p.fd}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET | unix.EPOLLEXCLUSIVE, Fd: int32(p.fd)}
	if err := sysEpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, p.fd, &ev); err != nil {
		p.refused.set(os.NewSyscallError("epoll_ctl", err))
		return
	}
	lp.accepts[int32(p.fd)] = a
	lp.accept(a) // what was queued before
}

// watch adds a socket of one of the loop's streams to the set.
func (lp *loop) watch(ss *session, fd int) error {
	lp.byFD[int32(fd)] = ss
	return lp.add(ss, fd)
}

// A stream's sockets are watched edge-triggered for everything, except
// that readability is left out while the direction reading the socket
// waits to hand on bytes (dir.block).
const (
	watchAll     = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
	watchNoInput = watchAll &^ unix.EPOLLIN
)

func (lp *loop) add(ss *session, fd int) error {
	ev := unix.EpollEvent{Events: watchAll, Fd: int32(fd), Pad: int32(ss.id)}
	if err := sysEpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	return nil
}

// watchInput turns the reports of a stream socket's readability on or off.
// Turning them on reports the socket at once if it is readable.
func (lp *loop) watchInput(ss *session, fd int, on bool) error {
	ev := unix.EpollEvent{Events: watchNoInput, Fd: int32(fd), Pad: int32(ss.id)}
	if on {
		ev.Events = watchAll
	}
	if err := sysEpollCtl(lp.epfd, unix.EPOLL_CTL_MOD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl mod: %w", err)
	}
	return nil
}

// forget closes a socket of the loop. Closing removes it from the set.
func (lp *loop) forget(fd int) {
	delete(lp.byFD, int32(fd))
	_ = sysClose(fd)
}

// schedule puts a stream in the timer heap at ss.due, or takes it out when
// due is zero.
func (lp *loop) schedule(ss *session) {
	switch {
	case ss.due.IsZero() && ss.heapIndex >= 0:
		heap.Remove(&lp.timers, ss.heapIndex)
	case ss.due.IsZero():
	case ss.heapIndex >= 0:
		heap.Fix(&lp.timers, ss.heapIndex)
	default:
		heap.Push(&lp.timers, ss)
	}
}

// runTimers serves the streams whose due time has come.
func (lp *loop) runTimers(now time.Time) {
	for len(lp.timers) > 0 && !lp.timers[0].due.After(now) {
		ss := lp.timers[0]
		heap.Pop(&lp.timers)
		ss.due = time.Time{}
		ss.onTimer(now)
	}
}

// setWake makes the wait end at the earliest due time.
func (lp *loop) setWake() {
	var at time.Time
	if len(lp.timers) > 0 {
		at = lp.timers[0].due
	}
	if len(lp.pipes) > 0 {
		if t := lp.pipeUsed.Add(spareIdle); at.IsZero() || t.Before(at) {
			at = t
		}
	}
	if lp.retry {
		for _, a := range lp.accepts {
			if !a.retryAt.IsZero() && (at.IsZero() || a.retryAt.Before(at)) {
				at = a.retryAt
			}
		}
	}
	if at.Equal(lp.wakeAt) {
		return
	}
	lp.wakeAt = at
	_ = lp.file.SetReadDeadline(at)
}

// timerHeap orders streams by due time.
type timerHeap []*session

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex = i
	h[j].heapIndex = j
}
func (h *timerHeap) Push(x any) {
	ss := x.(*session)
	ss.heapIndex = len(*h)
	*h = append(*h, ss)
}
func (h *timerHeap) Pop() any {
	old := *h
	ss := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	ss.heapIndex = -1
	return ss
}

// pipe is a splice pipe. A direction holds one only while bytes are in
// it; the loop keeps a few spare ones for the next burst.
type pipe struct {
	r, w int
}

func (p *pipe) close() {
	_ = sysClose(p.r)
	_ = sysClose(p.w)
}

// maxSparePipes bounds the pipes a loop keeps between bursts; spare pipes
// are closed once no burst has used one for spareIdle, so quiet streams
// cost no pipe at all.
const (
	maxSparePipes = 4
	spareIdle     = time.Second
)

// pipeSize is what a pipe is grown to (F_SETPIPE_SZ), and so what one
// splice moves at most. Measured with one bulk stream (make bench, both
// loads): 256 KiB moved 4-6% more than 1 MiB (iperf3 14.2-14.9 against
// 13.5-14.2 Gbit/s, from memory 12.1-12.5 against 11.5-11.7), 64 KiB was
// best from memory and worst with iperf3. Smaller bursts keep fewer pages
// in flight and open the client's window in smaller steps. A blocked
// stream holds at most this much in its pipe.
const pipeSize = 256 << 10

func (lp *loop) getPipe() (*pipe, error) {
	lp.pipeUsed = time.Now()
	if n := len(lp.pipes); n > 0 {
		p := lp.pipes[n-1]
		lp.pipes = lp.pipes[:n-1]
		return p, nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	// Best effort: beyond fs.pipe-max-size or the user's pipe quota the
	// pipe keeps its default size.
	_, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, pipeSize)
	return &pipe{r: fds[0], w: fds[1]}, nil
}

// putPipe takes back an empty pipe.
func (lp *loop) putPipe(p *pipe) {
	lp.pipeUsed = time.Now()
	if len(lp.pipes) < maxSparePipes {
		lp.pipes = append(lp.pipes, p)
		return
	}
	p.close()
}

// trimPipes closes the spare pipes once none was used for spareIdle.
func (lp *loop) trimPipes(now time.Time) {
	if len(lp.pipes) == 0 || now.Sub(lp.pipeUsed) < spareIdle {
		return
	}
	for _, p := range lp.pipes {
		p.close()
	}
	lp.pipes = lp.pipes[:0]
}

// accept4 accepts a connection as a non-blocking descriptor. It reads the
// peer's address itself: x/sys's Accept4 asks the socket's protocol with
// one more system call per connection (to tell L2TP sockets apart).
func accept4(lfd int) (int, netip.AddrPort, error) {
	var rsa unix.RawSockaddrAny
	size := uint32(unix.SizeofSockaddrAny)
	fd, _, errno := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&size)),
		unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, netip.AddrPort{}, errno
	}
	return int(fd), rawAddrPort(&rsa), nil
}

// getsockname is the socket's own address, without x/sys's extra call.
func getsockname(fd int) netip.AddrPort {
	var rsa unix.RawSockaddrAny
	size := uint32(unix.SizeofSockaddrAny)
	_, _, errno := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&size)))
	if errno != 0 {
		return netip.AddrPort{}
	}
	return rawAddrPort(&rsa)
}

func rawAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		port := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(port[0])<<8|uint16(port[1]))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		port := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(port[0])<<8|uint16(port[1]))
	}
	return netip.AddrPort{}
}
