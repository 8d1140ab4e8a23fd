//go:build linux

package stream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/vipgate/vipgate/balancer"
	"github.com/vipgate/vipgate/config"
	"github.com/vipgate/vipgate/internal/accesslog"
	"github.com/vipgate/vipgate/proxy"
)

// TestServerHalfClose: the server finishes first (sends its reply
// and shuts down writing); the client, having seen the EOF, still sends
// and the server still receives it.
func TestServerHalfClose(t *testing.T) {
	got := make(chan string, 1)
	be := startBackend(t, "127.0.0.1", func(c *net.TCPConn) {
		c.Write([]byte("bye"))
		c.CloseWrite()
		b, _ := io.ReadAll(c)
		got <- string(b)
	})
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, be.addr, "", "") })
	c := p.dial()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "bye" {
		t.Fatalf("client read %q, %v; want the reply then EOF", b, err)
	}
	if _, err := c.Write([]byte("more after your FIN")); err != nil {
		t.Fatalf("client write after the server's half-close: %v", err)
	}
	c.CloseWrite()
	select {
	case s := <-got:
		if s != "more after your FIN" {
			t.Errorf("server received %q after its half-close", s)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("server never saw the client's bytes and EOF after its own half-close")
	}
	if l := p.waitLines(1)[0]; !strings.HasSuffix(l, "upstream_closed") {
		t.Errorf("access line %q, want upstream_closed", l)
	}
}

// TestUploadOnlyIsNotIdle: bytes flowing client->server only keep
// the stream alive (proxy_timeout is the idle limit in either direction).
func TestUploadOnlyIsNotIdle(t *testing.T) {
	var n atomic.Int64
	be := startBackend(t, "127.0.0.1", func(c *net.TCPConn) {
		buf := make([]byte, 64)
		for {
			k, err := c.Read(buf)
			n.Add(int64(k))
			if err != nil {
				return
			}
		}
	})
	p := newProxy(t, "127.0.0.1", func(l string) string {
		return streamConf(l, be.addr, `proxy_timeout = "300ms"`, "")
	})
	c := p.dial()
	for i := range 8 {
		if _, err := c.Write([]byte("tick\n")); err != nil {
			t.Fatalf("write %d: stream closed while the client kept sending: %v", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if got := n.Load(); got != 40 {
		t.Errorf("server got %d bytes of 40 sent over 800ms with proxy_timeout 300ms", got)
	}
	// And then, quiet both ways, it idles out.
	start := time.Now()
	if _, err := readAllWithin(t, c, 3*time.Second); err != nil {
		t.Fatalf("want the idle stream closed: %v", err)
	}
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Errorf("idle stream closed after %v, want about 300ms", el)
	}
}

// TestConnectTimeoutCountsAsFailure: a server that never answers the
// connect is marked failed (max_fails = 1): the next stream goes straight
// to the live server, and the connect failure is counted.
func TestConnectTimeoutCountsAsFailure(t *testing.T) {
	hole := blackhole(t)
	be := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string {
		return streamConf(l, "pool", `proxy_connect_timeout = "300ms"`, upstreamConf("pool", hole, be.addr))
	})
	for i := range 3 {
		c := p.dial()
		fmt.Fprintf(c, "ping %d", i)
		c.CloseWrite()
		start := time.Now()
		got, err := readAllWithin(t, c, 3*time.Second)
		if err != nil || string(got) != fmt.Sprintf("ping %d", i) {
			t.Fatalf("stream %d: %q, %v", i, got, err)
		}
		if i > 0 && time.Since(start) > 250*time.Millisecond {
			t.Errorf("stream %d took %v: the timed-out server was tried again within fail_timeout", i, time.Since(start))
		}
	}
	if st := p.upstreamStats("pool"); st.ConnectFailures != 1 || st.Streams != 3 {
		t.Errorf("counters %+v, want 1 connect failure, 3 streams", st)
	}
}

// TestMaxConnsHeldForStreamLife: max_conns = 1 holds while a stream
// runs; a second client gets no_server (502), and after the first stream
// ends the server takes a new one.
func TestMaxConnsHeldForStreamLife(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string {
		up := upstreamConf("pool", be.addr) + "max_conns = 1\n"
		return streamConf(l, "pool", "", up)
	})
	c1 := p.dial()
	c1.Write([]byte("a"))
	c1.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c1, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	c2 := p.dial()
	if got, err := readAllWithin(t, c2, 2*time.Second); err != nil || len(got) != 0 {
		t.Fatalf("second client: %q, %v; want closed", got, err)
	}
	if l := p.waitLines(1)[0]; !strings.Contains(l, " TCP 502 ") {
		t.Errorf("access line %q, want 502", l)
	}
	c1.CloseWrite()
	readAllWithin(t, c1, 2*time.Second)
	p.waitLines(2)
	c3 := p.dial()
	c3.Write([]byte("z"))
	c3.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c3, make([]byte, 1)); err != nil {
		t.Fatalf("third client after the first ended: %v", err)
	}
}

// TestLeastConnCountsRunningStreams: with least_conn, a server
// holding a long stream is not picked for the next one; backup only when
// the primaries fail; a down server never.
func TestLeastConnBackupDown(t *testing.T) {
	tag := func(name string) func(c *net.TCPConn) {
		return func(c *net.TCPConn) { c.Write([]byte(name)); io.Copy(io.Discard, c) }
	}
	a := startBackend(t, "127.0.0.1", tag("a"))
	b := startBackend(t, "127.0.0.1", tag("b"))
	bk := startBackend(t, "127.0.0.1", tag("k"))
	dn := startBackend(t, "127.0.0.1", tag("d"))
	p := newProxy(t, "127.0.0.1", func(l string) string {
		up := "[upstream.pool]\nbalance = \"least_conn\"\n" +
			fmt.Sprintf("[[upstream.pool.server]]\naddress = %q\n", a.addr) +
			fmt.Sprintf("[[upstream.pool.server]]\naddress = %q\n", b.addr) +
			fmt.Sprintf("[[upstream.pool.server]]\naddress = %q\ndown = true\n", dn.addr) +
			fmt.Sprintf("[[upstream.pool.server]]\naddress = %q\nbackup = true\n", bk.addr)
		return streamConf(l, "pool", "", up)
	})
	first := func(c net.Conn) string {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var held []net.Conn
	counts := map[string]int{}
	for range 6 {
		c := p.dial()
		held = append(held, c)
		counts[first(c)]++
	}
	if counts["a"] != 3 || counts["b"] != 3 {
		t.Errorf("6 held streams with least_conn went %v, want 3 and 3 on a and b", counts)
	}
	for _, c := range held {
		c.Close()
	}
	p.waitLines(6)
	a.stop()
	b.stop()
	c := p.dial()
	if s := first(c); s != "k" {
		t.Errorf("with both primaries gone the stream went to %q, want the backup", s)
	}
	c.Close()
}

// TestManyBytesBehindHeader: a large burst sent in the same write
// as the inbound header reaches the server whole, in order, right after
// the outbound header.
func TestManyBytesBehindHeader(t *testing.T) {
	be := headerHashBackend(t)
	p := newProxy(t, "127.0.0.1", func(l string) string {
		return streamConf(l, be.addr, "accept_proxy_protocol = true\nproxy_protocol = \"v1\"", "")
	})
	payload := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB
	c := p.dial()
	msg := append([]byte("PROXY TCP4 198.51.100.7 192.0.2.1 5555 1883\r\n"), payload...)
	go func() { c.Write(msg); c.CloseWrite() }()
	got, err := readAllWithin(t, c, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("src=198.51.100.7:5555 n=%d sha=%x", len(payload), sha256.Sum256(payload))
	if string(got) != want {
		t.Errorf("server saw %q, want %q", got, want)
	}
}

func headerHashBackend(t *testing.T) *backend {
	return startBackend(t, "127.0.0.1", func(c *net.TCPConn) {
		all, _ := io.ReadAll(c)
		i := bytes.Index(all, []byte("\r\n"))
		if i < 0 {
			fmt.Fprintf(c, "no header in %q", all[:min(len(all), 60)])
			return
		}
		f := strings.Fields(string(all[:i]))
		rest := all[i+2:]
		fmt.Fprintf(c, "src=%s:%s n=%d sha=%x", f[2], f[4], len(rest), sha256.Sum256(rest))
	})
}

// --- upstream that accepts and resets ---

// logProxy serves one [[stream]] on a free port with an observed logger.
func logProxy(t *testing.T, conf func(listen string) string) (listen string, srv *Server, logs *observer.ObservedLogs, access *lockedBuffer) {
	t.Helper()
	ln, err := proxy.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	listen, _ = config.ParseListen(addr)
	cfg, err := config.Parse([]byte(conf(listen)), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel) // the default log_level
	access = &lockedBuffer{}
	srv, err = New(cfg.Stream, Deps{Log: zap.New(core), AccessLog: accesslog.New(access), Upstreams: map[string]*balancer.Upstream{}})
	if err != nil {
		t.Fatal(err)
	}
	ls := proxy.NewListeners(zap.NewNop())
	if err := ls.Apply(map[string]proxy.Handler{listen: srv.Handler(listen)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ls.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return listen, srv, logs, access
}

// TestTriesEveryServerOnceThenBackup: refused primaries are each
// tried once (and counted), then the backup serves; with nothing live the
// access line lists every server tried, once, and says 502.
func TestTriesEveryServerOnceThenBackup(t *testing.T) {
	d1, d2, d3 := refusedAddr(t), refusedAddr(t), refusedAddr(t)
	bk := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string {
		up := upstreamConf("pool", d1, d2) + fmt.Sprintf("[[upstream.pool.server]]\naddress = %q\nbackup = true\n", bk.addr)
		return streamConf(l, "pool", "", up)
	})
	c := p.dial()
	c.Write([]byte("x"))
	c.CloseWrite()
	if got, err := readAllWithin(t, c, 3*time.Second); err != nil || string(got) != "x" {
		t.Fatalf("got %q, %v; want the backup's echo", got, err)
	}
	l := p.waitLines(1)[0]
	if !strings.Contains(l, d1+", ") || !strings.Contains(l, d2+", ") || !strings.Contains(l, ", "+bk.addr+`" client_closed`) {
		t.Errorf("access line %q: want both primaries then the backup", l)
	}
	if st := p.upstreamStats("pool"); st.ConnectFailures != 2 {
		t.Errorf("connect failures %d, want 2", st.ConnectFailures)
	}

	q := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, "dead", "", upstreamConf("dead", d1, d2, d3)) })
	c = q.dial()
	if got, err := readAllWithin(t, c, 3*time.Second); err != nil || len(got) != 0 {
		t.Fatalf("got %q, %v", got, err)
	}
	l = q.waitLines(1)[0]
	if !strings.Contains(l, fmt.Sprintf(`"%s, %s, %s" connect_failed`, d1, d2, d3)) || !strings.Contains(l, " 502 ") {
		t.Errorf("access line %q: want all three servers, once each, and 502", l)
	}
	if st := q.upstreamStats("dead"); st.ConnectFailures != 3 || st.NoServer != 1 {
		t.Errorf("counters %+v, want 3 connect failures and 1 no_server", st)
	}
}

// TestReloadKeepsProxyTimeoutOfRunningStream: a reload that shortens
// proxy_timeout does not apply to a stream accepted before it.
func TestReloadKeepsProxyTimeoutOfRunningStream(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	p := newProxy(t, "127.0.0.1", func(l string) string { return streamConf(l, be.addr, `proxy_timeout = "2s"`, "") })
	c := p.dial()
	c.Write([]byte("a"))
	c.SetReadDeadline(time.Now().Add(time.Second))
	io.ReadFull(c, make([]byte, 1))
	p.reload(streamConf(p.listen, be.addr, `proxy_timeout = "200ms"`, ""))
	time.Sleep(700 * time.Millisecond)
	if _, err := c.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("running stream idled out on the new generation's proxy_timeout: %v", err)
	}
	c2 := p.dial()
	start := time.Now()
	if _, err := readAllWithin(t, c2, 3*time.Second); err != nil || time.Since(start) > time.Second {
		t.Errorf("a new stream did not get the new proxy_timeout (200ms): %v after %v", err, time.Since(start))
	}
}

// TestMaxConnsAcrossReload: the server state is shared by the
// generations: a stream of the old generation still counts against
// max_conns after a reload.
func TestMaxConnsAcrossReload(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	conf := func(l string) string {
		return streamConf(l, "pool", "", upstreamConf("pool", be.addr)+"max_conns = 1\n")
	}
	p := newProxy(t, "127.0.0.1", conf)
	c1 := p.dial()
	c1.Write([]byte("a"))
	c1.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c1, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	p.reload(conf(p.listen))
	c2 := p.dial()
	c2.Write([]byte("b"))
	got, _ := readAllWithin(t, c2, time.Second)
	if len(got) != 0 {
		t.Errorf("after a reload a second stream reached the max_conns = 1 server that still serves the first")
	}
}

// TestHeaderSplitWithBytesBehind: a header arriving in pieces, with
// the client's first bytes behind it, is waited for and those bytes go on.
func TestHeaderSplitWithBytesBehind(t *testing.T) {
	be := headerBackend(t, "127.0.0.1")
	p := newProxy(t, "127.0.0.1", func(l string) string {
		return streamConf(l, be.addr, "accept_proxy_protocol = true\nproxy_protocol = \"v2\"", "")
	})
	for _, parts := range [][]string{
		{"PROXY TCP4 198.51.100.7 ", "192.0.2.1 5555 1883\r", "\nCONNECT"},
		{"\r\n\r\n\x00\r\nQU", "IT\n\x21\x11\x00\x0c\xc6\x33\x64\x07\xc0\x00", "\x02\x01\x15\xb3\x07\x5bCONNECT"},
	} {
		c := p.dial()
		for _, s := range parts {
			c.Write([]byte(s))
			time.Sleep(50 * time.Millisecond)
		}
		got, err := readAllWithin(t, c, 3*time.Second)
		c.Close()
		if err != nil || !strings.HasPrefix(string(got), "src=198.51.100.7:5555 ") || !strings.HasSuffix(string(got), "first=CONNECT") {
			t.Errorf("split header %q: server saw %q, %v", parts, got, err)
		}
	}
}

// TestHeaderRefusalErrorLogLine: each refused inbound header leaves
// one error-log line at the default level, with its reason; the timeout
// comes after proxy_protocol_timeout.
func TestHeaderRefusalErrorLogLine(t *testing.T) {
	be := startBackend(t, "127.0.0.1", echo)
	l, _, logs, _ := logProxy(t, func(l string) string {
		return streamConf(l, be.addr, "accept_proxy_protocol = true\nproxy_protocol_timeout = \"300ms\"", "")
	})
	for _, tc := range []struct{ send, reason string }{
		{"", "timeout"},
		{"PROXY UNKNOWN " + strings.Repeat("f", 100) + "\r\n", "too_long"},
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x20\x00", "too_long"},
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x13\x00\x0c" + strings.Repeat("\x01", 12), "bad_family"},
	} {
		before := logs.Len()
		c, err := net.Dial("tcp", l)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		io.WriteString(c, tc.send)
		if _, err := readAllWithin(t, c, 3*time.Second); err != nil {
			t.Fatalf("%q: %v", tc.send, err)
		}
		if tc.reason == "timeout" && time.Since(start) < 250*time.Millisecond {
			t.Errorf("silent client closed after %v, before proxy_protocol_timeout", time.Since(start))
		}
		c.Close()
		time.Sleep(30 * time.Millisecond)
		es := logs.All()[before:]
		if len(es) != 1 || es[0].ContextMap()["reason"] != tc.reason {
			t.Errorf("%q: log entries %v, want one with reason %s", tc.send, es, tc.reason)
		}
	}
}
