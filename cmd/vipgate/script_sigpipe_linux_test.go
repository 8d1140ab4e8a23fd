package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serve() now ignores SIGPIPE (signal.Ignore). An ignored signal stays
// ignored across fork and exec, so every track and notify script runs
// with SIGPIPE ignored: a writer whose reader went away gets EPIPE
// instead of dying quietly. Programs print "Broken pipe"/"I/O error" and
// exit with other codes, and a producer that does not stop on a write
// error (a shell loop: `while :; do echo up; done | head -n1`) runs until
// the script's timeout: the check fails, and the node goes FAULT.
// keepalived resets signal dispositions to default in the script's child.
func TestNetnsScriptsRunWithDefaultSIGPIPE(t *testing.T) {
	l := newHALab(t, 1)
	a := l.nodes[0]
	out := filepath.Join(l.dir, "sigign")
	script := filepath.Join(l.dir, "check.sh")
	body := fmt.Sprintf("#!/bin/sh\ngrep SigIgn /proc/self/status > %s\nwhile :; do echo up; done | head -n1 >/dev/null\n", out)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`[global]
node_name = "node-a"
pid_file = "%s/node-a.pid"
admin_listen = ""
access_log = "off"
shutdown_timeout = "1s"
script_user = "root"

[vrrp_script.chk]
script = %q
interval = "200ms"
timeout = "1s"

[[vrrp]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = 100
version = 3
advert_int = "100ms"
virtual_ipaddress = ["192.0.2.50/24"]
track_script = ["chk"]
`, l.dir, script)
	if err := os.WriteFile(a.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	a.proc = a.host.Start(t, l.bin, "-c", a.conf)
	deadline := time.Now().Add(5 * time.Second)
	var line string
	for {
		b, _ := os.ReadFile(out)
		if line = strings.TrimSpace(string(b)); line != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the check script never ran:\n%s", a.proc.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	mask, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "SigIgn:")), 16, 64)
	if err != nil {
		t.Fatal(line, err)
	}
	if mask&(1<<12) != 0 {
		t.Fatalf("a check script runs with SIGPIPE ignored (%s): a shell loop feeding head never ends\nvipgate log:\n%s", line, a.proc.Output())
	}
}
