// Package pidfile writes the process's pid file and proves, with a lock
// held on it for the life of the process, that the pid in it is a running
// vipgate: a pid file left by a crash (kill -9, the OOM killer) names a
// pid the kernel may since have given to an unrelated process, which
// `vipgate -s stop` must not signal and which must not keep vipgate from
// starting.
package pidfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Read returns the pid recorded in path.
func Read(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: no pid in it", path)
	}
	return pid, nil
}

// ErrStale is returned by Running for a pid file no running vipgate holds.
var ErrStale = errors.New("no running vipgate holds it (a stale pid file, left by a crash?)")

// Running returns the pid of the vipgate that holds path: the pid file
// exists and a process holds its lock. A pid file nobody holds is
// ErrStale, whatever process its pid now names.
func Running(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	pid, err := Read(path)
	if err != nil {
		return 0, err
	}
	if held, err := locked(f); err != nil {
		return 0, fmt.Errorf("pid file %s: %w", path, err)
	} else if !held {
		return 0, fmt.Errorf("pid file %s names pid %d, but %w", path, pid, ErrStale)
	}
	// The lock must be the named process's own: whoever can write the
	// file's directory could otherwise name any pid and hold a lock.
	if holders, err := lockHolders(f); err == nil && !slices.Contains(holders, pid) {
		return 0, fmt.Errorf("pid file %s names pid %d, but the lock on it is held by pid %v: not a vipgate's pid file", path, pid, holders)
	}
	return pid, nil
}

// lockHolders lists the pids holding a flock on f, from /proc/locks
// ("1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF").
func lockHolders(f *os.File) ([]int, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, errors.New("no inode")
	}
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 6 || fields[1] != "FLOCK" {
			continue
		}
		dev := strings.Split(fields[5], ":")
		if len(dev) != 3 || dev[2] != strconv.FormatUint(sys.Ino, 10) {
			continue
		}
		if pid, err := strconv.Atoi(fields[4]); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// locked reports whether another open file description holds a lock on f.
func locked(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false, nil
}

// File is a pid file this process holds.
type File struct {
	path string
	f    *os.File // the pid file, locked while the process runs
}

// Claim writes our pid to path and holds a lock on it until Release,
// unless another vipgate holds it. A pid file no process holds (stale) is
// taken over. The new file replaces the old one whole (rename), so a
// reader never sees it half-written; the old one is locked first, so two
// instances starting together cannot both claim it.
func Claim(path string) (*File, error) {
	old, err := lockCurrent(path)
	if err != nil {
		return nil, err
	}
	defer old.Close() // the old inode's lock goes with it, once replaced
	tmp, err := os.CreateTemp(filepath.Dir(path), ".vipgate-pid-*")
	if err != nil {
		return nil, fmt.Errorf("pid file %s: %w", path, err)
	}
	werr := syscall.Flock(int(tmp.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if werr == nil {
		_, werr = fmt.Fprintf(tmp, "%d\n", os.Getpid())
	}
	if werr == nil {
		werr = tmp.Chmod(0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return nil, fmt.Errorf("pid file %s: %w", path, werr)
	}
	return &File{path: path, f: tmp}, nil
}

// lockCurrent opens path (creating it empty if missing) and locks it. A
// file another instance replaced between the open and the lock is opened
// again: the lock must be on the file now at path.
func lockCurrent(path string) (*os.File, error) {
	for range 10 {
		f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("pid file %s: %w", path, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			_ = f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				pid, _ := Read(path)
				return nil, fmt.Errorf("another vipgate (pid %d) is running with pid file %s; stop it first or use another global.pid_file", pid, path)
			}
			return nil, fmt.Errorf("pid file %s: lock: %w", path, err)
		}
		held, herr := f.Stat()
		now, nerr := os.Stat(path)
		if herr == nil && nerr == nil && os.SameFile(held, now) {
			return f, nil
		}
		_ = f.Close()
	}
	return nil, fmt.Errorf("pid file %s: keeps being replaced; is another vipgate starting?", path)
}

// Release deletes the pid file if it still names this process, then lets
// go of its lock.
func (p *File) Release() {
	if pid, err := Read(p.path); err == nil && pid == os.Getpid() {
		_ = os.Remove(p.path)
	}
	_ = p.f.Close()
}
