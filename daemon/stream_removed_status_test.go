package daemon

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestRemovedStreamListenerDrainsAtStop: a reload that removes a
// [[stream]] listener closes its socket (new clients are refused) while
// its running stream goes on; at stop that stream runs on up to
// shutdown_timeout (2s in reviewCfg) and is then cut, no later.
func TestRemovedStreamListenerDrainsAtStop(t *testing.T) {
	echoLn := echoListener(t)
	dir := t.TempDir()
	httpAddr, streamAddr := freeAddr(t), freeAddr(t)
	stream := fmt.Sprintf("[[stream]]\nlisten = [%q]\nproxy_pass = %q\nproxy_timeout = \"60s\"\n", streamAddr, echoLn.Addr().String())
	d, err := Start(loadCfg(t, dir, fmt.Sprintf(reviewCfg, dir, echoLn.Addr(), httpAddr, stream, "g1")), Options{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", streamAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo := func(msg string) error {
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := io.WriteString(c, msg); err != nil {
			return err
		}
		_, err := io.ReadFull(c, make([]byte, len(msg)))
		return err
	}
	if err := echo("before"); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(loadCfg(t, dir, fmt.Sprintf(reviewCfg, dir, echoLn.Addr(), httpAddr, "", "g2"))); err != nil {
		t.Fatal(err)
	}
	if x, err := net.DialTimeout("tcp", streamAddr, time.Second); err == nil {
		x.Close()
		t.Errorf("the removed stream listener %s still accepts", streamAddr)
	}
	if err := echo("after reload"); err != nil {
		t.Fatalf("the removed listener's stream broke on reload: %v", err)
	}
	stopped := make(chan error, 1)
	start := time.Now()
	go func() { stopped <- d.Stop(2 * time.Second) }()
	time.Sleep(500 * time.Millisecond)
	if err := echo("during stop"); err != nil {
		t.Fatalf("stream cut %v into the stop, shutdown_timeout 2s: %v", time.Since(start), err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("stream not closed by the stop: %v", err)
	}
	if el := time.Since(start); el < 1800*time.Millisecond || el > 3*time.Second {
		t.Errorf("stream closed %v after the stop began, want about shutdown_timeout (2s)", el)
	}
	<-stopped
}

// TestStatusCarriesStreamCounters: the admin API's /status (and so
// /metrics) shows, per upstream, active streams, streams, bytes each way and
// connect failures, and per listener the refused PROXY headers by reason.
func TestStatusCarriesStreamCounters(t *testing.T) {
	echoLn := echoListener(t)
	dead := freeAddr(t)
	dir := t.TempDir()
	httpAddr, plainAddr, ppAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	stream := fmt.Sprintf("[upstream.s]\n[[upstream.s.server]]\naddress = %q\n[[upstream.s.server]]\naddress = %q\n"+
		"[[stream]]\nlisten = [%q]\nproxy_pass = \"s\"\n"+
		"[[stream]]\nlisten = [%q]\nproxy_pass = %q\naccept_proxy_protocol = true\n",
		dead, echoLn.Addr().String(), plainAddr, ppAddr, echoLn.Addr().String())
	d, err := Start(loadCfg(t, dir, fmt.Sprintf(reviewCfg, dir, echoLn.Addr(), httpAddr, stream, "g1")), Options{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(time.Second)
	var open []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", plainAddr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		c.SetDeadline(time.Now().Add(3 * time.Second))
		io.WriteString(c, "hello")
		if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
			t.Fatal(err)
		}
	}
	bad, err := net.Dial("tcp", ppAddr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(bad, "GET / HTTP/1.0\r\n\r\n")
	bad.SetReadDeadline(time.Now().Add(2 * time.Second))
	io.ReadAll(bad)
	bad.Close()
	time.Sleep(100 * time.Millisecond)
	st := d.Status()
	var found bool
	for _, u := range st.Streams.Upstreams {
		if u.Upstream == "s" {
			found = true
			if u.ActiveStreams != 2 || u.Streams != 2 || u.BytesFromClient != 10 || u.BytesToClient != 10 || u.ConnectFailures != 1 || u.UpstreamErrors != 0 {
				t.Errorf("upstream s counters %+v, want 2 active, 2 streams, 10 bytes each way, 1 connect failure, no upstream error", u)
			}
		}
	}
	if !found {
		t.Errorf("no stream counters for upstream s in /status: %+v", st.Streams)
	}
	if st.ActiveStreams != 2 {
		t.Errorf("active_streams = %d, want 2", st.ActiveStreams)
	}
	found = false
	for _, l := range st.Streams.Listeners {
		if l.Listen == ppAddr {
			found = true
			if l.ProxyHeaderRefused["missing"] != 1 {
				t.Errorf("listener %s refused %v, want missing: 1", ppAddr, l.ProxyHeaderRefused)
			}
		}
	}
	if !found {
		t.Errorf("no counters for listener %s: %+v", ppAddr, st.Streams.Listeners)
	}
	for _, c := range open {
		c.Close()
	}
}
