package stream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/vipgate/vipgate/balancer"
	"github.com/vipgate/vipgate/config"
	"github.com/vipgate/vipgate/internal/accesslog"
	"github.com/vipgate/vipgate/proxy"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		runChild()
		return
	}
	goleak.VerifyTestMain(m)
}

// lockedBuffer collects access log lines from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimSpace(l.b.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// proxyHarness runs the stream proxy on one loopback listener the way the
// daemon does: proxy.Listeners accepts and hands each connection to the
// current generation, and a reload swaps the generation under running
// streams.
type proxyHarness struct {
	t      *testing.T
	ls     *proxy.Listeners
	listen string
	table  *balancer.Table
	stats  *Stats
	access *lockedBuffer

	cur  atomic.Pointer[Server]
	mu   sync.Mutex
	gens []*Server
}

// newProxy listens on a free loopback port (IPv4 or IPv6 by host) and loads
// the config that conf renders for that listen address.
func newProxy(t *testing.T, host string, conf func(listen string) string) *proxyHarness {
	t.Helper()
	ln, err := proxy.Listen(net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	listen, err := config.ParseListen(addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &proxyHarness{t: t, ls: proxy.NewListeners(zaptest.NewLogger(t)), listen: listen, table: balancer.NewTable(nil), stats: NewStats(), access: &lockedBuffer{}}
	t.Cleanup(h.close)
	h.reload(conf(h.listen))
	return h
}

// reload builds a new generation from a whole TOML file and makes it
// current; the previous one keeps its streams.
func (h *proxyHarness) reload(toml string) *Server {
	h.t.Helper()
	cfg, err := config.Parse([]byte(toml), "test.toml")
	if err != nil {
		h.t.Fatalf("config: %v\n%s", err, toml)
	}
	ups := map[string]*balancer.Upstream{}
	for name, uc := range cfg.Upstream {
		spec := balancer.UpstreamSpec{Name: name, Balance: uc.Balance}
		for _, s := range uc.Server {
			spec.Servers = append(spec.Servers, balancer.ServerSpec{Address: s.Address, Weight: *s.Weight, MaxFails: *s.MaxFails,
				FailTimeout: s.FailTimeout.Duration, Backup: s.Backup, Down: s.Down, MaxConns: s.MaxConns})
		}
		u, err := h.table.Build(spec)
		if err != nil {
			h.t.Fatal(err)
		}
		ups[name] = u
	}
	srv, err := New(cfg.Stream, Deps{
		Log:            zaptest.NewLogger(h.t),
		AccessLog:      accesslog.New(h.access),
		Upstreams:      ups,
		UpstreamConfig: cfg.Upstream,
		Stats:          h.stats,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	h.gens = append(h.gens, srv)
	h.mu.Unlock()
	h.cur.Store(srv)
	if err := h.ls.Apply(map[string]proxy.Handler{h.listen: srv.Handler(h.listen)}); err != nil {
		h.t.Fatal(err)
	}
	return srv
}

func (h *proxyHarness) close() {
	h.ls.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	h.mu.Lock()
	gens := h.gens
	h.mu.Unlock()
	for _, g := range gens {
		g.Shutdown(ctx)
	}
}

func (h *proxyHarness) dial() *net.TCPConn {
	h.t.Helper()
	c, err := net.Dial("tcp", h.listen)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// waitLines waits until the access log has n lines.
// echo sends msg through the proxy on a new stream, half-closes, and
// returns what came back until the server's EOF.
func (h *proxyHarness) echo(msg string) (string, error) {
	c := h.dial()
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	if err := c.CloseWrite(); err != nil {
		return "", err
	}
	got, err := io.ReadAll(c)
	return string(got), err
}

func (h *proxyHarness) waitLines(n int) []string {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines := h.access.Lines()
		if len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("access log has %d lines, want %d:\n%s", len(lines), n, strings.Join(lines, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *proxyHarness) upstreamStats(name string) UpstreamStats {
	ups, _ := h.stats.Snapshot()
	for _, u := range ups {
		if u.Upstream == name {
			return u
		}
	}
	return UpstreamStats{}
}

func (h *proxyHarness) listenerStats() ListenerStats {
	_, ls := h.stats.Snapshot()
	for _, l := range ls {
		if l.Listen == h.listen {
			return l
		}
	}
	return ListenerStats{}
}

// backend is a loopback TCP server run by a test; serve gets each
// accepted connection and must return when it is closed.
type backend struct {
	ln       net.Listener
	addr     string
	accepted atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]bool
}

func startBackend(t *testing.T, host string, serve func(c *net.TCPConn)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln, addr: ln.Addr().String(), conns: map[net.Conn]bool{}}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			b.mu.Lock()
			b.conns[c] = true
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				serve(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(b.stop)
	return b
}

// stop closes the listener and every accepted connection, as a killed
// server would.
func (b *backend) stop() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// echo copies everything back and passes the half-close on. It copies
// through a buffer: io.Copy between TCP sockets would splice and hold
// pipes of its own, which would muddle the proxy's descriptor counts.
func echo(c *net.TCPConn) {
	io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, make([]byte, 32<<10))
	c.CloseWrite()
}

// freeAddr returns a free loopback port for a peer program to listen on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// refusedAddr returns a loopback address that refuses connections: a
// socket bound but not listening, kept for the test so that no listener
// (the proxy's own, say) gets the port in the meantime.
func refusedAddr(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
}

// streamConf renders a [[stream]] with extra keys, and upstream sections.
func streamConf(listen, proxyPass, extra, upstreams string) string {
	return fmt.Sprintf("%s\n[[stream]]\nlisten = [%q]\nproxy_pass = %q\n%s\n", upstreams, listen, proxyPass, extra)
}

func upstreamConf(name string, servers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[upstream.%s]\n", name)
	for _, s := range servers {
		fmt.Fprintf(&b, "[[upstream.%s.server]]\naddress = %q\n", name, s)
	}
	return b.String()
}

// readAllWithin reads until EOF or error, failing the test after d.
func readAllWithin(t *testing.T, c net.Conn, d time.Duration) ([]byte, error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	return io.ReadAll(c)
}

// socketWithPeer finds this process's descriptor whose socket is connected
// to peer (and, when local is valid, bound to local): the proxy's side of a
// connection, found from what the test sees of it.
func socketWithPeer(t *testing.T, local, peer netip.AddrPort) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		pa, err := unix.Getpeername(fd)
		if err != nil || saAddrPort(pa) != peer {
			continue
		}
		if local.IsValid() {
			la, err := unix.Getsockname(fd)
			if err != nil || saAddrPort(la) != local {
				continue
			}
		}
		return fd
	}
	t.Fatalf("no socket of this process is connected to %v", peer)
	return -1
}

func saAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	return netip.AddrPort{}
}

// countFDs counts this process's descriptors, and among them pipes.
func countFDs(t *testing.T) (all, pipes int) {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue
		}
		all++
		if strings.HasPrefix(target, "pipe:") {
			pipes++
		}
	}
	return all, pipes
}
