package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Before today's change a SIGHUP (reload) or SIGUSR1 (logrotate's reopen)
// that came while a handover waited for an in-flight request stayed in
// the signal channel and was served once the handover ended. handover()
// now reads every signal and throws away all but stop signals ("handover
// under way: signal ignored"): the reload is lost. An operator who ran
// `vipgate -s handover`, then `systemctl reload vipgate` for a changed
// file, keeps running the old configuration with no error anywhere.
func TestNetnsReloadDuringHandoverIsApplied(t *testing.T) {
	l := newHALab(t, 2)
	a, b := l.nodes[0], l.nodes[1]
	for _, n := range l.nodes {
		n.startBackend("http", "127.0.0.1:8081", "127.0.0.1:8082")
	}
	a.writeConfig(nodeConfig{prio: 100})
	text, err := os.ReadFile(a.conf)
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(text), `shutdown_timeout = "1s"`, `shutdown_timeout = "3s"`, 1)
	if err := os.WriteFile(a.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(l.dir, a.name+".pid"))
	a.proc = a.host.Start(t, l.bin, "-c", a.conf)
	b.start(nodeConfig{prio: 90})
	l.waitSoleHolder(a, 5*time.Second)

	var conn net.Conn
	if err := a.host.Do(func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("%v:80", labVIP), time.Second)
		conn = c
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npart")
	time.Sleep(200 * time.Millisecond)

	a.signal(syscall.SIGUSR2)
	b.watch.waitFor(t, true, 3*time.Second) // the handover is under way

	// The operator adds a listener and reloads, while the handover waits.
	added := strings.Replace(conf, fmt.Sprintf(`listen = ["%v:80"]`, labVIP),
		fmt.Sprintf(`listen = ["%v:80", "127.0.0.1:27080"]`, labVIP), 1)
	if added == conf {
		t.Fatal("listen line not found")
	}
	if err := os.WriteFile(a.conf, []byte(added), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Second) // settled: no loadSettled wait
	os.Chtimes(a.conf, old, old)
	a.signal(syscall.SIGHUP)

	// The handover ends within shutdown_timeout (3s); the reload must
	// follow it.
	deadline := time.Now().Add(8 * time.Second)
	for {
		err := a.host.Do(func() error {
			c, err := net.DialTimeout("tcp", "127.0.0.1:27080", 300*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the SIGHUP sent during a handover was never applied (new listener 127.0.0.1:27080: %v)\nnode-a log:\n%s", err, a.proc.Output())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
