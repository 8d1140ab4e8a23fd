package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Bytes a server writes on an idle pooled connection (a 408 before it
// closes it) are no answer to the next request, which may be another
// client's: that request goes on a connection that is clean.
func TestStrayBytesOnIdlePooledConnectionAreNoAnswer(t *testing.T) {
	var n atomic.Int64
	addr, conns := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		first := n.Add(1) == 1
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		if first {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			time.Sleep(100 * time.Millisecond)
			_, _ = io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			// The connection stays open: only the stray bytes tell.
			_, _ = br.ReadByte()
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")
	})
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", addr))+proxyAllToApp)
	if resp, body := get(t, newClient(), gw.url("/a")); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("first request: %d %q", resp.StatusCode, body)
	}
	time.Sleep(awaitIdleLimit + 250*time.Millisecond) // a connection idle this long is checked
	resp, body := get(t, newClient(), gw.url("/b"))
	if resp.StatusCode != 200 || body != "fresh" {
		t.Fatalf("next client got %d %q: the bytes the server sent on the idle pooled connection", resp.StatusCode, body)
	}
	if got := conns.Load(); got != 2 {
		t.Errorf("%d upstream connections, want 2 (the dirty one dropped)", got)
	}
}

// A POST whose reused connection is closed without an answer after the
// server read it is not sent again: the server may have acted on it
// (nginx answers 502 too). A GET is retried on a fresh connection.
func TestPostNotResentWhenReusedConnectionCloses(t *testing.T) {
	var posts, gets atomic.Int64
	addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			switch {
			case req.Method == "POST" && posts.Add(1) == 1:
				return // acted on it, then died before answering
			case req.URL.Path == "/get" && gets.Add(1) == 1:
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", addr))+proxyAllToApp)
	c := newClient()
	get(t, c, gw.url("/warm"))
	resp, err := c.Post(gw.url("/charge"), "text/plain", strings.NewReader("pay 100"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if n := posts.Load(); n != 1 {
		t.Errorf("the server received the POST %d times (client got %d), want once", n, resp.StatusCode)
	}
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("POST answered %d, want 502", resp.StatusCode)
	}
	get(t, c, gw.url("/warm"))
	if resp, body := get(t, c, gw.url("/get")); resp.StatusCode != 200 || body != "ok" || gets.Load() != 2 {
		t.Errorf("GET on a connection closed the same way: %d %q after %d sends, want 200 after a resend", resp.StatusCode, body, gets.Load())
	}
}

// proxy_read_timeout is the server's time to answer once the request is
// sent, as in nginx: a slow upload does not use it up.
func TestReadTimeoutStartsWhenRequestIsSent(t *testing.T) {
	addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		_ = c.(*net.TCPConn).SetReadBuffer(64 << 10)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		time.Sleep(1500 * time.Millisecond) // the body waits in the socket buffers
		_, _ = io.Copy(io.Discard, req.Body)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
	})
	gw := startAppGateway(t, addr, false, `client_max_body_size = "0"`, `proxy_read_timeout = "1s"`)
	req, _ := http.NewRequest("PUT", gw.url("/up"), bytes.NewReader(bytes.Repeat([]byte("x"), 32<<20)))
	start := time.Now()
	resp, err := newClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || string(out) != "done" {
		t.Errorf("PUT: %d %q after %v; the server answered as soon as it had the body", resp.StatusCode, out, time.Since(start))
	}
}

// A client that leaves while its request waits for the server is noticed
// even after its socket's read deadline (client_header_timeout here) has
// passed: the upstream request is closed, as nginx does.
func TestClientLeavingIsNoticedAfterHeaderTimeout(t *testing.T) {
	upstreamClosed := make(chan time.Time, 1)
	addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = br.ReadByte() // until the proxy closes
		upstreamClosed <- time.Now()
	})
	gw := startAppGateway(t, addr, false, `client_header_timeout = "1s"`, `proxy_read_timeout = "20s"`)
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "GET /long-poll HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(1500 * time.Millisecond)
	left := time.Now()
	_ = c.Close()
	select {
	case at := <-upstreamClosed:
		// The check runs every clientCheckInterval.
		if d := at.Sub(left); d > clientCheckInterval+500*time.Millisecond {
			t.Errorf("upstream request closed %v after the client left", d)
		}
	case <-time.After(12 * time.Second):
		t.Fatal("the upstream request was never closed")
	}
}

// An upgrade under way when CloseLongLived runs (a stop or handover) does
// not become a tunnel that outlives it: its connections are closed and
// Shutdown does not wait for it.
func TestUpgradeAnsweredAfterCloseLongLivedIsClosed(t *testing.T) {
	addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		time.Sleep(400 * time.Millisecond)
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = br.ReadByte()
	})
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", addr))+proxyAllToApp)
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	time.Sleep(150 * time.Millisecond)
	s := gw.current.Load()
	s.Drain()
	s.CloseLongLived()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(c); err != nil {
		t.Errorf("client connection not closed: %v (read %q)", err, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	_ = s.Shutdown(ctx)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %v: a tunnel set up after CloseLongLived stayed open", d)
	}
}

// A client that stops reading a response is closed after send_timeout
// without a successful write, as nginx does, and its upstream connection
// with it: it cannot hold a server's connection (and a max_conns slot) for
// good. Large Content-Length bodies go by splice, chunked ones through
// the copy buffer, TLS through net/http: each path has its own writes.
// (4 GiB bodies: more than proxy_buffering spools.)
func TestSendTimeoutClosesAClientThatStopsReading(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		tls        bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 4294967296\r\n\r\n", false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"tls", "HTTP/1.1 200 OK\r\nContent-Length: 4294967296\r\n\r\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serverGaveUp := make(chan error, 1)
			addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				chunk := bytes.Repeat([]byte("x"), 64<<10)
				if strings.Contains(tc.head, "chunked") {
					chunk = append([]byte(fmt.Sprintf("%x\r\n", len(chunk))), append(chunk, "\r\n"...)...)
				}
				_, err := io.WriteString(c, tc.head)
				for sent := 0; err == nil && sent < 1<<30; sent += len(chunk) {
					_, err = c.Write(chunk)
				}
				serverGaveUp <- err
			})
			gw := startAppGateway(t, addr, tc.tls, `send_timeout = "1s"`, "")
			var c net.Conn
			var err error
			if tc.tls {
				c, err = tls.Dial("tcp", gw.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			} else {
				c, err = net.Dial("tcp", gw.addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tcp, ok := c.(*net.TCPConn); ok {
				_ = tcp.SetReadBuffer(64 << 10)
			}
			_, _ = io.WriteString(c, "GET /big HTTP/1.1\r\nHost: gw.example\r\n\r\n")
			start := time.Now()
			select {
			case err := <-serverGaveUp:
				if err == nil || isTimeout(err) {
					t.Fatalf("the server's writes ended with %v, want the proxy closing the connection", err)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("upstream connection closed %v after the client stopped reading (send_timeout 1s)", d)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the upstream connection is still open 10 s after the client stopped reading")
			}
			// The client's connection is closed too: reading drains what was
			// buffered, then ends.
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.Copy(io.Discard, c); err != nil && isTimeout(err) {
				t.Errorf("client connection still open: %v", err)
			}
		})
	}
}

// proxy_send_timeout bounds the time between two writes to the server, as
// in nginx: an upload that takes longer in all to a server that reads
// steadily is not cut (fast path and net/http path).
func TestSendTimeoutIsBetweenWritesToTheServer(t *testing.T) {
	const size = 24 << 20
	for _, viaTLS := range []bool{false, true} {
		name := "fast path"
		if viaTLS {
			name = "net/http path"
		}
		t.Run(name, func(t *testing.T) {
			addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
				_ = c.(*net.TCPConn).SetReadBuffer(64 << 10)
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				// 2 MiB every 200 ms: about 2.4 s for the whole body, never
				// a second without reading.
				got, err := int64(0), error(nil)
				for err == nil {
					var n int64
					n, err = io.CopyN(io.Discard, req.Body, 2<<20)
					got += n
					time.Sleep(200 * time.Millisecond)
				}
				_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d", len(fmt.Sprint(got)), got)
			})
			gw := startAppGateway(t, addr, viaTLS, `client_max_body_size = "0"`, `proxy_send_timeout = "1s"`)
			client := newClient()
			url := gw.url("/up")
			if viaTLS {
				client = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
					TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
					TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
				}}
				url = "https://" + gw.addr + "/up"
			}
			req, _ := http.NewRequest("PUT", url, bytes.NewReader(bytes.Repeat([]byte("x"), size)))
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != 200 || string(out) != fmt.Sprint(size) {
				t.Errorf("PUT of %d bytes: %d %q after %v; the server read it all, never pausing 1 s", size, resp.StatusCode, out, time.Since(start))
			}
		})
	}
}

// A 404 (or 403) that sends the request to the next server does not count
// against max_fails, as in nginx: the server that has no such object stays
// up for the objects it has.
func TestNextUpstreamOn404IsNoFailure(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	a.handle = func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", a.addr()), fmt.Sprintf("address = %q", b.addr()))+`
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
proxy_next_upstream = ["error", "timeout", "http_404", "http_500"]
`)
	c := newClient()
	for i := 0; i < 4; i++ {
		if resp, _ := get(t, c, gw.url("/x")); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d, want b's 200", i, resp.StatusCode)
		}
	}
	if a.hits.Load() < 2 {
		t.Fatalf("a was asked %d times in 4 requests: taken out after a 404", a.hits.Load())
	}
	a.handle = func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }
	get(t, c, gw.url("/x"))
	get(t, c, gw.url("/x"))
	for _, st := range gw.table.Statuses() {
		if st.Address == a.addr() && st.FailuresTotal != 1 {
			t.Errorf("a: %d failures counted, want 1 (the 500 only, not the 404s)", st.FailuresTotal)
		}
	}
}

// proxy_next_upstream_timeout counts from when the request is ready to go
// to a server, not from its first byte: a slow upload does not use it up
// (nginx, and the net/http path, start it after the body).
func TestNextUpstreamTimeoutLeavesOutTheUpload(t *testing.T) {
	dead := listenLoopback(t)
	deadAddr := dead.Addr().String()
	_ = dead.Close() // connections to it are refused
	live := startBackend(t, "live")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", deadAddr), fmt.Sprintf("address = %q", live.addr()))+`
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
proxy_next_upstream_timeout = "1s"
`)
	for i := 0; i < 2; i++ { // the second request's first try is the dead server, whatever the round robin
		c, err := net.Dial("tcp", gw.addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
		time.Sleep(1200 * time.Millisecond) // the client takes its time
		_, _ = io.WriteString(c, "cd")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		_ = c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d, want the live server's 200 after the dead one", i, resp.StatusCode)
		}
	}
}

// A server that closes each connection a few milliseconds after answering
// (a short keep-alive timeout, or a graceful restart): a GET that meets one
// of its closed pooled connections is sent again on a new connection, not
// on the next pooled one, which the same server closed too (before: about
// one request in six answered 502 with one server).
func TestRetryAfterAClosedPooledConnectionDials(t *testing.T) {
	addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		time.Sleep(3 * time.Millisecond)
	})
	gw := startAppGateway(t, addr, false, "", "")
	var ok, failed atomic.Int64
	done := make(chan struct{})
	const workers, perWorker = 6, 300
	for w := 0; w < workers; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			c, err := net.Dial("tcp", gw.addr)
			if err != nil {
				failed.Add(perWorker)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			br := bufio.NewReader(c)
			for i := 0; i < perWorker; i++ {
				if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					failed.Add(int64(perWorker - i))
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					failed.Add(int64(perWorker - i))
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	for w := 0; w < workers; w++ {
		<-done
	}
	if failed.Load() > 0 {
		t.Fatalf("%d of %d GETs failed against one server that closes its connections after answering",
			failed.Load(), failed.Load()+ok.Load())
	}
}

// A blue/green switch by reload, then blue stopped: a busy keep-alive
// client that opened its connection before the reload keeps the old
// settings, so its requests went to blue and were answered 502 for as
// long as it kept the connection. An error answer from a replaced
// generation now ends the connection; the next one uses the new settings.
func TestErrorFromAReplacedGenerationEndsTheConnection(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		blue, green := startBackend(t, "blue"), startBackend(t, "green")
		cfg := func(b *backend) string {
			extra := ""
			if withTLS {
				cert, key := writeCert(t, t.TempDir(), "one", "front.example")
				extra = fmt.Sprintf("tls_certificate = %q\ntls_certificate_key = %q\n", cert, key)
			}
			return upstreamTOML("app", fmt.Sprintf("address = %q", b.addr())) + "[[http]]\nlisten = [\"LISTEN\"]\n" + extra +
				"[[http.location]]\npath = \"/\"\nproxy_pass = \"http://app\"\n"
		}
		gw := startGateway(t, cfg(blue))
		c := dialFront(t, gw.addr, withTLS)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		ask := func() (*http.Response, string) {
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: front.example\r\n\r\n"); err != nil {
				t.Fatalf("TLS %v: write: %v", withTLS, err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("TLS %v: read: %v", withTLS, err)
			}
			body, _ := io.ReadAll(resp.Body)
			return resp, string(body)
		}
		if resp, _ := ask(); resp.Header.Get("X-Backend") != "blue" {
			t.Fatalf("TLS %v: first answer from %q", withTLS, resp.Header.Get("X-Backend"))
		}
		gw.reload(cfg(green))
		blue.kill()
		resp, _ := ask()
		if resp.StatusCode != http.StatusBadGateway || !resp.Close {
			t.Errorf("TLS %v: after the reload with blue gone: %d, close %v; want 502 ending the connection", withTLS, resp.StatusCode, resp.Close)
		}
		if _, err := br.ReadByte(); err == nil {
			t.Errorf("TLS %v: connection still open after the 502 from the replaced generation", withTLS)
		}
		if got := tlsOrPlainGet(t, gw.addr, withTLS); got != "green" {
			t.Errorf("TLS %v: a new connection got %q, want green", withTLS, got)
		}
	}
}

// tlsOrPlainGet asks "/" on a new connection and returns X-Backend.
func tlsOrPlainGet(t *testing.T, addr string, withTLS bool) string {
	t.Helper()
	out := rawExchangeMaybeTLS(t, addr, withTLS, "GET / HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), nil)
	if err != nil {
		t.Fatalf("answer %q: %v", out, err)
	}
	return resp.Header.Get("X-Backend")
}

// A client that pipelines requests and never reads is cut at send_timeout
// on both front ends. On the net/http path, net/http writes the end of a
// small response after the handler returned, with no deadline: such a
// client held its connection and goroutines for good.
func TestSendTimeoutCutsAPipeliningClientThatNeverReads(t *testing.T) {
	small := strings.Repeat("s", 2000)
	for _, withTLS := range []bool{false, true} {
		b := startBackend(t, "b")
		b.handle = func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, small) }
		gw := startAppGateway(t, b.addr(), withTLS, `send_timeout = "1s"`, "")
		c := dialFront(t, gw.addr, withTLS)
		done := make(chan struct{})
		go func() {
			defer close(done)
			req := []byte(strings.Repeat("GET /small HTTP/1.1\r\nHost: front.example\r\n\r\n", 100))
			_ = c.SetWriteDeadline(time.Now().Add(12 * time.Second))
			for i := 0; i < 400; i++ {
				if _, err := c.Write(req); err != nil {
					return
				}
			}
		}()
		s := gw.current.Load()
		deadline := time.Now().Add(8 * time.Second)
		for s.ClientConns() > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if n := s.ClientConns(); n > 0 {
			t.Errorf("TLS %v: a client that stopped reading is still connected 8 s later (send_timeout 1s; %d answers written)", withTLS, b.hits.Load())
		}
		c.Close()
		<-done
	}
}

// send_timeout starts only when a write to the client would block, and a
// deadline armed then must not outlive the wait it was for: a client that
// read slowly once, then idled longer than send_timeout, still gets its
// next answer on the same connection.
func TestSendTimeoutArmedOnceDoesNotCutALaterAnswer(t *testing.T) {
	b := startBackend(t, "b")
	big := strings.Repeat("b", 8<<20)
	b.handle = func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.(http.Flusher).Flush() // chunked: relayed through the copy buffer
			_, _ = io.WriteString(w, big)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}
	gw := startAppGateway(t, b.addr(), false, `send_timeout = "1s"`, "")
	c := dialFront(t, gw.addr, false)
	_ = c.(*net.TCPConn).SetReadBuffer(64 << 10)
	br := bufio.NewReader(c)
	get := func(path string) (*http.Response, string, error) {
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: front.example\r\n\r\n"); err != nil {
			return nil, "", err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return nil, "", err
		}
		body, err := io.ReadAll(resp.Body)
		return resp, string(body), err
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: front.example\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Not reading for a while: the proxy's writes block and send_timeout
	// is armed; reading well within it then lets the answer finish.
	time.Sleep(300 * time.Millisecond)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || len(body) != len(big) {
		t.Fatalf("slowly read answer: %d of %d bytes, %v", len(body), len(big), err)
	}
	time.Sleep(1500 * time.Millisecond) // idle past send_timeout
	resp, got, err := get("/small")
	if err != nil || resp.StatusCode != 200 || got != "ok" {
		t.Fatalf("answer after idling past send_timeout: %v %q %v", resp, got, err)
	}
	if n := b.hits.Load(); n != 2 {
		t.Errorf("backend saw %d requests, want 2", n)
	}
}
