package httpproxy

import (
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

// send_timeout on HTTP/2 streams: a client that stops reading (here: a
// small flow-control window never updated) has its stream reset after
// send_timeout, as nginx does and as HTTP/1 clients are cut. Before, a
// response's last 4 KiB (net/http flushes them after the handler, when
// the relay had cleared the deadline) and every static file had no limit:
// the stream, a goroutine and a stream slot were held for good.

// h2Stalled opens an h2 connection advertising a 1000-byte stream window,
// GETs path and never sends WINDOW_UPDATE. It reports how the stream ended
// within wait: "rst", "goaway", "eof" or "" (still open).
func h2Stalled(t *testing.T, addr, path string, wait time.Duration) (string, int) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	c.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(c, c)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000})
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "front.example"}, {":path", path}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	got := 0
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return "", got
			}
			return "eof", got
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.DataFrame:
			got += len(f.Data())
			if f.StreamEnded() {
				return "end", got
			}
		case *http2.RSTStreamFrame:
			return "rst", got
		case *http2.GoAwayFrame:
			return "goaway", got
		}
	}
}

// send_timeout must end an HTTP/2 stream whose client stopped reading
// (window exhausted), whatever the response's size.
func TestH2SendTimeoutSmallResponse(t *testing.T) {
	body := strings.Repeat("x", 3000) // one upstream read, under net/http's 4 KiB h2 write buffer
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "3000")
		w.Write([]byte(body))
	})}
	ln := listenLoopback(t)
	go up.Serve(ln)
	defer up.Close()
	gw := startTLSGateway(t, ln.Addr().String(), `send_timeout = "1s"`, "")
	how, got := h2Stalled(t, gw.addr, "/small", 5*time.Second)
	if how == "" {
		t.Errorf("3000-byte response, client window 1000, never updated: stream still open 5s later (send_timeout 1s), %d bytes received", got)
	}
	t.Logf("small: %q after %d bytes", how, got)
}

// Control: a response large enough that a Write blocks is cut.
func TestH2SendTimeoutLargeResponse(t *testing.T) {
	body := strings.Repeat("x", 200000)
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(body))
	})}
	ln := listenLoopback(t)
	go up.Serve(ln)
	defer up.Close()
	gw := startTLSGateway(t, ln.Addr().String(), `send_timeout = "1s"`, "")
	how, got := h2Stalled(t, gw.addr, "/large", 5*time.Second)
	if how == "" {
		t.Errorf("large response: stream still open 5s later, %d bytes", got)
	}
	t.Logf("large: %q after %d bytes", how, got)
}

// send_timeout for a static file (root) over HTTP/2.
func TestH2SendTimeoutStaticFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), bytes.Repeat([]byte("x"), 200000), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, key := writeCert(t, t.TempDir(), "one", "front.example")
	gw := startGateway(t, fmt.Sprintf(`
[[http]]
listen = ["LISTEN"]
send_timeout = "1s"
tls_certificate = %q
tls_certificate_key = %q
[[http.location]]
path = "/"
root = %q
`, cert, key, dir))
	how, got := h2Stalled(t, gw.addr, "/big.bin", 5*time.Second)
	t.Logf("static: %q after %d bytes", how, got)
	if how == "" {
		t.Errorf("200000-byte static file, client window 1000, never updated: stream still open 5s later (send_timeout 1s), %d bytes received", got)
	}
}

// An HTTP/2 client that resets its stream mid-download releases the
// server's request at once, with or without the spool, and is logged with
// the status it was sent, as nginx does; the reset was logged as
// "upstream response cut" (blaming the server).
func TestH2ResetMidDownloadIsAClientThatLeft(t *testing.T) {
	for _, cl := range []string{"10485760", ""} {
		gone := make(chan struct{}, 1)
		up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if cl != "" {
				w.Header().Set("Content-Length", cl)
			}
			_, _ = w.Write(bytes.Repeat([]byte("x"), 100000))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				gone <- struct{}{}
			case <-time.After(8 * time.Second):
			}
		})}
		ln := listenLoopback(t)
		go func() { _ = up.Serve(ln) }()
		defer up.Close()
		gw := startTLSGateway(t, ln.Addr().String(), "", "")
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+gw.addr+"/dl", nil)
		req.Host = "front.example"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 {
			t.Fatalf("not HTTP/2: %s", resp.Proto)
		}
		_, _ = io.ReadFull(resp.Body, make([]byte, 50000))
		cancel()
		select {
		case <-gone:
		case <-time.After(3 * time.Second):
			t.Errorf("Content-Length %q: the client reset its stream, the server's request still open 3 s later", cl)
		}
		deadline := time.Now().Add(2 * time.Second)
		for !strings.Contains(gw.access.String(), "/dl") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if line := gw.access.String(); !strings.Contains(line, `"GET /dl HTTP/2.0" 200 `) {
			t.Errorf("Content-Length %q: access log %q, want status 200 (the status sent)", cl, line)
		}
	}
}
