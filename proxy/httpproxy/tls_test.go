package httpproxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// writeCert writes a self-signed certificate for names and returns the
// certificate and key paths.
func writeCert(t *testing.T, dir, cn string, names ...string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certPath, keyPath := filepath.Join(dir, cn+".crt"), filepath.Join(dir, cn+".key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

func TestTLSWithSNIAndHTTP2(t *testing.T) {
	b := startBackend(t, "b")
	dir := t.TempDir()
	c1, k1 := writeCert(t, dir, "one", "one.example")
	c2, k2 := writeCert(t, dir, "two", "two.example")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+fmt.Sprintf(`
[[http]]
listen = ["LISTEN"]
server_name = ["one.example"]
tls_certificate = %q
tls_certificate_key = %q
[[http.location]]
path = "/"
proxy_pass = "http://app/one/"
[[http]]
listen = ["LISTEN"]
server_name = ["two.example"]
tls_certificate = %q
tls_certificate_key = %q
[[http.location]]
path = "/"
proxy_pass = "http://app/two/"
`, c1, k1, c2, k2))
	for _, tc := range []struct {
		sni, proto, wantURI string
		h2                  bool
	}{
		{"one.example", "HTTP/2.0", "/one/x", true},
		{"two.example", "HTTP/2.0", "/two/x", true},
		{"two.example", "HTTP/1.1", "/two/x", false},
		{"unknown.example", "HTTP/1.1", "/one/x", false}, // default server, its certificate
	} {
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, ServerName: tc.sni},
			ForceAttemptHTTP2: tc.h2,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", gw.addr)
			},
		}
		if !tc.h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		resp, err := client.Get("https://" + tc.sni + "/x")
		if err != nil {
			t.Fatalf("%s: %v", tc.sni, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		s := decodeSeen(t, string(body))
		cn := resp.TLS.PeerCertificates[0].Subject.CommonName
		wantCN := strings.Split(strings.TrimPrefix(tc.wantURI, "/"), "/")[0]
		if resp.Proto != tc.proto || s.URI != tc.wantURI || cn != wantCN || s.Header.Get("X-Forwarded-Proto") != "https" {
			t.Errorf("%s: proto %s, URI %s, certificate %s, X-Forwarded-Proto %q", tc.sni, resp.Proto, s.URI, cn, s.Header.Get("X-Forwarded-Proto"))
		}
	}
}

func TestAcceptProxyProtocol(t *testing.T) {
	b := startBackend(t, "b")
	gw := startAppGateway(t, b.addr(), false, "accept_proxy_protocol = true", "")
	raw := rawExchange(t, gw.addr, "PROXY TCP4 192.0.2.10 192.0.2.1 5555 80\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	_, body, _ := strings.Cut(raw, "\r\n\r\n")
	s := decodeSeen(t, body)
	if s.Header.Get("X-Real-Ip") != "192.0.2.10" || s.Header.Get("X-Forwarded-For") != "192.0.2.10" {
		t.Fatalf("backend saw X-Real-IP %q X-Forwarded-For %q", s.Header.Get("X-Real-Ip"), s.Header.Get("X-Forwarded-For"))
	}
	if !strings.HasPrefix(gw.access.String(), "192.0.2.10 - - [") {
		t.Errorf("access log: %s", gw.access.String())
	}
	if codes := statusLines(rawExchange(t, gw.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")); len(codes) != 0 {
		t.Errorf("request without PROXY header answered: %v", codes)
	}
}

// set_real_ip_from: a PROXY header from a source it does not list is
// still required, but does not make its address the client's (anyone who
// reaches the listener past the balancer could name any address); from a
// listed source it does, as nginx's realip module.
func TestSetRealIPFromTrustsOnlyListedSources(t *testing.T) {
	for _, tc := range []struct{ from, want string }{
		{`["192.0.2.0/24"]`, "127.0.0.1"},
		{`["127.0.0.0/8", "2001:db8::1"]`, "198.51.100.10"},
	} {
		b := startBackend(t, "b")
		gw := startAppGateway(t, b.addr(), false, "accept_proxy_protocol = true\nset_real_ip_from = "+tc.from, "")
		raw := rawExchange(t, gw.addr, "PROXY TCP4 198.51.100.10 192.0.2.1 5555 80\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		_, body, _ := strings.Cut(raw, "\r\n\r\n")
		s := decodeSeen(t, body)
		if got := s.Header.Get("X-Real-Ip"); got != tc.want {
			t.Errorf("set_real_ip_from %s, header from 127.0.0.1 naming 198.51.100.10: X-Real-IP %q, want %q", tc.from, got, tc.want)
		}
		if !strings.HasPrefix(gw.access.String(), tc.want+" - - [") {
			t.Errorf("set_real_ip_from %s: access log %q, want $remote_addr %s", tc.from, gw.access.String(), tc.want)
		}
	}
}

func TestAccessLogLine(t *testing.T) {
	b := startBackend(t, "b")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+proxyAllToApp)
	rawExchange(t, gw.addr, "GET /p?q=\"x\" HTTP/1.1\r\nHost: a\r\nReferer: http://r/\r\nUser-Agent: ua \"quoted\"\r\nConnection: close\r\n\r\n")
	line := gw.access.String()
	re := regexp.MustCompile(`^127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "GET /p\?q=\\x22x\\x22 HTTP/1\.1" 200 \d+ "http://r/" "ua \\x22quoted\\x22" "` +
		regexp.QuoteMeta(b.addr()) + `" \d+\.\d{3} \d+\.\d{3}\n$`)
	if !re.MatchString(line) {
		t.Fatalf("access log line %q", line)
	}
}

func TestGenerationShutdownLeavesNoGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	b := startBackend(t, "b")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+proxyAllToApp)
	c := newClient()
	for i := 0; i < 5; i++ {
		get(t, c, gw.url("/"))
	}
	c.CloseIdleConnections()
}

func TestDrainSendsGOAWAYToHTTP2(t *testing.T) {
	b := startBackend(t, "b")
	dir := t.TempDir()
	c1, k1 := writeCert(t, dir, "one", "one.example")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+fmt.Sprintf(`
[[http]]
listen = ["LISTEN"]
tls_certificate = %q
tls_certificate_key = %q
[[http.location]]
path = "/"
proxy_pass = "http://app"
`, c1, k1))
	var dials atomic.Int32
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, ServerName: "one.example"},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "tcp", gw.addr)
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	do := func() {
		t.Helper()
		resp, err := client.Get("https://one.example/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("status %d proto %s", resp.StatusCode, resp.Proto)
		}
	}
	do()
	do()
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d connections before the drain, want 1 (reused)", n)
	}
	gw.current.Load().Drain()
	deadline := time.Now().Add(3 * time.Second)
	for dials.Load() == 1 && time.Now().Before(deadline) {
		do() // the GOAWAY makes the client open a new connection, which is still served
		time.Sleep(20 * time.Millisecond)
	}
	if n := dials.Load(); n < 2 {
		t.Fatal("HTTP/2 connection kept after Drain: no GOAWAY")
	}
}
