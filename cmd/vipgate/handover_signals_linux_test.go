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

// SIGQUIT "stops at once" (docs/config.md, Signals) and a second SIGTERM
// cuts a graceful stop short, but while a handover (SIGUSR2) waits for an
// in-flight request (up to shutdown_timeout) the main loop is busy: a
// SIGQUIT or SIGTERM sent then is not even looked at until the handover
// ends. An operator who ran `vipgate -s handover` and then `-s quit`
// waits the whole shutdown_timeout (30 s by default).
func TestNetnsSIGQUITDuringHandoverStopsAtOnce(t *testing.T) {
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
	if err := os.WriteFile(a.conf, []byte(strings.Replace(string(text), `shutdown_timeout = "1s"`, `shutdown_timeout = "20s"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(l.dir, a.name+".pid"))
	a.proc = a.host.Start(t, l.bin, "-c", a.conf)
	b.start(nodeConfig{prio: 90})
	l.waitSoleHolder(a, 5*time.Second)

	// A request in flight on node-a: an upload whose body is still coming
	// (sent from node-a itself, so the VIP move does not touch it).
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
	time.Sleep(200 * time.Millisecond)
	quit := time.Now()
	a.signal(syscall.SIGQUIT)
	err = a.proc.Wait(15 * time.Second)
	took := time.Since(quit)
	t.Logf("SIGQUIT during a handover: node-a exited after %s (%v)", took.Round(10*time.Millisecond), err)
	if took > 3*time.Second {
		t.Fatalf("SIGQUIT during a handover took %s to stop node-a (shutdown_timeout 20s); want at once", took.Round(10*time.Millisecond))
	}
}
