package health

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

const testTimeout = 300 * time.Millisecond

// rawServer accepts connections on loopback and hands each to handle; it
// is closed, with every connection, at the end of the test.
func rawServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { handle(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func runProbe(t *testing.T, probe func(context.Context) error) (time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	start := time.Now()
	err := probe(ctx)
	return time.Since(start), err
}

func TestHTTPProbe(t *testing.T) {
	m := NewManager(nil)
	defer m.Stop()

	var gotHost, gotPath string
	var mu sync.Mutex
	status := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			gotHost, gotPath = r.Host, r.URL.Path
			mu.Unlock()
			if code == http.StatusFound {
				http.Redirect(w, r, "/elsewhere", code)
				return
			}
			w.WriteHeader(code)
			io.WriteString(w, "body")
		}
	}
	// Hanging handlers end when the check gives up and closes its connection.
	hang := func(r *http.Request) { <-r.Context().Done() }

	tests := []struct {
		name    string
		handler http.Handler // nil: use raw
		raw     func(net.Conn)
		spec    CheckSpec
		wantErr string // "" = pass
	}{
		{name: "200 passes", handler: status(200), spec: CheckSpec{Path: "/healthz"}},
		{name: "503 fails", handler: status(503), spec: CheckSpec{}, wantErr: "status 503, want 200-399"},
		{name: "redirect is an answer", handler: status(302), spec: CheckSpec{}},
		{name: "ranges", handler: status(204), spec: CheckSpec{ExpectStatus: [][2]int{{200, 200}, {300, 399}}}, wantErr: "status 204, want 200,300-399"},
		{name: "404 expected", handler: status(404), spec: CheckSpec{ExpectStatus: [][2]int{{404, 404}}}},
		{name: "hanging server", handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { hang(r) }), wantErr: "context deadline exceeded"},
		{name: "stall mid-body", handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(200)
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			hang(r)
		}), wantErr: "reading body"},
		{name: "garbage", raw: func(c net.Conn) {
			bufio.NewReader(c).ReadString('\n')
			io.WriteString(c, "SSH-2.0-OpenSSH_9.2\r\n\r\n")
			c.Close()
		}, wantErr: "malformed HTTP"},
		{name: "reset", raw: func(c net.Conn) {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}, wantErr: "GET"},
		{name: "silent after accept", raw: func(c net.Conn) { io.Copy(io.Discard, c) }, wantErr: "context deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var address string
			if tt.handler != nil {
				srv := httptest.NewServer(tt.handler)
				defer srv.Close()
				defer srv.CloseClientConnections()
				address = strings.TrimPrefix(srv.URL, "http://")
			} else {
				address = rawServer(t, tt.raw)
			}
			spec := tt.spec
			spec.Type = "http"
			took, err := runProbe(t, m.httpProbe(spec, address))
			// Generous slack for a loaded machine: without the timeout the
			// hanging cases would never end.
			if took > testTimeout+2*time.Second {
				t.Errorf("check took %s, longer than its timeout %s", took, testTimeout)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("check failed: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("check error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}

	// Path and Host header.
	srv := httptest.NewServer(status(200))
	defer srv.Close()
	address := strings.TrimPrefix(srv.URL, "http://")
	if _, err := runProbe(t, m.httpProbe(CheckSpec{Type: "http", Path: "/status", Host: "app.example.com"}, address)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if gotHost != "app.example.com" || gotPath != "/status" {
		t.Errorf("check sent Host %q path %q, want app.example.com /status", gotHost, gotPath)
	}
}

func TestTCPProbe(t *testing.T) {
	received := make(chan []byte, 4)
	address := rawServer(t, func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b, _ := io.ReadAll(c) // until the check closes
		received <- b
	})

	if _, err := runProbe(t, tcpProbe(address, "")); err != nil {
		t.Fatalf("plain connect: %v", err)
	}
	if b := <-received; len(b) != 0 {
		t.Errorf("plain check sent %q, want nothing", b)
	}

	if _, err := runProbe(t, tcpProbe(address, "v1")); err != nil {
		t.Fatalf("v1: %v", err)
	}
	if b := <-received; string(b) != "PROXY UNKNOWN\r\n" {
		t.Errorf("v1 check sent %q, want PROXY UNKNOWN", b)
	}

	if _, err := runProbe(t, tcpProbe(address, "v2")); err != nil {
		t.Fatalf("v2: %v", err)
	}
	b := <-received
	h, err := proxyproto.Read(bufio.NewReader(strings.NewReader(string(b))))
	if err != nil || h.Version != 2 || h.Command != proxyproto.LOCAL || len(b) != 16 {
		t.Errorf("v2 check sent %q (header %+v, %v), want a bare 16-byte LOCAL header", b, h, err)
	}

	// Nothing listening.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	if _, err := runProbe(t, tcpProbe(closed, "")); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("closed port: %v, want connection refused", err)
	}
}

// An HTTP check of servers behind a stream with proxy_protocol sends the
// PROXY header first, as the stream does: before, the request alone was
// refused by every such server, all were marked unhealthy and every
// client was reset (with track_upstream, the node went to FAULT).
func TestHTTPProbeSendsTheProxyHeader(t *testing.T) {
	for _, version := range []string{"v1", "v2"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		srv.Listener = &proxyproto.Listener{Listener: ln} // the header is required
		srv.Start()
		t.Cleanup(srv.Close)
		m := NewManager(nil)
		t.Cleanup(m.Stop)
		spec := CheckSpec{Type: "http", Path: "/healthz", ProxyProtocol: version}
		if _, err := runProbe(t, m.probeFor(spec, ln.Addr().String())); err != nil {
			t.Errorf("%s: HTTP check of a server that requires the PROXY header: %v", version, err)
		}
	}
}

// A server address with a zone (a link-local IPv6 server, as
// "[fe80::1%eth0]:8080") is checked like any other: its URL was parsed
// from text, where the zone is an invalid escape, so the check always
// failed.
func TestHTTPProbeOfAZonedAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	m := NewManager(nil)
	t.Cleanup(m.Stop)
	if _, err := runProbe(t, m.probeFor(CheckSpec{Type: "http", Path: "/x?y=1"}, "[::1%lo]:"+port)); err != nil {
		t.Errorf("HTTP check of [::1%%lo]:%s: %v", port, err)
	}
}
