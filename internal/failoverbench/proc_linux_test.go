package failoverbench

import (
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/vipgate/vipgate/internal/netlab"
)

// killTree stops p and every descendant at once with SIGKILL, by PID: the
// parent is stopped first so it can neither respawn a child (keepalived,
// nginx) nor have its children clean up on its death.
func killTree(p *netlab.Process) {
	if p == nil || p.Cmd.Process == nil {
		return
	}
	pid := p.Cmd.Process.Pid
	if p.Signal(syscall.SIGSTOP) == nil {
		for _, c := range descendants(pid) {
			syscall.Kill(c, syscall.SIGKILL)
		}
	}
	p.Kill()
}

// descendants lists the children of pid, their children, and so on.
func descendants(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
				out = append(out, descendants(c)...)
			}
		}
	}
	return out
}

func countFDs(pid int) int {
	ents, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	return len(ents)
}

func exec(name string, args ...string) (string, error) {
	out, err := osexec.Command(name, args...).CombinedOutput()
	return string(out), err
}
