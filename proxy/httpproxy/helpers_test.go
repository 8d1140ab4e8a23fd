package httpproxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/vipgate/vipgate/balancer"
	"github.com/vipgate/vipgate/config"
	"github.com/vipgate/vipgate/internal/accesslog"
	"github.com/vipgate/vipgate/proxy"
)

// listenLoopback opens a TCP listener on 127.0.0.1 with a free port.
func listenLoopback(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// refusingAddr is a loopback address that refuses connections: a socket
// bound to it but not listening keeps the port from being handed to a
// listener opened later in the test (a closed listener's port could be,
// and then the "dead" server answered).
func refusingAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

// testGateway is a proxy listener on loopback serving the current
// generation, as the daemon does: accepted connections go to whichever
// generation is current at accept time.
type testGateway struct {
	t       testing.TB
	ln      net.Listener
	addr    string // canonical listen address
	table   *balancer.Table
	current atomic.Pointer[Server]
	gens    []*Server
	access  *syncBuffer
	wg      sync.WaitGroup
	log     *zap.Logger // the generations' log; nil: the test's
	// responses: shared by the generations, as the daemon's.
	responses ResponseCounts
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startGateway listens and loads the first generation from tomlText, in
// which "LISTEN" stands for the proxy's address.
func startGateway(t testing.TB, tomlText string) *testGateway {
	t.Helper()
	return startGatewayOn(t, listenLoopback(t), tomlText)
}

func startGatewayOn(t testing.TB, ln net.Listener, tomlText string) *testGateway {
	t.Helper()
	g := &testGateway{t: t, ln: ln, table: balancer.NewTable(time.Now), access: &syncBuffer{}}
	g.addr = g.ln.Addr().String()
	g.reload(tomlText)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := g.ln.Accept()
			if err != nil {
				return
			}
			var h proxy.Handler = g.current.Load().Handler(g.addr)
			go h.ServeConn(c)
		}
	}()
	t.Cleanup(func() {
		g.ln.Close()
		g.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, s := range g.gens {
			_ = s.Shutdown(ctx)
		}
	})
	return g
}

// build makes a generation from tomlText without making it current.
func (g *testGateway) build(tomlText string) *Server {
	t := g.t
	t.Helper()
	text := strings.ReplaceAll(tomlText, "LISTEN", g.addr)
	text = "[global]\nadmin_listen = \"\"\n" + text
	cfg, err := config.Parse([]byte(text), "test.toml")
	if err != nil {
		t.Fatalf("config: %v\n%s", err, text)
	}
	ups := map[string]*balancer.Upstream{}
	for name, uc := range cfg.Upstream {
		spec := balancer.UpstreamSpec{Name: name, Balance: uc.Balance}
		for _, sc := range uc.Server {
			spec.Servers = append(spec.Servers, balancer.ServerSpec{
				Address: sc.Address, Weight: *sc.Weight, MaxFails: *sc.MaxFails, FailTimeout: sc.FailTimeout.Duration,
				Backup: sc.Backup, Down: sc.Down, MaxConns: sc.MaxConns,
			})
		}
		u, err := g.table.Build(spec)
		if err != nil {
			t.Fatalf("upstream %s: %v", name, err)
		}
		ups[name] = u
	}
	log := g.log
	if log == nil {
		log = zaptest.NewLogger(t)
	}
	s, err := New(cfg.HTTP, Deps{Log: log, AccessLog: accesslog.New(g.access), Upstreams: ups, UpstreamConfig: cfg.Upstream, Responses: &g.responses})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	g.gens = append(g.gens, s)
	return s
}

// reload builds a generation and makes it current; the previous one is
// retired but keeps its connections.
func (g *testGateway) reload(tomlText string) *Server {
	s := g.build(tomlText)
	if old := g.current.Swap(s); old != nil {
		old.Retire()
	}
	return s
}

func (g *testGateway) url(path string) string { return "http://" + g.addr + path }

// accessLog waits (up to 3 s) for a first access line, written after the
// response has gone to the client, and returns the log.
func (g *testGateway) accessLog() string {
	deadline := time.Now().Add(3 * time.Second)
	for g.access.String() == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return g.access.String()
}

// backend is a loopback HTTP server that answers with what it received.
type backend struct {
	name string
	ln   net.Listener
	srv  *http.Server
	hits atomic.Int64
	// handle overrides the echo answer when set.
	handle func(w http.ResponseWriter, r *http.Request)
	mu     sync.Mutex
	bodies []string
}

// seen is what a backend reports about one request.
type seen struct {
	Backend string
	Method  string
	URI     string
	Host    string
	Header  http.Header
	Body    string
}

func startBackend(t testing.TB, name string) *backend {
	t.Helper()
	b := &backend{name: name, ln: listenLoopback(t)}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.bodies = append(b.bodies, string(body))
		b.mu.Unlock()
		if b.handle != nil {
			b.handle(w, r)
			return
		}
		w.Header().Set("X-Backend", name)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen{Backend: name, Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header, Body: string(body)})
	})}
	go func() { _ = b.srv.Serve(b.ln) }()
	t.Cleanup(func() { b.srv.Close() })
	return b
}

func (b *backend) addr() string { return b.ln.Addr().String() }

// kill closes the backend: its port then refuses connections.
func (b *backend) kill() { _ = b.srv.Close() }

// get sends one request with a fresh client connection pool per test.
func get(t testing.TB, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func decodeSeen(t testing.TB, body string) seen {
	t.Helper()
	var s seen
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("backend answer %q: %v", body, err)
	}
	return s
}

func newClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true},
		Timeout:   10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// rawExchange writes raw bytes on a new connection and returns everything
// the proxy sends until it closes (or 3 s pass).
func rawExchange(t testing.TB, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(c)
	return string(out)
}

// statusLines lists the status codes of the responses in raw.
func statusLines(raw string) []int {
	var codes []int
	br := bufio.NewReader(strings.NewReader(raw))
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return codes
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
}

// proxyAllToApp is the [[http]] part most tests need: one listener whose
// every path goes to upstream "app" (see upstreamTOML).
const proxyAllToApp = `
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
`

func upstreamTOML(name string, servers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[upstream.%s]\n", name)
	for _, s := range servers {
		fmt.Fprintf(&b, "[[upstream.%s.server]]\n%s\n", name, s)
	}
	return b.String()
}
