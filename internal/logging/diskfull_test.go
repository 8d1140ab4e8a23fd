package logging

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// When the error log's disk is full, each lost line makes zap print a
// "write error: ... no space left on device" line to stderr, which under
// systemd is the journal: a dead backend under load (one warn line per
// request) then floods the journal with one line per request too, on the
// very host whose disk is already full. nginx notes ENOSPC and skips error
// log writes for a second; the access log here already reports "lines are
// being lost" once per outage. The error log should do the same.
func TestFullDiskErrorLogDoesNotFloodStderr(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	stderrFile, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = stderrFile
	l, err := New(Options{Level: "info", Format: "console", Path: "/dev/full"})
	os.Stderr = saved
	if err != nil {
		t.Fatal(err)
	}
	const lines = 1000
	for range lines {
		l.Warn("upstream request failed")
	}
	_ = stderrFile.Close()
	out, _ := os.ReadFile(stderrFile.Name())
	n := strings.Count(string(out), "\n")
	if n > 10 {
		first, _, _ := strings.Cut(string(out), "\n")
		t.Errorf("%d error log lines lost to a full disk printed %d lines on stderr (want a handful: one per outage); first: %s", lines, n, first)
	}
}
