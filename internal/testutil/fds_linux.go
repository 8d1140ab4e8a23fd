package testutil

import (
	"os"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// HighestFD is the highest descriptor number open in the process, not
// counting the one that lists them.
func HighestFD(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	highest := -1
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil {
			continue // the directory's own descriptor, closed by now
		}
		highest = max(highest, fd)
	}
	return highest
}

// LeaveDescriptorNumbers lowers RLIMIT_NOFILE so that exactly n more
// descriptors can be opened, and returns what restores it (also run at
// cleanup). The limit bounds the descriptor number, not the count, so the
// free numbers below the highest one in use are filled first (with
// /dev/null, closed at cleanup).
func LeaveDescriptorNumbers(t testing.TB, n int) (restore func()) {
	t.Helper()
	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	var fillers []int
	t.Cleanup(func() {
		for _, fd := range fillers {
			unix.Close(fd)
		}
	})
	highest := HighestFD(t)
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if fd > highest {
			unix.Close(fd)
			break
		}
		fillers = append(fillers, fd)
	}
	lowered := orig
	lowered.Cur = uint64(highest + 1 + n)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lowered); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	restore = func() { once.Do(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &orig) }) }
	t.Cleanup(restore)
	return restore
}
