// Package testutil holds helpers shared by the tests of every package:
// the root requirement policy, building the vipgate binary once, a
// loopback connection.
package testutil

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// RequireRootEnv names the variable that turns a root-needing skip into a
// failure. CI sets it, so network-namespace tests can never pass by skipping.
const RequireRootEnv = "VIPGATE_REQUIRE_ROOT"

// RequireRoot skips t when the process is not root, or fails it when
// RequireRootEnv is set to 1.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv(RequireRootEnv) == "1" {
		t.Fatalf("this test needs root and %s=1 forbids skipping it", RequireRootEnv)
	}
	t.Skip("needs root (network namespaces, raw sockets)")
}

// RequireCommand skips t when name is not on PATH, or fails it when
// RequireRootEnv is set (CI installs every tool the tests use).
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv(RequireRootEnv) == "1" {
		t.Fatalf("this test needs %s (make test installs it): %v", name, err)
	}
	t.Skipf("needs %s: %v", name, err)
	return ""
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary builds ./cmd/vipgate once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vipgate-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "vipgate")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/vipgate")
		cmd.Dir = ModuleRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = err
			buildPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build vipgate: %v\n%s", buildErr, buildPath)
	}
	return buildPath
}

// ModuleRoot is the repository's top directory.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// TCPPair returns the two ends of a new loopback TCP connection: the
// client's and the one the server accepted. Both close with the test.
func TCPPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}
