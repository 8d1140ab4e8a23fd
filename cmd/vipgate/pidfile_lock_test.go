package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestSignalCommandChecksWhoHoldsTheLock: `vipgate -s` trusts any
// process that holds a lock on the pid file as proof that the pid written
// in it is a running vipgate. Whoever can write the pid file's directory
// (with the shipped unit: /run/vipgate, owned by the vipgate user, so
// the proxy process itself or a script it runs) writes another pid there
// and holds a lock with a process of its own; the operator's
// `vipgate -s reload|stop` (as root) then signals that pid: SIGHUP or
// SIGTERM to any process on the host. The holder of the lock (listed in
// /proc/locks) should be the pid in the file, and that pid a vipgate.
func TestSignalCommandChecksWhoHoldsTheLock(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	cfgPath := writeFile(t, dir, "v.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), freePort(t), "5s", "x"))
	victim, alive := unrelatedProcess(t)
	pidPath := writeFile(t, dir, "vipgate.pid", strconv.Itoa(victim)+"\n")
	holder := exec.Command("flock", "-x", pidPath, "sleep", "60") // the lock, held by someone else
	if err := holder.Start(); err != nil {
		t.Skipf("flock: %v", err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	time.Sleep(200 * time.Millisecond)

	out, errOut, code := runBinary(t, "-s", "reload", "-c", cfgPath)
	if !alive() {
		t.Errorf("vipgate -s reload signalled pid %d (a sleep that is not vipgate and holds no lock; flock pid %d holds it): it is dead; exit %d %q",
			victim, holder.Process.Pid, code, out+errOut)
	}
	_ = filepath.Base(pidPath)
}
