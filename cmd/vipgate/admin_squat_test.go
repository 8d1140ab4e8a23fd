package main

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/testutil"
)

// TestAdminPortSquatKeepsProxyDown: admin_listen defaults to
// 127.0.0.1:9900, an unprivileged port. Any local user may bind it
// first (before a boot, a restart by systemd, an upgrade); vipgate then
// refuses to start at all: no HTTP/stream proxy and no VRRP on this node,
// and the squatter answers the operator's `vipgate status` and /healthz
// monitoring instead. nginx and keepalived listen on nothing a local
// user can take. The status API failing to bind should be an error in
// the log (and /healthz reason), not keep the front end down.
func TestAdminPortSquatKeepsProxyDown(t *testing.T) {
	squat, err := net.Listen("tcp", "127.0.0.1:0") // the local user's listener
	if err != nil {
		t.Fatal(err)
	}
	defer squat.Close()
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "one")
	cfg = strings.Replace(cfg, `admin_listen = ""`, fmt.Sprintf("admin_listen = %q", squat.Addr().String()), 1)
	cfgPath := writeFile(t, dir, "v.toml", cfg)

	cmd := exec.Command(testutil.Binary(t), "-c", cfgPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-done
	}()
	select {
	case err := <-done:
		done <- err
		t.Fatalf("a local user listening on the admin port %s kept vipgate from starting (%v): the proxy at %s never served:\n%s",
			squat.Addr(), err, addr, out.String())
	case <-time.After(3 * time.Second):
	}
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("proxy at %s not serving: %v", addr, err)
	}
	c.Close()
}
