package stream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/vipgate/vipgate/internal/netlab"
	"github.com/vipgate/vipgate/internal/testutil"
	"github.com/vipgate/vipgate/proxy"
	"github.com/vipgate/vipgate/proxy/proxyproto"
)

func TestEchoThroughProxyIPv4AndIPv6(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			be := startBackend(t, host, echo)
			p := newProxy(t, host, func(l string) string { return streamConf(l, "echo", "", upstreamConf("echo", be.addr)) })
			c := p.dial()
			msg := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
			go func() {
				c.Write(msg)
				c.CloseWrite()
			}()
			got, err := readAllWithin(t, c, 5*time.Second)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("echo returned %d bytes, want %d identical", len(got), len(msg))
			}
			lines := p.waitLines(1)
			want := fmt.Sprintf("TCP 200 %d %d ", len(msg), len(msg))
			if !strings.Contains(lines[0], want) || !strings.Contains(lines[0], `"`+be.addr+`" client_closed`) {
				t.Errorf("access line %q, want %q and the server and client_closed", lines[0], want)
			}
			clientIP := strings.Trim(host, "[]")
			if !strings.HasPrefix(lines[0], clientIP+" [") {
				t.Errorf("access line %q does not start with the client address %s", lines[0], clientIP)
			}
			st := p.upstreamStats("echo")
			if st.BytesFromClient != uint64(len(msg)) || st.BytesToClient != uint64(len(msg)) || st.Streams != 1 {
				t.Errorf("upstream counters %+v, want %d bytes each way and 1 stream", st, len(msg))
			}
		})
	}
}

// TestHalfClose: the client shuts down writing and still receives the
// server's reply, which the server sends only after seeing the EOF.
func TestHalfClose(t *testing.T) {
	be := startBackend(t, "127.0.0.1", func(c *net.TCPConn) {
		req, _ := io.ReadAll(c)
		fmt.Fprintf(c, "got %d bytes: %s", len(req), req)
		c.CloseWrite()
	})
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, be.addr, "", "") })
	c := p.dial()
	c.Write([]byte("question"))
	c.CloseWrite()
	got, err := readAllWithin(t, c, 3*time.Second)
	if err != nil {
		t.Fatalf("read after half-close: %v", err)
	}
	if string(got) != "got 8 bytes: question" {
		t.Errorf("reply %q", got)
	}
	if l := p.waitLines(1)[0]; !strings.HasSuffix(l, "client_closed") {
		t.Errorf("access line %q, want client_closed", l)
	}
}

func TestIdleTimeoutEndsQuietStream(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string {
		return streamConf(l, be.addr, `proxy_timeout = "300ms"`, "")
	})
	c := p.dial()
	c.Write([]byte("x"))
	start := time.Now()
	got, err := readAllWithin(t, c, 3*time.Second)
	if err != nil {
		t.Fatalf("want the proxy to close the idle stream, got %v", err)
	}
	if string(got) != "x" {
		t.Errorf("got %q before close", got)
	}
	if el := time.Since(start); el < 250*time.Millisecond || el > 1500*time.Millisecond {
		t.Errorf("idle stream closed after %v, want about 300ms", el)
	}
	if l := p.waitLines(1)[0]; !strings.HasSuffix(l, "idle_timeout") {
		t.Errorf("access line %q, want idle_timeout", l)
	}
}

// TestOneWayTrafficIsNotIdle: a server that keeps sending (a download)
// keeps the stream alive although the client sends nothing.
func TestOneWayTrafficIsNotIdle(t *testing.T) {
	be := startBackend(t, "127.0.0.1", func(c *net.TCPConn) {
		for range 8 {
			if _, err := c.Write([]byte("tick\n")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.CloseWrite()
		io.Copy(io.Discard, c)
	})
	p := newProxy(t, "127.0.0.1", func(l string) string {
		return streamConf(l, be.addr, `proxy_timeout = "300ms"`, "")
	})
	c := p.dial()
	got, err := readAllWithin(t, c, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(got), "tick"); n != 8 {
		t.Errorf("got %d ticks over 800ms with proxy_timeout 300ms, want all 8", n)
	}
}

func TestFailoverOnRefusedConnect(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	dead := refusedAddr(t)
	p := newProxy(t, "127.0.0.1", func(l string) string {
		return streamConf(l, "pool", "", upstreamConf("pool", dead, be.addr))
	})
	for i := range 4 {
		c := p.dial()
		fmt.Fprintf(c, "ping %d", i)
		c.CloseWrite()
		got, err := readAllWithin(t, c, 3*time.Second)
		if err != nil || string(got) != fmt.Sprintf("ping %d", i) {
			t.Fatalf("stream %d: got %q, %v; want its echo through the live server", i, got, err)
		}
	}
	// A line is written when its stream is torn down, which can be after
	// the client saw the end of the echo: the order of lines is not the
	// order of streams. The first stream's line is the one with two servers.
	lines := p.waitLines(4)
	both, liveOnly := 0, 0
	for _, l := range lines {
		switch {
		case strings.Contains(l, fmt.Sprintf(`"%s, %s"`, dead, be.addr)):
			both++
		case strings.Contains(l, fmt.Sprintf(`"%s"`, be.addr)):
			liveOnly++
		}
	}
	if both != 1 || liveOnly != 3 {
		t.Errorf("access lines %q: want one listing the refused server then the live one (the first stream), three with the live one only", lines)
	}
	st := p.upstreamStats("pool")
	if st.ConnectFailures < 1 || st.Streams != 4 {
		t.Errorf("counters %+v: want >= 1 connect failure and 4 streams", st)
	}
	// max_fails = 1: the refused server is out of rotation after its failure.
	if st.ConnectFailures != 1 {
		t.Errorf("connect failures = %d, want 1 (the failed server is skipped for fail_timeout)", st.ConnectFailures)
	}
}

// blackhole returns a listening address whose accept queue is full, so
// further SYNs are dropped and connects time out (a server that never
// answers), without leaving loopback.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	// Fill the accept queue (backlog 0 holds one connection).
	for range 2 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c.Close()
		t.Skip("kernel still completes connects to a full accept queue")
	}
	return addr
}

func TestConnectTimeoutTriesNextServer(t *testing.T) {
	hole := blackhole(t)
	be := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string {
		return streamConf(l, "pool", `proxy_connect_timeout = "200ms"`, upstreamConf("pool", hole, be.addr))
	})
	c := p.dial()
	c.Write([]byte("hello"))
	c.CloseWrite()
	start := time.Now()
	got, err := readAllWithin(t, c, 3*time.Second)
	if err != nil || string(got) != "hello" {
		t.Fatalf("got %q, %v; want the echo from the second server", got, err)
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("answer after %v: the first server was not tried with its connect timeout", el)
	}
	if l := p.waitLines(1)[0]; !strings.Contains(l, fmt.Sprintf(`"%s, %s"`, hole, be.addr)) {
		t.Errorf("access line %q should list the silent server then the live one", l)
	}
}

func TestNoServerReachableClosesClient(t *testing.T) {
	hole := blackhole(t)
	p := newProxy(t, "127.0.0.1", func(l string) string {
		return streamConf(l, hole, `proxy_connect_timeout = "200ms"`, "")
	})
	c := p.dial()
	if _, err := readAllWithin(t, c, 3*time.Second); err != nil {
		t.Fatalf("want the client closed after the connect timeout, got %v", err)
	}
	l := p.waitLines(1)[0]
	if !strings.Contains(l, " TCP 502 0 0 ") || !strings.HasSuffix(l, "connect_failed") {
		t.Errorf("access line %q, want 502 and connect_failed", l)
	}
	if st := p.upstreamStats(hole); st.ConnectFailures != 1 || st.NoServer != 1 {
		t.Errorf("counters %+v, want 1 connect failure and 1 no_server", st)
	}
}

func TestUpstreamResetEndsOnlyThatStream(t *testing.T) {
	// The server resets streams that start with "R" and echoes the others.
	be := startBackend(t, "127.0.0.1", func(c *net.TCPConn) {
		first := make([]byte, 1)
		if _, err := io.ReadFull(c, first); err != nil {
			return
		}
		if first[0] == 'R' {
			c.SetLinger(0) // close sends RST
			return
		}
		c.Write(first)
		echo(c)
	})
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, be.addr, "", "") })
	other := p.dial()
	other.Write([]byte("E"))
	io.ReadFull(other, make([]byte, 1))

	c := p.dial()
	c.Write([]byte("R"))
	if _, err := readAllWithin(t, c, 3*time.Second); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read: %v, want EOF or reset", err)
	}
	if l := p.waitLines(1)[0]; !strings.HasSuffix(l, "upstream_error") {
		t.Errorf("access line %q, want upstream_error", l)
	}
	other.Write([]byte("still here"))
	buf := make([]byte, 10)
	other.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(other, buf); err != nil || string(buf) != "still here" {
		t.Errorf("the other stream broke: %q, %v", buf, err)
	}
}

func TestUpstreamNeverAnswersIdlesOut(t *testing.T) {
	be := startBackend(t, "127.0.0.1", func(c *net.TCPConn) {
		io.Copy(io.Discard, c) // reads, never answers
	})
	p := newProxy(t, "127.0.0.1", func(l string) string {
		return streamConf(l, be.addr, `proxy_timeout = "300ms"`, "")
	})
	c := p.dial()
	c.Write([]byte("CONNECT"))
	got, err := readAllWithin(t, c, 3*time.Second)
	if err != nil || len(got) != 0 {
		t.Fatalf("got %q, %v; want a clean close after proxy_timeout", got, err)
	}
	if l := p.waitLines(1)[0]; !strings.Contains(l, " TCP 200 0 7 ") || !strings.HasSuffix(l, "idle_timeout") {
		t.Errorf("access line %q, want 0 bytes sent, 7 received, idle_timeout", l)
	}
}

// headerBackend reads the inbound PROXY header with our reader, answers
// "src=ADDR dst=ADDR first=BYTES" and closes.
func headerBackend(t *testing.T, host string) *backend {
	return startBackend(t, host, func(c *net.TCPConn) {
		pc, src, dst, err := proxyproto.ReadHeader(c, 2*time.Second)
		if err != nil {
			fmt.Fprintf(c, "error=%v", err)
			return
		}
		pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		first := make([]byte, 64)
		n, _ := pc.Read(first)
		fmt.Fprintf(c, "src=%v dst=%v first=%s", src, dst, first[:n])
	})
}

func TestProxyProtocolOut(t *testing.T) {
	for _, version := range []string{"v1", "v2"} {
		for _, host := range []string{"127.0.0.1", "::1"} {
			t.Run(version+" "+host, func(t *testing.T) {
				be := headerBackend(t, "127.0.0.1")
				p := newProxy(t, host, func(l string) string {
					return streamConf(l, be.addr, fmt.Sprintf("proxy_protocol = %q", version), "")
				})
				c := p.dial()
				c.Write([]byte("hello"))
				got, err := readAllWithin(t, c, 3*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf("src=%s dst=%s first=hello", c.LocalAddr(), c.RemoteAddr())
				if string(got) != want {
					t.Errorf("server saw %q, want %q", got, want)
				}
			})
		}
	}
}

// TestAcceptProxyProtocolForwardsBytesBehindHeader: an L4 balancer's header
// names the client; the MQTT CONNECT sent in the same segment reaches the
// server right behind our own header, and the client address from the
// header is what the server and the access log see.
func TestAcceptProxyProtocolForwardsBytesBehindHeader(t *testing.T) {
	be := headerBackend(t, "127.0.0.1")
	p := newProxy(t, "127.0.0.1", func(l string) string {
		return streamConf(l, be.addr, "accept_proxy_protocol = true\nproxy_protocol = \"v2\"", "")
	})
	c := p.dial()
	c.Write([]byte("PROXY TCP6 2001:db8::7 2001:db8::1 5555 1883\r\nCONNECT"))
	got, err := readAllWithin(t, c, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close() // the server closed; the stream ends once the client does too
	if want := "src=[2001:db8::7]:5555 dst=[2001:db8::1]:1883 first=CONNECT"; string(got) != want {
		t.Errorf("server saw %q, want %q", got, want)
	}
	if l := p.waitLines(1)[0]; !strings.HasPrefix(l, "2001:db8::7 [") {
		t.Errorf("access line %q should name the client from the header", l)
	}
}

// set_real_ip_from: from a source it does not list, the PROXY header is
// read and dropped: the server and the access log see the peer itself.
func TestSetRealIPFromTrustsOnlyListedSources(t *testing.T) {
	for _, tc := range []struct{ from, want string }{
		{`["192.0.2.0/24"]`, "src=127.0.0.1:"},
		{`["127.0.0.1"]`, "src=[2001:db8::7]:5555"},
	} {
		be := headerBackend(t, "127.0.0.1")
		p := newProxy(t, "127.0.0.1", func(l string) string {
			return streamConf(l, be.addr, "accept_proxy_protocol = true\nset_real_ip_from = "+tc.from+"\nproxy_protocol = \"v2\"", "")
		})
		c := p.dial()
		c.Write([]byte("PROXY TCP6 2001:db8::7 2001:db8::1 5555 1883\r\nCONNECT"))
		got, err := readAllWithin(t, c, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if !strings.HasPrefix(string(got), tc.want) || !strings.HasSuffix(string(got), "first=CONNECT") {
			t.Errorf("set_real_ip_from %s: server saw %q, want it to start with %q", tc.from, got, tc.want)
		}
	}
}

func TestAcceptProxyProtocolRefusals(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string {
		return streamConf(l, be.addr, "accept_proxy_protocol = true\nproxy_protocol_timeout = \"300ms\"", "")
	})
	good := p.dial()
	good.Write([]byte("PROXY TCP4 192.0.2.9 192.0.2.1 4000 1883\r\n"))
	tests := []struct {
		name  string
		send  string
		close bool
		want  proxyproto.Reason
	}{
		{"client sends nothing", "", false, proxyproto.ReasonTimeout},
		{"no header", "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c", false, proxyproto.ReasonMissing},
		{"malformed", "PROXY TCP4 192.0.2.300 192.0.2.1 1 2\r\n", false, proxyproto.ReasonMalformed},
		{"v1 over 107 bytes", "PROXY UNKNOWN " + strings.Repeat("f", 100) + "\r\n", false, proxyproto.ReasonTooLong},
		{"truncated", "PROXY TCP4 192.0.2.9", true, proxyproto.ReasonTruncated},
		{"v2 bad family", "\r\n\r\n\x00\r\nQUIT\n\x21\x13\x00\x0c" + strings.Repeat("\x01", 12), false, proxyproto.ReasonBadFamily},
		{"v2 bad length", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04\x01\x02\x03\x04", false, proxyproto.ReasonBadLength},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := p.dial()
			if tt.send != "" {
				c.Write([]byte(tt.send))
			}
			if tt.close {
				c.CloseWrite()
			}
			if got, err := readAllWithin(t, c, 3*time.Second); err != nil || len(got) != 0 {
				t.Fatalf("got %q, %v; want the connection closed with nothing sent", got, err)
			}
			if n := p.listenerStats().ProxyHeaderRefused[string(tt.want)]; n != 1 {
				t.Errorf("refused[%s] = %d, want 1 (all: %v)", tt.want, n, p.listenerStats().ProxyHeaderRefused)
			}
			lines := p.waitLines(i + 1)
			if l := lines[i]; !strings.Contains(l, " TCP 400 ") || !strings.HasSuffix(l, "proxy_header_"+string(tt.want)) {
				t.Errorf("access line %q, want 400 and proxy_header_%s", l, tt.want)
			}
		})
	}
	if n := be.accepted.Load(); n != 1 {
		t.Errorf("backend accepted %d connections, want only the good one", n)
	}
	good.Write([]byte("fine"))
	buf := make([]byte, 4)
	good.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(good, buf); err != nil || string(buf) != "fine" {
		t.Errorf("the good stream broke: %q, %v", buf, err)
	}
}

// TestSpliceUsesPipesOnlyWhileDataFlows: splice pipes appear in the
// process while a bulk transfer is under way, and idle streams hold
// exactly their two sockets (no pipe).
func TestSpliceUsesPipesOnlyWhileDataFlows(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, be.addr, "", "") })

	_, basePipes := settledFDs(t)
	c := p.dial()
	c.SetReadBuffer(64 << 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		chunk := make([]byte, 1<<20)
		for range 64 {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
		c.CloseWrite()
	}()
	// Read slowly so that the proxy's splice blocks writing to us with a
	// pipe in hand, then fast to finish.
	maxPipes := 0
	r := bufio.NewReaderSize(c, 64<<10)
	total := 0
	buf := make([]byte, 64<<10)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for i := 0; ; i++ {
		if i < 40 {
			_, pipes := countFDs(t)
			maxPipes = max(maxPipes, pipes-basePipes)
			time.Sleep(5 * time.Millisecond)
		}
		n, err := r.Read(buf)
		total += n
		if err != nil {
			break
		}
	}
	<-done
	if total != 64<<20 {
		t.Fatalf("echoed %d bytes, want %d", total, 64<<20)
	}
	if maxPipes < 1 {
		t.Errorf("no splice pipe seen in /proc/self/fd during a 64 MiB transfer: not on the zero-copy path")
	}

	// Idle streams: 4 descriptors each in this process (client, the
	// proxy's two sockets, the backend's), and no pipe.
	c.Close()
	waitActive(t, p.cur.Load(), 0)
	// Spare pipes the loop kept after the burst are closed within a second.
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, pipes := countFDs(t); pipes == basePipes {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spare splice pipes still open 3 s after the transfer ended")
		}
	}
	before, _ := settledFDs(t)
	const idle = 20
	for range idle {
		ic := p.dial()
		ic.Write([]byte("x"))
		ic.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.ReadFull(ic, make([]byte, 1))
	}
	waitActive(t, p.cur.Load(), idle)
	deadline := time.Now().Add(3 * time.Second)
	for {
		runtime.GC()
		all, pipes := countFDs(t)
		if pipes == basePipes && all-before == 4*idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle streams: %d more descriptors (want %d) and %d pipes (want %d)", idle, all-before, 4*idle, pipes, basePipes)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitActive(t *testing.T, srv *Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); srv.Active() != n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Active = %d, want %d", srv.Active(), n)
		}
	}
}

// settledFDs counts descriptors once the collector has emptied Go's pool of
// splice pipes (pooled pipes are closed when collected).
func settledFDs(t *testing.T) (all, pipes int) {
	t.Helper()
	// Two collections move pooled pipes to the victim cache and then drop
	// them; their cleanups close the descriptors a moment later.
	runtime.GC()
	runtime.GC()
	all, pipes = countFDs(t)
	for range 50 {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
		a, p := countFDs(t)
		if p == pipes && a == all {
			return a, p
		}
		all, pipes = a, p
	}
	return all, pipes
}

func TestCloseLongLivedAndShutdown(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, be.addr, "", "") })
	srv := p.cur.Load()
	var conns []net.Conn
	for range 3 {
		c := p.dial()
		c.Write([]byte("a"))
		io.ReadFull(c, make([]byte, 1))
		conns = append(conns, c)
	}
	if n := srv.Active(); n != 3 {
		t.Fatalf("Active = %d, want 3", n)
	}
	srv.CloseLongLived()
	for _, c := range conns {
		if _, err := readAllWithin(t, c, time.Second); err != nil {
			t.Errorf("stream not closed by CloseLongLived: %v", err)
		}
	}
	for _, l := range p.waitLines(3) {
		if !strings.HasSuffix(l, "handover") {
			t.Errorf("access line %q, want handover", l)
		}
	}
	// New connections are still served after a handover.
	c := p.dial()
	c.Write([]byte("b"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("new stream after CloseLongLived: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a live stream = %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("Shutdown returned after %v, before its deadline", el)
	}
	if srv.Active() != 0 {
		t.Errorf("Active = %d after Shutdown", srv.Active())
	}
	if l := p.waitLines(4)[3]; !strings.HasSuffix(l, "shutdown") {
		t.Errorf("access line %q, want shutdown", l)
	}
}

func TestShutdownWaitsForStreamsToEnd(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, be.addr, "", "") })
	srv := p.cur.Load()
	c := p.dial()
	c.Write([]byte("a"))
	io.ReadFull(c, make([]byte, 1))
	go func() {
		time.Sleep(100 * time.Millisecond)
		c.CloseWrite()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v, want nil once the stream ended by itself", err)
	}
	if l := p.waitLines(1)[0]; !strings.HasSuffix(l, "client_closed") {
		t.Errorf("access line %q", l)
	}
}

// TestReloadKeepsStreamOnItsGeneration: after a reload points the listener
// at another server, the running stream still talks to the old one and new
// streams go to the new one.
func TestReloadKeepsStreamOnItsGeneration(t *testing.T) {
	tag := func(name string) func(c *net.TCPConn) {
		return func(c *net.TCPConn) {
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				fmt.Fprintf(c, "%s:%s", name, line)
			}
		}
	}
	oldBE := startBackend(t, "127.0.0.1", tag("old"))
	newBE := startBackend(t, "127.0.0.1", tag("new"))
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, oldBE.addr, `proxy_timeout = "10s"`, "") })
	c := p.dial()
	r := bufio.NewReader(c)
	ask := func(conn net.Conn, r *bufio.Reader) string {
		fmt.Fprintf(conn, "hi\n")
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		s, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return s
	}
	if got := ask(c, r); got != "old:hi\n" {
		t.Fatalf("before reload: %q", got)
	}
	for range 10 {
		p.reload(streamConf(p.listen, newBE.addr, `proxy_timeout = "10s"`, ""))
	}
	if got := ask(c, r); got != "old:hi\n" {
		t.Errorf("running stream after 10 reloads answered %q, want the old server", got)
	}
	c2 := p.dial()
	if got := ask(c2, bufio.NewReader(c2)); got != "new:hi\n" {
		t.Errorf("new stream after reload answered %q, want the new server", got)
	}
}

func TestAccessLineFormat(t *testing.T) {
	now := time.Date(2026, 11, 23, 17, 49, 31, 0, time.FixedZone("", 3600))
	tests := []struct {
		client string
		tried  []string
		want   string
	}{
		{"192.0.2.1:5000", []string{"127.0.0.1:1883"}, `192.0.2.1 [23/Nov/2026:17:49:31 +0100] TCP 200 10 20 1.500 "127.0.0.1:1883" client_closed` + "\n"},
		{"[::ffff:192.0.2.1]:5000", []string{"a:1", "b:2"}, `192.0.2.1 [23/Nov/2026:17:49:31 +0100] TCP 200 10 20 1.500 "a:1, b:2" client_closed` + "\n"},
		{"[2001:db8::1]:5000", nil, `2001:db8::1 [23/Nov/2026:17:49:31 +0100] TCP 200 10 20 1.500 "-" client_closed` + "\n"},
	}
	for _, tt := range tests {
		ap := addrPort(mustTCPAddr(t, tt.client))
		got := string(appendAccessLine(nil, now, ap, 200, 10, 20, 1500*time.Millisecond, tt.tried, endClientClosed))
		if got != tt.want {
			t.Errorf("line\n%q\nwant\n%q", got, tt.want)
		}
	}
}

func mustTCPAddr(t *testing.T, s string) *net.TCPAddr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestExpandHashKey(t *testing.T) {
	client := addrPort(mustTCPAddr(t, "[::ffff:192.0.2.1]:5000"))
	local := addrPort(mustTCPAddr(t, "[2001:db8::1]:1883"))
	for tmpl, want := range map[string]string{
		"$remote_addr":              "192.0.2.1",
		"$remote_addr:$remote_port": "192.0.2.1:5000",
		"$server_addr-$server_port": "2001:db8::1-1883",
		"fixed":                     "fixed",
		// nginx's braced form: before, it stayed as written, the same key
		// for every client, and every stream went to one server.
		"${remote_addr}":              "192.0.2.1",
		"${remote_addr}x$remote_port": "192.0.2.1x5000",
	} {
		if got := expandHashKey(tmpl, client, local); got != want {
			t.Errorf("expandHashKey(%q) = %q, want %q", tmpl, got, want)
		}
	}
}

// TestBalancingUsesHeaderAddress: with accept_proxy_protocol, the client
// address from the header (not the L4 balancer's) is the hash key: each
// address keeps its server, and different addresses spread.
func TestBalancingUsesHeaderAddress(t *testing.T) {
	names := map[string]string{}
	var bes []*backend
	for _, name := range []string{"a", "b"} {
		be := startBackend(t, "127.0.0.1", func(c *net.TCPConn) {
			c.Write([]byte(name))
		})
		names[be.addr] = name
		bes = append(bes, be)
	}
	p := newProxy(t, "127.0.0.1", func(l string) string {
		up := strings.Replace(upstreamConf("pool", bes[0].addr, bes[1].addr), "[upstream.pool]\n", "[upstream.pool]\nbalance = \"hash\"\nhash = \"$remote_addr\"\n", 1)
		return streamConf(l, "pool", "accept_proxy_protocol = true", up)
	})
	ask := func(clientIP string) string {
		c := p.dial()
		fmt.Fprintf(c, "PROXY TCP4 %s 192.0.2.1 4000 1883\r\n", clientIP)
		got, err := readAllWithin(t, c, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return string(got)
	}
	seen := map[string]bool{}
	for i := range 16 {
		ip := fmt.Sprintf("198.51.100.%d", i+1)
		first := ask(ip)
		if again := ask(ip); again != first {
			t.Errorf("client %s went to %q, then to %q", ip, first, again)
		}
		seen[first] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Errorf("16 header addresses all hashed to %v: the header address is not the key", seen)
	}
}

// TestNonTCPClientConnIsClosed: the stream proxy serves TCP sockets only;
// anything else handed to ServeConn is closed at once, not left hanging.
func TestNonTCPClientConnIsClosed(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, be.addr, "", "") })
	client, proxied := net.Pipe()
	defer client.Close()
	p.cur.Load().Handler(p.listen).ServeConn(proxied)
	client.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := client.Write([]byte("over a pipe")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("write to a pipe ServeConn refused: %v, want io.ErrClosedPipe", err)
	}
}

// TestSocketOptions: so_keepalive and tcp_nodelay reach both sockets of a
// stream, on and off.
func TestSocketOptions(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprint(on), func(t *testing.T) {
			be := startBackend(t, "127.0.0.1", echo)
			p := newProxy(t, "127.0.0.1", func(l string) string {
				return streamConf(l, be.addr, fmt.Sprintf("so_keepalive = %v\ntcp_nodelay = %v", on, on), "")
			})
			c := p.dial()
			c.Write([]byte("x"))
			io.ReadFull(c, make([]byte, 1))
			want := 0
			if on {
				want = 1
			}
			// The proxy's two sockets: the one the client is connected to,
			// and the one connected to the backend.
			fds := map[string]int{
				"client":   socketWithPeer(t, addrPort(c.RemoteAddr()), addrPort(c.LocalAddr())),
				"upstream": socketWithPeer(t, netip.AddrPort{}, netip.MustParseAddrPort(be.addr)),
			}
			for name, fd := range fds {
				if v, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE); v != want {
					t.Errorf("%s SO_KEEPALIVE = %d, want %d", name, v, want)
				}
				if v, _ := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); (v != 0) != on {
					t.Errorf("%s TCP_NODELAY = %d, want %v", name, v, on)
				}
			}
		})
	}
}

// TestClientThatStopsReadingTimesOut: a server floods, the client reads
// nothing; once no byte has moved for proxy_timeout the stream ends
// instead of holding its buffers forever.
func TestClientThatStopsReadingTimesOut(t *testing.T) {
	be := startBackend(t, "127.0.0.1", func(c *net.TCPConn) {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	p := newProxy(t, "127.0.0.1", func(l string) string {
		return streamConf(l, be.addr, `proxy_timeout = "300ms"`, "")
	})
	c := p.dial()
	c.SetReadBuffer(4 << 10)
	start := time.Now()
	l := p.waitLines(1)[0]
	if !strings.HasSuffix(l, "idle_timeout") && !strings.HasSuffix(l, "write_timeout") {
		t.Errorf("access line %q, want idle_timeout or write_timeout", l)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("stuck stream ended after %v, want about 300ms", el)
	}
}

// TestAcceptRetriesAfterDescriptorsRunOut: with no descriptor left (EMFILE)
// the event loop cannot accept. The listener then reports failing, and
// once descriptors are free again the connection that waited in the
// queue is served: nothing is lost, nothing spins.
func TestAcceptRetriesAfterDescriptorsRunOut(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, be.addr, "", "") })
	warm := p.dial()
	warm.Write([]byte("w"))
	io.ReadFull(warm, make([]byte, 1))

	restore := testutil.LeaveDescriptorNumbers(t, 1) // for the client's socket only
	c, err := net.Dial("tcp", p.listen)
	if err != nil {
		restore()
		t.Fatal(err)
	}
	defer c.Close()
	l := p.ls.Get(p.listen)
	deadline := time.Now().Add(3 * time.Second)
	for l.Status().Serving && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := l.Status()
	restore()
	if st.Serving || !strings.Contains(st.LastError, "too many open files") {
		t.Fatalf("with no descriptor left the listener reports %+v, want failing with EMFILE", st)
	}
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("queued")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "queued" {
		t.Fatalf("the connection queued while descriptors ran out: %q, %v", buf, err)
	}
	if st := l.Status(); !st.Serving {
		t.Errorf("after the retry the listener reports %+v, want serving", st)
	}
}

// TestAcceptBackoffIsNotRestartedByEachConnection: while the process is
// out of descriptors, each connection arriving at a stream listener made
// the event loops try accept4 again and log a warning, whatever the
// back-off said (two warnings per connection in a flood). The back-off
// now holds: about one try, and one warning, per step.
func TestAcceptBackoffIsNotRestartedByEachConnection(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, be.addr, "", "") })
	core, logs := observer.New(zapcore.WarnLevel)
	p.ls.Close()
	p.ls = proxy.NewListeners(zap.New(core))
	if err := p.ls.Apply(map[string]proxy.Handler{p.listen: p.cur.Load().Handler(p.listen)}); err != nil {
		t.Fatal(err)
	}
	warm := p.dial()
	warm.Write([]byte("w"))
	io.ReadFull(warm, make([]byte, 1))

	// The clients' sockets are made before the descriptors run out.
	const clients = 300
	ap := netip.MustParseAddrPort(p.listen)
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for range clients {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	restore := testutil.LeaveDescriptorNumbers(t, 0)
	for _, fd := range fds {
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}); err != nil {
			restore()
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	warnings := logs.FilterMessage("accept failed").Len()
	restore()
	// Back-off 5 ms, 10 ms, ... 1 s, per event loop: a handful of tries
	// in the half second this took.
	if warnings > 20 {
		t.Fatalf("%d \"accept failed\" warnings for %d connections while out of descriptors, want one per back-off step", warnings, clients)
	}
}

// TestProxyPassHostName: a host name in proxy_pass is resolved when the
// generation is built, as nginx does, and the access log names the
// proxy_pass as written.
func TestProxyPassHostName(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	_, port, _ := net.SplitHostPort(be.addr)
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, "localhost:"+port, "", "") })
	if got, err := p.echo("named"); err != nil || got != "named" {
		t.Fatalf("through proxy_pass localhost:%s: %q, %v", port, got, err)
	}
	if l := p.waitLines(1)[0]; !strings.Contains(l, `"localhost:`+port) {
		t.Errorf("access line %q, want the proxy_pass name", l)
	}
}

// TestManyConcurrentStreamsEchoIntact: many streams at once on the event
// loops, each with its own size (small ones copied, large ones spliced,
// some both), each half-closed by its client: every byte comes back in
// order and every stream ends cleanly. Bounded: 48 clients x 12 streams.
func TestManyConcurrentStreamsEchoIntact(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, be.addr, "", "") })
	const clients, perClient = 48, 12
	sizes := []int{1, 5, 1500, 16 << 10, 16<<10 + 1, 100 << 10, 1 << 20}
	var wg sync.WaitGroup
	errs := make(chan error, clients*perClient)
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				size := sizes[(w+i)%len(sizes)]
				if err := echoOnce(p.listen, size, byte(w*perClient+i)); err != nil {
					errs <- fmt.Errorf("client %d stream %d (%d bytes): %w", w, i, size, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	lines := p.waitLines(clients * perClient)
	for _, l := range lines {
		if !strings.HasSuffix(l, "client_closed") {
			t.Errorf("access line %q, want client_closed", l)
			break
		}
	}
	waitActive(t, p.cur.Load(), 0)
}

// echoOnce sends size bytes (a pattern seeded by seed) through the proxy
// to the echo backend, half-closes, and checks what comes back.
func echoOnce(addr string, size int, seed byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	out := make([]byte, size)
	for i := range out {
		out[i] = seed + byte(i*7)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(out)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	back, err := io.ReadAll(c)
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !bytes.Equal(back, out) {
		return fmt.Errorf("echo differs: %d bytes back", len(back))
	}
	return nil
}

// TestNoDescriptorForTheServerIsNotItsFault: when the proxy has no
// descriptor left for the server's socket, the stream ends with 500
// (internal_error), as nginx does, and no server is blamed: they stay in
// rotation (max_fails = 1 would otherwise take both out, for HTTP and
// VRRP's upstream tracking too) and the next stream is served.
func TestNoDescriptorForTheServerIsNotItsFault(t *testing.T) {
	a := startBackend(t, "127.0.0.1", echo)
	b := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string {
		return streamConf(l, "pool", "", upstreamConf("pool", a.addr, b.addr))
	})
	warm := p.dial()
	warm.Write([]byte("w"))
	io.ReadFull(warm, make([]byte, 1))

	// Two numbers left: the client's socket and the proxy's accepted one;
	// none for the socket to the server.
	restore := testutil.LeaveDescriptorNumbers(t, 2)
	c, err := net.Dial("tcp", p.listen)
	if err != nil {
		restore()
		t.Fatal(err)
	}
	got, rerr := readAllWithin(t, c, 3*time.Second)
	c.Close()
	restore()
	if len(got) != 0 || rerr != nil {
		t.Errorf("client of the stream without a server socket read %q, %v; want a close", got, rerr)
	}
	if l := p.waitLines(1)[0]; !strings.Contains(l, " TCP 500 ") || !strings.HasSuffix(l, "internal_error") {
		t.Errorf("access line %q, want status 500 and internal_error", l)
	}
	if st := p.upstreamStats("pool"); st.ConnectFailures != 0 {
		t.Errorf("connect failures = %d, want 0: the servers did nothing wrong", st.ConnectFailures)
	}
	for i := range 2 {
		if got, err := p.echo("again"); err != nil || got != "again" {
			t.Fatalf("stream %d after descriptors are back: %q, %v (servers taken out of rotation?)", i, got, err)
		}
	}
}

// zoneChildEnv runs TestProxyPassLinkLocalZone's body in a child process
// that the test started inside a lab namespace.
const zoneChildEnv = "VIPGATE_STREAM_ZONE_CHILD"

// TestProxyPassLinkLocalZone: a server at an IPv6 link-local address is
// reached through the interface the address names (fe80::1%eth0). Without
// the zone the kernel refuses the connect, so every stream would fail.
func TestProxyPassLinkLocalZone(t *testing.T) {
	if os.Getenv(zoneChildEnv) == "" {
		lab := netlab.New(t, netlab.Options{Hosts: 1})
		h := lab.Hosts[0]
		h.MustRun(t, "ip", "addr", "add", "fe80::1/64", "dev", h.Ifname, "nodad")
		cmd := h.Command(os.Args[0], "-test.run=^TestProxyPassLinkLocalZone$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), zoneChildEnv+"="+h.Ifname)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("in namespace %s: %v\n%s", h.NS, err, out)
		}
		if !strings.Contains(string(out), "--- PASS: TestProxyPassLinkLocalZone") {
			t.Fatalf("the test did not run in the namespace:\n%s", out)
		}
		return
	}
	ifname := os.Getenv(zoneChildEnv)
	be := startBackend(t, "fe80::1%"+ifname, echo)
	_, port, _ := net.SplitHostPort(be.addr)
	server := "[fe80::1%" + ifname + "]:" + port // the listener's address drops the zone
	p := newProxy(t, "127.0.0.1", func(l string) string {
		return streamConf(l, "pool", "", upstreamConf("pool", server))
	})
	if got, err := p.echo("link-local"); err != nil || got != "link-local" {
		t.Fatalf("through %s: %q, %v", server, got, err)
	}
	if l := p.waitLines(1)[0]; !strings.Contains(l, server) {
		t.Errorf("access line %q, want the server %s", l, server)
	}
}

// TestConnectionHandedToStoppedServerIsClosed: a connection Go's net
// accepted just before the stream proxy stopped (a warm goroutine still
// holding it) is closed, not kept open by a loop that will never run.
func TestConnectionHandedToStoppedServerIsClosed(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, be.addr, "", "") })
	srv := p.cur.Load()
	h := srv.Handler(p.listen)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	client, accepted := testutil.TCPPair(t)
	h.ServeConn(accepted)
	got, err := readAllWithin(t, client, 3*time.Second)
	if err != nil || len(got) != 0 {
		t.Fatalf("client of a connection handed to a stopped proxy: %q, %v; want it closed", got, err)
	}
}

// An established stream that bursts (a read fills the copy buffer, which
// asks for a splice pipe) while the process has no descriptor free goes on
// through the copy buffer: a connection flood that takes every descriptor
// does not reset healthy streams (it did, with "no splice pipe").
func TestBurstWithoutAFreeDescriptorKeepsTheStream(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, be.addr, "", "") })
	c := p.dial()
	_, _ = c.Write([]byte("w"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(spareIdle + 500*time.Millisecond) // the spare pipes are closed
	restore := testutil.LeaveDescriptorNumbers(t, 0)
	msg := bytes.Repeat([]byte("x"), 256<<10)
	go func() { _, _ = c.Write(msg) }()
	got := make([]byte, len(msg))
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := io.ReadFull(c, got)
	restore()
	if err != nil || !bytes.Equal(got, msg) {
		t.Errorf("established stream on a burst while no descriptor was free: read %d of %d bytes, %v; access log %q",
			n, len(msg), err, p.waitLines(1))
	}
}

// A v2 PROXY header on the UNSPEC family (an L4 balancer's for a protocol
// it does not know) is served with the connection's own addresses, as
// nginx and HAProxy serve it; it was refused as bad_family.
func TestProxyHeaderUnspecFamilyIsServed(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string {
		return streamConf(l, be.addr, "accept_proxy_protocol = true", "")
	})
	c := p.dial()
	_, _ = c.Write([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x00\x00\x00hello"))
	_ = c.CloseWrite()
	got, err := readAllWithin(t, c, 3*time.Second)
	if string(got) != "hello" {
		t.Errorf("PROXY header on the UNSPEC family: got %q, %v; access log %q", got, err, p.waitLines(1))
	}
}

// A stop closes the streams at once too, and their access lines say so:
// "stop", not "handover" (which no stop is).
func TestCloseForStopSaysStop(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, be.addr, "", "") })
	c := p.dial()
	_, _ = c.Write([]byte("a"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	p.cur.Load().CloseForStop()
	if _, err := readAllWithin(t, c, time.Second); err != nil {
		t.Errorf("stream not closed: %v", err)
	}
	if l := p.waitLines(1)[0]; !strings.HasSuffix(l, " stop") {
		t.Errorf("access line %q, want it to end with stop", l)
	}
}

// TestBlockedDirectionIgnoresItsSource: while a direction holds bytes its
// server cannot take, the loop does not watch the client's socket for
// input (each segment arriving would wake it for nothing: three epoll
// calls and a goroutine switch, thousands of times a second in a bulk
// transfer to a slightly slower receiver); it still watches it for
// output, which the other direction needs. Once the server reads again,
// the socket is watched again and every byte arrives in order.
func TestBlockedDirectionIgnoresItsSource(t *testing.T) {
	pattern := func(off int64) byte { return byte(off * 31 / 7) }
	release := make(chan struct{})
	type result struct {
		n   int64
		bad int64 // offset of the first wrong byte, -1 for none
	}
	got := make(chan result, 1)
	var received atomic.Int64
	be := startBackend(t, "127.0.0.1", func(c *net.TCPConn) {
		<-release
		r := result{bad: -1}
		buf := make([]byte, 1<<20)
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			m, err := c.Read(buf)
			for i, v := range buf[:m] {
				if r.bad < 0 && v != pattern(r.n+int64(i)) {
					r.bad = r.n + int64(i)
				}
			}
			r.n += int64(m)
			received.Store(r.n)
			if err != nil {
				break
			}
		}
		got <- r
	})
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, be.addr, "", "") })
	c := p.dial()
	var sent atomic.Int64
	var stop atomic.Bool
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		buf := make([]byte, 64<<10)
		for off := int64(0); !stop.Load(); off += int64(len(buf)) {
			for i := range buf {
				buf[i] = pattern(off + int64(i))
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
			sent.Store(off + int64(len(buf)))
		}
	}()
	// The server does not read: everything between it and the client
	// fills up and the client's writes stop, the proxy holding bytes.
	for last, still := int64(-1), 0; still < 3; time.Sleep(100 * time.Millisecond) {
		if n := sent.Load(); n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
	proxySide := socketWithPeer(t, netip.MustParseAddrPort(p.listen), addrPort(c.LocalAddr()))
	watched := func() uint32 {
		t.Helper()
		for _, lp := range p.cur.Load().eng.loops {
			if ev, ok := watchedEvents(t, lp.epfd, proxySide); ok {
				return ev
			}
		}
		t.Fatalf("the proxy's socket of the client (fd %d) is in no loop's epoll set", proxySide)
		return 0
	}
	if ev := watched(); ev&unix.EPOLLIN != 0 || ev&unix.EPOLLOUT == 0 {
		t.Errorf("blocked on the server, the client's socket is watched for %#x: want output and not input", ev)
	}

	stop.Store(true)
	close(release)
	<-clientDone
	for deadline := time.Now().Add(10 * time.Second); received.Load() < sent.Load(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the server got %d of the %d bytes the client sent", received.Load(), sent.Load())
		}
	}
	if ev := watched(); ev&unix.EPOLLIN == 0 {
		t.Errorf("after the bytes went out, the client's socket is watched for %#x: input is missing", ev)
	}
	// More from the client still flows; then its end.
	if _, err := c.Write([]byte{pattern(sent.Load())}); err != nil {
		t.Fatal(err)
	}
	sent.Add(1)
	c.CloseWrite()
	r := <-got
	if r.n != sent.Load() || r.bad >= 0 {
		t.Fatalf("the server got %d bytes (first wrong at %d) of the %d the client sent", r.n, r.bad, sent.Load())
	}
}

// watchedEvents reads from /proc/self/fdinfo what the epoll set epfd
// watches descriptor fd for.
func watchedEvents(t *testing.T, epfd, fd int) (uint32, bool) {
	t.Helper()
	info, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", epfd))
	if err != nil {
		t.Fatal(err)
	}
	// tfd:       12 events: 80002019 data: 200000000000c  pos:0 ino:... sdev:...
	for _, line := range strings.Split(string(info), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == "tfd:" && f[1] == strconv.Itoa(fd) && f[2] == "events:" {
			ev, err := strconv.ParseUint(f[3], 16, 32)
			if err != nil {
				t.Fatalf("fdinfo of epoll %d: %q", epfd, line)
			}
			return uint32(ev), true
		}
	}
	return 0, false
}

// TestBulkDirectionBoundsUnsentBytes: once a direction turns bulk, its
// destination socket holds at most bulkNotSentLowat unsent bytes
// (TCP_NOTSENT_LOWAT); while a stream only exchanges small messages, its
// sockets keep the system's default.
func TestBulkDirectionBoundsUnsentBytes(t *testing.T) {
	serverSide := make(chan *net.TCPConn, 1)
	be := startBackend(t, "127.0.0.1", func(c *net.TCPConn) {
		serverSide <- c
		echo(c)
	})
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, be.addr, "", "") })
	c := p.dial()
	s := <-serverSide
	lowat := func(fd int) int {
		t.Helper()
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	toServer := socketWithPeer(t, addrPort(s.RemoteAddr()), addrPort(s.LocalAddr()))
	toClient := socketWithPeer(t, netip.MustParseAddrPort(p.listen), addrPort(c.LocalAddr()))
	exchange := func(n int) {
		t.Helper()
		msg := bytes.Repeat([]byte("m"), n)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go c.Write(msg)
		if _, err := io.ReadFull(c, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		exchange(100)
	}
	if v, w := lowat(toServer), lowat(toClient); v != 0 || w != 0 {
		t.Errorf("after small messages, TCP_NOTSENT_LOWAT is %d toward the server and %d toward the client: want the default (0)", v, w)
	}
	exchange(8 << 20) // both ways: the echo turns the answer bulk too
	if v, w := lowat(toServer), lowat(toClient); v != bulkNotSentLowat || w != bulkNotSentLowat {
		t.Errorf("after 8 MiB each way, TCP_NOTSENT_LOWAT is %d toward the server and %d toward the client: want %d", v, w, bulkNotSentLowat)
	}
}
