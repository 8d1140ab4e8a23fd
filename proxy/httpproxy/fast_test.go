package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vipgate/vipgate/proxy"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"golang.org/x/net/websocket"
)

// FuzzFastPathAgainstNetHTTP feeds the same bytes to the fast path's
// request parsing (parseNextHead, headerLines, the URI check of routing,
// chunkDecoder) and to net/http's request reader: whatever net/http
// refuses, the fast path refuses too; whatever both accept parses to the
// same method, target, Host, fields and body, so both place the end of
// every message at the same byte.
func FuzzFastPathAgainstNetHTTP(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a?b=c HTTP/1.1\r\nHost: a:80\r\nX: 1\r\nx: 2\r\nCookie: a=b\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"\r\nGET / HTTP/1.1\nHost: a\n\n",
		"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rest := data
		br := bufio.NewReader(bytes.NewReader(data))
		for len(rest) > 0 {
			skip, h, err := parseNextHead(rest, 8192)
			if err != nil {
				return // refused or incomplete: nothing passed on
			}
			target := string(h.Target)
			if !strings.HasPrefix(target, "/") || string(h.Method) == "CONNECT" {
				return // handed over to net/http itself
			}
			rawPath, _, _ := strings.Cut(target, "?")
			if _, _, err := normalizePath(rawPath); err != nil {
				return // routing answers 400
			}
			_, _ = br.Discard(skip)
			req, nerr := http.ReadRequest(br)
			if nerr != nil {
				t.Fatalf("fast path accepted %q, net/http refused: %v", rest[skip:skip+h.Len], nerr)
			}
			if req.Method != string(h.Method) || req.RequestURI != target || req.Host != string(h.Host) {
				t.Fatalf("net/http read %s %s Host %q, fast path %s %s Host %q", req.Method, req.RequestURI, req.Host, h.Method, h.Target, h.Host)
			}
			fields := http.Header{}
			it := headerLines{rest[skip+bytes.IndexByte(rest[skip:], '\n')+1 : skip+h.Len]}
			for {
				n, v, ok := it.next()
				if !ok {
					break
				}
				fields.Add(textproto.CanonicalMIMEHeaderKey(string(n)), string(v))
			}
			for _, framing := range []string{"Host", "Content-Length", "Transfer-Encoding"} {
				fields.Del(framing)
				req.Header.Del(framing)
			}
			if fmt.Sprint(fields) != fmt.Sprint(req.Header) {
				t.Fatalf("fields: fast path %v, net/http %v", fields, req.Header)
			}
			body := rest[skip+h.Len:]
			var fastBody []byte
			used := 0
			switch {
			case h.Chunked:
				dec := newChunkDecoder(8192)
				n, done, status := dec.decode(body, func(d []byte) int { fastBody = append(fastBody, d...); return 0 })
				if status != 0 || !done {
					return // refused or incomplete
				}
				used = n
			case h.ContentLength > 0:
				if int64(len(body)) < h.ContentLength {
					return
				}
				used = int(h.ContentLength)
				fastBody = body[:used]
			}
			netBody, err := io.ReadAll(req.Body)
			if err != nil {
				t.Fatalf("fast path accepted body %q, net/http: %v", body[:used], err)
			}
			if !bytes.Equal(netBody, fastBody) {
				t.Fatalf("body: fast path %q, net/http %q", fastBody, netBody)
			}
			rest = body[used:]
		}
	})
}

// TestPlainHTTPTakesFastPath pins which path serves what: plain HTTP/1.1
// (keep-alive, pipelined, chunked body, WebSocket) never reaches net/http;
// an HTTP/1.0 request and a static file are handed over to it, and the
// connection keeps working there.
func TestPlainHTTPTakesFastPath(t *testing.T) {
	b := startBackend(t, "b")
	ws := wsEchoBackend(t)
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+
		upstreamTOML("ws", fmt.Sprintf("address = %q", ws.addr()))+`
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
[[http.location]]
path = "/ws"
proxy_pass = "http://ws"
[[http.location]]
path = "/static/"
root = "`+t.TempDir()+`"
`)
	g := gw.current.Load().groups[gw.addr]
	raw := rawExchange(t, gw.addr, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"+
		"POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"+
		"GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if codes := statusLines(raw); fmt.Sprint(codes) != "[200 200 200]" {
		t.Fatalf("pipelined: %v", codes)
	}
	// A large body read past the buffer stops at its end: the request
	// behind it is intact.
	big := strings.Repeat("0123456789", 10000)
	raw = rawExchange(t, gw.addr, "POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n"+big+
		"GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(strings.NewReader(raw))
	for _, want := range []string{"/big", "/after"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", want, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if s := decodeSeen(t, string(body)); s.URI != want || want == "/big" && s.Body != big {
			t.Fatalf("got %s with a body of %d bytes, want %s", s.URI, len(s.Body), want)
		}
	}
	conf, _ := websocket.NewConfig("ws://"+gw.addr+"/ws", "http://"+gw.addr)
	wsc, err := websocket.DialConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	wsEcho(t, wsc, "fast")
	wsc.Close()
	if n := g.stdRequests.Load(); n != 0 {
		t.Fatalf("net/http served %d plain HTTP/1.1 requests", n)
	}
	raw = rawExchange(t, gw.addr, "GET /4 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /static/none HTTP/1.1\r\nHost: a\r\n\r\nGET /5 HTTP/1.0\r\n\r\n")
	if codes := statusLines(raw); fmt.Sprint(codes) != "[200 404 200]" {
		t.Fatalf("after hand-over: %v", codes)
	}
	if n := g.stdRequests.Load(); n != 2 {
		t.Fatalf("net/http served %d requests, want the static one and the HTTP/1.0 one behind it", n)
	}
}

// TestBothPathsSendTheSameUpstreamRequest: the same request, once on the
// fast path (origin-form) and once handed over to net/http (absolute-form),
// reaches the backend with the same URI, Host, fields and body: the
// upstream head is defined once (upstreamHead) for both.
func TestBothPathsSendTheSameUpstreamRequest(t *testing.T) {
	b := startBackend(t, "b")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+`
[[http]]
listen = ["LISTEN"]
server_name = ["www.example.com"]
[[http.location]]
path = "/a/"
proxy_pass = "http://app/b/"
proxy_set_header = { X-Real-IP = "", Via = "vipgate", X-Custom = "$host|$server_port|$scheme|$uri|$args|$arg_k|$cookie_sid|$http_x_multi|$request_method" }
`)
	g := gw.current.Load().groups[gw.addr]
	fields := "Host: www.example.com:8080\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 198.51.100.1\r\n" +
		"Connection: X-Hop, close\r\nX-Hop: secret\r\nCookie: a=1; sid=\"abc\"\r\nX-Multi: 1\r\nX-Multi: 2\r\n" +
		"Keep-Alive: 300\r\nTE: trailers\r\nUser-Agent: parity\r\n"
	for _, tc := range []struct{ method, target, extra, body string }{
		{"GET", "/a/x%20y/../z?k=v&k=w", "", ""},
		{"POST", "/a/up", "Transfer-Encoding: chunked\r\n", "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"},
		{"PUT", "/a/put", "Content-Length: 0\r\n", ""},
	} {
		var seenBy [2]seen
		for i, target := range []string{tc.target, "http://www.example.com:8080" + tc.target} {
			before := g.stdRequests.Load()
			raw := rawExchange(t, gw.addr, tc.method+" "+target+" HTTP/1.1\r\n"+fields+tc.extra+"\r\n"+tc.body)
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
			if err != nil {
				t.Fatalf("%s %s: %v\n%s", tc.method, target, err, raw)
			}
			body, _ := io.ReadAll(resp.Body)
			seenBy[i] = decodeSeen(t, string(body))
			if viaStd := g.stdRequests.Load() - before; viaStd != int64(i) {
				t.Fatalf("%s %s: net/http served %d requests, want %d", tc.method, target, viaStd, i)
			}
		}
		fast, std := seenBy[0], seenBy[1]
		if fast.URI != std.URI || fast.Host != std.Host || fast.Body != std.Body || fmt.Sprint(fast.Header) != fmt.Sprint(std.Header) {
			t.Errorf("%s %s:\nfast path: %s Host %s body %q\n  %v\nnet/http:  %s Host %s body %q\n  %v",
				tc.method, tc.target, fast.URI, fast.Host, fast.Body, fast.Header, std.URI, std.Host, std.Body, std.Header)
		}
		if fast.Header.Get("X-Hop") != "" || fast.Header.Get("Keep-Alive") != "" || fast.Header.Get("X-Real-Ip") != "" {
			t.Errorf("%s: hop-by-hop or removed fields passed: %v", tc.method, fast.Header)
		}
	}
}

func TestDeadlineRearmsOnlyWhenNeeded(t *testing.T) {
	base := time.Unix(1000, 0)
	var d deadline
	var applied []time.Duration
	apply := func(at time.Time) error { applied = append(applied, at.Sub(base)); return nil }
	steps := []struct {
		after, timeout time.Duration
		want           bool // re-armed
	}{
		{0, 16 * time.Second, true},                       // first time
		{500 * time.Millisecond, 16 * time.Second, false}, // within a sixteenth: fires at most 0.5s early
		{time.Second, 16 * time.Second, true},             // a sixteenth late: re-armed
		{time.Second, 2 * time.Second, true},              // a shorter timeout wants an earlier deadline
		{time.Second, 16 * time.Second, true},
	}
	for i, st := range steps {
		n := len(applied)
		d.set(base.Add(st.after), st.timeout, apply)
		if got := len(applied) > n; got != st.want {
			t.Fatalf("step %d: re-armed %v, want %v (applied %v)", i, got, st.want, applied)
		}
	}
	d.forget()
	n := len(applied)
	d.set(base.Add(time.Second), 16*time.Second, apply)
	if len(applied) == n {
		t.Fatal("forget did not make the next set apply")
	}
}

// rawUpstream serves each connection with fn, which reads requests with
// http.ReadRequest and writes raw answers; it counts connections.
// httpUpstream is a rawUpstream that answers request by request: answer
// gets each request, its body already read, and returns false to close the
// connection.
func httpUpstream(t *testing.T, answer func(req *http.Request, c net.Conn) (keep bool)) (string, *atomic.Int64) {
	return rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if !answer(req, c) {
				return
			}
		}
	})
}

func rawUpstream(t *testing.T, fn func(br *bufio.Reader, c net.Conn)) (string, *atomic.Int64) {
	t.Helper()
	ln := listenLoopback(t)
	var conns atomic.Int64
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
			conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				fn(bufio.NewReader(c), c)
			}()
		}
	}()
	return ln.Addr().String(), &conns
}

// TestFastPathResponseFraming relays every response framing to a keep-alive
// client, which then sends its next request on the same connection:
// chunked with trailers passes as it came, a body ended by the upstream's
// close goes out chunked, HEAD/204/304 carry no body, 1xx answers of the
// upstream are not passed on.
func TestFastPathResponseFraming(t *testing.T) {
	bigBody := strings.Repeat("abcdefghij", 4000)
	addr, _ := httpUpstream(t, func(req *http.Request, c net.Conn) bool {
		switch req.URL.Path {
		case "/chunked":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n")
		case "/close":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
			return false
		case "/length-big":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+fmt.Sprint(5*len(bigBody))+"\r\n\r\n"+strings.Repeat(bigBody, 5))
		case "/close-big":
			// The shortest head: the body fills the first read.
			io.WriteString(c, "HTTP/1.0 200 OK\r\n\r\n"+bigBody)
			return false
		case "/head":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
		case "/204":
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		case "/304":
			io.WriteString(c, "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n")
		case "/early":
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		return true
	})
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", addr))+proxyAllToApp)
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
		check        func(*http.Response) string
	}{
		{"GET", "/chunked", 200, "hello world", func(r *http.Response) string {
			if r.TransferEncoding == nil || r.Trailer.Get("X-Sum") != "42" {
				return fmt.Sprintf("chunked %v trailer %v", r.TransferEncoding, r.Trailer)
			}
			return ""
		}},
		{"GET", "/close", 200, "until the end", func(r *http.Response) string {
			if r.Close || r.TransferEncoding == nil {
				return fmt.Sprintf("close-delimited upstream body: Close %v chunked %v", r.Close, r.TransferEncoding)
			}
			return ""
		}},
		{"GET", "/close-big", 200, bigBody, nil},
		{"GET", "/length-big", 200, strings.Repeat(bigBody, 5), nil}, // spliced
		{"HEAD", "/head", 200, "", func(r *http.Response) string {
			if r.ContentLength != 1234 {
				return fmt.Sprintf("HEAD Content-Length %d", r.ContentLength)
			}
			return ""
		}},
		{"GET", "/204", 204, "", nil},
		{"GET", "/304", 304, "", func(r *http.Response) string {
			if r.Header.Get("Etag") != `"x"` {
				return "ETag lost"
			}
			return ""
		}},
		{"GET", "/early", 200, "ok", nil},
	} {
		io.WriteString(c, tc.method+" "+tc.path+" HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(br, &http.Request{Method: tc.method})
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != tc.status || string(body) != tc.body {
			t.Fatalf("%s %s: %d %q %v", tc.method, tc.path, resp.StatusCode, body, err)
		}
		if tc.check != nil {
			if msg := tc.check(resp); msg != "" {
				t.Errorf("%s %s: %s", tc.method, tc.path, msg)
			}
		}
	}
}

// A server that closes an idle connection lingeringly (Apache: shutdown,
// then read and discard for a while before close) sends no reset when the
// next request arrives on it. The request must still be retried at once on
// a fresh connection, not after waiting for an answer that cannot come;
// and an answer slower than the first wait slice must still arrive.
func TestUpstreamLingeringCloseAndSlowAnswer(t *testing.T) {
	addr, conns := httpUpstream(t, func(req *http.Request, c net.Conn) bool {
		if req.URL.Path == "/slow" {
			time.Sleep(1300 * time.Millisecond) // past the 1 s first slice
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		if req.URL.Path == "/then-linger" {
			time.Sleep(50 * time.Millisecond)
			c.(*net.TCPConn).CloseWrite()
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			io.Copy(io.Discard, c) // lingering: what arrives is read and dropped
			return false
		}
		return true
	})
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", addr))+proxyAllToApp)
	c := newClient()
	if resp, body := get(t, c, gw.url("/then-linger")); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("then-linger: %d %q", resp.StatusCode, body)
	}
	time.Sleep(400 * time.Millisecond) // the server has half-closed the idle connection
	start := time.Now()
	if resp, body := get(t, c, gw.url("/after")); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("request after a lingering close: %d %q", resp.StatusCode, body)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("request on a lingeringly closed pooled connection took %s: it waited for an answer instead of retrying at once", took)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d upstream connections, want 2 (the lingering one, then a fresh one)", n)
	}
	if resp, body := get(t, c, gw.url("/slow")); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("answer after 1.3 s: %d %q", resp.StatusCode, body)
	}
}

// TestUpstreamPoolReuseAndStaleConnection: idle upstream connections are
// reused (keepalive bounds how many are kept), and one the server closed
// while idle costs the client nothing: the request goes out again on a
// fresh connection.
func TestUpstreamPoolReuseAndStaleConnection(t *testing.T) {
	addr, conns := httpUpstream(t, func(req *http.Request, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		if req.URL.Path == "/then-close" {
			time.Sleep(50 * time.Millisecond)
			return false // closes without announcing it
		}
		return true
	})
	gw := startGateway(t, strings.Replace(upstreamTOML("app", fmt.Sprintf("address = %q", addr)), "[upstream.app]\n", "[upstream.app]\nkeepalive = 1\n", 1)+proxyAllToApp)
	c := newClient()
	for i := 0; i < 5; i++ {
		if resp, body := get(t, c, gw.url("/x")); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("5 sequential requests used %d upstream connections, want 1 (reused)", n)
	}
	if resp, _ := get(t, c, gw.url("/then-close")); resp.StatusCode != 200 {
		t.Fatalf("then-close: %d", resp.StatusCode)
	}
	time.Sleep(150 * time.Millisecond) // the server has closed the idle connection
	for _, method := range []string{"GET", "POST"} {
		req, _ := http.NewRequest(method, gw.url("/after"), strings.NewReader("body"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("%s on a stale pooled connection: %d %q", method, resp.StatusCode, body)
		}
	}
	// keepalive = 1: of several connections busy at once, one stays.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := newClient().Get(gw.url("/x"))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	// A connection goes back to the pool after its response was relayed,
	// which can be just after the client read the last byte.
	p := gw.current.Load().pools["app"]
	idle := func() int {
		p.conns.mu.Lock()
		defer p.conns.mu.Unlock()
		return len(p.conns.idle)
	}
	for deadline := time.Now().Add(2 * time.Second); idle() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := idle(); n != 1 {
		t.Errorf("%d idle upstream connections kept, want keepalive = 1", n)
	}
}

// TestClientGoneWhileWaitingClosesUpstreamRequest: a client that leaves
// while its request waits for a slow server has the upstream request
// closed within about a second (not after proxy_read_timeout), logged as
// 499 and not counted against the server.
func TestClientGoneWhileWaitingClosesUpstreamRequest(t *testing.T) {
	upstreamClosed := make(chan time.Duration, 1)
	addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		start := time.Now()
		_, _ = br.ReadByte() // blocks until the proxy closes (or 5s)
		upstreamClosed <- time.Since(start)
	})
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", addr))+`
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
proxy_read_timeout = "10s"
`)
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /long-poll HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	c.Close()
	select {
	case d := <-upstreamClosed:
		if d > 3*time.Second {
			t.Errorf("upstream request closed after %v", d)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("upstream request still open 4s after its client left")
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(gw.access.String(), `"GET /long-poll HTTP/1.1" 499 `) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(gw.access.String(), `"GET /long-poll HTTP/1.1" 499 `) {
		t.Errorf("access log:\n%s", gw.access.String())
	}
	for _, s := range gw.current.Load().pools["app"].bal.Servers() {
		if st := s.Status(); st.FailuresTotal != 0 || st.ActiveConns != 0 {
			t.Errorf("server %s: %d failures, %d active connections after a client left", s.Address(), st.FailuresTotal, st.ActiveConns)
		}
	}
}

// TestShutdownCutsRequestStillWaiting: a request whose server never
// answers keeps Shutdown waiting only until its deadline; then both its
// client and its upstream connection are closed and no goroutine is left.
func TestShutdownCutsRequestStillWaiting(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	upstreamClosed := make(chan struct{})
	addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = br.ReadByte() // until the proxy closes
		close(upstreamClosed)
	})
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", addr))+`
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
proxy_read_timeout = "30s"
`)
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /never HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := gw.current.Load().Shutdown(ctx); err == nil {
		t.Error("Shutdown reported a clean stop although a request outlived its deadline")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	select {
	case <-upstreamClosed:
	case <-time.After(2 * time.Second):
		t.Fatal("upstream request still open after Shutdown")
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("client connection still open after Shutdown")
	}
}

// TestHTTP10ClientsOnFastPath: HTTP/1.0 clients keep their connection only
// when they ask (the answer says keep-alive), and get a body of unknown
// length (chunked or close-delimited upstream) as it comes, ended by the
// close.
func TestHTTP10ClientsOnFastPath(t *testing.T) {
	addr, _ := httpUpstream(t, func(req *http.Request, c net.Conn) bool {
		switch req.URL.Path {
		case "/chunked":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n")
		case "/close":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
			return false
		default:
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		return true
	})
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", addr))+proxyAllToApp)
	g := gw.current.Load().groups[gw.addr]
	for _, path := range []string{"/chunked", "/close"} {
		raw := rawExchange(t, gw.addr, "GET /len HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET "+path+" HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		br := bufio.NewReader(strings.NewReader(raw))
		first, err := http.ReadResponse(br, &http.Request{Method: "GET", ProtoMajor: 1, ProtoMinor: 0})
		if err != nil {
			t.Fatalf("%s: %v\n%s", path, err, raw)
		}
		body, _ := io.ReadAll(first.Body)
		if string(body) != "ok" || first.Header.Get("Connection") != "keep-alive" {
			t.Fatalf("%s: first answer %q Connection %q", path, body, first.Header.Get("Connection"))
		}
		second, err := http.ReadResponse(br, &http.Request{Method: "GET", ProtoMajor: 1, ProtoMinor: 0})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, _ = io.ReadAll(second.Body)
		want := map[string]string{"/chunked": "hello world", "/close": "until the end"}[path]
		if string(body) != want || second.TransferEncoding != nil || !second.Close {
			t.Errorf("%s: %q chunked %v close %v", path, body, second.TransferEncoding, second.Close)
		}
	}
	raw := rawExchange(t, gw.addr, "GET /len HTTP/1.0\r\n\r\nGET /len HTTP/1.0\r\n\r\n")
	if codes := statusLines(raw); fmt.Sprint(codes) != "[200]" {
		t.Errorf("HTTP/1.0 without keep-alive: answers %v, want one and the close", codes)
	}
	if n := g.stdRequests.Load(); n != 0 {
		t.Errorf("net/http served %d HTTP/1.0 requests", n)
	}
}

// A keep-alive connection serves body-less requests within one wait for
// readability (keepAlive): a request that arrives while the one before it
// is still being answered must be answered at once (its readiness seen
// then is not forgotten), and requests that need more of the client (a
// body, chunks, Expect, a head in pieces, pipelining) go on working in
// between, in any order.
func TestKeepAliveWaitServesWhatArrives(t *testing.T) {
	b := startBackend(t, "b")
	b.handle = func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(300 * time.Millisecond)
		}
		b.mu.Lock()
		body := b.bodies[len(b.bodies)-1] // read by the backend before handle
		b.mu.Unlock()
		fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(body))
	}
	gw := startAppGateway(t, b.addr(), false, `keepalive_timeout = "60s"`, "")
	c := dialFront(t, gw.addr, false)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	expect := func(want string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		got, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(got) != want {
			t.Fatalf("got %d %q, want %q", resp.StatusCode, got, want)
		}
	}
	send := func(s string) {
		t.Helper()
		if _, err := io.WriteString(c, s); err != nil {
			t.Fatal(err)
		}
	}
	get := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: front.example\r\n\r\n" }

	for i := range 3 {
		send(get(fmt.Sprintf("/plain%d", i)))
		expect(fmt.Sprintf("GET /plain%d 0", i))
	}
	// The next request comes while /slow is still being answered: the
	// proxy had read its socket empty before.
	send(get("/slow"))
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	send(get("/behind"))
	expect("GET /slow 0")
	expect("GET /behind 0")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a request sent while the one before was answered took %v", d)
	}
	send("POST /body HTTP/1.1\r\nHost: front.example\r\nContent-Length: 5\r\n\r\nhello")
	expect("POST /body 5")
	send(get("/after-body"))
	expect("GET /after-body 0")
	send("POST /chunked HTTP/1.1\r\nHost: front.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	expect("POST /chunked 3")
	send("POST /expect HTTP/1.1\r\nHost: front.example\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("interim answer %q %v", line, err)
	}
	_, _ = br.ReadString('\n') // its empty line
	send("ok")
	expect("POST /expect 2")
	// A head in two pieces, then two pipelined requests in one write.
	send("GET /pie")
	time.Sleep(50 * time.Millisecond)
	send("ces HTTP/1.1\r\nHost: front.example\r\n\r\n")
	expect("GET /pieces 0")
	send(get("/one") + get("/two"))
	expect("GET /one 0")
	expect("GET /two 0")
	send("HEAD /head HTTP/1.1\r\nHost: front.example\r\n\r\n")
	resp, err := http.ReadResponse(br, &http.Request{Method: "HEAD"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HEAD: %v %v", resp, err)
	}
	send(get("/last"))
	expect("GET /last 0")
	if n := b.hits.Load(); n != 14 {
		t.Errorf("backend saw %d requests, want 14", n)
	}
}

// idleKeepAliveGateway is a gateway whose backend answers "ok", with
// connections kept alive for a minute.
func idleKeepAliveGateway(t *testing.T) *testGateway {
	b := startBackend(t, "b")
	b.handle = func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }
	return startAppGateway(t, b.addr(), false, `keepalive_timeout = "60s"`, "")
}

// askOK sends c a GET and reads its "ok" answer.
func askOK(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := c.Write([]byte("GET /idle HTTP/1.1\r\nHost: front.example\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	var buf [4096]byte
	n := 0
	for !bytes.HasSuffix(buf[:n], []byte("\r\n\r\nok")) {
		k, err := c.Read(buf[n:])
		if err != nil {
			t.Fatalf("answer %q: %v", buf[:n], err)
		}
		n += k
	}
}

// holdIdleKeepAlive opens n connections to addr, each asked twice (the
// second request after a keep-alive wait), and leaves them idle until the
// test ends.
func holdIdleKeepAlive(t *testing.T, addr string, n int) {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		askOK(t, c)
		askOK(t, c)
	}
	time.Sleep(100 * time.Millisecond) // every connection back in its wait
}

// An idle keep-alive connection holds no read buffer (issue #8, point 4):
// whether it waits for its second request (fill) or for any later one
// (keepAlive), a buffer is borrowed only when bytes arrive. Measured as
// the heap that 300 idle client connections keep alive, proxy and test
// client together: about 3.9 KiB each without a buffer, 8 KiB with one.
func TestIdleKeepAliveConnectionsHoldNoReadBuffer(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own and drops sync.Pool items: heap figures mean nothing under it")
	}
	gw := idleKeepAliveGateway(t)
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC() // the second empties sync.Pool's victim cache
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	// A first connection warms the upstream pool and the proxy's pools.
	warm := dialFront(t, gw.addr, false)
	askOK(t, warm)
	askOK(t, warm)
	const conns = 300
	before := heap()
	holdIdleKeepAlive(t, gw.addr, conns)
	if got := gw.current.Load().ClientConns(); got < conns {
		t.Fatalf("%d client connections open, want %d", got, conns)
	}
	per := float64(heap()-before) / conns
	t.Logf("heap per idle keep-alive connection (proxy and client): %.0f bytes", per)
	if per > 6*1024 {
		t.Errorf("idle keep-alive connections keep %.0f bytes of heap each: a read buffer (4096) is held while idle", per)
	}
}

// An idle keep-alive connection's goroutine gives back half of its stack
// at the next collection: serving a request grows it to 8 KiB, and the
// runtime halves an idle goroutine's stack only when less than a quarter
// is in use, which the frames below the wait decide. The connections are
// accepted by proxy.Listeners, the production path (its warm goroutines
// add their frames under the wait).
func TestIdleKeepAliveConnectionStackShrinksAtCollection(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation makes every frame larger")
	}
	gw := idleKeepAliveGateway(t)
	const addr = "127.0.0.1:0"
	ls := proxy.NewListeners(zap.NewNop())
	if err := ls.Apply(map[string]proxy.Handler{addr: gw.current.Load().Handler(gw.addr)}); err != nil {
		t.Fatal(err)
	}
	defer ls.Close()
	stacks := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.StackInuse
	}
	const conns = 300
	before := stacks()
	holdIdleKeepAlive(t, ls.Get(addr).Addr().String(), conns)
	per := float64(stacks()-before) / conns
	t.Logf("stack per idle keep-alive connection after a collection: %.0f bytes", per)
	if per > 6*1024 {
		t.Errorf("idle keep-alive connections keep %.0f bytes of stack each after a collection, want 4 KiB", per)
	}
}

// A keep-alive client that sends its last request and shuts down its
// writing side right behind it gets the answer and then the end of the
// connection at once, not after keepalive_timeout: the proxy reads on
// after a request whose read also brought the end of the stream.
func TestKeepAliveClientThatShutsDownAfterItsLastRequestIsClosedAtOnce(t *testing.T) {
	b := startBackend(t, "b")
	b.handle = func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }
	gw := startAppGateway(t, b.addr(), false, `keepalive_timeout = "60s"`, "")
	get := []byte("GET /x HTTP/1.1\r\nHost: front.example\r\n\r\n")
	for i := range 20 {
		c := dialFront(t, gw.addr, false)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for j := range 3 {
			if _, err := c.Write(get); err != nil {
				t.Fatal(err)
			}
			last := j == 2
			if last {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("connection %d, request %d: %v", i, j, err)
			}
			body, _ := io.ReadAll(resp.Body)
			if string(body) != "ok" {
				t.Fatalf("connection %d, request %d: %q", i, j, body)
			}
		}
		start := time.Now()
		if n, err := br.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("connection %d after its last answer: %d bytes, %v after %v; want the end of the stream", i, n, err, time.Since(start))
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("connection %d closed %v after its last answer, want at once", i, d)
		}
		c.Close()
	}
}
