package vrrp_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/netlab"
	"github.com/vipgate/vipgate/internal/testutil"
	"golang.org/x/sys/unix"
)

// exhaustFDs lowers pid's soft RLIMIT_NOFILE to its lowest free
// descriptor number, so that its next open fails with EMFILE.
func exhaustFDs(t *testing.T, pid int) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		t.Fatal(err)
	}
	used := map[uint64]bool{}
	for _, e := range ents {
		if fd, err := strconv.ParseUint(e.Name(), 10, 64); err == nil {
			used[fd] = true
		}
	}
	var free uint64
	for used[free] {
		free++
	}
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Fatal(err)
	}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: free, Max: old.Max}, nil); err != nil {
		t.Fatal(err)
	}
}

// A master out of file descriptors (every open fails with EMFILE) still
// sees its links as they are, stays MASTER, and when it then goes to
// FAULT (a tracked interface goes down) advertises priority 0 on its open
// socket, so the backup takes over within Skew_Time, and removes its VIP
// at once through its netlink socket opened at start (the VIP's lifetime
// here is forever: nothing else would remove it).
func TestLabFaultOutOfFileDescriptors(t *testing.T) {
	testutil.RequireRoot(t)
	lab := netlab.New(t, netlab.Options{Hosts: 2})
	a, b := lab.Hosts[0], lab.Hosts[1]
	// The tracked interface: a veth pair inside a (no dummy module everywhere).
	a.MustRun(t, "ip", "link", "add", "vt0", "type", "veth", "peer", "name", "vt1")
	a.MustRun(t, "ip", "link", "set", "vt1", "up")
	a.MustRun(t, "ip", "link", "set", "vt0", "up")
	cfgA := fastConfig(200)
	cfgA.TrackInterfaces = []string{"vt0"}
	cfgA.VIPLifetime = 0
	na := startNode(t, a, cfgA)
	nb := startNode(t, b, fastConfig(100))
	waitSoleHolder(t, lab.Hosts, vip4, a, settle, 300*time.Millisecond)

	exhaustFDs(t, na.proc.Cmd.Process.Pid)
	t0 := time.Now()
	time.Sleep(5 * 100 * time.Millisecond) // link polls
	if tr := lastTransition(na.proc.Output()); tr != "BACKUP MASTER" {
		t.Fatalf("out of file descriptors, the master's last transition is %q, want it still MASTER", tr)
	}
	if hs := holders(lab.Hosts, vip4); len(hs) != 1 || hs[0] != a {
		t.Fatalf("out of file descriptors, %v is held by %d hosts, want %s alone", vip4, len(hs), a.NS)
	}

	t1 := time.Now()
	a.MustRun(t, "ip", "link", "set", "vt0", "down")
	took := nb.waitTransition(t, t1, "BACKUP", "MASTER", settle)
	if limit := skew(100*time.Millisecond, 100) + 100*time.Millisecond; took > limit+slack {
		t.Errorf("takeover from a master out of file descriptors took %v, want at most Skew_Time + one link poll = %v", took, limit)
	}
	if _, ok := na.transitionAfter(t0, "MASTER", "FAULT"); !ok {
		t.Fatal("the master did not go to FAULT")
	}
	waitSoleHolder(t, lab.Hosts, vip4, b, time.Second, 300*time.Millisecond)
	if err := na.proc.Wait(0); err != os.ErrDeadlineExceeded {
		t.Fatalf("node exited: %v", err)
	}
}
