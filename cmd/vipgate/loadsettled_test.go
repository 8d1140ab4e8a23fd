package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// loadSettled waits while time.Since(mtime) < 250 ms. A file whose mtime
// is in the future (copied with its times kept from a host whose clock is
// ahead: rsync -t, cp -p, tar x, an Ansible copy; or the clock stepped
// back by NTP after the write) looks "being written" for the whole 3 s
// bound, on every reload: each SIGHUP blocks the signal loop (a SIGTERM
// waits too) and systemd sits in "reloading" for 3 s, though the file has
// not changed for a long time.
func TestLoadSettledFutureMtime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vipgate.toml")
	conf := "[global]\nadmin_listen = \"\"\n[[stream]]\nlisten = [\"127.0.0.1:27001\"]\nproxy_pass = \"127.0.0.1:27002\"\n"
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(10 * time.Minute)
	if err := os.Chtimes(path, future, future); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := loadSettled(path); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("reload of a file unchanged for a while (mtime 10 min ahead of the clock) waited %s; want it read at once (or after one quiet period)", took.Round(10*time.Millisecond))
	}
}
