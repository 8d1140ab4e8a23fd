package httpproxy

import (
	"bufio"
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
