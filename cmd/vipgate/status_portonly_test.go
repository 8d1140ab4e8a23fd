package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestStatusWithPortOnlyAdminListen: admin_listen = ":PORT" (host
// left out, as nginx's "listen 9900") validates and binds, but vipgate
// status then asks http://:PORT/status, whose Host ":PORT" the DNS
// rebinding check takes for a foreign name: status fails with a JSON
// parse error of the 421 text.
func TestStatusWithPortOnlyAdminListen(t *testing.T) {
	dir := t.TempDir()
	backend := echoBackend(t, 0)
	port, adminPort := freePort(t), freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(goodConfig, dir, backend.Listener.Addr(), port, "5s", "adm")
	cfg = strings.Replace(cfg, `admin_listen = ""`, fmt.Sprintf(`admin_listen = ":%d"`, adminPort), 1)
	cfgPath := writeFile(t, dir, "v.toml", cfg)
	startNode(t, cfgPath, addr)
	get(t, addr)
	out, errOut, code := runBinary(t, "status", "-c", cfgPath)
	if code != 0 || !strings.Contains(out, "UPSTREAM") {
		t.Fatalf("vipgate status with admin_listen = \":%d\": exit %d\n%s%s", adminPort, code, out, errOut)
	}
}
