package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vipgate/vipgate/internal/testutil"
)

// TestSelfCheckDescriptorExhaustion runs vipgate as systemd would
// (NOTIFY_SOCKET, WATCHDOG_USEC), then makes its accept loop fail with
// EMFILE: /healthz must turn 503 and the watchdog must stop being fed, and
// both must recover once descriptors are free again.
func TestSelfCheckDescriptorExhaustion(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	port, adminPort := freePort(t), freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "fd")
	cfg = strings.Replace(cfg, `admin_listen = ""`, fmt.Sprintf(`admin_listen = "127.0.0.1:%d"`, adminPort), 1)
	cfgPath := writeFile(t, dir, "v.toml", cfg)

	sockPath := filepath.Join(dir, "notify.sock")
	notifySock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notifySock.Close()
	messages := make(chan string, 100)
	go func() {
		buf := make([]byte, 512)
		for {
			n, err := notifySock.Read(buf)
			if err != nil {
				close(messages)
				return
			}
			messages <- string(buf[:n])
		}
	}()

	cmd := exec.Command(testutil.Binary(t), "-c", cfgPath)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath, "WATCHDOG_USEC=200000")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("vipgate output:\n%s", out.String())
		}
	}()

	expect := func(want string, within time.Duration) {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case m := <-messages:
				if strings.Contains(m, want) {
					return
				}
			case <-deadline:
				t.Fatalf("no %q from vipgate on NOTIFY_SOCKET within %s", want, within)
			}
		}
	}
	expect("READY=1", 5*time.Second)
	expect("WATCHDOG=1", 2*time.Second)
	healthz := func() int {
		c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", adminPort))
		if err != nil {
			return -1
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := healthz(); code != 200 {
		t.Fatalf("/healthz before exhaustion = %d", code)
	}

	// Lower the process's descriptor limit to what it uses now plus a few,
	// then open more connections than that.
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var old unix.Rlimit
	if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Fatal(err)
	}
	// Only the soft limit: raising a lowered hard limit needs CAP_SYS_RESOURCE.
	limit := unix.Rlimit{Cur: uint64(len(fds) + 4), Max: old.Max}
	if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_NOFILE, &limit, nil); err != nil {
		t.Skipf("cannot lower the child's descriptor limit: %v", err)
	}
	var clients []net.Conn
	for i := 0; i < 30; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			clients = append(clients, c)
		}
	}
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(out.String(), "too many open files") })
	// The admin API itself may not get a descriptor now; read the verdict
	// from the log and from the watchdog instead.
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(out.String(), "not feeding the systemd watchdog") })
	for len(messages) > 0 {
		<-messages
	}
	select {
	case m := <-messages:
		if strings.Contains(m, "WATCHDOG=1") {
			t.Fatalf("watchdog fed while the listener cannot accept")
		}
	case <-time.After(500 * time.Millisecond):
	}

	for _, c := range clients {
		c.Close()
	}
	if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_NOFILE, &old, nil); err != nil {
		t.Fatal(err)
	}
	// A new connection lets the accept loop succeed again.
	waitFor(t, 5*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return healthz() == 200
	})
	expect("WATCHDOG=1", 3*time.Second)
}
