package httpproxy

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// bigBody is a deterministic body of n bytes.
func bigBody(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// With proxy_buffering on (the default, as in nginx), a large response is
// taken from the server at the server's pace and given to the client at
// the client's: a client that reads nothing no longer holds the server
// (its connection, a worker thread) for the whole download. The client
// still gets every byte, in order.
func TestProxyBufferingFreesTheServerFromASlowClient(t *testing.T) {
	const size = 48 << 20
	body := bigBody(size)
	want := sha256.Sum256(body)
	for _, withTLS := range []bool{false, true} {
		b := startBackend(t, "b")
		finished := make(chan time.Duration, 1)
		b.handle = func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			w.Header().Set("Content-Length", fmt.Sprint(size))
			for off := 0; off < size; off += 1 << 20 {
				if _, err := w.Write(body[off : off+1<<20]); err != nil {
					break
				}
			}
			finished <- time.Since(start)
		}
		gw := startAppGateway(t, b.addr(), withTLS, "", "")
		c := dialFront(t, gw.addr, withTLS)
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		held := false
		select {
		case d := <-finished:
			t.Logf("TLS %v: the server sent %d MiB in %v while the client read nothing", withTLS, size>>20, d.Round(time.Millisecond))
		case <-time.After(5 * time.Second):
			t.Errorf("TLS %v: the server is still held by a client that reads nothing, 5 s on", withTLS)
			held = true
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		if err != nil || n != size || [32]byte(h.Sum(nil)) != want {
			t.Errorf("TLS %v: the client got %d bytes (%v), intact %v", withTLS, n, err, [32]byte(h.Sum(nil)) == want)
		}
		if held {
			<-finished
		}
	}
}

// proxy_buffering = false relays at the client's pace, as nginx does.
func TestProxyBufferingOffRelaysAtTheClientsPace(t *testing.T) {
	const size = 48 << 20
	body := bigBody(size)
	b := startBackend(t, "b")
	finished := make(chan struct{})
	b.handle = func(w http.ResponseWriter, r *http.Request) {
		defer close(finished)
		w.Header().Set("Content-Length", fmt.Sprint(size))
		_, _ = w.Write(body)
	}
	gw := startAppGateway(t, b.addr(), false, "", "proxy_buffering = false")
	c := dialFront(t, gw.addr, false)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	_, _ = io.WriteString(c, "GET /big HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n")
	select {
	case <-finished:
		t.Error("with proxy_buffering off the server finished although the client read nothing")
	case <-time.After(2 * time.Second):
	}
	n, _ := io.Copy(io.Discard, c)
	<-finished
	if n < size {
		t.Errorf("client got %d bytes", n)
	}
}

// A spooled response: the server's connection goes back to the pool once
// the body is in (a second request reuses it); a server that dies mid-body
// leaves the client a cut response, never a complete-looking one; a client
// that leaves mid-download ends the server's side too.
func TestSpooledResponseEdges(t *testing.T) {
	const size = 4 << 20
	body := bigBody(size)
	var mode atomic.Value
	mode.Store("full")
	addr, conns := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
			switch mode.Load() {
			case "full":
				if _, err := c.Write(body); err != nil {
					return
				}
			case "die":
				_, _ = c.Write(body[:size/2])
				return
			case "slow":
				for off := 0; off < size; off += 64 << 10 {
					if _, err := c.Write(body[off : off+64<<10]); err != nil {
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		}
	})
	for _, withTLS := range []bool{false, true} {
		gw := startAppGateway(t, addr, withTLS, "", "")
		get := func(readAll bool) (int64, error) {
			c := dialFront(t, gw.addr, withTLS)
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return 0, err
			}
			if !readAll {
				return io.CopyN(io.Discard, resp.Body, 1<<20)
			}
			return io.Copy(io.Discard, resp.Body)
		}
		before := conns.Load()
		mode.Store("full")
		for i := 0; i < 2; i++ {
			if n, err := get(true); n != size || err != nil {
				t.Fatalf("TLS %v: request %d: %d bytes, %v", withTLS, i+1, n, err)
			}
		}
		if n := conns.Load() - before; n != 1 {
			t.Errorf("TLS %v: two spooled responses took %d server connections, want 1 (reused from the pool)", withTLS, n)
		}
		mode.Store("die")
		if n, err := get(true); n >= size || err == nil {
			t.Errorf("TLS %v: server died mid-body: the client got %d of %d bytes, error %v; want a cut response", withTLS, n, size, err)
		}
		mode.Store("slow")
		start := time.Now()
		if n, err := get(false); n != 1<<20 || err != nil {
			t.Fatalf("TLS %v: slow server: %d bytes, %v", withTLS, n, err)
		}
		// The client left after 1 MiB: the next request still works.
		mode.Store("full")
		if n, err := get(true); n != size || err != nil {
			t.Errorf("TLS %v: after a client left mid-download: %d bytes, %v", withTLS, n, err)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("TLS %v: took %v", withTLS, time.Since(start))
		}
	}
}
