package httpproxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"

	"github.com/vipgate/vipgate/internal/accesslog"
)

// fixedBackend answers every request on a keep-alive connection with the
// same small response, allocating almost nothing, so that a benchmark's
// allocations are the proxy's.
func fixedBackend(b *testing.B, body string) string {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	return rawServe(b, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(line) <= 2 {
					break
				}
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	})
}

func rawServe(b *testing.B, fn func(net.Conn)) string {
	ln := listenLoopback(b)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); fn(c) }()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkProxySmallGET measures one proxied keep-alive GET with every
// feature on (framing check, routing, header rules, access log, passive
// health): allocations per request are the figure to watch.
func BenchmarkProxySmallGET(b *testing.B) {
	backendAddr := fixedBackend(b, "hello")
	gw := startGateway(b, upstreamTOML("app", fmt.Sprintf("address = %q", backendAddr))+`
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
`)
	gw.current.Load().access = accesslog.New(io.Discard) // formatted and written, not kept
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /bench?x=1 HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	br := bufio.NewReaderSize(c, 16<<10)
	readResponse := func() {
		cl := -1
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if len(line) <= 2 {
				break
			}
			if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
				cl, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
			}
		}
		if _, err := br.Discard(cl); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ { // warm the pools
		c.Write(req)
		readResponse()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		readResponse()
	}
}
