package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/vipgate/vipgate/config"
)

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// echoListener is a TCP echo server on loopback, closed when the test
// ends.
func echoListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln
}

const reviewCfg = `
[global]
pid_file = "%[1]s/vipgate.pid"
admin_listen = ""
access_log = "off"
shutdown_timeout = "2s"

[upstream.app]
[[upstream.app.server]]
address = "%[2]s"

[[http]]
listen = ["%[3]s"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
proxy_set_header = { X-Generation = "%[5]s" }
%[4]s
`

func loadCfg(t *testing.T, dir, text string) *config.Config {
	p := filepath.Join(dir, "v.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// With [[stream]] in the config, a reload's old generation is freed too
// (its HTTP servers, goroutines, upstream pools) once idle: before, every
// reload left it behind for good.
func TestRetiredGenerationsWithStreamsAreFreed(t *testing.T) {
	dir := t.TempDir()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer backend.Close()
	httpAddr, streamAddr := freeAddr(t), freeAddr(t)
	stream := fmt.Sprintf("[[stream]]\nlisten = [%q]\nproxy_pass = \"app\"\n", streamAddr)
	cfg := func(gen int) *config.Config {
		return loadCfg(t, dir, fmt.Sprintf(reviewCfg, dir, backend.Listener.Addr(), httpAddr, stream, fmt.Sprint(gen)))
	}
	d, err := Start(cfg(1), Options{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(time.Second)
	// one request so the generation has an upstream connection pooled
	get := func() {
		resp, err := http.Get("http://" + httpAddr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		http.DefaultClient.CloseIdleConnections()
	}
	get()
	g0 := runtime.NumGoroutine()
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	f0 := fds()
	for i := 2; i <= 11; i++ {
		if err := d.Reload(cfg(i)); err != nil {
			t.Fatal(err)
		}
		get()
	}
	time.Sleep(3 * reapGrace)
	d.gensMu.Lock()
	n := len(d.retired)
	d.gensMu.Unlock()
	t.Logf("fds %d -> %d", f0, fds())
	t.Logf("goroutines before reloads %d, after 10 reloads %d; retired generations %d", g0, runtime.NumGoroutine(), n)
	if n != 0 {
		t.Fatalf("%d retired generations still held after they went idle (goroutines %d -> %d)", n, g0, runtime.NumGoroutine())
	}
}

// SIGUSR2 on a node that is not a VRRP MASTER (here: no [[vrrp]] at all)
// has nothing to hand over: it is refused and cuts no stream.
func TestHandoverOnANodeThatIsNotMasterChangesNothing(t *testing.T) {
	dir := t.TempDir()
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 512)
				for {
					n, err := c.Read(buf)
					if err != nil {
						c.Close()
						return
					}
					c.Write(buf[:n])
				}
			}()
		}
	}()
	httpAddr, streamAddr := freeAddr(t), freeAddr(t)
	stream := fmt.Sprintf("[[stream]]\nlisten = [%q]\nproxy_pass = %q\n", streamAddr, echo.Addr().String())
	cfg := loadCfg(t, dir, fmt.Sprintf(reviewCfg, dir, echo.Addr(), httpAddr, stream, "1"))
	d, err := Start(cfg, Options{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(time.Second)
	c, err := net.Dial("tcp", streamAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip := func() error {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		_, err := io.ReadFull(c, buf)
		return err
	}
	if err := roundTrip(); err != nil {
		t.Fatal(err)
	}
	if err := d.Handover(); !errors.Is(err, errNotMaster) {
		t.Fatalf("handover on a node without VRRP: %v, want %v", err, errNotMaster)
	}
	if err := roundTrip(); err != nil {
		t.Fatalf("stream cut by a handover on a node without VRRP: %v", err)
	}
}

// A reload whose [[stream]] proxy_pass host does not resolve fails after
// the new generation's HTTP servers started: they are shut down, not
// leaked by each failed reload.
func TestFailedStreamBuildLeavesNoHTTPServer(t *testing.T) {
	dir := t.TempDir()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer backend.Close()
	httpAddr, streamAddr := freeAddr(t), freeAddr(t)
	good := loadCfg(t, dir, fmt.Sprintf(reviewCfg, dir, backend.Listener.Addr(), httpAddr, "", "1"))
	d, err := Start(good, Options{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(time.Second)
	// The name must not resolve, and no query may leave the machine: a
	// resolver that has no DNS server to ask (only /etc/hosts).
	saved := net.DefaultResolver
	net.DefaultResolver = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no DNS in this test")
	}}
	defer func() { net.DefaultResolver = saved }()
	stream := fmt.Sprintf("[[stream]]\nlisten = [%q]\nproxy_pass = \"no-such-host.invalid:1883\"\n", streamAddr)
	bad := loadCfg(t, dir, fmt.Sprintf(reviewCfg, dir, backend.Listener.Addr(), httpAddr, stream, "2"))
	time.Sleep(100 * time.Millisecond)
	g0 := runtime.NumGoroutine()
	for i := 0; i < 10; i++ {
		if err := d.Reload(bad); err == nil {
			t.Fatal("reload succeeded")
		} else if i == 0 {
			t.Logf("reload error: %v", err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if g1 := runtime.NumGoroutine(); g1 > g0+2 {
		t.Fatalf("10 failed reloads: goroutines %d -> %d", g0, g1)
	}
}

const twoServersConfig = `
[global]
pid_file = "%[1]s/vipgate.pid"
admin_listen = ""
access_log = "off"

[upstream.app]
[[upstream.app.server]]
address = "%[2]s"
%[5]s
[[upstream.app.server]]
address = "%[3]s"

[[http]]
listen = [%[4]s]
[[http.location]]
path = "/"
proxy_pass = "http://app"
`

// A reload that fails (here a listen address already taken) leaves what
// the status reports as it was: a server the rejected file marks down is
// still up, as it still takes traffic, and no state change is logged.
func TestFailedReloadLeavesServerStatus(t *testing.T) {
	dir := t.TempDir()
	s1, s2, httpAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	d, err := Start(loadCfg(t, dir, fmt.Sprintf(twoServersConfig, dir, s1, s2, fmt.Sprintf("%q", httpAddr), "")), Options{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(time.Second)
	bad := loadCfg(t, dir, fmt.Sprintf(twoServersConfig, dir, s1, s2, fmt.Sprintf("%q, %q", httpAddr, busy.Addr()), "down = true"))
	if err := d.Reload(bad); err == nil {
		t.Fatal("a reload with a listen address already taken succeeded")
	}
	for _, u := range d.Status().Upstreams {
		for _, s := range u.Servers {
			if s.Address == s1 && s.State != "up" {
				t.Errorf("after a failed reload, server %s is reported %q (%s); the running configuration has it up", s1, s.State, s.Reason)
			}
		}
	}
	// The same file without the taken address applies, and then it shows.
	good := loadCfg(t, dir, fmt.Sprintf(twoServersConfig, dir, s1, s2, fmt.Sprintf("%q", httpAddr), "down = true"))
	if err := d.Reload(good); err != nil {
		t.Fatal(err)
	}
	for _, u := range d.Status().Upstreams {
		for _, s := range u.Servers {
			if s.Address == s1 && s.State != "down" {
				t.Errorf("after the reload marking it down, server %s is reported %q", s1, s.State)
			}
		}
	}
}

// Moving admin_listen to another address of the same port (0.0.0.0:9900
// narrowed to 127.0.0.1:9900; here two spellings of 127.0.0.1) overlaps
// the running API's socket: the reload frees it first instead of failing
// as a whole. A reload that fails later puts the old API back.
func TestAdminListenSamePortOtherAddress(t *testing.T) {
	dir := t.TempDir()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	httpAddr, adminAddr := freeAddr(t), freeAddr(t)
	_, port, _ := net.SplitHostPort(adminAddr)
	mk := func(admin, listen string) *config.Config {
		text := fmt.Sprintf(reviewCfg, dir, backend.Listener.Addr(), httpAddr, "", "1")
		text = strings.Replace(text, `admin_listen = ""`, fmt.Sprintf("admin_listen = %q", admin), 1)
		text = strings.Replace(text, fmt.Sprintf("listen = [%q]", httpAddr), "listen = ["+listen+"]", 1)
		return loadCfg(t, dir, text)
	}
	healthz := func() error {
		resp, err := http.Get("http://127.0.0.1:" + port + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	d, err := Start(mk("127.0.0.1:"+port, fmt.Sprintf("%q", httpAddr)), Options{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(time.Second)
	if err := d.Reload(mk("[::ffff:127.0.0.1]:"+port, fmt.Sprintf("%q", httpAddr))); err != nil {
		t.Fatalf("reload that only moves admin_listen to another address of its port: %v", err)
	}
	if err := healthz(); err != nil {
		t.Fatalf("admin API after the reload: %v", err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if err := d.Reload(mk("127.0.0.1:"+port, fmt.Sprintf("%q, %q", httpAddr, busy.Addr()))); err == nil {
		t.Fatal("a reload with a listen address already taken succeeded")
	}
	if err := healthz(); err != nil {
		t.Fatalf("admin API after a failed reload: %v", err)
	}
}

// A stop whose time ran out says connections were cut only when some
// were: a MASTER alone waits for a new master up to shutdown_timeout,
// and a stop with nothing open was reported "shutdown_timeout reached:
// remaining connections closed" (a warning) all the same.
func TestStopReportsCutConnectionsOnlyWhenThereWereSome(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(2 * time.Second)
		}
	}))
	defer slow.Close()
	for _, busy := range []bool{false, true} {
		dir := t.TempDir()
		listen := freeAddr(t)
		stream := fmt.Sprintf("[[stream]]\nlisten = [%q]\nproxy_pass = %q\n", freeAddr(t), slow.Listener.Addr().String())
		d, err := Start(loadCfg(t, dir, fmt.Sprintf(reviewCfg, dir, slow.Listener.Addr(), listen, stream, "g1")), Options{Log: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		if busy {
			go func() {
				defer close(done)
				if resp, err := http.Get("http://" + listen + "/slow"); err == nil {
					resp.Body.Close()
				}
			}()
			time.Sleep(200 * time.Millisecond)
		} else {
			close(done)
		}
		// The time runs out at once (as a lone MASTER's wait would use it).
		err = d.Stop(time.Nanosecond)
		if busy != (err != nil) {
			t.Errorf("busy %v: Stop = %v", busy, err)
		}
		<-done
	}
}
