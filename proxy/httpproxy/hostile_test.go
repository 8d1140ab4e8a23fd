package httpproxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Misbehaving clients and servers: each is bounded by a limit or a
// timeout, and answered, without costing anyone else.

// A server that sends 100 Continue heads without end: they count against
// the response head limit (as in Go's transport), so the request ends
// with a 502 at once; before, each kept its bytes in a buffer that
// doubled for as long as the server sent.
func TestEndlessInterimResponsesAreABadResponse(t *testing.T) {
	var sent atomic.Int64
	addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		line := "HTTP/1.1 100 Continue\r\n\r\n"
		batch := []byte(strings.Repeat(line, (64<<10)/len(line)))
		for sent.Load() < 32<<20 {
			n, err := c.Write(batch)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
		_, _ = br.ReadByte() // then silence, the connection open
	})
	gw := startAppGateway(t, addr, false, "", `proxy_read_timeout = "3s"`)
	start := time.Now()
	out := rawExchange(t, gw.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 502") || time.Since(start) > 2*time.Second {
		t.Fatalf("after %v (server sent %d MiB of 100 Continue): %.40q; want a 502 at once",
			time.Since(start).Round(time.Millisecond), sent.Load()>>20, out)
	}
}

// Chunked framing is bounded like the body: endless trailers, or 1-byte
// chunks wrapped in long extensions, were read for as long as the client
// sent them (only chunk data counted against client_max_body_size). The
// trailer section is bounded by client_header_max_size (431), framing
// overhead as in net/http (400).
func TestChunkedFramingOverheadIsBounded(t *testing.T) {
	b := startBackend(t, "b")
	gw := startAppGateway(t, b.addr(), false, `client_max_body_size = "1MB"`, "")
	for _, tc := range []struct{ name, start, unit, status string }{
		{"trailers", "0\r\n", "X-Pad: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n", "431"},
		{"extensions", "", "1;" + strings.Repeat("e", 4000) + "\r\nA\r\n", "400"},
	} {
		c, err := net.Dial("tcp", gw.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+tc.start)
			batch := []byte(strings.Repeat(tc.unit, (64<<10)/len(tc.unit)))
			for sent := 0; sent < 16<<20; sent += len(batch) {
				if _, err := c.Write(batch); err != nil {
					return
				}
			}
		}()
		out, _ := io.ReadAll(c)
		c.Close()
		if !strings.HasPrefix(string(out), "HTTP/1.1 "+tc.status) {
			t.Errorf("%s: answered %.40q, want %s before 16 MiB of framing", tc.name, out, tc.status)
		}
	}
}

// client_header_timeout bounds the whole first head from the accept, as in
// nginx: a client trickling its head got the timeout twice (once before
// its first byte, again after it), three times behind a PROXY header.
func TestHeaderTimeoutCoversTheWholeFirstHead(t *testing.T) {
	for _, tc := range []struct{ name, extra, proxyHeader string }{
		{"plain", "", ""},
		{"PROXY protocol", "accept_proxy_protocol = true", "PROXY TCP4 192.0.2.1 192.0.2.2 1000 80\r\n"},
	} {
		b := startBackend(t, "b")
		gw := startAppGateway(t, b.addr(), false, `client_header_timeout = "1s"`+"\n"+tc.extra, "")
		c, err := net.Dial("tcp", gw.addr)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			time.Sleep(600 * time.Millisecond)
			if tc.proxyHeader != "" {
				if _, err := io.WriteString(c, tc.proxyHeader); err != nil {
					return
				}
				time.Sleep(300 * time.Millisecond)
			}
			head := "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Slow: y\r\n", 100)
			for i := 0; i < len(head); i++ {
				if _, err := c.Write([]byte{head[i]}); err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		_ = c.SetReadDeadline(time.Now().Add(8 * time.Second))
		out, _ := io.ReadAll(c)
		took := time.Since(start)
		c.Close()
		<-done
		if !strings.HasPrefix(string(out), "HTTP/1.1 408") || took > 1400*time.Millisecond {
			t.Errorf("%s: a trickled head was answered %.30q after %v, want 408 after about 1 s", tc.name, out, took.Round(10*time.Millisecond))
		}
	}
}
