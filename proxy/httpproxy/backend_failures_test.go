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
)

// rawBackend accepts connections and answers each with fn.
func rawBackend(t *testing.T, fn func(c net.Conn)) string {
	t.Helper()
	ln := listenLoopback(t)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				// Read the request head first.
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				fn(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestBackendFailuresAreContained(t *testing.T) {
	garbage := rawBackend(t, func(c net.Conn) { io.WriteString(c, "NOT HTTP AT ALL\r\n\r\n") })
	badHeader := rawBackend(t, func(c net.Conn) { io.WriteString(c, "HTTP/1.1 200 OK\r\nBad Header\r\n\r\n") })
	cut := rawBackend(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 1000))
		c.(*net.TCPConn).SetLinger(0) // reset
	})
	good := startBackend(t, "good")
	gw := startGateway(t, upstreamTOML("garbage", fmt.Sprintf("address = %q", garbage))+
		upstreamTOML("badheader", fmt.Sprintf("address = %q", badHeader))+
		upstreamTOML("cut", fmt.Sprintf("address = %q", cut))+
		upstreamTOML("retry", fmt.Sprintf("address = %q", badHeader), fmt.Sprintf("address = %q\nbackup = true", good.addr()))+
		upstreamTOML("good", fmt.Sprintf("address = %q", good.addr()))+`
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/garbage"
proxy_pass = "http://garbage"
[[http.location]]
path = "/badheader"
proxy_pass = "http://badheader"
[[http.location]]
path = "/cut"
proxy_pass = "http://cut"
[[http.location]]
path = "/retry"
proxy_pass = "http://retry"
proxy_next_upstream = ["error", "timeout", "invalid_header"]
[[http.location]]
path = "/good"
proxy_pass = "http://good"
`)
	c := newClient()
	for _, p := range []string{"/garbage", "/badheader"} {
		if resp, _ := get(t, c, gw.url(p)); resp.StatusCode != 502 {
			t.Errorf("%s: %d, want 502", p, resp.StatusCode)
		}
	}
	if resp, body := get(t, c, gw.url("/retry")); resp.StatusCode != 200 || !strings.Contains(body, `"good"`) {
		t.Errorf("invalid_header retried: %d %s", resp.StatusCode, body)
	}
	// Bytes already reached the client: the client sees a cut response,
	// never a complete one.
	resp, err := c.Get(gw.url("/cut"))
	if err == nil {
		n, rerr := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if rerr == nil {
			t.Errorf("cut response read completely (%d bytes)", n)
		}
	}
	if resp, _ := get(t, c, gw.url("/good")); resp.StatusCode != 200 {
		t.Errorf("other clients affected: %d", resp.StatusCode)
	}
}

func TestErrorPageFile(t *testing.T) {
	dir := t.TempDir()
	page := filepath.Join(dir, "50x.html")
	if err := os.WriteFile(page, []byte("<p>sorry</p>"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadAddr := refusingAddr(t)
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", deadAddr))+`
[[http]]
listen = ["LISTEN"]
error_page = { "502 503 504" = "`+page+`" }
[[http.location]]
path = "/"
proxy_pass = "http://app"
`)
	resp, body := get(t, newClient(), gw.url("/"))
	if resp.StatusCode != 502 || body != "<p>sorry</p>" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

func TestPipelinedAndExpectContinue(t *testing.T) {
	b := startBackend(t, "b")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+proxyAllToApp)
	raw := rawExchange(t, gw.addr, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"+
		"POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"+
		"GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(strings.NewReader(raw))
	for _, want := range []string{"/1", "/2", "/3"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response for %s: %v", want, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if s := decodeSeen(t, string(body)); s.URI != want || want == "/2" && s.Body != "abc" {
			t.Errorf("pipelined: got %s %q, want %s", s.URI, s.Body, want)
		}
	}

	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, "POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	br = bufio.NewReader(c)
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("Expect: 100-continue answered %q", line)
	}
	br.ReadString('\n')
	io.WriteString(c, "data")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if s := decodeSeen(t, string(body)); s.Body != "data" || s.Header.Get("Expect") != "" {
		t.Errorf("after 100-continue backend saw body %q Expect %q", s.Body, s.Header.Get("Expect"))
	}
}

func TestHashKeyTemplate(t *testing.T) {
	bs := []*backend{startBackend(t, "h1"), startBackend(t, "h2"), startBackend(t, "h3")}
	gw := startGateway(t, strings.Replace(upstreamTOML("app",
		fmt.Sprintf("address = %q", bs[0].addr()),
		fmt.Sprintf("address = %q", bs[1].addr()),
		fmt.Sprintf("address = %q", bs[2].addr())), "[upstream.app]\n", "[upstream.app]\nbalance = \"hash\"\nhash = \"$request_uri\"\n", 1)+proxyAllToApp)
	c := newClient()
	servers := map[string]bool{}
	for i := 0; i < 30; i++ {
		uri := fmt.Sprintf("/item/%d", i)
		_, b1 := get(t, c, gw.url(uri))
		_, b2 := get(t, c, gw.url(uri))
		s1, s2 := decodeSeen(t, b1), decodeSeen(t, b2)
		if s1.Backend != s2.Backend {
			t.Fatalf("%s went to %s then %s", uri, s1.Backend, s2.Backend)
		}
		servers[s1.Backend] = true
	}
	if len(servers) < 2 {
		t.Fatalf("30 keys all on %v: the key is not the URI", servers)
	}
}

func TestClientTimeoutsAndMaxConns(t *testing.T) {
	slow := startBackend(t, "slow")
	release := make(chan struct{})
	slow.handle = func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "late")
	}
	defer close(release)
	gw := startGateway(t, upstreamTOML("slow", fmt.Sprintf("address = %q\nmax_conns = 1", slow.addr()))+`
[[http]]
listen = ["LISTEN"]
client_body_timeout = "300ms"
keepalive_timeout = "300ms"
[[http.location]]
path = "/"
proxy_pass = "http://slow"
[[http.location]]
path = "/static/"
root = "`+t.TempDir()+`"
`)
	// A body that stops arriving: 408 after client_body_timeout.
	start := time.Now()
	raw := rawExchange(t, gw.addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
	if codes := statusLines(raw); len(codes) != 1 || codes[0] != 408 || time.Since(start) > 2*time.Second {
		t.Errorf("stalled body: %v after %v, want [408] after ~300ms", codes, time.Since(start))
	}

	// An idle keep-alive connection is closed after keepalive_timeout.
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, "GET /static/none HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("keep-alive request: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	start = time.Now()
	if n, err := br.Read(make([]byte, 1)); err != io.EOF || time.Since(start) > 2*time.Second {
		t.Errorf("idle connection: %d bytes, %v after %v; want EOF after ~300ms", n, err, time.Since(start))
	}

	// max_conns = 1: while one request is in flight, the only server is
	// full and the next request gets 502 at once.
	done := make(chan int, 1)
	go func() {
		resp, err := http.Get(gw.url("/first"))
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	deadline := time.Now().Add(3 * time.Second)
	for slow.hits.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	start = time.Now()
	if resp, _ := get(t, newClient(), gw.url("/second")); resp.StatusCode != 502 || time.Since(start) > time.Second {
		t.Errorf("full server: %d after %v, want 502 at once", resp.StatusCode, time.Since(start))
	}
	release <- struct{}{}
	if st := <-done; st != 200 {
		t.Errorf("first request: %d", st)
	}
}

func TestProbe(t *testing.T) {
	b := startBackend(t, "b")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+proxyAllToApp)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s := gw.current.Load()
	if err := s.Probe(ctx, gw.addr); err != nil {
		t.Fatalf("probe: %v", err)
	}
	// The probe runs accept, framing, parsing and routing in process but
	// never reaches an upstream: their health is the health checks'.
	if n := b.hits.Load(); n != 0 {
		t.Errorf("probe reached the backend (%d requests)", n)
	}
	b.kill()
	if err := s.Probe(ctx, gw.addr); err != nil {
		t.Errorf("probe failed because of a backend: %v", err)
	}
	if err := s.Probe(ctx, "127.0.0.1:1"); err == nil {
		t.Fatal("probe of an address this generation does not serve passed")
	}
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	defer scancel()
	_ = s.Shutdown(sctx)
	if err := s.Probe(ctx, gw.addr); err == nil {
		t.Fatal("probe of a generation that was shut down passed")
	}
}

// TestUnknownExpectationIsRefused: an Expect field other than
// 100-continue is answered 417 and never reaches the server, wherever the
// field stands among the others and however it is spelled.
func TestUnknownExpectationIsRefused(t *testing.T) {
	b := startBackend(t, "b")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+proxyAllToApp)
	for _, head := range []string{
		"Expect: bogus\r\nHost: a\r\n",
		"Host: a\r\nX-A: 1\r\nexpect: 200-ok\r\n",
	} {
		raw := rawExchange(t, gw.addr, "POST / HTTP/1.1\r\n"+head+"Content-Length: 2\r\nConnection: close\r\n\r\nhi")
		if codes := statusLines(raw); len(codes) != 1 || codes[0] != http.StatusExpectationFailed {
			t.Errorf("%q: answers %v, want [417]", head, codes)
		}
	}
	if n := b.hits.Load(); n != 0 {
		t.Errorf("the server got %d requests, want none", n)
	}
}
