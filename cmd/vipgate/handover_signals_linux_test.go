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

// handoverUnderWay starts a pair in the lab with node-a MASTER (its
// shutdown_timeout set), puts an upload in flight on node-a (sent from
// node-a itself, so the VIP move does not touch it), sends node-a SIGUSR2
// and returns once node-b holds the VIP: the handover then waits for the
// upload, up to shutdown_timeout. conf is node-a's file.
func handoverUnderWay(t *testing.T, shutdownTimeout string) (a *haNode, conf string) {
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
	conf = strings.Replace(string(text), `shutdown_timeout = "1s"`, fmt.Sprintf("shutdown_timeout = %q", shutdownTimeout), 1)
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
	t.Cleanup(func() { conn.Close() })
	io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npart")
	time.Sleep(200 * time.Millisecond)

	a.signal(syscall.SIGUSR2)
	b.watch.waitFor(t, true, 3*time.Second)
	return a, conf
}

// SIGQUIT "stops at once" (docs/config.md, Signals), also while a
// handover waits for an in-flight request: the signal loop was busy in
// the handover, and an operator who ran `vipgate -s handover` and then
// `-s quit` waited the whole shutdown_timeout.
func TestNetnsSIGQUITDuringHandoverStopsAtOnce(t *testing.T) {
	a, _ := handoverUnderWay(t, "20s")
	time.Sleep(200 * time.Millisecond)
	quit := time.Now()
	a.signal(syscall.SIGQUIT)
	err := a.proc.Wait(15 * time.Second)
	took := time.Since(quit)
	t.Logf("SIGQUIT during a handover: node-a exited after %s (%v)", took.Round(10*time.Millisecond), err)
	if took > 3*time.Second {
		t.Fatalf("SIGQUIT during a handover took %s to stop node-a (shutdown_timeout 20s); want at once", took.Round(10*time.Millisecond))
	}
}

// A SIGHUP (or logrotate's SIGUSR1) that comes while a handover waits is
// served once it ended: an operator who ran `vipgate -s handover`, then
// `systemctl reload` for a changed file, must not keep the old one.
func TestNetnsReloadDuringHandoverIsApplied(t *testing.T) {
	a, conf := handoverUnderWay(t, "3s")
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

	// The handover ends within shutdown_timeout (3s); the reload follows.
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

// Signals queued behind a second SIGUSR2 during a handover stay queued:
// `vipgate -s handover` twice, then `systemctl stop`, while the first
// handover waits for an upload. The stop was lost (the list of signals
// still to serve was replaced by the second handover's), vipgate ran on
// and systemd killed it with SIGKILL, VIPs and pid file left behind.
func TestNetnsStopQueuedBehindSecondHandoverIsServed(t *testing.T) {
	a, _ := handoverUnderWay(t, "3s")
	a.signal(syscall.SIGUSR2) // pressed twice
	time.Sleep(100 * time.Millisecond)
	a.signal(syscall.SIGTERM) // then: systemctl stop
	// The handover ends within shutdown_timeout (3s), the second one at
	// once (not MASTER any more); the stop follows.
	if err := a.proc.Wait(10 * time.Second); err != nil {
		t.Fatalf("SIGTERM sent during a handover, after a second SIGUSR2, was never served: node-a still runs 10s later (%v)\nnode-a log:\n%s", err, a.proc.Output())
	}
}
