// Package pidfile writes the process's pid file atomically and refuses to
// start a second instance while the first one is alive.
package pidfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// Alive reports whether a process with pid exists.
func Alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Claim writes our pid to path unless another live process holds it. A pid
// file whose process is gone (stale, after a crash) is taken over.
func Claim(path string) error {
	if pid, err := Read(path); err == nil && pid != os.Getpid() && Alive(pid) {
		return fmt.Errorf("another vipgate (pid %d) is running with pid file %s; stop it first or use another global.pid_file", pid, path)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".vipgate-pid-*")
	if err != nil {
		return fmt.Errorf("pid file %s: %w", path, err)
	}
	_, werr := fmt.Fprintf(tmp, "%d\n", os.Getpid())
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp.Name(), 0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("pid file %s: %w", path, werr)
	}
	return nil
}

// Remove deletes path if it still names this process.
func Remove(path string) {
	if pid, err := Read(path); err == nil && pid == os.Getpid() {
		_ = os.Remove(path)
	}
}
