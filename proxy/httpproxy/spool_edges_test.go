package httpproxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A spooled response reaches the client as the server sends it: here
// 256 KiB at once, then a pause. The spool's fill reported its progress
// only per 1 MiB, so the client got nothing until the server went on.
func TestSpoolSendsBytesAsTheyCome(t *testing.T) {
	const size = 4 << 20
	body := bigBody(size)
	addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		_, _ = c.Write(body[:256<<10])
		time.Sleep(3 * time.Second)
		_, _ = c.Write(body[256<<10:])
	})
	for _, withTLS := range []bool{false, true} {
		gw := startAppGateway(t, addr, withTLS, "", "")
		c := dialFront(t, gw.addr, withTLS)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n")
		start := time.Now()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(resp.Body, make([]byte, 200<<10)); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("TLS %v: the first 200 KiB the server sent at once reached the client after %v (the server paused 3 s after 256 KiB)", withTLS, d.Round(time.Millisecond))
		} else {
			t.Logf("TLS %v: first 200 KiB after %v", withTLS, d.Round(time.Millisecond))
		}
	}
}

// A spool whose file cannot grow (disk full; here RLIMIT_FSIZE, whose
// EFBIG stands for ENOSPC) hands over to relaying at the client's pace,
// with what it read and could not write: the client gets the whole
// response. It was cut ("upstream response cut") although the server
// sent it all.
func TestSpoolFullFallsBackToTheClientsPace(t *testing.T) {
	const size = 4 << 20
	body := bigBody(size)
	addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
			if _, err := c.Write(body); err != nil {
				return
			}
		}
	})
	for _, withTLS := range []bool{false, true} {
		gw := startAppGateway(t, addr, withTLS, "", "")
		c := dialFront(t, gw.addr, withTLS)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		var old unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &old); err != nil {
			t.Fatal(err)
		}
		if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: 1 << 20, Max: old.Max}); err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		var n int64
		if err == nil {
			n, err = io.Copy(io.Discard, resp.Body)
		}
		_ = unix.Setrlimit(unix.RLIMIT_FSIZE, &old)
		if n != size || err != nil {
			t.Errorf("TLS %v: temp file full: the client got %d of %d bytes (%v); the server sent them all", withTLS, n, size, err)
		}
	}
}

// A server that sends more than its Content-Length: a large body is read
// to exactly its length (spool or splice), so the surplus stayed in the
// socket of a connection put back in the pool, and became the answer to
// the next request taken on it (another client's). Such a connection is
// now closed, not kept.
func TestSurplusBytesAfterALargeBodyAreNoAnswer(t *testing.T) {
	const size = 2 << 20
	body := bigBody(size)
	const smuggled = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsurplus"
	addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/big" {
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
				_, _ = c.Write(append(append([]byte{}, body...), smuggled...))
				continue
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
		}
	})
	for _, withTLS := range []bool{false} {
		gw := startAppGateway(t, addr, withTLS, "", "")
		c := dialFront(t, gw.addr, withTLS)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "GET /big HTTP/1.1\r\nHost: front.example\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		// A slow client: the second client's request comes while the
		// first is still being sent its body from the file.
		c2 := dialFront(t, gw.addr, withTLS)
		_ = c2.SetDeadline(time.Now().Add(10 * time.Second))
		time.Sleep(50 * time.Millisecond)
		_, _ = io.WriteString(c2, "GET /small HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n")
		out, _ := io.ReadAll(c2)
		_, _ = io.Copy(io.Discard, resp.Body)
		if !bytes.HasSuffix(out, []byte("real")) {
			t.Errorf("TLS %v: the second client got %q, want the server's answer \"real\"", withTLS, out)
		}
	}
}

// HEAD on the net/http path: Go's transport gives the response the
// Content-Length of its header and no body; it made a spool (a temporary
// file and a goroutine) for nothing.
func TestHeadMakesNoSpool(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4194304\r\n\r\n")
		}
	})
	gw := startAppGateway(t, addr, true, "", "")
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE); err != nil {
		t.Fatal(err)
	}
	c := dialFront(t, gw.addr, true)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "HEAD / HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "HEAD"})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	buf := make([]byte, 4096)
	n, _ := unix.Read(fd, buf)
	if n > 0 {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[0]))
		name := string(bytes.TrimRight(buf[unix.SizeofInotifyEvent:unix.SizeofInotifyEvent+int(ev.Len)], "\x00"))
		t.Errorf("a HEAD request (status %d, no body) created the temporary file %q", resp.StatusCode, name)
	}
}

// Once a spool has the whole response, the balancer counts the request
// against its server no more (max_conns, least_conn), as nginx frees the
// peer when the upstream response is complete: with max_conns = 1, a
// second request while a slow client read a spooled body was refused 502.
func TestSpooledResponseFreesTheServersSlot(t *testing.T) {
	const size = 8 << 20
	body := bigBody(size)
	addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/big" {
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
				_, _ = c.Write(body)
				continue
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
		}
	})
	for _, withTLS := range []bool{false, true} {
		httpExtra := ""
		if withTLS {
			cert, key := writeCert(t, t.TempDir(), "one", "front.example")
			httpExtra = fmt.Sprintf("tls_certificate = %q\ntls_certificate_key = %q", cert, key)
		}
		gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q\nmax_conns = 1", addr))+fmt.Sprintf(`
[[http]]
listen = ["LISTEN"]
%s
[[http.location]]
path = "/"
proxy_pass = "http://app"
`, httpExtra))
		c := dialFront(t, gw.addr, withTLS)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "GET /big HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n")
		// The server sends it all at once; the client reads nothing. Once
		// the spool has it, the server's slot is free.
		freed := time.Now().Add(5 * time.Second)
		for time.Now().Before(freed) {
			if st := gw.table.Statuses(); len(st) == 1 && st[0].Requests > 0 && st[0].ActiveConns == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		c2 := dialFront(t, gw.addr, withTLS)
		_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c2, "GET /small HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Errorf("TLS %v: while a slow client reads a spooled body the server already sent, the next request got %d", withTLS, resp.StatusCode)
		}
		_, _ = io.Copy(io.Discard, c)
	}
}

// $upstream_response_time of a spooled response ends when the server's
// response is in the file, not when the slow client got the last byte.
func TestSpooledUpstreamTimeEndsWithTheServer(t *testing.T) {
	const size = 8 << 20
	body := bigBody(size)
	addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		_, _ = c.Write(body)
	})
	for _, withTLS := range []bool{false, true} {
		gw := startAppGateway(t, addr, withTLS, "", "")
		c := dialFront(t, gw.addr, withTLS)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "GET /big HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n")
		time.Sleep(1500 * time.Millisecond) // the server sent it all at once
		_, _ = io.Copy(io.Discard, c)
		deadline := time.Now().Add(2 * time.Second)
		for !strings.Contains(gw.access.String(), "/big") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		fields := strings.Fields(gw.access.String())
		if len(fields) == 0 {
			t.Fatalf("TLS %v: no access log line", withTLS)
		}
		if last := fields[len(fields)-1]; last > "1.000" {
			t.Errorf("TLS %v: $upstream_response_time %s for a server that sent its 8 MiB at once (the client waited 1.5 s to read)", withTLS, last)
		}
	}
}
