package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
)

// answer returns a Handler that writes name and closes.
func answer(name string, served *atomic.Int64) Handler {
	return HandlerFunc(func(c net.Conn) {
		served.Add(1)
		_, _ = io.WriteString(c, name)
		_ = c.Close()
	})
}

func dialRead(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read %s: %v", addr, err)
	}
	return string(b)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestApplyKeepsSocketsAndSwapsHandlers(t *testing.T) {
	defer goleak.VerifyNone(t)
	ls := NewListeners(zap.NewNop())
	defer ls.Close()
	a, b := freeAddr(t), freeAddr(t)
	var served atomic.Int64
	if err := ls.Apply(map[string]Handler{a: answer("gen1", &served)}); err != nil {
		t.Fatal(err)
	}
	first := ls.Get(a)
	if got := dialRead(t, a); got != "gen1" {
		t.Fatalf("got %q", got)
	}

	// A client connects while no Apply runs, then a reload swaps the
	// handler: the queued connection is served by whichever generation is
	// current when it is accepted, and never refused.
	stop := make(chan struct{})
	refused := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				close(refused)
				return
			default:
			}
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err != nil {
				refused <- err
				close(refused)
				return
			}
			_, _ = io.ReadAll(c)
			c.Close()
		}
	}()
	for i := 2; i < 30; i++ {
		if err := ls.Apply(map[string]Handler{a: answer(fmt.Sprintf("gen%d", i), &served), b: answer("b", &served)}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	if err := <-refused; err != nil {
		t.Fatalf("a connection was refused during reloads: %v", err)
	}
	if ls.Get(a) != first {
		t.Fatalf("the listener on a kept address was replaced")
	}
	if got := dialRead(t, a); got != "gen29" {
		t.Fatalf("after reloads: %q, want the newest handler", got)
	}
	if got := dialRead(t, b); got != "b" {
		t.Fatalf("added listener: %q", got)
	}

	// Removing b closes its socket.
	if err := ls.Apply(map[string]Handler{a: answer("last", &served)}); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", b, time.Second); err == nil {
		c.Close()
		t.Fatalf("removed listener %s still accepts", b)
	}
}

func TestApplyRollsBackOnBindFailure(t *testing.T) {
	defer goleak.VerifyNone(t)
	ls := NewListeners(zap.NewNop())
	defer ls.Close()
	a, fresh := freeAddr(t), freeAddr(t)
	var served atomic.Int64
	if err := ls.Apply(map[string]Handler{a: answer("old", &served)}); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	err = ls.Apply(map[string]Handler{a: answer("new", &served), fresh: answer("fresh", &served), busy.Addr().String(): answer("busy", &served)})
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("Apply with a busy address: %v", err)
	}
	if got := dialRead(t, a); got != "old" {
		t.Fatalf("after a failed Apply the old handler must serve, got %q", got)
	}
	if c, err := net.DialTimeout("tcp", fresh, time.Second); err == nil {
		c.Close()
		t.Fatalf("a listener opened by the failed Apply was left open")
	}
}

// IP_FREEBIND lets a BACKUP listen on the VIP it does not hold yet. The
// address is a documentation one that is on no interface here; nothing is
// sent to it.
func TestFreeBindOnAddressNotHeld(t *testing.T) {
	defer goleak.VerifyNone(t)
	ls := NewListeners(zap.NewNop())
	defer ls.Close()
	var served atomic.Int64
	for _, addr := range []string{"192.0.2.231:18888", "[2001:db8::231]:18888"} {
		if err := ls.Apply(map[string]Handler{addr: answer("x", &served)}); err != nil {
			t.Fatalf("bind %s without holding the address: %v", addr, err)
		}
		if st := ls.Status(); len(st) != 1 || !st[0].Serving {
			t.Fatalf("status %+v", st)
		}
	}
}

func TestStatusReportsStoppedAcceptLoop(t *testing.T) {
	defer goleak.VerifyNone(t)
	ls := NewListeners(zap.NewNop())
	defer ls.Close()
	a := freeAddr(t)
	var served atomic.Int64
	if err := ls.Apply(map[string]Handler{a: answer("x", &served)}); err != nil {
		t.Fatal(err)
	}
	// The socket disappears under the accept loop (not closed by us).
	_ = ls.Get(a).ln.Close()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if st := ls.Status(); !st[0].Serving {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("a listener whose socket is gone still reports serving")
}

// setupAnswer is a Handler that writes name, closes, and records
// which goroutine served it.
type setupAnswer struct {
	name string
	mu   sync.Mutex
	gids map[string]int
}

func (h *setupAnswer) ServeConn(c net.Conn) {
	buf := make([]byte, 64)
	gid := strings.Fields(string(buf[:runtime.Stack(buf, false)]))[1]
	h.mu.Lock()
	h.gids[gid]++
	h.mu.Unlock()
	_, _ = io.WriteString(c, h.name)
	_ = c.Close()
}

// Connections run on warm goroutines: one after another
// they reuse the same goroutine, a reload's new handler is what serves the
// next one, and closing the listeners ends every warm goroutine.
func TestConnectionsRunOnWarmGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t)
	ls := NewListeners(zap.NewNop())
	defer ls.Close()
	a := freeAddr(t)
	h1 := &setupAnswer{name: "gen1", gids: map[string]int{}}
	if err := ls.Apply(map[string]Handler{a: h1}); err != nil {
		t.Fatal(err)
	}
	const conns = 20
	for range conns {
		if got := dialRead(t, a); got != "gen1" {
			t.Fatalf("got %q", got)
		}
	}
	// dialRead reads to EOF, so a goroutine is idle again before the next
	// dial; a little slack for the step from Close back to the wait.
	if len(h1.gids) > 3 {
		t.Errorf("%d sequential connections ran on %d goroutines, want them to reuse a warm one", conns, len(h1.gids))
	}
	h2 := &setupAnswer{name: "gen2", gids: map[string]int{}}
	if err := ls.Apply(map[string]Handler{a: h2}); err != nil {
		t.Fatal(err)
	}
	if got := dialRead(t, a); got != "gen2" {
		t.Fatalf("after a reload a warm goroutine served %q, want gen2", got)
	}
	ls.Close()
	// The idle warm goroutines end with their listener, well before warmIdle.
	deadline := time.Now().Add(warmIdle / 5)
	for {
		buf := make([]byte, 1<<20)
		if !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "warmLoop") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a warm goroutine outlived its closed listener by %v", warmIdle/5)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// heldAnswer is setupAnswer that first holds the connection for hold.
type heldAnswer struct {
	setupAnswer
	hold atomic.Int64 // nanoseconds
}

func (h *heldAnswer) ServeConn(c net.Conn) {
	time.Sleep(time.Duration(h.hold.Load()))
	h.setupAnswer.ServeConn(c)
}

// warmGoroutines counts the goroutines in warmLoop.
func warmGoroutines() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "proxy.(*Listener).warmLoop(")
}

// A warm goroutine stays warm for warmIdle after its last connection
// ended, however long that connection lasted, and ends after that while
// the listener stays open.
func TestWarmGoroutineIdleTimeCountsFromItsLastConnection(t *testing.T) {
	defer goleak.VerifyNone(t)
	ls := NewListeners(zap.NewNop())
	defer ls.Close()
	a := freeAddr(t)
	h := &heldAnswer{setupAnswer: setupAnswer{name: "x", gids: map[string]int{}}}
	h.hold.Store(int64(warmIdle + 300*time.Millisecond))
	if err := ls.Apply(map[string]Handler{a: h}); err != nil {
		t.Fatal(err)
	}
	if got := dialRead(t, a); got != "x" {
		t.Fatalf("got %q", got)
	}
	h.hold.Store(0)
	time.Sleep(20 * time.Millisecond) // back in its wait
	if got := dialRead(t, a); got != "x" {
		t.Fatalf("got %q", got)
	}
	if len(h.gids) != 1 {
		t.Errorf("a connection right after one that lasted longer than warmIdle ran on a new goroutine (%d goroutines): the warm one had quit", len(h.gids))
	}
	deadline := time.Now().Add(warmIdle + time.Second)
	for warmGoroutines() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d warm goroutines left %v after the last connection (warmIdle %v), listener open", warmGoroutines(), warmIdle+time.Second, warmIdle)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeEngine accepts through a duplicate of the listener's socket, as the
// stream engine does, and answers "engine".
type fakeEngine struct {
	mu       sync.Mutex
	attached map[*Listener]net.Listener
	wg       sync.WaitGroup
	attaches atomic.Int64
	detaches atomic.Int64
	refuse   bool // Attach fails
}

func (e *fakeEngine) Attach(l *Listener) error {
	if e.refuse {
		e.attaches.Add(1)
		return errors.New("fake engine: epoll_ctl: no space left on device")
	}
	fd, err := l.DupFD()
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), "dup")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.attached[l] = ln
	e.mu.Unlock()
	e.attaches.Add(1)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.Accepted()
			_, _ = io.WriteString(c, "engine")
			c.Close()
		}
	}()
	return nil
}

func (e *fakeEngine) Detach(l *Listener) {
	e.mu.Lock()
	ln := e.attached[l]
	delete(e.attached, l)
	e.mu.Unlock()
	ln.Close()
	e.wg.Wait()
	e.detaches.Add(1)
}

type engineHandler struct {
	Handler
	eng *fakeEngine
}

func (h engineHandler) AcceptEngine() AcceptEngine { return h.eng }

// TestEngineHandlerTakesOverAccepting: while a listener's handler is an
// EngineHandler its engine accepts (the stream proxy's event loops); a
// reload to another kind of handler gives accepting back to Go's net, and
// closing the listener detaches the engine so the socket really closes.
func TestEngineHandlerTakesOverAccepting(t *testing.T) {
	defer goleak.VerifyNone(t)
	ls := NewListeners(zap.NewNop())
	defer ls.Close()
	a := freeAddr(t)
	var served atomic.Int64
	eng := &fakeEngine{attached: map[*Listener]net.Listener{}}
	eh := engineHandler{Handler: answer("go", &served), eng: eng}
	if err := ls.Apply(map[string]Handler{a: eh}); err != nil {
		t.Fatal(err)
	}
	if got := dialRead(t, a); got != "engine" {
		t.Fatalf("with an EngineHandler: %q, want the engine to accept", got)
	}
	// Reload: same engine, new handler: the engine stays attached.
	if err := ls.Apply(map[string]Handler{a: engineHandler{Handler: answer("go2", &served), eng: eng}}); err != nil {
		t.Fatal(err)
	}
	if got := dialRead(t, a); got != "engine" || eng.attaches.Load() != 1 {
		t.Fatalf("after a reload to the same engine: %q, %d attaches", got, eng.attaches.Load())
	}
	if err := ls.Apply(map[string]Handler{a: answer("plain", &served)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for eng.detaches.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := dialRead(t, a); got != "plain" {
		t.Fatalf("after a reload to a plain handler: %q, want Go's net to accept again", got)
	}
	if err := ls.Apply(map[string]Handler{a: eh}); err != nil {
		t.Fatal(err)
	}
	// The accept loop may take one more connection through Go's net before
	// it sees the new handler: that one is served by it (ServeConn).
	got := ""
	for i := 0; i < 3 && got != "engine"; i++ {
		got = dialRead(t, a)
	}
	if got != "engine" || eng.attaches.Load() != 2 {
		t.Fatalf("back to the engine: %q, %d attaches", got, eng.attaches.Load())
	}
	if st := ls.Get(a).Status(); !st.Serving || st.Accepted < 4 {
		t.Fatalf("status %+v: want serving and the engine's accepts counted", st)
	}
	ls.Close()
	if eng.detaches.Load() != 2 {
		t.Fatalf("%d detaches after close, want 2", eng.detaches.Load())
	}
	if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
		c.Close()
		t.Fatalf("closed listener %s still accepts", a)
	}
}

// TestRefusingEngineLeavesAcceptingToGoNet: an engine that cannot watch the
// listening socket (epoll_ctl refused) is not left half attached: Go's net
// accepts and the handler serves, and the engine is not asked again for
// every connection.
func TestRefusingEngineLeavesAcceptingToGoNet(t *testing.T) {
	defer goleak.VerifyNone(t)
	ls := NewListeners(zap.NewNop())
	defer ls.Close()
	a := freeAddr(t)
	var served atomic.Int64
	eng := &fakeEngine{attached: map[*Listener]net.Listener{}, refuse: true}
	if err := ls.Apply(map[string]Handler{a: engineHandler{Handler: answer("go", &served), eng: eng}}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if got := dialRead(t, a); got != "go" {
			t.Fatalf("connection %d: %q, want Go's net to accept and the handler to serve", i, got)
		}
	}
	if n := eng.attaches.Load(); n != 1 {
		t.Errorf("the refusing engine was asked %d times, want once", n)
	}
	if st := ls.Get(a).Status(); !st.Serving || st.Accepted != 3 {
		t.Errorf("status %+v: want serving, 3 accepted", st)
	}
}
