package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vipgate/vipgate/internal/pidfile"
	"github.com/vipgate/vipgate/internal/testutil"
)

// `vipgate -s reload` signals the pid in the pid file: sent the moment the
// file appears, SIGHUP must not end the process (its default action) but
// be handled once it has started.
func TestSIGHUPAsSoonAsThePidFileExists(t *testing.T) {
	bin := testutil.Binary(t)
	backend := echoBackend(t, 0)
	port := freePort(t)
	const runs = 10
	killed := 0
	for i := 0; i < runs; i++ {
		dir := t.TempDir()
		cfgPath := writeFile(t, dir, "v.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "1s", "x"))
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE|unix.IN_CREATE); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-c", cfgPath)
		var out syncBuffer
		cmd.Stderr, cmd.Stdout = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		buf := make([]byte, 4096)
		pidPath := filepath.Join(dir, "vipgate.pid")
		for {
			if n, err := unix.Read(fd, buf); err != nil || n <= 0 {
				break
			}
			if pid, err := pidfile.Read(pidPath); err == nil && pid == cmd.Process.Pid {
				_ = syscall.Kill(pid, syscall.SIGHUP)
				break
			}
		}
		unix.Close(fd)
		select {
		case err := <-done:
			killed++
			t.Logf("run %d: vipgate exited: %v\n%s", i, err, out.String())
		case <-time.After(700 * time.Millisecond):
			_ = cmd.Process.Signal(syscall.SIGQUIT)
			<-done
		}
	}
	if killed > 0 {
		t.Fatalf("%d of %d starts ended by a SIGHUP sent as soon as the pid file existed", killed, runs)
	}
}

// TOML has no closing brackets: a file emptied, or cut short at a table
// boundary by an editor or a deploy tool writing in place, parses. A
// reload with it must be refused, not close every listener.
func TestReloadRefusesAnEmptyOrCutFile(t *testing.T) {
	for name, cut := range map[string]func(string) string{
		"empty":               func(string) string { return "" },
		"cut before [[http]]": func(f string) string { return f[:strings.Index(f, "[[http]]")] },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			backend := echoBackend(t, 0)
			port := freePort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			full := fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "1s", "one")
			cfgPath := writeFile(t, dir, "v.toml", full)
			n := startNode(t, cfgPath, addr)
			writeFile(t, dir, "v.toml", cut(full))
			n.signal(syscall.SIGHUP)
			waitFor(t, 5*time.Second, func() bool { return strings.Contains(n.stderr.String(), "nothing to serve") })
			if got := get(t, addr); got != "one" {
				t.Fatalf("after a reload with the file %s: %q, want the old configuration serving", name, got)
			}
		})
	}
}
