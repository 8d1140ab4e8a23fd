package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/pidfile"
	"github.com/vipgate/vipgate/internal/testutil"
)

// unrelatedProcess starts a process that is not vipgate (as a pid reused
// after a crash would be) and reports whether it is still alive.
func unrelatedProcess(t *testing.T) (pid int, alive func() bool) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	return cmd.Process.Pid, func() bool {
		select {
		case <-done:
			return false
		case <-time.After(300 * time.Millisecond):
			return true
		}
	}
}

// A pid file left behind by a crash (kill -9, OOM killer, power loss with
// a persistent /run in a container) can name a pid that now belongs to an
// unrelated process. `vipgate -s reload|stop|quit|handover` must not
// signal it (SIGHUP or SIGTERM would end it) and must not report success:
// nothing vipgate runs.
func TestSignalCommandSparesAnUnrelatedProcess(t *testing.T) {
	for _, name := range []string{"reload", "stop"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			backend := echoBackend(t, 0)
			cfgPath := writeFile(t, dir, "v.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), freePort(t), "5s", "x"))
			pid, alive := unrelatedProcess(t)
			writeFile(t, dir, "vipgate.pid", strconv.Itoa(pid)+"\n")
			out, errOut, code := runBinary(t, "-s", name, "-c", cfgPath)
			if !alive() {
				t.Errorf("vipgate -s %s signalled pid %d, an unrelated process (sleep) named by a stale pid file: it is dead", name, pid)
			}
			if code == 0 {
				t.Errorf("vipgate -s %s with no vipgate running: exit 0 (%q), want 1 and \"no running instance\"", name, strings.TrimSpace(out+errOut))
			}
		})
	}
}

// The same stale pid file must not stop vipgate from starting with a
// false "another vipgate is running" (systemd would restart it in a loop):
// a pid file whose process is not vipgate is stale, and taken over as one
// whose process is gone is.
func TestStartTakesOverAPidFileOfAnUnrelatedProcess(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	port := freePort(t)
	pid, _ := unrelatedProcess(t)
	writeFile(t, dir, "vipgate.pid", strconv.Itoa(pid)+"\n")
	cfgPath := writeFile(t, dir, "v.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "x"))
	n := startNode(t, cfgPath, fmt.Sprintf("127.0.0.1:%d", port))
	got, err := pidfile.Read(filepath.Join(dir, "vipgate.pid"))
	if err != nil || got != n.cmd.Process.Pid {
		t.Fatalf("pid file holds %d (%v), want the new instance's %d", got, err, n.cmd.Process.Pid)
	}
}

// With error_log set to a file (the usual production setting), a start
// that fails (another instance running, a port taken) must still say why
// on the terminal, as nginx does ("nginx: [emerg] bind() ... failed"):
// an operator typing `vipgate -c FILE` sees exit status 1 and nothing else.
func TestStartFailureIsShownOnTheTerminal(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "one")
	cfg = strings.Replace(cfg, `access_log = "off"`, fmt.Sprintf("access_log = \"off\"\nerror_log = %q", dir+"/error.log"), 1)
	cfgPath := writeFile(t, dir, "v.toml", cfg)
	first := startNode(t, cfgPath, addr)

	t.Run("same pid file", func(t *testing.T) {
		out, errOut, code := runBinary(t, "-c", cfgPath)
		if code != 1 || !strings.Contains(out+errOut, "another vipgate") {
			t.Errorf("second instance: exit %d, terminal output %q; want exit 1 and the reason (another vipgate, pid %d)", code, out+errOut, first.cmd.Process.Pid)
		}
	})
	t.Run("port taken", func(t *testing.T) {
		other := writeFile(t, dir, "other.toml", strings.Replace(cfg, dir+"/vipgate.pid", dir+"/other.pid", 1))
		out, errOut, code := runBinary(t, "-c", other)
		if code != 1 || !strings.Contains(out+errOut, "address already in use") {
			t.Errorf("instance on a taken port: exit %d, terminal output %q; want exit 1 and the bind error", code, out+errOut)
		}
	})
	if got := get(t, addr); got != "one" {
		t.Fatalf("first instance answers %q after the failed starts", got)
	}
	if pid, err := pidfile.Read(filepath.Join(dir, "vipgate.pid")); err != nil || pid != first.cmd.Process.Pid {
		t.Fatalf("pid file after the failed starts: %d %v", pid, err)
	}
}

// SIGUSR1 when the log directory is gone: the errors are logged, and the
// log must not then claim the opposite ("log files reopened").
func TestSIGUSR1FailedReopenIsNotReportedAsDone(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	backend := echoBackend(t, 0)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "logs")
	cfg = strings.Replace(cfg, `access_log = "off"`, fmt.Sprintf("access_log = %q\nerror_log = %q", logs+"/access.log", logs+"/error.log"), 1)
	n := startNode(t, writeFile(t, dir, "v.toml", cfg), addr)
	if err := os.Rename(logs, logs+".old"); err != nil {
		t.Fatal(err)
	}
	n.signal(syscall.SIGUSR1)
	var text string
	waitFor(t, 3*time.Second, func() bool {
		b, _ := os.ReadFile(logs + ".old/error.log")
		text = string(b)
		return strings.Contains(text, "reopen access log")
	})
	time.Sleep(200 * time.Millisecond)
	b, _ := os.ReadFile(logs + ".old/error.log")
	text = string(b)
	if strings.Contains(text, "log files reopened") {
		t.Fatalf("both reopens failed, yet the log says they were done:\n%s", text)
	}
}

// 20 SIGHUPs in 100 ms, each after a new version of the file, under light
// traffic: nothing is lost and the last file is the one in force.
func TestSIGHUPStormEndsOnTheLastFile(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfgPath := writeFile(t, dir, "v.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "g0"))
	n := startNode(t, cfgPath, addr)
	stop := make(chan struct{})
	clients := []*rawClient{{addr: addr, keepAlive: true}, {addr: addr}}
	done := make(chan struct{})
	for _, c := range clients {
		c := c
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.do()
			}
		}()
	}
	for i := 1; i <= 20; i++ {
		tmp := writeFile(t, dir, "v.toml.tmp", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", fmt.Sprintf("g%d", i)))
		if err := os.Rename(tmp, cfgPath); err != nil {
			t.Fatal(err)
		}
		n.signal(syscall.SIGHUP)
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, 10*time.Second, func() bool { return get(t, addr) == "g20" })
	time.Sleep(time.Second)
	close(stop)
	for range clients {
		<-done
	}
	for _, c := range clients {
		if c.failed.Load() > 0 {
			t.Errorf("client keepAlive=%v: %d failed of %d: %v", c.keepAlive, c.failed.Load(), c.ok.Load()+c.failed.Load(), c.errors)
		}
	}
	if got := get(t, addr); got != "g20" {
		t.Fatalf("final state %q, want g20", got)
	}
	t.Logf("reloads: %d", strings.Count(n.stderr.String(), "\"reloaded\"")+strings.Count(n.stderr.String(), "reloaded\t"))
}

// SIGTERM while reloads are being applied: the stop is graceful and exits 0
// with in-flight requests answered.
func TestSIGTERMDuringReloads(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 200*time.Millisecond)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfgPath := writeFile(t, dir, "v.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "g0"))
	n := startNode(t, cfgPath, addr)
	results := make(chan bool, 4)
	for i := 0; i < 4; i++ {
		go func() { c := &rawClient{addr: addr}; _, ok := c.do(); results <- ok }()
	}
	time.Sleep(50 * time.Millisecond)
	for i := 0; i < 5; i++ {
		n.signal(syscall.SIGHUP)
	}
	n.signal(syscall.SIGTERM)
	for i := 0; i < 3; i++ {
		n.signal(syscall.SIGHUP)
	}
	if code := n.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for i := 0; i < 4; i++ {
		if !<-results {
			t.Errorf("an in-flight request failed")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "vipgate.pid")); !os.IsNotExist(err) {
		t.Errorf("pid file left: %v", err)
	}
}

// A deploy tool (or `cat > vipgate.toml`, scp, an editor saving in place)
// is still writing the file when the reload comes: the first half of a
// two-server file parses (TOML has no closing brackets) and validates, so
// the reload applies it and closes the second server's listener, although
// the file the operator wrote is complete and valid a moment later. nginx
// refuses the half file ("unexpected end of file, expecting }") and keeps
// serving both; vipgate must not close a listener because of a file read
// half-way through being written.
func TestReloadOfAFileStillBeingWrittenKeepsListeners(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	port, port2 := freePort(t), freePort(t)
	addr2 := fmt.Sprintf("127.0.0.1:%d", port2)
	second := fmt.Sprintf("\n[[http]]\nlisten = [%q]\n[[http.location]]\npath = \"/\"\nproxy_pass = \"http://app\"\nproxy_set_header = { X-Generation = \"%%s\" }\n", addr2)
	full := func(gen string) string {
		return fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", gen) + fmt.Sprintf(second, gen)
	}
	cfgPath := writeFile(t, dir, "v.toml", full("one"))
	n := startNode(t, cfgPath, addr2) // the first server's listener may be up before this one
	if got := get(t, addr2); got != "one" {
		t.Fatalf("second server: %q", got)
	}
	next := full("two")
	half := next[:strings.LastIndex(next, "[[http]]")]
	f, err := os.OpenFile(cfgPath, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(half); err != nil {
		t.Fatal(err)
	}
	n.signal(syscall.SIGHUP) // e.g. a path unit / inotify watcher reacting to the first write
	time.Sleep(100 * time.Millisecond)
	if _, err := f.WriteString(next[len(half):]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	time.Sleep(300 * time.Millisecond)
	if out, errOut, code := runBinary(t, "-t", "--no-host", "-c", cfgPath); code != 0 {
		t.Fatalf("the file as written is invalid? %s%s", out, errOut)
	}
	c := &rawClient{addr: addr2}
	if _, ok := c.do(); !ok {
		t.Fatalf("the second server (%s) stopped serving after a reload that read the file half-written: %v\n(the complete file has both servers; log: %s)", addr2, c.errors, lastLines(n.stderr.String(), 3))
	}
}

func lastLines(s string, k int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > k {
		lines = lines[len(lines)-k:]
	}
	return strings.Join(lines, "\n")
}

// access_log = "stdout" is the default. When whatever reads vipgate's
// stdout goes away (`vipgate -c f | logger` and logger restarts, a
// container log pipe, supervisord), the next access-log line gets EPIPE
// and the Go runtime's default SIGPIPE kills the process: no log line, pid
// file left behind, VIPs left as by kill -9. nginx and keepalived ignore
// SIGPIPE and keep serving (the lost log lines are the only loss).
func TestClosedStdoutPipeDoesNotKillTheProcess(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := strings.Replace(fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "one"), `access_log = "off"`, `access_log = "stdout"`, 1)
	cfgPath := writeFile(t, dir, "v.toml", cfg)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	cmd := exec.Command(testutil.Binary(t), "-c", cfgPath)
	cmd.Stdout, cmd.Stderr = w, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
	})
	waitFor(t, 10*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	r.Close() // the log reader goes away
	for i := 0; i < 3; i++ {
		c := &rawClient{addr: addr}
		c.do()
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-done:
		t.Fatalf("vipgate died when its stdout reader went away: %v (pid file left: %v)\nstderr:\n%s",
			cmd.ProcessState, fileExists(filepath.Join(dir, "vipgate.pid")), lastLines(stderr.String(), 3))
	case <-time.After(300 * time.Millisecond):
	}
	if got := get(t, addr); got != "one" {
		t.Fatalf("after the stdout reader went away: %q", got)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
