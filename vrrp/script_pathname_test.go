package vrrp

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// The configuration accepts a script whose program is a bare name found
// in PATH (config/host.go's script check: keepalived's `script "pidof
// nginx"` or `script "true"`), but runScript stats that name relative to
// the working directory (checkScriptFile, then checkRootScript): ENOENT,
// every run fails, the track script never succeeds and the node stays in
// FAULT, with "stat pidof: no such file or directory" in the log.
func TestScriptFoundInPATHRuns(t *testing.T) {
	if _, err := exec.LookPath("true"); err != nil {
		t.Skip("no true(1) in PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := runScript(ctx, "true", nil, ""); err != nil {
		t.Fatalf(`script "true" (accepted by the configuration: found in PATH): %v; want it run`, err)
	}
}
