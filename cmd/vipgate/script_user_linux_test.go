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

// TestScriptUserIgnoredWhenNotRoot runs vipgate the way
// examples/systemd/vipgate.service does: as an unprivileged user holding
// its capabilities as ambient ones, plus CAP_SETUID/CAP_SETGID, which
// vipgate itself demands at start when global.script_user differs from
// its own user. The track script must then run as script_user, without
// the daemon's capabilities. It runs as the daemon's own user with
// CAP_SETUID, CAP_SETGID, CAP_NET_ADMIN and CAP_NET_RAW in its effective
// set: any script (and anything it starts) can become root.
func TestScriptUserIgnoredWhenNotRoot(t *testing.T) {
	setpriv := testutil.RequireCommand(t, "setpriv")
	lab := netlab.New(t, netlab.Options{Hosts: 1})
	h := lab.Hosts[0]
	daemonUser, err := user.Lookup("daemon")
	if err != nil {
		t.Skip("no user daemon")
	}

	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "out")
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
	rec := filepath.Join(out, "rec.txt")
	script := filepath.Join(dir, "rec.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$(id -u) $(awk '/^CapEff/{print $2}' /proc/self/status)\" >> "+rec+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "vg.toml")
	if err := os.WriteFile(conf, []byte(`[global]
node_name = "np"
pid_file = "`+filepath.Join(out, "vg.pid")+`"
admin_listen = ""
access_log = "off"
script_user = "daemon"
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
	caps := "+net_admin,+net_raw,+setuid,+setgid"
	p := h.Start(t, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps="+caps, "--ambient-caps="+caps, bin, "-c", conf)
	defer p.Kill()

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
	if t.Failed() && !strings.Contains(p.Output(), "script_user") {
		t.Errorf("and vipgate logged nothing about script_user not being applied")
	}
}
