package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/pidfile"
	"github.com/vipgate/vipgate/internal/testutil"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func runBinary(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(testutil.Binary(t), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

const goodConfig = `
[global]
pid_file = "%[1]s/vipgate.pid"
admin_listen = ""
access_log = "off"
shutdown_timeout = "%[4]s"

[upstream.app]
[[upstream.app.server]]
address = "%[2]s"

[[http]]
listen = ["127.0.0.1:%[3]d"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
proxy_set_header = { X-Generation = "%[5]s" }
`

func TestCheckConfigValidAndInvalid(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.toml", fmt.Sprintf(goodConfig, dir, "127.0.0.1:9", 8080, "5s", "g1"))
	out, errOut, code := runBinary(t, "-t", "--no-host", "-c", good)
	if code != 0 || !strings.Contains(out, "configuration ok") {
		t.Fatalf("-t on a valid file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	bad := writeFile(t, dir, "bad.toml", `
[upstream.app]
[[upstream.app.server]]
address = "127.0.0.1:80"
weight = 0
[[vrrp]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 0
virtual_ipaddress = ["192.0.2.1/24"]
`)
	_, errOut, code = runBinary(t, "-t", "--no-host", "-c", bad)
	if code != 1 {
		t.Fatalf("-t on an invalid file: exit %d, want 1", code)
	}
	for _, want := range []string{"upstream.app.server[0].weight: must be >= 1", "vrrp[0].virtual_router_id: must be from 1 to 255"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("-t output lacks %q:\n%s", want, errOut)
		}
	}
}

func TestCheckConfigHostChecks(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "host.toml", `
[global]
admin_listen = ""
[[vrrp]]
name = "VI_1"
interface = "nonexistent0"
virtual_router_id = 51
virtual_ipaddress = ["192.0.2.1/24"]
`)
	if _, errOut, code := runBinary(t, "-t", "-c", cfg); code != 1 || !strings.Contains(errOut, "nonexistent0") {
		t.Fatalf("-t with host checks on a missing interface: exit %d, stderr %q", code, errOut)
	}
	if out, errOut, code := runBinary(t, "-t", "--no-host", "-c", cfg); code != 0 {
		t.Fatalf("-t --no-host must skip host checks: exit %d, %s %s", code, out, errOut)
	}
}

func TestVersion(t *testing.T) {
	out, _, code := runBinary(t, "version")
	if code != 0 || !strings.HasPrefix(out, "vipgate ") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
}

// node is a vipgate process started by a test.
type node struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startNode(t *testing.T, cfgPath string, waitAddr string) *node {
	t.Helper()
	n := &node{t: t, stderr: &syncBuffer{}, done: make(chan struct{})}
	n.cmd = exec.Command(testutil.Binary(t), "-c", cfgPath)
	n.cmd.Stderr = n.stderr
	n.cmd.Stdout = n.stderr
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = n.cmd.Wait(); close(n.done) }()
	t.Cleanup(func() {
		select {
		case <-n.done:
		default:
			_ = n.cmd.Process.Kill()
			<-n.done
		}
		if t.Failed() {
			t.Logf("vipgate output:\n%s", n.stderr.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", waitAddr); err == nil {
			c.Close()
			return n
		}
		select {
		case <-n.done:
			t.Fatalf("vipgate exited at start:\n%s", n.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("vipgate did not listen on %s:\n%s", waitAddr, n.stderr.String())
	return nil
}

func (n *node) signal(s syscall.Signal) {
	if err := n.cmd.Process.Signal(s); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) wait(timeout time.Duration) int {
	select {
	case <-n.done:
		return n.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		n.t.Fatalf("vipgate did not exit within %s", timeout)
		return -1
	}
}

// echoBackend answers with the X-Generation header it received.
func echoBackend(t *testing.T, delay time.Duration) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if delay > 0 {
			time.Sleep(delay)
		}
		fmt.Fprint(w, r.Header.Get("X-Generation"))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestSignalReloadAndPidFile(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfgPath := writeFile(t, dir, "v.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "one"))
	n := startNode(t, cfgPath, addr)
	if got := get(t, addr); got != "one" {
		t.Fatalf("before reload: backend saw X-Generation %q", got)
	}

	// A second instance with the same pid file must refuse to start.
	if _, errOut, code := runBinary(t, "-c", cfgPath); code != 1 || !strings.Contains(errOut+n.stderr.String(), "another vipgate") {
		t.Fatalf("second instance: exit %d, want 1 and a clear message; stderr %q", code, errOut)
	}

	// -s reload refuses an invalid file and the instance keeps its config.
	badPath := writeFile(t, dir, "bad.toml", "[global]\nlog_level = \"loud\"\npid_file = \""+dir+"/vipgate.pid\"\n")
	if _, errOut, code := runBinary(t, "-s", "reload", "-c", badPath); code != 1 || !strings.Contains(errOut, "global.log_level") {
		t.Fatalf("-s reload with an invalid file: exit %d, stderr %q", code, errOut)
	}
	writeFile(t, dir, "v.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "two"))
	if out, errOut, code := runBinary(t, "-s", "reload", "-c", cfgPath); code != 0 {
		t.Fatalf("-s reload: exit %d, %s %s", code, out, errOut)
	}
	waitFor(t, 5*time.Second, func() bool { return get(t, addr) == "two" })

	if _, _, code := runBinary(t, "-s", "stop", "-c", cfgPath); code != 0 {
		t.Fatalf("-s stop failed")
	}
	if code := n.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code after -s stop: %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "vipgate.pid")); !os.IsNotExist(err) {
		t.Fatalf("pid file left after stop: %v", err)
	}
}

// A reload applies log_level (as nginx's error_log level follows a
// reload) and says which settings wait for the next start instead of
// ignoring them silently.
func TestReloadAppliesLogLevel(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := func(globals string) string {
		return strings.Replace(fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "one"), "[global]\n", "[global]\n"+globals, 1)
	}
	cfgPath := writeFile(t, dir, "v.toml", cfg(`log_level = "info"`+"\n"))
	n := startNode(t, cfgPath, addr)
	writeFile(t, dir, "v.toml", cfg(`log_level = "debug"`+"\n"))
	if _, errOut, code := runBinary(t, "-s", "reload", "-c", cfgPath); code != 0 {
		t.Fatalf("-s reload: exit %d, %s", code, errOut)
	}
	// The reload retires a generation; freeing it is logged at debug.
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(n.stderr.String(), "retired generation freed") })

	// A file with a warning (hash is only used with balance = "hash"):
	// -s reload prints it, as -t does, and the running instance logs it.
	next := strings.Replace(cfg(`log_level = "debug"`+"\n"+`log_format = "json"`+"\n"), "[upstream.app]\n", "[upstream.app]\nhash = \"$remote_addr\"\n", 1)
	writeFile(t, dir, "v.toml", next)
	_, errOut, code := runBinary(t, "-s", "reload", "-c", cfgPath)
	if code != 0 || !strings.Contains(errOut, "warning: ") || !strings.Contains(errOut, "upstream.app.hash") {
		t.Fatalf("-s reload of a file with a warning: exit %d, stderr %q (want the warning)", code, errOut)
	}
	waitFor(t, 5*time.Second, func() bool {
		out := n.stderr.String()
		return strings.Contains(out, "take effect at the next start") && strings.Contains(out, "log_format") &&
			strings.Contains(out, "upstream.app.hash")
	})
}

// -s stop reaches the running instance even through a file an edit left
// broken, not even TOML: its pid_file line is found by scanning.
func TestStopThroughABrokenFile(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfgPath := writeFile(t, dir, "v.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "one"))
	n := startNode(t, cfgPath, addr)
	broken := writeFile(t, dir, "broken.toml", "[global]\npid_file = \""+dir+"/vipgate.pid\" # the running one\n[[http]\nlisten = [\n")
	if _, errOut, code := runBinary(t, "-s", "stop", "-c", broken); code != 0 {
		t.Fatalf("-s stop with a broken file: exit %d, stderr %q", code, errOut)
	}
	if code := n.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code after -s stop: %d", code)
	}
}

func TestScanPidFile(t *testing.T) {
	for text, want := range map[string]string{
		"[global]\npid_file = \"/run/a.pid\"\n[[http]\n":               "/run/a.pid",
		"[global]\n  pid_file=\"/run/b.pid\" # comment\n":              "/run/b.pid",
		"[upstream.x]\npid_file = \"/not/this\"\n[global]\nnode = 1\n": "/run/vipgate.pid",
		"garbage [[[": "/run/vipgate.pid",
	} {
		if got := scanPidFile(text); got != want {
			t.Errorf("scanPidFile(%q) = %q, want %q", text, got, want)
		}
	}
}

func TestStalePidFileIsTakenOver(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	port := freePort(t)
	// A pid that cannot be alive: the kernel's pid_max is below 2^22.
	writeFile(t, dir, "vipgate.pid", "4194304\n")
	cfgPath := writeFile(t, dir, "v.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "x"))
	n := startNode(t, cfgPath, fmt.Sprintf("127.0.0.1:%d", port))
	pid, err := pidfile.Read(filepath.Join(dir, "vipgate.pid"))
	if err != nil || pid != n.cmd.Process.Pid {
		t.Fatalf("pid file holds %d (%v), want the new instance's %d", pid, err, n.cmd.Process.Pid)
	}
}

func get(t *testing.T, addr string) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s", d)
}

// rawClient sends requests and counts every failure at the transport level:
// it never retries (unlike net/http's client, which silently retries
// idempotent requests on a reused connection).
type rawClient struct {
	addr      string
	keepAlive bool
	conn      net.Conn
	br        *bufio.Reader

	ok, failed atomic.Int64
	mu         sync.Mutex
	errors     []string
}

func (c *rawClient) fail(err string) {
	c.failed.Add(1)
	c.mu.Lock()
	if len(c.errors) < 10 {
		c.errors = append(c.errors, err)
	}
	c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

func (c *rawClient) do() (body string, ok bool) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, 2*time.Second)
		if err != nil {
			c.fail("dial: " + err.Error())
			return "", false
		}
		c.conn, c.br = conn, bufio.NewReader(conn)
	}
	_ = c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := "Connection: keep-alive\r\n"
	if !c.keepAlive {
		hdr = "Connection: close\r\n"
	}
	if _, err := io.WriteString(c.conn, "GET / HTTP/1.1\r\nHost: test\r\n"+hdr+"\r\n"); err != nil {
		c.fail("write: " + err.Error())
		return "", false
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.fail("read: " + err.Error())
		return "", false
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		c.fail(fmt.Sprintf("status %d, body error %v", resp.StatusCode, err))
		return "", false
	}
	c.ok.Add(1)
	if !c.keepAlive || resp.Close {
		c.conn.Close()
		c.conn = nil
	}
	return string(b), true
}

func TestReloadUnderLoadLosesNothing(t *testing.T) {
	for _, keepAlive := range []bool{true, false} {
		t.Run(fmt.Sprintf("keepalive=%v", keepAlive), func(t *testing.T) {
			dir := t.TempDir()
			backend := echoBackend(t, 0)
			port := freePort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			write := func(gen string) {
				writeFile(t, dir, "v.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", gen))
			}
			write("g0")
			n := startNode(t, filepath.Join(dir, "v.toml"), addr)

			stop := make(chan struct{})
			var wg sync.WaitGroup
			clients := make([]*rawClient, 4)
			for i := range clients {
				clients[i] = &rawClient{addr: addr, keepAlive: keepAlive}
				wg.Add(1)
				go func(c *rawClient) {
					defer wg.Done()
					deadline := time.Now().Add(60 * time.Second)
					for i := 0; i < 200000 && time.Now().Before(deadline); i++ {
						select {
						case <-stop:
							return
						default:
						}
						c.do()
					}
				}(clients[i])
			}
			lastValid := "g0"
			probe := &rawClient{addr: addr}
			for i := 1; i <= 20; i++ {
				if i%2 == 0 {
					// Invalid: the running configuration must stay as it is.
					refused := strings.Count(n.stderr.String(), "reload refused")
					writeFile(t, dir, "v.toml", "[global]\nshutdown_timeout = \"never\"\n")
					n.signal(syscall.SIGHUP)
					waitFor(t, 2*time.Second, func() bool { return strings.Count(n.stderr.String(), "reload refused") > refused })
				} else {
					lastValid = fmt.Sprintf("g%d", i)
					write(lastValid)
				}
				if i%2 == 1 {
					n.signal(syscall.SIGHUP)
				}
				// A new connection gets the configuration in force, once
				// the reload ran (it waits for a file written within
				// 250 ms to settle).
				var got string
				var ok bool
				for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
					if got, ok = probe.do(); ok && got == lastValid {
						break
					}
				}
				if !ok || got != lastValid {
					t.Errorf("after reload %d: new connection saw generation %q (ok=%v), want %q", i, got, ok, lastValid)
				}
			}
			close(stop)
			wg.Wait()
			var ok, failed int64
			for _, c := range clients {
				ok += c.ok.Load()
				failed += c.failed.Load()
				if len(c.errors) > 0 {
					t.Logf("client errors: %v", c.errors)
				}
			}
			t.Logf("%d requests succeeded, %d failed during 20 reloads", ok, failed)
			if failed != 0 || ok == 0 {
				t.Fatalf("%d failed requests during reloads (want 0), %d ok", failed, ok)
			}
			if !strings.Contains(n.stderr.String(), "reload refused") {
				t.Errorf("invalid reloads were not logged as refused")
			}
		})
	}
}

func TestStopLetsInFlightRequestsFinish(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 1500*time.Millisecond)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfgPath := writeFile(t, dir, "v.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "inflight"))
	n := startNode(t, cfgPath, addr)
	result := make(chan string, 1)
	go func() {
		c := &rawClient{addr: addr}
		body, ok := c.do()
		if !ok {
			body = "FAILED: " + strings.Join(c.errors, "; ")
		}
		result <- body
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	n.signal(syscall.SIGTERM)
	if got := <-result; got != "inflight" {
		t.Fatalf("in-flight request during stop: %q", got)
	}
	if code := n.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("stop took %s, beyond shutdown_timeout", took)
	}
}

func TestStopGivesUpAtShutdownTimeout(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 6*time.Second)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfgPath := writeFile(t, dir, "v.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "1s", "slow"))
	n := startNode(t, cfgPath, addr)
	go func() { c := &rawClient{addr: addr}; c.do() }()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	n.signal(syscall.SIGTERM)
	n.wait(10 * time.Second)
	if took := time.Since(start); took < 900*time.Millisecond || took > 4*time.Second {
		t.Fatalf("stop with a stuck request took %s, want about shutdown_timeout (1s)", took)
	}
}

// A second SIGTERM during a graceful stop (or a SIGQUIT) cuts it short:
// the operator is not left with kill -9, which would leave the VIPs
// behind, while a stuck request holds the stop for shutdown_timeout.
func TestSecondSIGTERMCutsTheStopShort(t *testing.T) {
	for _, second := range []syscall.Signal{syscall.SIGTERM, syscall.SIGQUIT} {
		t.Run(second.String(), func(t *testing.T) {
			dir := t.TempDir()
			backend := echoBackend(t, 5*time.Second) // longer than the bound below
			port := freePort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			cfgPath := writeFile(t, dir, "v.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "30s", "stuck"))
			n := startNode(t, cfgPath, addr)
			go func() { c := &rawClient{addr: addr}; c.do() }()
			time.Sleep(300 * time.Millisecond)
			n.signal(syscall.SIGTERM)
			time.Sleep(500 * time.Millisecond)
			start := time.Now()
			n.signal(second)
			if code := n.wait(10 * time.Second); code != 0 {
				t.Fatalf("exit code %d", code)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("stop went on %s after the second signal (shutdown_timeout 30s)", took)
			}
		})
	}
}

func TestSIGUSR1ReopensLogFiles(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "logs")
	cfg = strings.Replace(cfg, `access_log = "off"`, fmt.Sprintf("access_log = %q\nerror_log = %q", dir+"/access.log", dir+"/error.log"), 1)
	n := startNode(t, writeFile(t, dir, "v.toml", cfg), addr)
	get(t, addr)
	waitFor(t, 3*time.Second, func() bool {
		b, _ := os.ReadFile(dir + "/access.log")
		return strings.Contains(string(b), `"GET / HTTP/1.1" 200`)
	})
	// logrotate moves the files away, then signals.
	for _, f := range []string{"access.log", "error.log"} {
		if err := os.Rename(filepath.Join(dir, f), filepath.Join(dir, f+".1")); err != nil {
			t.Fatal(err)
		}
	}
	n.signal(syscall.SIGUSR1)
	waitFor(t, 3*time.Second, func() bool {
		b, _ := os.ReadFile(dir + "/error.log")
		return strings.Contains(string(b), "log files reopened")
	})
	get(t, addr)
	waitFor(t, 3*time.Second, func() bool {
		b, _ := os.ReadFile(dir + "/access.log")
		return strings.Contains(string(b), `"GET / HTTP/1.1" 200`)
	})
	old, _ := os.ReadFile(dir + "/access.log.1")
	if strings.Count(string(old), "GET / HTTP/1.1") != 1 {
		t.Errorf("rotated access log should hold exactly the first request:\n%s", old)
	}
}

func TestAdminAPIAndStatusCommand(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	port, adminPort := freePort(t), freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "adm")
	cfg = strings.Replace(cfg, `admin_listen = ""`, fmt.Sprintf(`admin_listen = "127.0.0.1:%d"`, adminPort), 1)
	cfg = strings.Replace(cfg, `access_log = "off"`, fmt.Sprintf("access_log = %q", dir+"/access.log"), 1)
	cfg += "\n[[upstream.app.server]]\naddress = \"127.0.0.1:1\"\nmax_fails = 0\n"
	cfgPath := writeFile(t, dir, "v.toml", cfg)
	n := startNode(t, cfgPath, addr)
	get(t, addr)
	statusBody := func() string {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/status", adminPort))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	// The access log line of that GET is counted (written after the response).
	waitFor(t, 3*time.Second, func() bool { return strings.Contains(statusBody(), `"lines_written": 1,`) })
	if body := statusBody(); !strings.Contains(body, fmt.Sprintf(`"target": %q`, dir+"/access.log")) || !strings.Contains(body, `"lines_lost": 0`) {
		t.Errorf("/status access_log block:\n%s", body)
	}

	body := statusBody()
	for _, want := range []string{`"generation": 1`, `"address": "127.0.0.1:1"`, fmt.Sprintf(`"address": "%s"`, addr), `"serving": true`, `"2xx": 1,`} {
		if !strings.Contains(body, want) {
			t.Errorf("/status lacks %s:\n%s", want, body)
		}
	}
	out, errOut, code := runBinary(t, "status", "-c", cfgPath)
	if code != 0 || !strings.Contains(out, "127.0.0.1:1") || !strings.Contains(out, "UPSTREAM") {
		t.Fatalf("vipgate status: exit %d\n%s%s", code, out, errOut)
	}
	// A file that no longer validates (an edit under way: an unknown key)
	// still finds the running instance's API.
	text, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	editing := writeFile(t, dir, "editing.toml", strings.Replace(string(text), "[global]\n", "[global]\nnot_a_key = 1\n", 1))
	if out, errOut, code := runBinary(t, "status", "-c", editing); code != 0 || !strings.Contains(out, "UPSTREAM") {
		t.Errorf("vipgate status with a file that does not validate: exit %d\n%s%s", code, out, errOut)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz = %d with serving listeners and no tracked upstream", resp.StatusCode)
	}

	// A reload refused for an invalid file (the usual failed reload, a bad
	// edit) is counted as failed, as one that fails to apply.
	writeFile(t, dir, "v.toml", strings.Replace(cfg, "[global]\n", "[global]\nlog_level = \"loud\"\n", 1))
	n.signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(n.stderr.String(), "reload refused") })
	if body := statusBody(); !strings.Contains(body, `"failed": 1`) {
		t.Errorf("/status after a refused reload, want reloads failed 1:\n%s", body)
	}

	// With the admin API off, status says so instead of failing obscurely.
	off := writeFile(t, dir, "off.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "adm"))
	if _, errOut, code := runBinary(t, "status", "-c", off); code != 1 || !strings.Contains(errOut, "admin API is off") {
		t.Errorf("status with admin off: exit %d, %q", code, errOut)
	}
}

func TestEveryExampleChecksWithoutHost(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testutil.ModuleRoot(), "examples", "*", "*.toml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		if out, errOut, code := runBinary(t, "-t", "--no-host", "-c", f); code != 0 || !strings.Contains(out, "configuration ok") {
			t.Errorf("%s: exit %d\n%s%s", f, code, out, errOut)
		}
	}
}

// A reload that cannot bind a new listen address changes nothing: the old
// generation keeps serving, and a connection kept open across reloads keeps
// the settings it started with.
func TestReloadBindFailureRollsBackAndKeptConnectionKeepsConfig(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfgPath := writeFile(t, dir, "v.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "first"))
	n := startNode(t, cfgPath, addr)
	kept := &rawClient{addr: addr, keepAlive: true}
	if got, ok := kept.do(); !ok || got != "first" {
		t.Fatalf("kept connection: %q", got)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	withBusy := fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "second")
	withBusy = strings.Replace(withBusy, fmt.Sprintf(`listen = ["127.0.0.1:%d"]`, port), fmt.Sprintf(`listen = ["127.0.0.1:%d", "%s"]`, port, busy.Addr()), 1)
	writeFile(t, dir, "v.toml", withBusy)
	n.signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(n.stderr.String(), "reload failed") })
	if got := get(t, addr); got != "first" {
		t.Fatalf("after a failed reload a new connection got %q, want the old config", got)
	}

	writeFile(t, dir, "v.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "third"))
	n.signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, func() bool { return get(t, addr) == "third" })
	if got, ok := kept.do(); !ok || got != "first" {
		t.Fatalf("a keep-alive connection opened before the reload got %q (ok=%v), want its original config", got, ok)
	}
}

// access_log_buffer as nginx's buffer=: lines wait in memory, a reload to
// another file sends them to the old one first, and a stop writes what is
// still buffered.
func TestBufferedAccessLogFollowsReloadAndStop(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	config := func(path, buffer string) string {
		cfg := fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "logs")
		return strings.Replace(cfg, `access_log = "off"`,
			fmt.Sprintf("access_log = %q\naccess_log_buffer = %q\naccess_log_flush = \"1h\"", path, buffer), 1)
	}
	read := func(p string) string { got, _ := os.ReadFile(p); return string(got) }
	const request = `"GET / HTTP/1.1" 200`
	cfgPath := writeFile(t, dir, "v.toml", config(a, "64k"))
	n := startNode(t, cfgPath, addr)
	reloads := 0
	reload := func(content string) {
		t.Helper()
		writeFile(t, dir, "v.toml", content)
		reloads++
		n.signal(syscall.SIGHUP)
		waitFor(t, 5*time.Second, func() bool { return strings.Count(n.stderr.String(), "reloaded") == reloads })
	}

	get(t, addr)
	time.Sleep(300 * time.Millisecond)
	if got := read(a); got != "" {
		t.Fatalf("with a 64k buffer and a 1h flush the line was written at once: %q", got)
	}

	reload(config(b, "0"))
	if got := read(a); strings.Count(got, request) != 1 {
		t.Fatalf("after a reload to another file, the old one holds %q, want the buffered line", got)
	}
	get(t, addr)
	waitFor(t, 3*time.Second, func() bool { return strings.Contains(read(b), request) })

	reload(config(b, "64k"))
	get(t, addr)
	get(t, addr)
	time.Sleep(300 * time.Millisecond)
	if got := read(b); strings.Count(got, request) != 1 {
		t.Fatalf("buffered again after the reload, b.log should still hold 1 line, holds %q", got)
	}
	n.signal(syscall.SIGTERM)
	if code := n.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if got := read(b); strings.Count(got, request) != 3 {
		t.Fatalf("after stop, b.log holds %q, want all 3 requests (buffered lines written at exit)", got)
	}
	if got := read(a); strings.Count(got, request) != 1 {
		t.Fatalf("a.log changed after the reload moved the log away: %q", got)
	}
}
