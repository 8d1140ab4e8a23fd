package main

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// The daemon runs Go's runtime monitor thread SCHED_BATCH, so that its
// wake-ups do not preempt the threads serving traffic (internal/sysmon),
// and leaves every other thread as it started.
func TestDaemonRunsTheRuntimeMonitorBatch(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	port := freePort(t)
	cfgPath := writeFile(t, dir, "v.toml", fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "x"))
	n := startNode(t, cfgPath, fmt.Sprintf("127.0.0.1:%d", port))
	pid := n.cmd.Process.Pid
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var batch []int
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		a, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			continue // the thread ended
		}
		switch a.Policy {
		case unix.SCHED_BATCH:
			batch = append(batch, tid)
		case unix.SCHED_NORMAL:
		default:
			t.Errorf("thread %d runs policy %d", tid, a.Policy)
		}
	}
	if len(batch) != 1 || batch[0] == pid {
		t.Fatalf("SCHED_BATCH threads %v of %d; want exactly one, the runtime monitor (not the main thread %d)", batch, len(entries), pid)
	}
}
