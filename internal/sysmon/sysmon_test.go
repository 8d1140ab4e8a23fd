package sysmon

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// voluntarySwitches is each thread's count of voluntary context switches
// (one per sleep).
func voluntarySwitches(t *testing.T) map[int]int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[int]int{}
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := os.Open("/proc/self/task/" + e.Name() + "/status")
		if err != nil {
			continue // the thread ended
		}
		s := bufio.NewScanner(f)
		for s.Scan() {
			if v, ok := strings.CutPrefix(s.Text(), "voluntary_ctxt_switches:"); ok {
				counts[tid], _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		f.Close()
	}
	return counts
}

// The thread Thread names behaves as the runtime's monitor and no other
// thread does: after a moment with every P idle and no timer due, the
// first system call the scheduler is told of wakes it, and while a
// goroutine keeps a P busy it polls every 20 us.
func TestThreadIsTheRuntimeMonitor(t *testing.T) {
	tid, err := Thread()
	if err != nil {
		t.Fatal(err)
	}
	for try := 1; try <= 3; try++ {
		// Waiting on a pipe a child writes to later leaves every P idle
		// with no timer due: the monitor sleeps until a system call wakes it.
		cmd := exec.Command("sh", "-c", "sleep 0.2; echo x")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		before := voluntarySwitches(t)
		if _, err := out.Read(make([]byte, 8)); err != nil {
			t.Fatal(err)
		}
		_, _, _ = syscall.Syscall(syscall.SYS_GETPID, 0, 0, 0) // the scheduler is told: the monitor wakes
		for start := time.Now(); time.Since(start) < 20*time.Millisecond; {
			// a busy P keeps the monitor polling
		}
		after := voluntarySwitches(t)
		_ = cmd.Wait()
		busiest, most := 0, -1
		for id, n := range after {
			if d := n - before[id]; d > most {
				busiest, most = id, d
			}
		}
		if busiest == tid && most >= 10 {
			return
		}
		t.Logf("try %d: thread %d woke %d times, more than any other; Thread says %d (woke %d times)",
			try, busiest, most, tid, after[tid]-before[tid])
	}
	t.Fatalf("thread %d does not wake as the runtime's monitor does", tid)
}

// SetBatch makes the monitor SCHED_BATCH with its nice value kept, and
// leaves the threads that run goroutines as they were.
func TestSetBatchChangesTheMonitorOnly(t *testing.T) {
	tid, err := Thread()
	if err != nil {
		t.Fatal(err)
	}
	attr, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		t.Fatal(err)
	}
	if attr.Policy != unix.SCHED_NORMAL {
		t.Skipf("the monitor runs policy %d: the test runs under another policy", attr.Policy)
	}
	saved := *attr
	t.Cleanup(func() { _ = unix.SchedSetAttr(tid, &saved, 0) })
	attr.Nice = 3
	if err := unix.SchedSetAttr(tid, attr, 0); err != nil {
		t.Fatal(err)
	}
	got, err := SetBatch()
	if err != nil || got != tid {
		t.Fatalf("SetBatch = %d, %v; want %d", got, err, tid)
	}
	for id := range voluntarySwitches(t) {
		a, err := unix.SchedGetAttr(id, 0)
		if err != nil {
			continue // the thread ended
		}
		switch {
		case id == tid && (a.Policy != unix.SCHED_BATCH || a.Nice != 3):
			t.Errorf("monitor thread %d: policy %d nice %d; want SCHED_BATCH (%d), nice 3 kept", id, a.Policy, a.Nice, unix.SCHED_BATCH)
		case id != tid && a.Policy != unix.SCHED_NORMAL:
			t.Errorf("thread %d: policy %d; only the monitor may change", id, a.Policy)
		}
	}
	if again, err := SetBatch(); err != nil || again != tid {
		t.Errorf("second SetBatch = %d, %v; want %d and no error", again, err, tid)
	}
}

// Thread ids wrap at pid_max: the monitor's id may then be below the
// main thread's.
func TestFirstAfter(t *testing.T) {
	for _, c := range []struct {
		pid  int
		tids []int
		want int
		ok   bool
	}{
		{100, []int{103, 101, 107}, 101, true},
		{100, []int{103, 5, 101}, 101, true}, // later threads wrapped
		{4194300, []int{7, 3, 12}, 3, true},  // the monitor wrapped
		{100, nil, 0, false},
	} {
		if got, ok := firstAfter(c.pid, c.tids); got != c.want || ok != c.ok {
			t.Errorf("firstAfter(%d, %v) = %d, %v; want %d, %v", c.pid, c.tids, got, ok, c.want, c.ok)
		}
	}
}
