package stream

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vipgate/vipgate/config"
)

// childEnv makes the test binary run only a stream proxy (see runChild), so
// that its descriptors and memory can be measured apart from the test's
// clients and servers.
const childEnv = "VIPGATE_STREAM_TEST_CHILD"

// runChild serves [[stream]] listen = $..._LISTEN (default 127.0.0.1:0),
// proxy_pass = $VIPGATE_STREAM_TEST_CHILD, with the extra keys of
// $..._EXTRA, prints "ready ADDR", then answers each line on stdin with a
// collection (so Go's pool of splice pipes is emptied) and "ok STATS",
// until stdin closes. Benchmarks run it as a proxy process of its own.
func runChild() {
	listen := os.Getenv(childEnv + "_LISTEN")
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	conf := streamConf(ln.Addr().String(), os.Getenv(childEnv), os.Getenv(childEnv+"_EXTRA"), "")
	cfg, err := config.Parse([]byte(conf), "child.toml")
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	srv, err := New(cfg.Stream, Deps{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	h := srv.Handler(ln.Addr().String())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go h.ServeConn(c)
		}
	}()
	if path := os.Getenv(childEnv + "_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	fmt.Println("ready", ln.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		runtime.GC()
		runtime.GC()
		debug.FreeOSMemory()
		time.Sleep(50 * time.Millisecond)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Printf("ok stacks %d KiB, heap %d KiB, %d goroutines\n", ms.StackInuse>>10, ms.HeapInuse>>10, runtime.NumGoroutine())
	}
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	srv.Shutdown(ctx)
}

// procCost reads a process's resident memory and descriptor count.
func procCost(t *testing.T, pid int) (rssKiB, fds int) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			rssKiB, _ = strconv.Atoi(f[1])
		}
	}
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return rssKiB, len(entries)
}

// TestIdleStreamCost: an idle stream (PROXY v2 out, one exchange done)
// costs the proxy exactly its two sockets, and little memory.
// VIPGATE_IDLE_STREAMS changes the number of streams (2,000 by default).
func TestIdleStreamCost(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,000 streams")
	}
	streams := 2000
	if n, err := strconv.Atoi(os.Getenv("VIPGATE_IDLE_STREAMS")); err == nil && n > 0 {
		streams = n // make bench measures 5,000
	}
	be := startBackend(t, "127.0.0.1", func(c *net.TCPConn) {
		// Skip the PROXY header, then echo.
		r := bufio.NewReader(c)
		if _, err := r.Discard(16 + 12); err != nil {
			return
		}
		// Hide ReadFrom/WriteTo: a spliced echo would hold pipes of its own.
		io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{r}, make([]byte, 512))
	})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+be.addr, childEnv+`_EXTRA=proxy_protocol = "v2"`, "GOMAXPROCS=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	out := bufio.NewScanner(stdout)
	if !out.Scan() || !strings.HasPrefix(out.Text(), "ready ") {
		t.Fatalf("child proxy did not start: %q", out.Text())
	}
	addr := strings.TrimPrefix(out.Text(), "ready ")
	settle := func() (int, int) {
		fmt.Fprintln(stdin, "gc")
		if !out.Scan() {
			t.Fatal("child proxy died")
		}
		t.Logf("child proxy: %s", strings.TrimPrefix(out.Text(), "ok "))
		return procCost(t, cmd.Process.Pid)
	}
	// Warm up (first stream, first splice), then measure the baseline.
	warm, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	warm.Write([]byte("w"))
	io.ReadFull(warm, make([]byte, 1))
	warm.Close()
	time.Sleep(50 * time.Millisecond)
	rss0, fds0 := settle()

	conns := make([]net.Conn, 0, streams)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	buf := make([]byte, 1)
	for range streams {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			all, _ := countFDs(t)
			t.Fatalf("stream %d (this process has %d descriptors): %v", len(conns)+1, all, err)
		}
		conns = append(conns, c)
		c.Write([]byte("x"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("stream %d: %v", len(conns), err)
		}
	}
	rss1, fds1 := settle()
	perStreamFDs := float64(fds1-fds0) / float64(streams)
	perStreamKiB := float64(rss1-rss0) / float64(streams)
	t.Logf("%d idle streams with PROXY v2: %.2f descriptors and %.1f KiB RSS per stream (proxy RSS %d -> %d KiB)",
		streams, perStreamFDs, perStreamKiB, rss0, rss1)
	if fds1-fds0 != 2*streams {
		t.Errorf("%d idle streams hold %d descriptors, want exactly 2 each (%d)", streams, fds1-fds0, 2*streams)
	}
	if perStreamKiB > 12 && !raceEnabled {
		t.Errorf("%.1f KiB per idle stream, want at most 12", perStreamKiB)
	}
}
