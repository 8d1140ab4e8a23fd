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
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// These cover the net/http path (TLS, HTTP/2, connections handed off by
// the fast path): each failed before its fix, from a review of that path.

// startTLSGateway proxies everything on a TLS listener (certificate for
// front.example) to one upstream server; httpExtra and locationExtra are
// lines added to the [[http]] block and to its location.
func startTLSGateway(t *testing.T, upstream, httpExtra, locationExtra string) *testGateway {
	t.Helper()
	return startAppGateway(t, upstream, true, httpExtra, locationExtra)
}

// startAppGateway proxies everything on one listener (TLS with a
// certificate for front.example when withTLS) to one upstream server;
// httpExtra and locationExtra are lines added to the [[http]] block and
// to its location.
func startAppGateway(t *testing.T, upstream string, withTLS bool, httpExtra, locationExtra string) *testGateway {
	t.Helper()
	if withTLS {
		cert, key := writeCert(t, t.TempDir(), "one", "front.example")
		httpExtra += fmt.Sprintf("\ntls_certificate = %q\ntls_certificate_key = %q", cert, key)
	}
	return startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", upstream))+fmt.Sprintf(`
[[http]]
listen = ["LISTEN"]
%s
[[http.location]]
path = "/"
proxy_pass = "http://app"
%s
`, httpExtra, locationExtra))
}

func tlsRawGet(t *testing.T, addr, target string) seen {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n", target)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	return decodeSeen(t, string(body))
}

// A request target starting with "//" reaches the server as it is, Host
// unchanged: net/http's transport wrote it as the absolute URL
// "http://internal.example/secret" (its URL.Opaque rule), which named
// another host, and broke nginx's "//users/1" of location /api with
// proxy_pass http://app/.
func TestDoubleSlashTargetStaysATarget(t *testing.T) {
	b := startBackend(t, "b")
	gw := startTLSGateway(t, b.addr(), "", `[[http.location]]
path = "/api"
proxy_pass = "http://app/"`)
	s := tlsRawGet(t, gw.addr, "//internal.example/secret")
	if s.URI != "//internal.example/secret" || s.Host != "front.example" {
		t.Errorf("client target //internal.example/secret: backend saw URI %q Host %q", s.URI, s.Host)
	}
	s = tlsRawGet(t, gw.addr, "/api/users/1")
	if s.URI != "//users/1" || s.Host != "front.example" {
		t.Errorf("location /api + proxy_pass http://app/, /api/users/1: backend saw URI %q Host %q (nginx sends //users/1)", s.URI, s.Host)
	}
}

// proxy_read_timeout is the server's: a client pausing longer than it
// (well within send_timeout) still gets the whole response; it was cut.
func TestReadTimeoutNotRunningWhileClientIsSlow(t *testing.T) {
	const size = 64 << 20
	b := startBackend(t, "b")
	b.handle = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(size))
		buf := make([]byte, 1<<20)
		for i := 0; i < size/len(buf); i++ {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}
	gw := startTLSGateway(t, b.addr(), "", `proxy_read_timeout = "1s"`)
	c, err := tls.Dial("tcp", gw.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n")
	time.Sleep(3 * time.Second) // a paused download
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if n != size {
		t.Errorf("status %d, got %d of %d bytes (%v)", resp.StatusCode, n, size, err)
	}
}

func TestProxyProtocolAddressOverTLSAndHTTP2(t *testing.T) {
	b := startBackend(t, "b")
	gw := startTLSGateway(t, b.addr(), `accept_proxy_protocol = true`, "")
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			ForceAttemptHTTP2: h2,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var d net.Dialer
				c, err := d.DialContext(ctx, "tcp", gw.addr)
				if err == nil {
					io.WriteString(c, "PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\n")
				}
				return c, err
			},
		}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		resp, err := client.Get("https://front.example/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		s := decodeSeen(t, string(body))
		if s.Header.Get("X-Real-Ip") != "2001:db8::7" || s.Header.Get("X-Forwarded-For") != "2001:db8::7" {
			t.Errorf("h2=%v proto %s: X-Real-IP %q XFF %q", h2, resp.Proto, s.Header.Get("X-Real-Ip"), s.Header.Get("X-Forwarded-For"))
		}
	}
}

// startHandoffGateway proxies to a backend and serves /a.txt ("static-a")
// from a root: a request for it is handed off to the net/http path.
func startHandoffGateway(t *testing.T) *testGateway {
	t.Helper()
	b := startBackend(t, "b")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("static-a"), 0o644); err != nil {
		t.Fatal(err)
	}
	return startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+fmt.Sprintf(`
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
[[http.location]]
path = "/a.txt"
root = %q
`, dir))
}

// answers reads the responses in out as "STATUS BODY", a backend's body
// (what it saw, as JSON) described by describe.
func answers(t *testing.T, out string, describe func(seen) string) []string {
	t.Helper()
	br := bufio.NewReader(strings.NewReader(out))
	var got []string
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return got
		}
		body, _ := io.ReadAll(resp.Body)
		s := string(body)
		if strings.HasPrefix(s, "{") {
			s = describe(decodeSeen(t, s))
		}
		got = append(got, fmt.Sprintf("%d %s", resp.StatusCode, s))
	}
}

func TestHandoffPipelinedMixInOrder(t *testing.T) {
	gw := startHandoffGateway(t)
	raw := "GET /one HTTP/1.1\r\nHost: a\r\n\r\n" +
		"GET /a.txt HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /three HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"GET /a.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
	out := rawExchange(t, gw.addr, raw)
	got := answers(t, out, func(sn seen) string { return sn.URI + ":" + sn.Body })
	want := []string{"200 /one:", "200 static-a", "200 /two:hello", "200 /three:abc", "200 static-a"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q want %q", got, want)
	}
}

// An upstream answer without Content-Type goes to the client without one
// (net/http sniffed the body and named text/html), as on the fast path.
func TestNoContentTypeIsInvented(t *testing.T) {
	ln := listenLoopback(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					h, err := br.ReadString('\n')
					if err != nil || h == "\r\n" {
						break
					}
				}
				body := "<html><script>alert(1)</script></html>"
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
			}(c)
		}
	}()
	gw := startTLSGateway(t, ln.Addr().String(), "", "")
	c, err := tls.Dial("tcp", gw.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /upload/123 HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ct, ok := resp.Header["Content-Type"]; ok {
		t.Errorf("upstream sent no Content-Type; client got %q", ct)
	}
}

// A handoff whose pending bytes end with more than 4 KiB of an incomplete
// next head keeps all of it (it was cut to the 4 KiB pool buffer).
func TestHandoffKeepsALongPartialHead(t *testing.T) {
	gw := startHandoffGateway(t)
	h1 := "GET /a.txt HTTP/1.1\r\nHost: a\r\nCookie: " + strings.Repeat("c", 10000) + "\r\n\r\n"
	big := strings.Repeat("0123456789", 800) // 8000 bytes
	h2 := "GET /two HTTP/1.1\r\nHost: a\r\nX-Big: " + big + "\r\nConnection: close\r\n\r\n"
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	cut := 6000
	io.WriteString(c, h1+h2[:cut])
	time.Sleep(300 * time.Millisecond)
	io.WriteString(c, h2[cut:])
	out, _ := io.ReadAll(c)
	got := answers(t, string(out), func(sn seen) string {
		return fmt.Sprintf("%s X-Big len %d intact %v", sn.URI, len(sn.Header.Get("X-Big")), sn.Header.Get("X-Big") == big)
	})
	want := []string{"200 static-a", "200 /two X-Big len 8000 intact true"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// An HTTP/2 :path with a space is refused with 400, as the HTTP/1.1
// parsers refuse it: it was written into the upstream's request line.
func TestHTTP2PathWithSpaceIsRefused(t *testing.T) {
	ln := listenLoopback(t)
	lines := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				l, _ := br.ReadString('\n')
				lines <- strings.TrimRight(l, "\r\n")
				for {
					h, err := br.ReadString('\n')
					if err != nil || h == "\r\n" {
						break
					}
				}
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			}(c)
		}
	}()
	gw := startTLSGateway(t, ln.Addr().String(), "", "")
	c, err := tls.Dial("tcp", gw.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "front.example"}, {":path", "/a b HTTP/1.0"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	status := ""
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		if f.Name == ":status" {
			status = f.Value
		}
	})
	for status == "" {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read frame: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			dec.Write(f.HeaderBlockFragment())
		case *http2.RSTStreamFrame:
			t.Logf("stream reset: %v", f.ErrCode)
			return
		}
	}
	select {
	case l := <-lines:
		t.Errorf("h2 :path \"/a b HTTP/1.0\" answered %s; upstream request line %q", status, l)
	case <-time.After(500 * time.Millisecond):
		if status != "400" {
			t.Errorf("h2 :path \"/a b HTTP/1.0\" answered %s, want 400", status)
		}
	}
}

// A 413 on one HTTP/2 stream ends that stream only: "Connection: close"
// made Go's h2 server send GOAWAY for the whole connection.
func TestHTTP2BodyTooLargeEndsOnlyItsStream(t *testing.T) {
	b := startBackend(t, "b")
	gw := startTLSGateway(t, b.addr(), "", "")
	c, err := tls.Dial("tcp", gw.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	c.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "front.example"}, {":path", "/up"}, {"content-length", "2000000"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: false, EndHeaders: true})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Logf("no GOAWAY: %v", err)
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			t.Errorf("413 on stream 1 made the server send GOAWAY (last stream %d): the connection's other requests must reconnect", f.LastStreamID)
			return
		}
	}
}
