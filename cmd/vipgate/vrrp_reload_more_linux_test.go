package main

// SIGHUP reloads of a running VRRP pair changing track_interface,
// preempt_delay, notify scripts, the interface, and renaming an instance.

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReloadTrackInterfaceAddRemove: a reload on the MASTER adding a
// track_interface that is down puts it in FAULT (the VIP goes to the
// BACKUP, never on both); a reload removing it takes it out of FAULT (and,
// preempting, it takes the VIP back).
func TestReloadTrackInterfaceAddRemove(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	a.host.MustRun(t, "ip", "link", "add", "dum0", "type", "veth", "peer", "name", "dum1") // down
	a.start(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60")})
	b.start(rlInst{name: "VI_1", vrid: 51, prio: 90, vips: o("60")})
	l.waitState(5*time.Second, o("60"), o())
	from := time.Now()
	before := len(a.proc.Output())
	a.reload(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60"), extra: "track_interface = [\"dum0\"]\n"})
	l.waitState(3*time.Second, o(), o("60"))
	l.check(from, "track_interface (down) added")
	out := a.proc.Output()[before:]
	if !strings.Contains(out, "FAULT") || !strings.Contains(out, "dum0") {
		t.Errorf("node-a: no FAULT / dum0 log line after adding a down track_interface:\n%s", out)
	}
	from = time.Now()
	before = len(a.proc.Output())
	a.reload(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60")})
	l.waitState(3*time.Second, o("60"), o())
	l.checkHandover(from, "track_interface removed")
	t.Logf("node-a after the removal:\n%s", a.proc.Output()[before:])
	// And added while the node is BACKUP, then brought up.
	from = time.Now()
	b.reload(rlInst{name: "VI_1", vrid: 51, prio: 90, vips: o("60"), extra: "track_interface = [\"dum0\"]\n"})
	time.Sleep(time.Second)
	l.check(from, "track_interface added on a BACKUP whose interface has no dum0", o("60"))
}

// TestReloadPreemptDelayLowered: node-b (120) waits out preempt_delay
// 30s under node-a (100). A reload lowering it to 1s: node-b takes over
// about 1s after it became BACKUP (keepalived 2.2.7 likewise: the delay
// counts from start-up).
func TestReloadPreemptDelayLowered(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	a.start(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60")})
	l.waitState(5*time.Second, o("60"), o())
	b.start(rlInst{name: "VI_1", vrid: 51, prio: 120, vips: o("60"), extra: "preempt_delay = \"30s\"\n"})
	time.Sleep(2 * time.Second)
	l.waitState(time.Second, o("60"), o())
	from := time.Now()
	b.reload(rlInst{name: "VI_1", vrid: 51, prio: 120, vips: o("60"), extra: "preempt_delay = \"1s\"\n"})
	l.waitState(3*time.Second, o(), o("60"))
	l.checkHandover(from, "preempt_delay lowered")
	t.Logf("took over %s after the reload", time.Since(from))
}

// TestReloadNotifyChanged: notify_master / notify_backup changed by a
// reload on both nodes: at the next transition the new scripts run, the
// old do not.
func TestReloadNotifyChanged(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		os.Chmod(d, 0o755)
	}
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	os.Chmod(out, 0o1777)
	t.Cleanup(func() { os.RemoveAll(out) })
	for _, name := range []string{"old", "new"} {
		p := filepath.Join(dir, name+".sh")
		if err := os.WriteFile(p, []byte("#!/bin/sh\necho \"$@\" >> "+out+"/"+name+"-$1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, 0o755)
	}
	notify := func(name string) string {
		s := filepath.Join(dir, name+".sh")
		return fmt.Sprintf("notify_master = \"%s %s-master\"\nnotify_backup = \"%s %s-backup\"\n", s, "NODE", s, "NODE")
	}
	cfg := func(n *rlNode, prio int, script string) rlInst {
		return rlInst{name: "VI_1", vrid: 51, prio: prio, vips: o("60"), extra: strings.ReplaceAll(notify(script), "NODE", n.name)}
	}
	a.start(cfg(a, 100, "old"))
	b.start(cfg(b, 90, "old"))
	l.waitState(5*time.Second, o("60"), o())
	time.Sleep(500 * time.Millisecond)
	list := func() string {
		ents, _ := os.ReadDir(out)
		var s []string
		for _, e := range ents {
			data, _ := os.ReadFile(filepath.Join(out, e.Name()))
			s = append(s, e.Name()+": "+strings.TrimSpace(string(data)))
		}
		return strings.Join(s, "\n")
	}
	beforeList := list()
	t.Logf("before the reload:\n%s", beforeList)
	a.reload(cfg(a, 100, "new"))
	b.reload(cfg(b, 90, "new"))
	time.Sleep(500 * time.Millisecond)
	// The transition: a lowered below b.
	a.reload(cfg(a, 80, "new"))
	l.waitState(3*time.Second, o(), o("60"))
	time.Sleep(time.Second)
	got := list()
	t.Logf("after the transition:\n%s", got)
	for _, f := range []string{"new-node-a-backup", "new-node-b-master"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("new notify script did not run: %s missing", f)
		}
	}
	var old []string
	for _, line := range strings.Split(got, "\n") {
		if !strings.HasPrefix(line, "new-") {
			old = append(old, line)
		}
	}
	if strings.Join(old, "\n") != beforeList {
		t.Errorf("old notify scripts ran after the reload")
	}
}

// TestReloadTrackUpstreamAddRemoveWhileDown: node-a (MASTER) has an
// upstream whose only server is down (health-checked). A reload adding
// track_upstream puts node-a in FAULT at once (the upstream was already
// known down); a reload removing it takes node-a out of FAULT.
func TestReloadTrackUpstreamAddRemoveWhileDown(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	up := "\n[upstream.up1]\n[[upstream.up1.server]]\naddress = \"127.0.0.1:9\"\n[[upstream.up1.server]]\naddress = \"127.0.0.1:10\"\n[upstream.up1.health_check]\ntype = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n"
	a.start(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60"), extra: up})
	b.start(rlInst{name: "VI_1", vrid: 51, prio: 90, vips: o("60")})
	l.waitState(5*time.Second, o("60"), o())
	time.Sleep(time.Second)
	from := time.Now()
	before := len(a.proc.Output())
	a.reload(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60"), extra: "track_upstream = [\"up1\"]\n" + up})
	l.waitState(3*time.Second, o(), o("60"))
	l.check(from, "track_upstream (down) added")
	t.Logf("node-a after adding:\n%s", a.proc.Output()[before:])
	from = time.Now()
	before = len(a.proc.Output())
	a.reload(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60"), extra: up})
	l.waitState(3*time.Second, o("60"), o())
	// node-a, out of FAULT with the higher priority, preempts node-b.
	l.checkHandover(from, "track_upstream removed")
	t.Logf("node-a after removing:\n%s", a.proc.Output()[before:])
}

// TestReloadInterfaceChanged: both nodes get a second link (eth1, a veth
// between them); a reload moves VI_1 from eth0 to eth1 on both (node-a,
// the MASTER, first). At the end no VIP is left on eth0, node-a holds .60
// on eth1, node-b does not.
func TestReloadInterfaceChanged(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	a.host.MustRun(t, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns", b.host.NS)
	for i, n := range []*rlNode{a, b} {
		n.host.MustRun(t, "ip", "addr", "add", fmt.Sprintf("192.0.2.%d/24", 101+i), "dev", "eth1")
		n.host.MustRun(t, "ip", "link", "set", "eth1", "up")
	}
	a.start(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60")})
	b.start(rlInst{name: "VI_1", vrid: 51, prio: 90, vips: o("60")})
	l.waitState(5*time.Second, o("60"), o())
	toEth1 := func(n *rlNode, prio int) {
		n.write(rlInst{name: "VI_1", vrid: 51, prio: prio, vips: o("60")})
		data, _ := os.ReadFile(n.conf)
		os.WriteFile(n.conf, []byte(strings.ReplaceAll(string(data), `interface = "eth0"`, `interface = "eth1"`)), 0o644)
		time.Sleep(300 * time.Millisecond)
		before := strings.Count(n.proc.Output(), "reload")
		n.proc.Signal(syscall.SIGHUP)
		waitFor(t, 3*time.Second, func() bool { return strings.Count(n.proc.Output(), "reload") > before })
	}
	from := time.Now()
	beforeA, beforeB := len(a.proc.Output()), len(b.proc.Output())
	toEth1(a, 100)
	time.Sleep(500 * time.Millisecond)
	toEth1(b, 90)
	vip := netip.MustParseAddr(vipOf("60"))
	eth1 := func(n *rlNode) bool {
		p, _ := n.host.Addrs("eth1")
		for _, x := range p {
			if x.Addr() == vip {
				return true
			}
		}
		return false
	}
	// Watch eth1 for both holding it.
	var both []string
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		ha, hb := eth1(a), eth1(b)
		if ha && hb {
			both = append(both, time.Now().Format("15:04:05.000"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("eth0 history:%s", l.history(from))
	t.Logf("node-a log:\n%s", a.proc.Output()[beforeA:])
	t.Logf("node-b log:\n%s", b.proc.Output()[beforeB:])
	if len(both) > 0 {
		t.Errorf(".60 on eth1 of both nodes at %v", both)
	}
	l.waitState(time.Second, o(), o())
	if !eth1(a) || eth1(b) {
		t.Errorf("after the move: .60 on eth1 of node-a %v, of node-b %v (want true, false)", eth1(a), eth1(b))
	}
}

// TestReloadRenamedInstanceDropsUpstreamTrack: node-a (100) tracks a
// down upstream: FAULT, node-b (90) is MASTER. A reload that renames the
// instance (same interface and VRID: kept, its state too) and removes
// track_upstream must take node-a out of FAULT (it preempts back).
func TestReloadRenamedInstanceDropsUpstreamTrack(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	up := "\n[upstream.up1]\n[[upstream.up1.server]]\naddress = \"127.0.0.1:9\"\n[[upstream.up1.server]]\naddress = \"127.0.0.1:10\"\n[upstream.up1.health_check]\ntype = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n"
	a.start(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60"), extra: "track_upstream = [\"up1\"]\n" + up})
	b.start(rlInst{name: "VI_1", vrid: 51, prio: 90, vips: o("60")})
	l.waitState(5*time.Second, o(), o("60"))
	time.Sleep(time.Second)
	before := len(a.proc.Output())
	a.reload(rlInst{name: "VI_renamed", vrid: 51, prio: 100, vips: o("60"), extra: up})
	time.Sleep(3 * time.Second)
	t.Logf("node-a after the reload:\n%s", a.proc.Output()[before:])
	if !has(l.now().vips[0], vipOf("60")) {
		t.Errorf("node-a (priority 100, nothing tracked any more) still not MASTER 3s after the reload renaming its instance and removing track_upstream:%s", l.history(time.Time{}))
	}
}

// TestReloadRenamedInstanceKeepsUpstreamTrack: the same with
// track_upstream kept; the upstream then comes back (a server listening):
// node-a must leave FAULT.
func TestReloadRenamedInstanceKeepsUpstreamTrack(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	up := "\n[upstream.up1]\n[[upstream.up1.server]]\naddress = \"127.0.0.1:19\"\n[[upstream.up1.server]]\naddress = \"127.0.0.1:20\"\n[upstream.up1.health_check]\ntype = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n"
	a.start(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60"), extra: "track_upstream = [\"up1\"]\n" + up})
	b.start(rlInst{name: "VI_1", vrid: 51, prio: 90, vips: o("60")})
	l.waitState(5*time.Second, o(), o("60"))
	time.Sleep(time.Second)
	before := len(a.proc.Output())
	a.reload(rlInst{name: "VI_renamed", vrid: 51, prio: 100, vips: o("60"), extra: "track_upstream = [\"up1\"]\n" + up})
	time.Sleep(time.Second)
	// The upstream comes back: a listener on 127.0.0.1:19 in node-a.
	srv := a.host.Command("python3", "-c", "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',19))\ns.listen(100)\ntime.sleep(8)")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	time.Sleep(3 * time.Second)
	t.Logf("node-a after the reload:\n%s", a.proc.Output()[before:])
	if !has(l.now().vips[0], vipOf("60")) {
		t.Errorf("node-a (priority 100, upstream back) still not MASTER 3s after its upstream came back (instance renamed by a reload):%s", l.history(time.Time{}))
	}
}

// TestReloadRenamedInstanceNotifyLog: a renamed instance's notify
// failures are logged under its new name.
func TestReloadRenamedInstanceNotifyLog(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	a.start(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60")})
	b.start(rlInst{name: "VI_1", vrid: 51, prio: 90, vips: o("60"), extra: "notify_master = \"/bin/false\"\n"})
	l.waitState(5*time.Second, o("60"), o())
	time.Sleep(500 * time.Millisecond)
	b.reload(rlInst{name: "VI_renamed", vrid: 51, prio: 90, vips: o("60"), extra: "notify_master = \"/bin/false\"\n"})
	before := len(b.proc.Output())
	a.reload(rlInst{name: "VI_1", vrid: 51, prio: 50, vips: o("60")})
	l.waitState(3*time.Second, o(), o("60"))
	time.Sleep(500 * time.Millisecond)
	out := b.proc.Output()[before:]
	t.Logf("node-b:\n%s", out)
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "notify script failed") && !strings.Contains(line, "VI_renamed") {
			t.Errorf("notify failure of the renamed instance logged under another name: %s", line)
		}
	}
}
