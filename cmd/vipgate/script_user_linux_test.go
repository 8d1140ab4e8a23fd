package main

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/netlab"
	"github.com/vipgate/vipgate/internal/testutil"
)

// unprivileged runs vipgate in a lab host the way
// examples/systemd/vipgate.service does: as uid 65534 holding caps as
// ambient capabilities, with one VRRP instance tracking a script (body,
// given a directory everyone may write, out), run as scriptUser; path,
// when set, is vipgate's PATH.
func unprivileged(t *testing.T, body func(out string) string, scriptUser, caps, path string) (p *netlab.Process, out string) {
	t.Helper()
	setpriv := testutil.RequireCommand(t, "setpriv")
	lab := netlab.New(t, netlab.Options{Hosts: 1})
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out = filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o1777); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "vipgate")
	data, err := os.ReadFile(testutil.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "check.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"+body(out)+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "vg.toml")
	if err := os.WriteFile(conf, []byte(`[global]
node_name = "np"
pid_file = "`+filepath.Join(out, "vg.pid")+`"
admin_listen = ""
access_log = "off"
script_user = "`+scriptUser+`"
[vrrp_script.chk]
script = "`+script+`"
interval = "200ms"
weight = -10
[[vrrp]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = 100
virtual_ipaddress = ["192.0.2.50/24"]
track_script = ["chk"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=" + caps, "--ambient-caps=" + caps, bin, "-c", conf}
	if path != "" {
		args = append([]string{"PATH=" + path}, args...)
	}
	p = lab.Hosts[0].Start(t, "/usr/bin/env", args...)
	t.Cleanup(p.Kill)
	return p, out
}

// A non-root vipgate (the shipped unit: an unprivileged user with its
// capabilities as ambient ones, plus CAP_SETUID/CAP_SETGID for a
// script_user of its own) runs track scripts as script_user and without
// its capabilities: they ran as its own user with SETUID, SETGID,
// NET_ADMIN and NET_RAW effective, so any script could make itself root.
func TestScriptUserAppliedWhenNotRoot(t *testing.T) {
	daemonUser, err := user.Lookup("daemon")
	if err != nil {
		t.Skip("no user daemon")
	}
	p, out := unprivileged(t, func(out string) string {
		return `echo "$(id -u) $(awk '/^CapEff/{print $2}' /proc/self/status)" >> ` + filepath.Join(out, "rec.txt")
	}, "daemon", "+net_admin,+net_raw,+setuid,+setgid", "")
	rec := filepath.Join(out, "rec.txt")
	var line string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if b, err := os.ReadFile(rec); err == nil && strings.Contains(string(b), "\n") {
			line = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
			break
		}
	}
	if line == "" {
		t.Fatalf("track script never ran; vipgate output:\n%s", p.Output())
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		t.Fatalf("script wrote %q", line)
	}
	if f[0] != daemonUser.Uid {
		t.Errorf("track script ran as uid %s, want script_user daemon (uid %s)", f[0], daemonUser.Uid)
	}
	if strings.Trim(f[1], "0") != "" {
		t.Errorf("track script ran with effective capabilities %s (want none)", f[1])
	}
}

// Without setpriv (a busybox-based image, a PATH without /usr/bin), a
// non-root vipgate with scripts refuses to start and says why: it started,
// then every script failed and the node went FAULT (on a pair, both).
func TestNetnsMissingSetprivRefusedAtStart(t *testing.T) {
	p, _ := unprivileged(t, func(string) string { return "exit 0" }, "nobody", "+net_admin,+net_raw", "/nonexistent")
	exited := p.Wait(3*time.Second) == nil || !strings.Contains(p.Output(), "vipgate started")
	log := p.Output()
	if strings.Contains(log, "to\": \"FAULT") || !exited {
		t.Fatalf("no setpriv in PATH: vipgate started anyway, and its script check fails at run time (node FAULT: %v):\n%s",
			strings.Contains(log, "to\": \"FAULT"), log)
	}
	if !strings.Contains(log, "setpriv") {
		t.Errorf("vipgate refused to start without saying setpriv is missing:\n%s", log)
	}
}
