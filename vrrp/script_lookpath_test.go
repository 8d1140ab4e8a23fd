package vrrp

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// `vipgate -t` (config/host.go) finds a bare script name in vipgate's own
// PATH (exec.LookPath), but runScript looks only in the fixed scriptPATH:
// a script in /opt/tool/bin or ~/bin, on the operator's PATH, passes -t
// and then fails at every run ("not found in /usr/local/sbin:..."); the
// track script never succeeds and the node stays in FAULT.
func TestScriptBareNameSamePATHAsCheck(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vipgate-check-ok"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	if _, err := exec.LookPath("vipgate-check-ok"); err != nil {
		t.Fatalf("setup: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := runScript(ctx, "vipgate-check-ok", nil, ""); err != nil {
		t.Fatalf(`script "vipgate-check-ok" (accepted by vipgate -t: found in PATH %s): %v; want it run`, dir, err)
	}
}
