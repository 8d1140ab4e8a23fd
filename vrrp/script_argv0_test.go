package vrrp

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A root script reached through a symbolic link runs by the path as
// written, not its target: multi-call programs pick what they do by their
// name. keepalived's classic `script "/usr/bin/pidof nginx"` runs
// /usr/sbin/killall5 on Debian (pidof -> killall5), which, called
// killall5, prints its usage and fails: the track script would fail and
// the node give its VIP away. The same for busybox applets and for any
// script that tests $0.
func TestRootScriptThroughSymlinkKeepsItsName(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a script that runs as root)")
	}
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	// A multi-call program, as killall5/pidof or busybox: it does what its
	// name says; called by another name it fails.
	multi := filepath.Join(base, "multicall")
	if err := os.WriteFile(multi, []byte("#!/bin/sh\ncase \"$(basename \"$0\")\" in healthy) exit 0 ;; *) echo \"called as $0\" >&2; exit 1 ;; esac\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "healthy") // root's link in root's directory
	if err := os.Symlink("multicall", link); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := runScript(ctx, link, nil, ""); err != nil {
		t.Fatalf("script %s (a root-owned link to a multi-call program, as /usr/bin/pidof -> /usr/sbin/killall5): %v; want it run under the name written (exit 0)", link, err)
	}
}
