package health

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/testutil"
)

// TestProxyProtocolCheckLeavesNoErrorInNginxLog checks a Debian nginx that
// requires a PROXY header (listen ... proxy_protocol) with the tcp check in
// v1 and v2 form: its error log (at info level) must show no line of level
// warn or worse. A client sending no PROXY header is the control that the
// log is read and would show the problem.
func TestProxyProtocolCheckLeavesNoErrorInNginxLog(t *testing.T) {
	nginxPath := testutil.RequireCommand(t, "nginx")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	address := ln.Addr().String()
	ln.Close()

	dir := t.TempDir()
	logPath := filepath.Join(dir, "error.log")
	conf := fmt.Sprintf(`
daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[2]s info;
events { worker_connections 64; }
http {
 access_log off;
 client_body_temp_path %[1]s/body;
 proxy_temp_path %[1]s/proxy;
 fastcgi_temp_path %[1]s/fastcgi;
 uwsgi_temp_path %[1]s/uwsgi;
 scgi_temp_path %[1]s/scgi;
 server {
  listen %[3]s proxy_protocol;
  location / { return 200 "ok\n"; }
 }
}
`, dir, logPath, address)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginxPath, "-e", logPath, "-p", dir, "-c", confPath)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", address)
		if err == nil {
			c.Close() // logs at most an info line: closed while waiting
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx not listening: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	for _, version := range []string{"v1", "v2"} {
		for range 3 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := tcpProbe(address, version)(ctx)
			cancel()
			if err != nil {
				t.Fatalf("check %s: %v", version, err)
			}
		}
	}
	bad := regexp.MustCompile(`\[(warn|error|crit|alert|emerg)\]`)
	lines := waitLog(t, logPath, 6)
	for _, l := range lines {
		if bad.MatchString(l) {
			t.Errorf("nginx logged after PROXY-speaking checks: %s", l)
		}
	}

	// Control: the same connection without a PROXY header is an error.
	c, err := net.Dial("tcp", address)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "GET / HTTP/1.0\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(time.Second))
	c.Read(make([]byte, 64))
	c.Close()
	found := false
	for end := time.Now().Add(2 * time.Second); !found && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(logPath)
		found = regexp.MustCompile(`\[error\][^\n]*broken header`).Match(b)
	}
	if !found {
		b, _ := os.ReadFile(logPath)
		t.Logf("log:\n%s", b)
		t.Error("control: nginx logged no error for a connection without PROXY header; the log is not being read")
	}
}

// waitLog returns the log's lines once it has at least n connection lines
// (or after a second).
func waitLog(t *testing.T, path string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		conns := 0
		for _, l := range lines {
			if strings.Contains(l, "client") {
				conns++
			}
		}
		if conns >= n || time.Now().After(deadline) {
			return lines
		}
		time.Sleep(20 * time.Millisecond)
	}
}
