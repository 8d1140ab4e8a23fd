package vrrp

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRootScriptChangeableByOthersRefused: with script_user = "root"
// (usual for notify scripts migrated from keepalived, which restart
// services or change routes), a script that another user can change is
// a way for that user to run commands as root. runScript refuses files
// writable by everyone or a non-root group, but runs as root a file owned
// by an unprivileged user, or one in a directory an unprivileged user
// owns (who can replace it by a rename). keepalived's
// enable_script_security refuses both: every path component must be
// writable by root only.
func TestRootScriptChangeableByOthersRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
	const nobody = 65534
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(base, "ran")
	body := []byte("#!/bin/sh\ntouch " + marker + "\n")

	ownedByUser := filepath.Join(base, "owned.sh")
	if err := os.WriteFile(ownedByUser, body, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(ownedByUser, nobody, nobody); err != nil {
		t.Fatal(err)
	}

	userDir := filepath.Join(base, "userdir")
	if err := os.Mkdir(userDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(userDir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	inUserDir := filepath.Join(userDir, "check.sh")
	if err := os.WriteFile(inUserDir, body, 0o755); err != nil { // root:root 0755
		t.Fatal(err)
	}

	// A link in that directory to a root-owned script in a root-owned
	// one: the target passes, but uid 65534 can repoint the link at any
	// time (keepalived checks the path as written too).
	rootScript := filepath.Join(base, "real.sh")
	if err := os.WriteFile(rootScript, body, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(userDir, "link.sh")
	if err := os.Symlink(rootScript, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ what, path string }{
		{"a script owned by uid 65534 (mode 0755)", ownedByUser},
		{"a root-owned script in a directory owned by uid 65534", inUserDir},
		{"a link owned by uid 65534, in its directory, to a root-owned script", link},
	} {
		os.Remove(marker)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := runScript(ctx, tc.path, nil, "root")
		cancel()
		_, statErr := os.Stat(marker)
		if !errors.Is(err, errScriptRefused) || statErr == nil {
			t.Errorf("%s, script_user root: err %v, ran as root: %v; want it refused (that user could make root run anything)",
				tc.what, err, statErr == nil)
		}
	}
}
