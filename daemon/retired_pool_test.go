package daemon

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/vipgate/vipgate/config"
)

// A WebSocket (or any long-lived client connection) keeps its generation
// after a reload, as it should; but the retired generation also keeps its
// idle upstream keep-alive connections for as long as that tunnel lives,
// and nothing prunes them (the 60 s upstream idle limit is only enforced
// when a request takes a connection from the pool, and a retired
// generation gets no new requests). With WebSocket clients connecting all
// the time, every reload strands up to `keepalive` idle connections per
// location: descriptors on the proxy and connection slots on the backends
// grow with the number of reloads. nginx closes an exiting worker's cached
// upstream connections (they are idle connections) at once.
func TestRetiredGenerationHeldByWebSocketKeepsNoIdleUpstreamConns(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	idle := map[net.Conn]bool{}
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			c, bw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			bw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			bw.Flush()
			io.Copy(c, bw)
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond) // overlap the burst: several upstream connections
		fmt.Fprint(w, "ok")
	}))
	backend.Config.ConnState = func(c net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		if s == http.StateIdle {
			idle[c] = true
		} else {
			delete(idle, c)
		}
	}
	backend.Start()
	defer backend.Close()
	idleConns := func() int { mu.Lock(); defer mu.Unlock(); return len(idle) }

	httpAddr := freeAddr(t)
	cfg := func(gen int) *config.Config {
		return loadCfg(t, dir, fmt.Sprintf(reviewCfg, dir, backend.Listener.Addr(), httpAddr, "", fmt.Sprint(gen)))
	}
	d, err := Start(cfg(1), Options{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(time.Second)

	burst := func() {
		var wg sync.WaitGroup
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
				resp, err := cl.Get("http://" + httpAddr + "/")
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}()
		}
		wg.Wait()
	}
	openWS := func() net.Conn {
		c, err := net.Dial("tcp", httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.Contains(line, "101") {
			t.Fatalf("upgrade: %q %v", line, err)
		}
		return c
	}
	const reloads = 5
	for gen := 1; gen <= reloads; gen++ {
		burst()
		ws := openWS()
		defer ws.Close()
		if err := d.Reload(cfg(gen + 1)); err != nil {
			t.Fatal(err)
		}
	}
	// The generation now in force has served nothing: every idle upstream
	// connection left belongs to a retired generation.
	time.Sleep(3 * reapGrace)
	n := idleConns()
	t.Logf("idle upstream keep-alive connections after %d reloads, each leaving one WebSocket open: %d", reloads, n)
	if n > 0 {
		t.Fatalf("%d idle upstream keep-alive connections to the one server of upstream app (keepalive = 32 per upstream, documented) "+
			"kept by %d retired generations held only by their WebSocket tunnels; want 0 (nginx closes an old worker's cached upstream connections)", n, reloads)
	}
}
