package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/netlab"
	"github.com/vipgate/vipgate/internal/testutil"
)

// A non-root vipgate now runs every script through setpriv (util-linux),
// looked up in PATH when the script is due. Where there is none (Alpine
// or busybox-based images, a PATH without /usr/bin), vipgate starts and
// `vipgate -t` passes, caps.Check says nothing, and then every track
// script "fails" (exec error) and pulls the node to FAULT; on a pair,
// both nodes: no VIP anywhere. A dependency known at start should be
// refused at start, as a missing capability is.
func TestNetnsMissingSetprivRefusedAtStart(t *testing.T) {
	setpriv := testutil.RequireCommand(t, "setpriv")
	lab := netlab.New(t, netlab.Options{Hosts: 1})
	h := lab.Hosts[0]
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o1777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(out, 0o1777)
	bin := filepath.Join(dir, "vipgate")
	data, err := os.ReadFile(testutil.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "ok.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "vg.toml")
	if err := os.WriteFile(conf, []byte(`[global]
node_name = "np"
pid_file = "`+filepath.Join(out, "vg.pid")+`"
admin_listen = ""
access_log = "off"
script_user = "nobody"
[vrrp_script.chk]
script = "`+script+`"
interval = "200ms"
[[vrrp]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = 100
version = 3
advert_int = "100ms"
virtual_ipaddress = ["192.0.2.50/24"]
track_script = ["chk"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	caps := "+net_admin,+net_raw"
	// vipgate runs as nobody (the script user: no CAP_SETUID needed), with
	// a PATH where no setpriv is.
	p := h.Start(t, "/usr/bin/env", "PATH="+out, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps="+caps, "--ambient-caps="+caps, bin, "-c", conf)
	defer p.Kill()
	exited := p.Wait(3*time.Second) == nil || !strings.Contains(p.Output(), "vipgate started")
	log := p.Output()
	if strings.Contains(log, "to\": \"FAULT") || !exited {
		t.Fatalf("no setpriv in PATH: vipgate started anyway, and its script check fails at run time (node FAULT: %v):\n%s",
			strings.Contains(log, "to\": \"FAULT"), log)
	}
}
