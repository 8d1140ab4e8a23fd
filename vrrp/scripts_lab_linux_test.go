package vrrp_test

import (
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/netlab"
	"github.com/vipgate/vipgate/vrrp"
)

// scriptDir makes a directory nobody can read and enter (the test's temp
// directories are 0700), holding record.sh (owned by root, 0755), which
// writes "UID GID" of whoever runs it to out/NAME, and out/, writable by
// nobody.
func scriptDir(t *testing.T) (dir, record, out string) {
	t.Helper()
	dir = t.TempDir()
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
	// Runs after the node is killed (cleanups run last-first), before the
	// temporary directory goes: a script the node started just before may
	// still be writing its line, and a file created in the middle of
	// TempDir's removal failed the test ("directory not empty").
	t.Cleanup(func() {
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if err := os.RemoveAll(out); err == nil || time.Now().After(deadline) {
				return
			}
		}
	})
	record = filepath.Join(dir, "record.sh")
	writeScript(t, record, "#!/bin/sh\necho \"$(id -u) $(id -g)\" > "+out+"/\"$1\"\n", 0o755, 0)
	return dir, record, out
}

func writeScript(t *testing.T, path, text string, mode os.FileMode, gid int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 0, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // after chown, which may clear bits
		t.Fatal(err)
	}
}

func lookupIDs(t *testing.T, name string) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("no user %s: %v", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// Notify and vrrp_script scripts run as global.script_user, not as the
// (root) daemon: each records the uid and gid it ran with.
func TestLabScriptsRunAsScriptUser(t *testing.T) {
	uid, gid := lookupIDs(t, "nobody")
	_, record, out := scriptDir(t)
	lab := netlab.New(t, netlab.Options{Hosts: 1})
	cfg := fastConfig(200)
	cfg.ScriptUser = "nobody"
	cfg.NotifyMaster = record + " notify_master"
	cfg.Notify = record + " notify" // + INSTANCE VI_1 STATE PRIORITY
	cfg.Scripts = []vrrp.ScriptConfig{{Name: "chk", Path: record + " track", Interval: 100 * time.Millisecond,
		Timeout: 2 * time.Second, Fall: 1, Rise: 1}}
	startNode(t, lab.Hosts[0], cfg)
	want := strconv.Itoa(uid) + " " + strconv.Itoa(gid)
	for _, name := range []string{"notify_master", "notify", "track"} {
		path := filepath.Join(out, name)
		var got string
		waitFor(t, settle, name+" script ran", func() bool {
			b, err := os.ReadFile(path)
			got = strings.TrimSpace(string(b))
			return err == nil && got != ""
		})
		if got != want {
			t.Errorf("%s ran as uid/gid %q, want nobody's %q", name, got, want)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if owner := fileUID(st); owner != uid {
			t.Errorf("%s's output file is owned by uid %d, want %d", name, owner, uid)
		}
	}
}

// A vrrp_script that someone besides root may change is refused: it never
// runs, the instance takes it as failing (weight 0: FAULT) and the log
// says why.
func TestLabUnsafeScriptRefused(t *testing.T) {
	_, nogroup := lookupIDs(t, "nobody")
	if nogroup == 0 {
		t.Skip("nobody's group is root's")
	}
	dir, record, out := scriptDir(t)
	body := "#!/bin/sh\ntouch " + out + "/$1\n"
	worldWritable := filepath.Join(dir, "world.sh")
	writeScript(t, worldWritable, body, 0o777, 0)
	groupWritable := filepath.Join(dir, "group.sh")
	writeScript(t, groupWritable, body, 0o775, nogroup)

	lab := netlab.New(t, netlab.Options{Hosts: 1})
	instance := func(name string, vrid uint8, script string) vrrp.Config {
		c := fastConfig(200)
		c.Name, c.VRID = name, vrid
		c.VIPs = []vrrp.VIP{{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, vrid}), 24)}}
		c.ScriptUser = "nobody"
		c.Scripts = []vrrp.ScriptConfig{{Name: "chk_" + name, Path: script + " " + name, Interval: 100 * time.Millisecond,
			Timeout: 2 * time.Second, Weight: 0, Fall: 1, Rise: 1}}
		return c
	}
	n := startNode(t, lab.Hosts[0],
		instance("safe", 51, record),
		instance("world", 52, worldWritable),
		instance("group", 53, groupWritable))
	waitFor(t, settle, "the safe script's instance MASTER", func() bool {
		return strings.Contains(n.proc.Output(), "TRANSITION safe BACKUP MASTER")
	})
	waitFor(t, settle, "both unsafe scripts refused in the log", func() bool {
		o := n.proc.Output()
		return strings.Contains(o, "refusing "+worldWritable+": writable by everyone") &&
			strings.Contains(o, "refusing "+groupWritable+": writable by group")
	})
	time.Sleep(500 * time.Millisecond)
	sts, _ := n.report(t)
	for _, st := range sts {
		switch st.Name {
		case "safe":
			if st.State != "MASTER" {
				t.Errorf("safe: %s, want MASTER", st.State)
			}
		default:
			if st.State != "FAULT" || len(st.Faults) != 1 || st.Faults[0] != "script:chk_"+st.Name {
				t.Errorf("%s: %s faults %v, want FAULT from its script", st.Name, st.State, st.Faults)
			}
			if _, err := os.Stat(filepath.Join(out, st.Name)); err == nil {
				t.Errorf("the %s-writable script ran", st.Name)
			}
		}
	}
	if o := n.proc.Output(); strings.Count(o, "refusing "+worldWritable) > 2 {
		t.Errorf("the refusal is logged at every run:\n%s", o)
	}
}

func fileUID(st os.FileInfo) int {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(sys.Uid)
	}
	return -1
}
