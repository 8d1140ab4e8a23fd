package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// docs/config.md, Handover and stop: "A BACKUP or FAULT node that stops
// just stops". Since "stop: without a VIP handover, long-lived
// connections drain until shutdown_timeout", resign reports takenOver =
// false on a BACKUP and Stop leaves its streams and WebSockets open: a
// BACKUP with one MQTT client on it (a health probe, a client on its own
// address, or one left from when it was MASTER) takes the whole
// shutdown_timeout to stop.
func TestNetnsBackupWithStreamJustStops(t *testing.T) {
	l := newHALab(t, 2)
	a, b := l.nodes[0], l.nodes[1]
	for _, n := range l.nodes {
		n.startBackend("http", "127.0.0.1:8081", "127.0.0.1:8082")
	}
	b.startBackend("tcp", "127.0.0.1:1884")
	a.start(nodeConfig{prio: 200})
	b.writeConfig(nodeConfig{prio: 100, stream: true})
	text, err := os.ReadFile(b.conf)
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(text), `shutdown_timeout = "1s"`, `shutdown_timeout = "6s"`, 1)
	conf = strings.Replace(conf, `listen = ["192.0.2.50:1883"]`, `listen = ["192.0.2.50:1883", "127.0.0.1:27883"]`, 1)
	if err := os.WriteFile(b.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(l.dir, b.name+".pid"))
	b.proc = b.host.Start(t, l.bin, "-c", b.conf)
	l.waitSoleHolder(a, 5*time.Second)
	time.Sleep(300 * time.Millisecond)

	var conn net.Conn
	if err := b.host.Do(func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:27883", time.Second)
		conn = c
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(300 * time.Millisecond)

	stop := time.Now()
	b.signal(syscall.SIGTERM)
	err = b.proc.Wait(15 * time.Second)
	took := time.Since(stop)
	t.Logf("BACKUP stopped after %s (%v)", took.Round(10*time.Millisecond), err)
	if took > 2*time.Second {
		t.Fatalf("a BACKUP with one stream client took %s to stop (shutdown_timeout 6s); docs: \"A BACKUP or FAULT node that stops just stops\"", took.Round(10*time.Millisecond))
	}
}

// A MASTER that nobody takes over from (its backup down for maintenance,
// a single node) releases its VIP when it stops, after Master_Down_Interval
// (MASTER -> INIT, "no new master heard"): its long-lived connections
// (MQTT streams) must be closed then, not left to run until
// shutdown_timeout on an address this host no longer has, where their
// clients would learn nothing and hang until their own timeouts.
func TestNetnsLoneMasterStopTellsStreamClients(t *testing.T) {
	l := newHALab(t, 1)
	a := l.nodes[0]
	a.startBackend("http", "127.0.0.1:8081", "127.0.0.1:8082")
	a.startBackend("tcp", "127.0.0.1:1884")
	a.writeConfig(nodeConfig{prio: 100, stream: true})
	text, err := os.ReadFile(a.conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.conf, []byte(strings.Replace(string(text), `shutdown_timeout = "1s"`, `shutdown_timeout = "6s"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(l.dir, a.name+".pid"))
	a.proc = a.host.Start(t, l.bin, "-c", a.conf)
	l.waitSoleHolder(a, 5*time.Second)
	var conn net.Conn
	if err := l.client.Do(func() error {
		c, err := net.DialTimeout("tcp", "192.0.2.50:1883", time.Second)
		conn = c
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	banner := make([]byte, 64)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(banner); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	stop := time.Now()
	a.signal(syscall.SIGTERM)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, rerr := conn.Read(banner)
	told := time.Since(stop)
	held := a.host.HasAddr(labVIP)
	werr := a.proc.Wait(15 * time.Second)
	took := time.Since(stop)
	t.Logf("client told after %s (%v); VIP still on node-a then: %v; node-a exited after %s (%v)",
		told.Round(10*time.Millisecond), rerr, held, took.Round(10*time.Millisecond), werr)
	if told > 3*time.Second {
		t.Fatalf("stop of a MASTER nobody took over from: the VIP is gone, but its stream client was told nothing for %s (%v); want an EOF once the VIP is released",
			told.Round(10*time.Millisecond), rerr)
	}
}
