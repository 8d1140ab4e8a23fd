package httpproxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// startGatewayObserved is startGateway with the proxy's log (at info and
// above, what an operator's default log_level shows) kept for the test.
func startGatewayObserved(t *testing.T, tomlText string) (*testGateway, *observer.ObservedLogs) {
	t.Helper()
	g := startGateway(t, tomlText)
	core, logs := observer.New(zapcore.InfoLevel)
	g.log = zap.New(core)
	g.reload(tomlText)
	return g, logs
}

// A request that a stop cuts (SIGQUIT, or SIGTERM past shutdown_timeout)
// gets no answer: the client sees its connection closed. Its access log
// line must not claim a 502 with an error page body the client never
// received: every stop would then show up as a burst of 502s in the
// operator's 5xx alerting and goaccess reports, blamed on the backend
// (the error log also says "upstream request failed ... use of closed
// network connection" for the server).
func TestRequestCutByStopIsNotLoggedAsA502ThatWasSent(t *testing.T) {
	release := make(chan struct{})
	bln := listenLoopback(t)
	bsrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "late\n")
	})}
	go bsrv.Serve(bln)
	t.Cleanup(func() { close(release); bsrv.Close() })

	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", bln.Addr().String()))+proxyAllToApp)

	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /in-flight HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the request is at the backend
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_ = gw.current.Load().Shutdown(ctx) // shutdown_timeout reached: cut

	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	got, _ := io.ReadAll(c)

	var line string
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range strings.Split(gw.access.String(), "\n") {
			if strings.Contains(l, "/in-flight") {
				line = l
			}
		}
		if line != "" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(got) != 0 {
		t.Skipf("the client got an answer (%q): nothing to compare", got)
	}
	// After the quoted request: $status $body_bytes_sent.
	var status, bytes int
	if i := strings.Index(line, `HTTP/1.1" `); i < 0 {
		t.Fatalf("no access log line for the cut request:\n%s", gw.access.String())
	} else if _, err := fmt.Sscanf(line[i+len(`HTTP/1.1" `):], "%d %d", &status, &bytes); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	if status == 502 || bytes != 0 {
		t.Errorf("client received nothing (connection closed by the stop), but the access log says:\n%s\nwant $body_bytes_sent 0 and no 502 (e.g. 499: the request ended without an answer)", line)
	}
}

// A request refused for its head (400 for a malformed header line, 414 for
// a too long URI) is logged by nginx with the request line it read and the
// bytes of the error page it sent:
//
//	"GET /bad HTTP/1.1" 400 157 ...
//
// vipgate logs `"-" 400 0`: fail2ban filters and goaccess reports keyed on
// the URL (scanners probing /wp-login.php with broken headers, smuggling
// attempts) see nothing, and the error pages' bytes are missing from the
// bandwidth totals although the client received them.
func TestRefusedRequestLogsRequestLineAndBytesSent(t *testing.T) {
	b := startBackend(t, "b")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+proxyAllToApp)
	cases := []struct{ raw, want string }{
		{"GET /bad-header HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", `"GET /bad-header HTTP/1.1" 400 `},
		{"GET /" + strings.Repeat("a", 70000) + " HTTP/1.1\r\nHost: a\r\n\r\n", `"GET /aaaa`},
	}
	for _, tc := range cases {
		raw := rawExchange(t, gw.addr, tc.raw)
		body := raw[strings.Index(raw, "\r\n\r\n")+4:]
		var line string
		deadline := time.Now().Add(2 * time.Second)
		for line == "" && time.Now().Before(deadline) {
			lines := strings.Split(strings.TrimSpace(gw.access.String()), "\n")
			if l := lines[len(lines)-1]; l != "" {
				line = l
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(line, tc.want) {
			t.Errorf("access log line %.200q, want it to contain the request line %q", line, tc.want)
		}
		if want := fmt.Sprintf(" %d \"", len(body)); !strings.Contains(line, want) {
			t.Errorf("access log line %.200q: client received a %d-byte error page, $body_bytes_sent should say so", line, len(body))
		}
		gw.access.mu.Lock()
		gw.access.b.Reset()
		gw.access.mu.Unlock()
	}
}

// nginx writes an [error] line for every failed attempt, also when the
// request then succeeds on the next server:
//
//	connect() failed (111: Connection refused) while connecting to upstream,
//	client: 127.0.0.1, server: , request: "GET /a HTTP/1.1", upstream: "http://127.0.0.1:23009/a"
//
// vipgate logs a failed attempt that was retried only at debug level
// ("next upstream"). With max_fails = 0, or max_fails > 1 and a server that
// fails now and then (timeouts: each one costs the client
// proxy_read_timeout before the retry), the error log at log_level = info
// stays silent while a backend is failing.
func TestRetriedUpstreamFailureIsLogged(t *testing.T) {
	b := startBackend(t, "b")
	dead := refusingAddr(t)
	gw, logs := startGatewayObserved(t, upstreamTOML("app",
		fmt.Sprintf("address = %q\nmax_fails = 0", dead),
		fmt.Sprintf("address = %q\nmax_fails = 0", b.addr()))+proxyAllToApp)
	c := newClient()
	for i := range 4 {
		resp, _ := get(t, c, gw.url(fmt.Sprintf("/r%d", i)))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if !strings.Contains(gw.access.String(), dead+", "+b.addr()) {
		t.Fatalf("no request was retried (access log:\n%s)", gw.access.String())
	}
	var mentions int
	for _, e := range logs.All() {
		if e.Level < zapcore.WarnLevel {
			continue
		}
		for _, f := range e.Context {
			if f.String == dead {
				mentions++
			}
		}
	}
	if mentions == 0 {
		var all []string
		for _, e := range logs.All() {
			all = append(all, e.Level.String()+" "+e.Message)
		}
		t.Errorf("requests were retried past %s (connection refused) but no warn/error line names it; log at info and above:\n%s", dead, strings.Join(all, "\n"))
	}
}

// nginx's error line for a failed request says whose request it was
// ("client: 1.2.3.4, server: ..., request: "GET /x HTTP/1.1", host: ...");
// the stream proxy's lines carry "client" too. The HTTP proxy's
// "upstream request failed" line has only upstream, server and uri: an
// operator cannot tell which client (or which virtual host) got the 502.
func TestUpstreamFailureLineNamesTheClient(t *testing.T) {
	dead := refusingAddr(t)
	gw, logs := startGatewayObserved(t, upstreamTOML("app", fmt.Sprintf("address = %q", dead))+proxyAllToApp)
	c := newClient()
	resp, _ := get(t, c, gw.url("/who"))
	if resp.StatusCode != 502 {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	var found bool
	for _, e := range logs.All() {
		if e.Level < zapcore.WarnLevel {
			continue
		}
		fields := e.ContextMap()
		found = true
		if _, ok := fields["client"]; !ok {
			t.Errorf("%s %q %v: no client field", e.Level, e.Message, fields)
		}
	}
	if !found {
		t.Fatal("no warn/error line for a 502")
	}
}

// When every server of an upstream is unavailable, nginx answers 502 and
// logs the upstream's name as $upstream_addr ("app", with
// $upstream_response_time 0.000); "-" means the request was not proxied at
// all (static file, return). vipgate logs "-" and "-": a report of 502s by
// $upstream_addr cannot tell which upstream had no live server.
func TestNoLiveUpstreamLogsUpstreamName(t *testing.T) {
	gw := startGateway(t, upstreamTOML("app",
		fmt.Sprintf("address = %q", refusingAddr(t)),
		fmt.Sprintf("address = %q", refusingAddr(t)))+proxyAllToApp)
	c := newClient()
	for i := range 4 {
		resp, _ := get(t, c, gw.url(fmt.Sprintf("/nl%d", i)))
		if resp.StatusCode != 502 {
			t.Fatalf("status %d, want 502", resp.StatusCode)
		}
	}
	var bad []string
	for _, l := range strings.Split(strings.TrimSpace(gw.access.String()), "\n") {
		if strings.Contains(l, `" "-" `) && strings.Contains(l, `" 502 `) {
			bad = append(bad, l)
		}
	}
	if len(bad) > 0 {
		t.Errorf("502 lines with $upstream_addr \"-\" (nginx logs the upstream name \"app\" when no server is live):\n%s", strings.Join(bad, "\n"))
	}
}

// nginx's $time_local is the time the line is written, at the end of the
// request (the stream proxy here does the same); the HTTP proxy writes the
// time the request started. Lines of long requests (downloads, long polls,
// WebSocket sessions lasting hours) then land in the file out of
// chronological order, hours "in the past": log shippers that reject old or
// out-of-order entries (Loki: "entry too far behind") drop them, and
// per-minute rates computed from the file put them in the wrong minute.
func TestTimeLocalIsTheEndOfTheRequest(t *testing.T) {
	b := startBackend(t, "b")
	b.handle = func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2100 * time.Millisecond)
		io.WriteString(w, "done\n")
	}
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+proxyAllToApp)
	resp, _ := get(t, newClient(), gw.url("/long"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	end := time.Now()
	line := strings.TrimSpace(gw.accessLog())
	i, j := strings.Index(line, "["), strings.Index(line, "]")
	if i < 0 || j < i {
		t.Fatalf("line %q", line)
	}
	stamp, err := time.Parse("02/Jan/2006:15:04:05 -0700", line[i+1:j])
	if err != nil {
		t.Fatal(err)
	}
	if end.Truncate(time.Second).Sub(stamp) >= time.Second {
		t.Errorf("request ended at %s, its access line says [%s] (%v earlier): $time_local should be when the line is written, as nginx",
			end.Format("15:04:05"), line[i+1:j], end.Sub(stamp).Truncate(time.Second))
	}
}

// A client that stops a download after the response head was sent (a user
// cancelling, a video player seeking) got a 200: nginx logs $status 200
// with the bytes it sent; 499 only when the client left before the head
// (Debian's nginx, same test over HTTP/1.1 and HTTP/2: "200 4389967").
// vipgate logs 499, so every cancelled download or media seek counts as a
// client error in 4xx dashboards, goaccess's status panel and fail2ban
// rules on 4xx bursts.
func TestDownloadCutAfterHeadIsLoggedWithTheStatusSent(t *testing.T) {
	b := startBackend(t, "b")
	b.handle = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "50000000")
		chunk := []byte(strings.Repeat("x", 64<<10))
		for range 50000000 / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+proxyAllToApp)
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET /download HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 200000)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(buf), "HTTP/1.1 200 ") {
		t.Fatalf("answer %.40q", buf)
	}
	c.Close()
	var line string
	deadline := time.Now().Add(5 * time.Second)
	for line == "" && time.Now().Before(deadline) {
		line = strings.TrimSpace(gw.access.String())
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(line, `"GET /download HTTP/1.1" 200 `) {
		t.Errorf("the client received \"HTTP/1.1 200 OK\" and part of the body, then closed; access log:\n%s\nwant status 200 (the status sent, as nginx), not 499", line)
	}
}

// A client that sends part of a request head and leaves is logged 400 with
// the request line read and 0 bytes, as nginx ("client prematurely closed
// connection while reading client request headers"): scanners that
// probe and drop show in the access log. A connection closed before any
// byte, or between requests, logs nothing.
func TestHeadCutByTheClientIsLogged(t *testing.T) {
	b := startBackend(t, "b")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+proxyAllToApp)
	for _, sent := range []string{"GET /partial HTTP/1.1\r\nHost: a\r\n", "", "\r\n"} {
		c, err := net.Dial("tcp", gw.addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, sent)
		_ = c.(*net.TCPConn).CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = io.ReadAll(c)
		c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	lines := strings.Split(strings.TrimSpace(gw.access.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"GET /partial HTTP/1.1" 400 0 `) {
		t.Errorf("access log:\n%s\nwant one line: \"GET /partial HTTP/1.1\" 400 0", gw.access.String())
	}
}
