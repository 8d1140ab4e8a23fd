package httpproxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// closeWaitTo counts this host's TCP sockets in CLOSE_WAIT whose peer is
// addr (IPv4 loopback): connections the peer closed and we have not.
func closeWaitTo(t *testing.T, addr string) int {
	t.Helper()
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	want := fmt.Sprintf("0100007F:%04X", port)
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 3 && fields[2] == want && fields[3] == "08" {
			n++
		}
	}
	return n
}

// An idle upstream keep-alive connection that the server closes (a backend
// restart, or its own keep-alive timeout: Tomcat 20 s, nginx 75 s) stays
// open on the proxy, in CLOSE_WAIT, until a request happens to walk that
// pool; nothing closes pooled connections that time out either (the 60 s
// limit is checked only when a request takes from the pool). nginx watches
// its cached connections and closes one as soon as the server does, and
// closes it after keepalive_timeout by a timer. Under backend churn the
// proxy keeps up to `keepalive` dead sockets per location and per
// generation.
func TestPooledUpstreamConnClosedByServerIsReleased(t *testing.T) {
	b := startBackend(t, "a")
	b.handle = func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond) // overlap: several pooled connections
		fmt.Fprint(w, "ok")
	}
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+proxyAllToApp)
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
			resp, err := c.Get(gw.url("/"))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
	// The server closes its idle keep-alive connections (as a restart or
	// its keep-alive timeout does).
	b.srv.SetKeepAlivesEnabled(false)
	time.Sleep(2 * time.Second)
	if n := closeWaitTo(t, b.addr()); n > 0 {
		t.Fatalf("%d pooled upstream connections the server closed 2 s ago are still open on the proxy (CLOSE_WAIT); want 0", n)
	}
}
