//go:build linux

package stream

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestUpstreamResetIsLoggedAndCounted: "an upstream that accepts and
// resets ... ends only that connection with a log line and a counter".
// At the default log level the error log must say so, and the counters
// must tell a reset stream from one the server closed cleanly.
func TestUpstreamResetIsLoggedAndCounted(t *testing.T) {
	clean := startBackend(t, "127.0.0.1", func(c *net.TCPConn) {
		io.ReadFull(c, make([]byte, 5))
	})
	reset := startBackend(t, "127.0.0.1", func(c *net.TCPConn) {
		io.ReadFull(c, make([]byte, 5))
		c.SetLinger(0)
	})
	snap := func(addr string) UpstreamStats {
		l, srv, logs, access := logProxy(t, func(l string) string { return streamConf(l, addr, "", "") })
		c, err := net.Dial("tcp", l)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("hello"))
		readAllWithin(t, c, 3*time.Second)
		c.Close()
		deadline := time.Now().Add(3 * time.Second)
		for len(access.Lines()) == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("%s: access %q", addr, access.Lines())
		ups, _ := srv.Stats().Snapshot()
		st := ups[0]
		st.Upstream = ""
		if addr == reset.addr {
			if logs.Len() == 0 {
				t.Errorf("an upstream reset wrote no error-log line at log_level info (access line %q)", access.Lines())
			}
		}
		return st
	}
	sc, sr := snap(clean.addr), snap(reset.addr)
	if sc.UpstreamErrors != 0 || sr.UpstreamErrors != 1 {
		t.Errorf("upstream_errors after a clean close %d, after an upstream reset %d; want 0 and 1", sc.UpstreamErrors, sr.UpstreamErrors)
	}
}
