package vrrp

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// checkRootScript resolves symlinks first and checks only the target's
// path. A configured script path that is a symlink in a directory an
// unprivileged user owns passes (the target is root's), although that
// user can point the link at any file of theirs at any time: the check
// and the exec (of the link, not of the checked target) race, and
// nothing stops the swap. keepalived's enable_script_security checks the
// path as written too.
func TestRootScriptSymlinkInUserDirRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
	const nobody = 65534
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(base, "ran")
	target := filepath.Join(base, "real.sh") // root:root 0755, in a root dir
	if err := os.WriteFile(target, []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	userDir := filepath.Join(base, "userdir")
	if err := os.Mkdir(userDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(userDir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(userDir, "check.sh")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := runScript(ctx, link, nil, "root")
	_, statErr := os.Stat(marker)
	if !errors.Is(err, errScriptRefused) {
		t.Fatalf("script_user root, script %s: a symlink owned by uid %d in a directory uid %d owns: err %v, ran as root: %v; want it refused (uid %d can repoint the link)",
			link, nobody, nobody, err, statErr == nil, nobody)
	}
}
