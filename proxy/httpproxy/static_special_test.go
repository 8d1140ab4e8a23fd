package httpproxy

import (
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"
)

// TestStaticNonRegularFile: a FIFO (or any non-regular file) under a
// root, e.g. one a local user made in an upload directory the front end
// serves, is answered at once by nginx ("is not a regular file": 404; it
// opens with O_NONBLOCK). vipgate opens it blocking: the request never
// gets an answer, and each one pins an OS thread in open(2) for good, so
// enough of them crash the process at Go's 10000-thread limit.
func TestStaticNonRegularFile(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "static"), 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(root, "static", "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// Release any handler still stuck in open(2) so cleanup can finish.
	t.Cleanup(func() {
		for i := 0; i < 50; i++ {
			fd, err := syscall.Open(fifo, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				return
			}
			syscall.Close(fd)
			time.Sleep(10 * time.Millisecond)
		}
	})
	gw := startGateway(t, `
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/static"
root = "`+root+`"
`)
	threads := pprof.Lookup("threadcreate")
	before := threads.Count()
	c := &http.Client{Timeout: time.Second}
	const n = 5
	answered := 0
	for i := 0; i < n; i++ {
		resp, err := c.Get(gw.url("/static/fifo"))
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden {
			answered++
		}
	}
	if answered != n {
		t.Errorf("GET of a FIFO under root: %d of %d answered 404/403 (the rest hung until the client gave up); OS threads created meanwhile: %d",
			answered, n, threads.Count()-before)
	}
}
