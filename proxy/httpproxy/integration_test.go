package httpproxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/websocket"
)

func TestProxyPassesRequestAndDefaultHeaders(t *testing.T) {
	b := startBackend(t, "b1")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+`
[[http]]
listen = ["LISTEN"]
server_name = ["www.example.com"]
[[http.location]]
path = "/app1"
proxy_pass = "http://app/app1"
[[http.location]]
path = "/a/"
proxy_pass = "http://app/b/"
proxy_set_header = { X-Real-IP = "", X-Custom = "$host|$server_port|$scheme" }
[[http.location]]
path = "/raw"
proxy_pass = "http://app"
`)
	c := newClient()
	req, _ := http.NewRequest("GET", gw.url("/app1/x?q=1"), nil)
	req.Host = "www.example.com:8080"
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "secret")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	s := decodeSeen(t, string(body))
	if resp.StatusCode != 200 || s.URI != "/app1/x?q=1" || s.Host != "www.example.com:8080" {
		t.Fatalf("status %d, backend saw %s Host %s", resp.StatusCode, s.URI, s.Host)
	}
	if got := s.Header.Get("X-Forwarded-For"); got != "203.0.113.9, 127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", got)
	}
	if s.Header.Get("X-Real-Ip") != "127.0.0.1" || s.Header.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("X-Real-IP %q X-Forwarded-Proto %q", s.Header.Get("X-Real-Ip"), s.Header.Get("X-Forwarded-Proto"))
	}
	if s.Header.Get("X-Hop") != "" || s.Header.Get("Via") != "" {
		t.Errorf("hop-by-hop X-Hop or Via passed: %v", s.Header)
	}

	_, body2 := get(t, c, gw.url("/a/dir//x/../y%20z?k=v"))
	s = decodeSeen(t, body2)
	if s.URI != "/b/dir/y%20z?k=v" {
		t.Errorf("URI mapping: backend saw %s", s.URI)
	}
	if s.Header.Get("X-Real-Ip") != "" || s.Header.Get("X-Custom") != "127.0.0.1|"+strings.Split(gw.addr, ":")[1]+"|http" {
		t.Errorf("proxy_set_header: X-Real-IP %q X-Custom %q", s.Header.Get("X-Real-Ip"), s.Header.Get("X-Custom"))
	}
	_, body3 := get(t, c, gw.url("/raw//x/../%7Ey"))
	if s := decodeSeen(t, body3); s.URI != "/raw//x/../%7Ey" {
		t.Errorf("no URI part: backend saw %s", s.URI)
	}
	if !strings.Contains(gw.access.String(), `"GET /app1/x?q=1 HTTP/1.1" 200 `) || !strings.Contains(gw.access.String(), `"`+b.addr()+`"`) {
		t.Errorf("access log:\n%s", gw.access.String())
	}
}

func TestProxyRedirectRewritesBackendAddress(t *testing.T) {
	b := startBackend(t, "b1")
	b.handle = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "http://"+b.addr()+"/two/next")
		w.Header().Set("Refresh", "3; url=http://app/two/later")
		w.WriteHeader(302)
	}
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+`
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/one/"
proxy_pass = "http://app/two/"
`)
	resp, _ := get(t, newClient(), gw.url("/one/x"))
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "/one/next" || resp.Header.Get("Refresh") != "3; url=/one/later" {
		t.Fatalf("status %d Location %q Refresh %q", resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("Refresh"))
	}
}

func TestKilledBackendCausesNoFailedGET(t *testing.T) {
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b1.addr()), fmt.Sprintf("address = %q", b2.addr()))+proxyAllToApp)
	c := newClient()
	for i := 0; i < 20; i++ {
		get(t, c, gw.url("/warm"))
	}
	b1.kill()
	before := b2.hits.Load()
	for i := 0; i < 200; i++ {
		resp, body := get(t, c, gw.url(fmt.Sprintf("/r%d", i)))
		if resp.StatusCode != 200 {
			t.Fatalf("request %d after kill: %d %s", i, resp.StatusCode, body)
		}
	}
	if got := b2.hits.Load() - before; got != 200 {
		t.Fatalf("b2 served %d of 200", got)
	}
}

func TestWeightsSplitExactly(t *testing.T) {
	bs := []*backend{startBackend(t, "w3"), startBackend(t, "w1"), startBackend(t, "w4")}
	gw := startGateway(t, upstreamTOML("app",
		fmt.Sprintf("address = %q\nweight = 3", bs[0].addr()),
		fmt.Sprintf("address = %q\nweight = 1", bs[1].addr()),
		fmt.Sprintf("address = %q\nweight = 4", bs[2].addr()))+proxyAllToApp)
	c := newClient()
	for i := 0; i < 800; i++ {
		if resp, _ := get(t, c, gw.url("/")); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	for i, want := range []int64{300, 100, 400} {
		if got := bs[i].hits.Load(); got != want {
			t.Errorf("%s: %d requests, want %d", bs[i].name, got, want)
		}
	}
}

func TestNextUpstreamPerMethod(t *testing.T) {
	bad, good := startBackend(t, "bad"), startBackend(t, "good")
	bad.handle = func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(502) }
	gw := startGateway(t, upstreamTOML("app",
		fmt.Sprintf("address = %q\nmax_fails = 0", bad.addr()),
		fmt.Sprintf("address = %q\nmax_fails = 0\nbackup = true", good.addr()))+`
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
proxy_next_upstream = ["error", "timeout", "http_502"]
`)
	c := newClient()
	resp, err := c.Post(gw.url("/post"), "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 || good.hits.Load() != 0 {
		t.Fatalf("POST to a 502 backend: status %d, next server got %d requests (want 502, 0)", resp.StatusCode, good.hits.Load())
	}
	resp, _ = get(t, c, gw.url("/get"))
	if resp.StatusCode != 200 || good.hits.Load() != 1 {
		t.Fatalf("GET: status %d, next server got %d (want 200, 1)", resp.StatusCode, good.hits.Load())
	}
}

func TestPostRetriedWhenConnectFails(t *testing.T) {
	deadAddr := refusingAddr(t)
	good := startBackend(t, "good")
	gw := startGateway(t, upstreamTOML("app",
		fmt.Sprintf("address = %q", deadAddr),
		fmt.Sprintf("address = %q\nbackup = true", good.addr()))+proxyAllToApp)
	body := strings.Repeat("0123456789", 20000) // 200 kB: kept on disk beyond 64 kB
	resp, err := newClient().Post(gw.url("/upload"), "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, out)
	}
	_ = out
	good.mu.Lock()
	defer good.mu.Unlock()
	if len(good.bodies) != 1 || good.bodies[0] != body {
		t.Fatalf("backend got %d bodies, first of %d bytes", len(good.bodies), len(good.bodies[0]))
	}
}

func TestNoLiveServerAnswers502AtOnce(t *testing.T) {
	deadAddr := refusingAddr(t)
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", deadAddr))+proxyAllToApp)
	start := time.Now()
	resp, body := get(t, newClient(), gw.url("/"))
	if resp.StatusCode != 502 || !strings.Contains(body, "502 Bad Gateway") || time.Since(start) > time.Second {
		t.Fatalf("status %d after %v: %s", resp.StatusCode, time.Since(start), body)
	}
}

func TestReadTimeoutAnswers504(t *testing.T) {
	slow := startBackend(t, "slow")
	release := make(chan struct{})
	defer close(release)
	slow.handle = func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
	}
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", slow.addr()))+`
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
proxy_read_timeout = "200ms"
`)
	start := time.Now()
	resp, _ := get(t, newClient(), gw.url("/"))
	if resp.StatusCode != 504 || time.Since(start) > 2*time.Second {
		t.Fatalf("status %d after %v, want 504 after ~200ms", resp.StatusCode, time.Since(start))
	}
}

func TestClientLimits(t *testing.T) {
	b := startBackend(t, "b")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+`
[[http]]
listen = ["LISTEN"]
client_max_body_size = "1k"
client_header_timeout = "300ms"
client_header_max_size = "2k"
[[http.location]]
path = "/"
proxy_pass = "http://app"
`)
	resp, err := newClient().Post(gw.url("/"), "text/plain", strings.NewReader(strings.Repeat("x", 2000)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("large body: %d, want 413", resp.StatusCode)
	}
	// Chunked body beyond the limit: no Content-Length to refuse early.
	raw := rawExchange(t, gw.addr, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n"+strings.Repeat("x", 2048)+"\r\n0\r\n\r\n")
	if codes := statusLines(raw); len(codes) != 1 || codes[0] != 413 {
		t.Errorf("large chunked body: %v, want [413]", codes)
	}
	raw = rawExchange(t, gw.addr, "GET /"+strings.Repeat("a", 3000)+" HTTP/1.1\r\nHost: a\r\n\r\n")
	if codes := statusLines(raw); len(codes) != 1 || codes[0] != 414 {
		t.Errorf("long request line: %v, want [414]", codes)
	}
	raw = rawExchange(t, gw.addr, "GET / HTTP/1.1\r\nHost: a\r\nX: "+strings.Repeat("a", 3000)+"\r\n\r\n")
	if codes := statusLines(raw); len(codes) != 1 || codes[0] != 431 {
		t.Errorf("large header: %v, want [431]", codes)
	}
	// Slowloris: half a head, then nothing.
	start := time.Now()
	raw = rawExchange(t, gw.addr, "GET / HTTP/1.1\r\nHost: a\r\n")
	if codes := statusLines(raw); len(codes) != 1 || codes[0] != 408 || time.Since(start) > 2*time.Second {
		t.Errorf("slow head: %v after %v, want [408] after ~300ms", codes, time.Since(start))
	}
	if b.hits.Load() != 0 {
		t.Errorf("backend saw %d requests", b.hits.Load())
	}
}

func TestSmugglingRefused(t *testing.T) {
	b := startBackend(t, "b")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+proxyAllToApp)
	cases := []struct {
		name  string
		raw   string
		codes []int
	}{
		{"CL.TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", []int{400}},
		{"TE.CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n", []int{400}},
		{"two CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 30\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n", []int{400}},
		{"TE obfuscated", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc", []int{400}},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{400}},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n", []int{400}},
		{"valid then smuggle", "GET /ok HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{200, 400}},
	}
	for _, tc := range cases {
		got := statusLines(rawExchange(t, gw.addr, tc.raw))
		if fmt.Sprint(got) != fmt.Sprint(tc.codes) {
			t.Errorf("%s: statuses %v, want %v", tc.name, got, tc.codes)
		}
	}
	if n := b.hits.Load(); n != 1 {
		t.Errorf("backend saw %d requests, want only the valid GET", n)
	}
	if got := strings.Count(gw.access.String(), fmt.Sprintf(`" 400 %d "-"`, len(errorBody(400)))); got != len(cases) {
		t.Errorf("%d refused requests in the access log, want %d:\n%s", got, len(cases), gw.access.String())
	}
}

func TestStaticRoot(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "static", "sub"), 0o755))
	must(os.WriteFile(filepath.Join(root, "static", "index.html"), []byte("<h1>index</h1>"), 0o644))
	must(os.WriteFile(filepath.Join(root, "static", "app.css"), []byte("body{}"), 0o644))
	must(os.WriteFile(filepath.Join(root, "secret.txt"), []byte("secret"), 0o644))
	gw := startGateway(t, `
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/static"
root = "`+root+`"
`)
	c := newClient()
	tests := []struct {
		path, ctype, body string
		status            int
	}{
		{"/static/", "text/html; charset=utf-8", "<h1>index</h1>", 200},
		{"/static/app.css", "text/css; charset=utf-8", "body{}", 200},
		{"/static/missing", "", "", 404},
		{"/static/../secret.txt", "", "", 404}, // resolves to /secret.txt: no location
		{"/static/%2e%2e/secret.txt", "", "", 404},
		{"/static/sub", "", "", 301},
	}
	for _, tc := range tests {
		resp, body := get(t, c, gw.url(tc.path))
		if resp.StatusCode != tc.status || tc.ctype != "" && resp.Header.Get("Content-Type") != tc.ctype || tc.body != "" && body != tc.body {
			t.Errorf("%s: %d %q %q", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if strings.Contains(body, "secret") {
			t.Errorf("%s: escaped the root", tc.path)
		}
	}
	raw := rawExchange(t, gw.addr, "GET /static/../../secret.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if codes := statusLines(raw); len(codes) != 1 || codes[0] != 400 {
		t.Errorf("dot segments above root: %v, want [400]", codes)
	}
}

// wsEchoBackend serves a WebSocket echo on /ws.
func wsEchoBackend(t *testing.T) *backend {
	b := startBackend(t, "ws")
	echo := websocket.Handler(func(c *websocket.Conn) { _, _ = io.Copy(c, c) })
	b.handle = func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			echo.ServeHTTP(w, r)
			return
		}
		io.WriteString(w, "plain")
	}
	return b
}

func wsEcho(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if err := websocket.Message.Send(c, msg); err != nil {
		t.Fatalf("send %q: %v", msg, err)
	}
	var got string
	if err := websocket.Message.Receive(c, &got); err != nil || got != msg {
		t.Fatalf("echo of %q: %q, %v", msg, got, err)
	}
}

func TestWebSocketSurvivesReloads(t *testing.T) {
	b := wsEchoBackend(t)
	cfg := upstreamTOML("ws", fmt.Sprintf("address = %q", b.addr())) + `
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/"
proxy_pass = "http://ws"
proxy_read_timeout = "%s"
`
	gw := startGateway(t, fmt.Sprintf(cfg, "10s"))
	first := gw.current.Load()
	conf, _ := websocket.NewConfig("ws://"+gw.addr+"/ws", "http://"+gw.addr)
	ws, err := websocket.DialConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	wsEcho(t, ws, "before")
	for i := 0; i < 5; i++ {
		gw.reload(fmt.Sprintf(cfg, fmt.Sprintf("%ds", 11+i)))
		wsEcho(t, ws, fmt.Sprintf("after reload %d", i+1))
		// New connections use the new generation.
		if resp, _ := get(t, newClient(), gw.url("/plain")); resp.StatusCode != 200 {
			t.Fatalf("plain request after reload: %d", resp.StatusCode)
		}
	}
	select {
	case <-first.Idle():
		t.Fatal("first generation idle while its WebSocket is open")
	default:
	}
	ws.Close()
	select {
	case <-first.Idle():
	case <-time.After(3 * time.Second):
		t.Fatal("first generation not idle after its WebSocket closed")
	}
}

func TestWebSocketIdleTimeoutAndCloseLongLived(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) }) // no tunnel goroutine left
	b := wsEchoBackend(t)
	gw := startGateway(t, upstreamTOML("ws", fmt.Sprintf("address = %q", b.addr()))+`
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/"
proxy_pass = "http://ws"
proxy_read_timeout = "300ms"
`)
	conf, _ := websocket.NewConfig("ws://"+gw.addr+"/ws", "http://"+gw.addr)
	ws, err := websocket.DialConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for i := 0; i < 4; i++ { // activity keeps it open past the idle limit
		wsEcho(t, ws, "tick")
		time.Sleep(150 * time.Millisecond)
	}
	start := time.Now()
	var got string
	_ = ws.SetDeadline(time.Now().Add(3 * time.Second))
	if err := websocket.Message.Receive(ws, &got); err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("idle WebSocket: %q, %v after %v; want closed after ~300ms", got, err, time.Since(start))
	}

	ws2, err := websocket.DialConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	defer ws2.Close()
	wsEcho(t, ws2, "hello")
	gw.current.Load().CloseLongLived()
	_ = ws2.SetDeadline(time.Now().Add(time.Second))
	if err := websocket.Message.Receive(ws2, &got); err == nil {
		t.Fatal("WebSocket still open after CloseLongLived")
	}
}

// A stop waits for the kept connections to close before the VIPs move
// (KeptConns), not for WebSocket tunnels, which it closes right after; a
// retired generation is freed only when both are gone (ClientConns).
func TestKeptConnsLeaveOutTunnels(t *testing.T) {
	b := wsEchoBackend(t)
	gw := startGateway(t, upstreamTOML("ws", fmt.Sprintf("address = %q", b.addr()))+`
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/"
proxy_pass = "http://ws"
`)
	conf, _ := websocket.NewConfig("ws://"+gw.addr+"/ws", "http://"+gw.addr)
	ws, err := websocket.DialConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	wsEcho(t, ws, "hello")
	s := gw.current.Load()
	if kept, all := s.KeptConns(), s.ClientConns(); kept != 0 || all != 1 {
		t.Fatalf("one WebSocket open: KeptConns %d, ClientConns %d; want 0 and 1", kept, all)
	}
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
		t.Fatal(err)
	}
	if kept, all := s.KeptConns(), s.ClientConns(); kept != 1 || all != 2 {
		t.Fatalf("and a keep-alive connection: KeptConns %d, ClientConns %d; want 1 and 2", kept, all)
	}
}

func TestDrainClosesKeepAlive(t *testing.T) {
	b := startBackend(t, "b")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+proxyAllToApp)
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	buf := make([]byte, 4096)
	if n, err := c.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Fatalf("first response: %q %v", buf[:n], err)
	}
	gw.current.Load().Drain()
	// The idle keep-alive connection is closed by the drain.
	if n, err := c.Read(buf); err != io.EOF {
		t.Fatalf("idle connection after Drain: %q %v, want EOF", buf[:n], err)
	}
	resp, err := http.Get(gw.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !resp.Close {
		t.Error("response during drain lacks Connection: close")
	}
}

func TestShutdownWaitsForInFlight(t *testing.T) {
	b := startBackend(t, "b")
	b.handle = func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "done")
	}
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+proxyAllToApp)
	var wg sync.WaitGroup
	wg.Add(1)
	var status int
	var body string
	go func() {
		defer wg.Done()
		resp, err := http.Get(gw.url("/slow"))
		if err != nil {
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		status, body = resp.StatusCode, string(b)
	}()
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := gw.current.Load().Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if status != 200 || body != "done" {
		t.Fatalf("in-flight request: %d %q", status, body)
	}
}

func TestUnbufferedResponseStreams(t *testing.T) {
	b := startBackend(t, "stream")
	release := make(chan struct{})
	b.handle = func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second\n")
	}
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+`
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
proxy_buffering = false
`)
	resp, err := newClient().Get(gw.url("/events"))
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 64)
		n, _ := resp.Body.Read(buf)
		got <- string(buf[:n])
	}()
	select {
	case first := <-got:
		if first != "first\n" {
			t.Errorf("first chunk %q", first)
		}
	case <-time.After(2 * time.Second):
		t.Error("first chunk held back with proxy_buffering = false")
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second\n" {
		t.Errorf("rest %q", rest)
	}
}

func TestShutdownClosesWebSocketAfterTimeout(t *testing.T) {
	b := wsEchoBackend(t)
	gw := startGateway(t, upstreamTOML("ws", fmt.Sprintf("address = %q", b.addr()))+`
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/"
proxy_pass = "http://ws"
`)
	conf, _ := websocket.NewConfig("ws://"+gw.addr+"/ws", "http://"+gw.addr)
	ws, err := websocket.DialConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	wsEcho(t, ws, "hello")
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	during := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		_ = ws.SetDeadline(time.Now().Add(time.Second))
		if err := websocket.Message.Send(ws, "during"); err != nil {
			during <- err
			return
		}
		var got string
		err := websocket.Message.Receive(ws, &got)
		if err == nil && got != "during" {
			err = fmt.Errorf("echo %q", got)
		}
		during <- err
	}()
	err = gw.current.Load().Shutdown(ctx)
	if e := <-during; e != nil {
		t.Errorf("WebSocket during shutdown: %v", e)
	}
	if err == nil {
		t.Error("Shutdown reported a clean stop although a WebSocket outlived the timeout")
	}
	if d := time.Since(start); d < 350*time.Millisecond || d > 2*time.Second {
		t.Errorf("Shutdown took %v, want the 400ms timeout", d)
	}
	var got string
	_ = ws.SetDeadline(time.Now().Add(time.Second))
	if err := websocket.Message.Receive(ws, &got); err == nil {
		t.Fatal("WebSocket open after Shutdown")
	}
}

func TestIPv6Listener(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	b := startBackend(t, "b")
	gw := startGatewayOn(t, ln, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+proxyAllToApp)
	resp, body := get(t, newClient(), "http://"+gw.addr+"/six")
	s := decodeSeen(t, body)
	if resp.StatusCode != 200 || s.Header.Get("X-Real-Ip") != "::1" || s.Header.Get("X-Forwarded-For") != "::1" {
		t.Fatalf("status %d, X-Real-IP %q X-Forwarded-For %q", resp.StatusCode, s.Header.Get("X-Real-Ip"), s.Header.Get("X-Forwarded-For"))
	}
}
