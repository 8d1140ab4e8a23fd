package httpproxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/testutil"
)

// Differential tests: the same upstreams behind nginx (Debian's) and
// vipgate, the same requests, and what the backends saw must be the same.
// nginx's own defaults differ from vipgate's contract (Host is
// $proxy_host, no X-Forwarded-For, HTTP/1.0 upstream), so the nginx
// fixture sets the contract's headers and proxy_http_version 1.1.

const nginxContractHeaders = `
    proxy_http_version 1.1;
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header Connection "";
`

// startNginx runs nginx in the foreground with an http {} block body and
// returns its listen address ("LISTEN" in the body stands for it).
func startNginx(t *testing.T, httpBody string) string {
	t.Helper()
	bin := testutil.RequireCommand(t, "nginx")
	dir := t.TempDir()
	ln := listenLoopback(t)
	addr := ln.Addr().String()
	ln.Close()
	for _, d := range []string{"tmp", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`worker_processes 1;
error_log %[1]s/logs/error.log warn;
pid %[1]s/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
%[2]s
}
`, dir, strings.ReplaceAll(httpBody, "LISTEN", addr))
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-g", "daemon off; master_process off;")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "logs", "error.log")); err == nil {
				t.Logf("nginx error.log:\n%s", b)
			}
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawRequest sends one request from source address src ("" = any) and
// returns the status and body.
func rawRequest(t *testing.T, addr, src, raw string) (int, string) {
	t.Helper()
	d := net.Dialer{Timeout: 3 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("response to %q: %v", raw, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestNginxDifferentialURIAndHeaders(t *testing.T) {
	testutil.RequireCommand(t, "nginx")
	b := startBackend(t, "one")
	locations := []struct{ path, proxyPass string }{
		{"/app1", "http://one/app1"},
		{"/a/", "http://one/b/"},
		{"/raw", "http://one"},
		{"= /exact", "http://one/other"},
		{"~ \\.php$", "http://one"},
		{"/", "http://one/root/"},
		{"/vars/", "http://one"},
	}
	var ngx, toml strings.Builder
	fmt.Fprintf(&ngx, "upstream one { server %s; }\nserver {\n  listen LISTEN;\n%s\n", b.addr(), nginxContractHeaders)
	toml.WriteString(upstreamTOML("one", fmt.Sprintf("address = %q", b.addr())))
	toml.WriteString("[[http]]\nlisten = [\"LISTEN\"]\n")
	const varsValue = "$host|$http_host|$scheme|$request_uri|$uri|$cookie_a|$http_user_agent|$http_x_custom|$remote_addr|$proxy_add_x_forwarded_for"
	for _, l := range locations {
		if l.path == "/vars/" {
			// nginx drops inherited proxy_set_header once a location sets
			// one: repeat the contract's headers there.
			fmt.Fprintf(&ngx, "  location %s { proxy_pass %s; %s proxy_set_header X-Vars %q; proxy_set_header X-Empty \"\"; proxy_set_header Cookie \"\"; }\n",
				l.path, l.proxyPass, nginxContractHeaders, varsValue)
			fmt.Fprintf(&toml, "[[http.location]]\npath = %q\nproxy_pass = %q\nproxy_set_header = { X-Vars = %q, X-Empty = \"\", Cookie = \"\" }\n",
				l.path, l.proxyPass, varsValue)
			continue
		}
		fmt.Fprintf(&ngx, "  location %s { proxy_pass %s; }\n", l.path, l.proxyPass)
		fmt.Fprintf(&toml, "[[http.location]]\npath = %q\nproxy_pass = %q\n", l.path, l.proxyPass)
	}
	ngx.WriteString("}\n")
	nginxAddr := startNginx(t, ngx.String())
	gw := startGateway(t, toml.String())

	uris := []string{
		"/app1/x?q=1", "/app1", "/application", "/a/x/y", "/a//x/../y", "/a/%7Efoo%20bar?x=%20",
		"/raw//x/../y%2F?z", "/exact?k", "/exact/no", "/x/y.php?a", "/a/b.php", "/other/%2e%2e/z",
		"/a/x+y;p=1", "/app1/caf%C3%A9", "/a/sp%20ace/", "/a/%3Fq", "/", "/zzz/./y",
		"/vars/a%20b/../c?x=1&y=%20", "/vars/", "/vars/x.php",
	}
	compared := []string{"Host", "X-Forwarded-For", "X-Real-Ip", "X-Forwarded-Proto", "User-Agent", "Accept", "Cookie", "X-Custom",
		"Connection", "X-Vars", "X-Empty"}
	for _, uri := range uris {
		raw := "GET " + uri + " HTTP/1.1\r\nHost: www.example.com:8080\r\nX-Forwarded-For: 203.0.113.1\r\n" +
			"User-Agent: diff/1\r\nAccept: */*\r\nCookie: a=1\r\nX-Custom: v\r\nConnection: close\r\n\r\n"
		ns, nb := rawRequest(t, nginxAddr, "127.0.0.1", raw)
		vs, vb := rawRequest(t, gw.addr, "127.0.0.1", raw)
		if ns != vs {
			t.Errorf("%s: nginx status %d, vipgate %d", uri, ns, vs)
			continue
		}
		if ns != 200 {
			continue
		}
		n, v := decodeSeen(t, nb), decodeSeen(t, vb)
		if n.URI != v.URI {
			t.Errorf("%s: upstream URI nginx %q, vipgate %q", uri, n.URI, v.URI)
		}
		if n.Host != v.Host {
			t.Errorf("%s: Host nginx %q, vipgate %q", uri, n.Host, v.Host)
		}
		for _, h := range compared {
			if n.Header.Get(h) != v.Header.Get(h) {
				t.Errorf("%s: %s nginx %q, vipgate %q", uri, h, n.Header.Get(h), v.Header.Get(h))
			}
		}
		if fmt.Sprint(n.Header) != fmt.Sprint(v.Header) {
			t.Errorf("%s: header sets differ\nnginx   %v\nvipgate %v", uri, n.Header, v.Header)
		}
	}
}

func TestNginxDifferentialNoUserAgent(t *testing.T) {
	testutil.RequireCommand(t, "nginx")
	b := startBackend(t, "one")
	nginxAddr := startNginx(t, fmt.Sprintf("upstream one { server %s; }\nserver {\n  listen LISTEN;\n%s\n  location / { proxy_pass http://one; }\n}\n", b.addr(), nginxContractHeaders))
	gw := startGateway(t, upstreamTOML("one", fmt.Sprintf("address = %q", b.addr()))+"[[http]]\nlisten = [\"LISTEN\"]\n[[http.location]]\npath = \"/\"\nproxy_pass = \"http://one\"\n")
	raw := "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
	_, nb := rawRequest(t, nginxAddr, "", raw)
	_, vb := rawRequest(t, gw.addr, "", raw)
	n, v := decodeSeen(t, nb), decodeSeen(t, vb)
	if _, ok := n.Header["User-Agent"]; ok {
		t.Fatalf("nginx added a User-Agent: %v", n.Header)
	}
	if ua, ok := v.Header["User-Agent"]; ok {
		t.Errorf("vipgate sent User-Agent %q for a client without one", ua)
	}
	delete(n.Header, "Connection")
	delete(v.Header, "Connection")
	if fmt.Sprint(n.Header) != fmt.Sprint(v.Header) {
		t.Errorf("headers differ\nnginx   %v\nvipgate %v", n.Header, v.Header)
	}
}

// answerer names who answered: the backend of a JSON echo, else the body.
func answerer(t *testing.T, status int, body string) string {
	var s seen
	if json.Unmarshal([]byte(body), &s) == nil && s.Backend != "" {
		return fmt.Sprintf("%d %s", status, s.Backend)
	}
	if len(body) > 20 {
		body = body[:20]
	}
	return fmt.Sprintf("%d %q", status, body)
}

func TestNginxDifferentialBalancing(t *testing.T) {
	testutil.RequireCommand(t, "nginx")
	rr := []*backend{startBackend(t, "rr3"), startBackend(t, "rr1"), startBackend(t, "rr4")}
	ih := []*backend{startBackend(t, "ih1"), startBackend(t, "ih2"), startBackend(t, "ih3"), startBackend(t, "ih4")}
	ngx := fmt.Sprintf(`
upstream rr { server %s weight=3; server %s weight=1; server %s weight=4; }
upstream ih { ip_hash; server %s; server %s weight=2; server %s; server %s; }
upstream hh { hash $request_uri consistent; server %s; server %s weight=2; server %s; server %s; }
server {
  listen LISTEN;
%s
  location /rr { proxy_pass http://rr; }
  location /ih { proxy_pass http://ih; }
  location /hh { proxy_pass http://hh; }
}
`, rr[0].addr(), rr[1].addr(), rr[2].addr(), ih[0].addr(), ih[1].addr(), ih[2].addr(), ih[3].addr(),
		ih[0].addr(), ih[1].addr(), ih[2].addr(), ih[3].addr(), nginxContractHeaders)
	toml := upstreamTOML("rr",
		fmt.Sprintf("address = %q\nweight = 3", rr[0].addr()),
		fmt.Sprintf("address = %q\nweight = 1", rr[1].addr()),
		fmt.Sprintf("address = %q\nweight = 4", rr[2].addr())) +
		upstreamTOML("ih",
			fmt.Sprintf("address = %q", ih[0].addr()),
			fmt.Sprintf("address = %q\nweight = 2", ih[1].addr()),
			fmt.Sprintf("address = %q", ih[2].addr()),
			fmt.Sprintf("address = %q", ih[3].addr())) +
		upstreamTOML("hh",
			fmt.Sprintf("address = %q", ih[0].addr()),
			fmt.Sprintf("address = %q\nweight = 2", ih[1].addr()),
			fmt.Sprintf("address = %q", ih[2].addr()),
			fmt.Sprintf("address = %q", ih[3].addr())) + `
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/rr"
proxy_pass = "http://rr"
[[http.location]]
path = "/ih"
proxy_pass = "http://ih"
[[http.location]]
path = "/hh"
proxy_pass = "http://hh"
`
	toml = strings.Replace(toml, "[upstream.ih]\n", "[upstream.ih]\nbalance = \"ip_hash\"\n", 1)
	toml = strings.Replace(toml, "[upstream.hh]\n", "[upstream.hh]\nbalance = \"hash\"\nhash = \"$request_uri\"\n", 1)
	nginxAddr := startNginx(t, ngx)
	gw := startGateway(t, toml)

	req := func(path string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	}
	var nseq, vseq []string
	for i := 0; i < 24; i++ {
		ns, nb := rawRequest(t, nginxAddr, "", req("/rr"))
		vs, vb := rawRequest(t, gw.addr, "", req("/rr"))
		nseq = append(nseq, answerer(t, ns, nb))
		vseq = append(vseq, answerer(t, vs, vb))
	}
	t.Logf("round robin: %v", nseq)
	if strings.Join(nseq, ",") != strings.Join(vseq, ",") {
		t.Errorf("round robin 3:1:4 sequence\nnginx   %v\nvipgate %v", nseq, vseq)
	}
	for i := 0; i < 24; i++ {
		src := fmt.Sprintf("127.%d.%d.%d", i*7%256, i*13%256+1, i+2)
		ns, nb := rawRequest(t, nginxAddr, src, req("/ih"))
		vs, vb := rawRequest(t, gw.addr, src, req("/ih"))
		if n, v := answerer(t, ns, nb), answerer(t, vs, vb); n != v {
			t.Errorf("ip_hash client %s: nginx %s, vipgate %s", src, n, v)
		}
	}
	for i := 0; i < 40; i++ {
		uri := fmt.Sprintf("/hh/item/%d?v=%d", i*37, i%3)
		ns, nb := rawRequest(t, nginxAddr, "", req(uri))
		vs, vb := rawRequest(t, gw.addr, "", req(uri))
		if n, v := answerer(t, ns, nb), answerer(t, vs, vb); n != v {
			t.Errorf("hash $request_uri consistent, %s: nginx %s, vipgate %s", uri, n, v)
		}
	}
}

func TestNginxDifferentialNextUpstream(t *testing.T) {
	testutil.RequireCommand(t, "nginx")
	bad, good := startBackend(t, "bad"), startBackend(t, "good")
	bad.handle = func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(502)
		io.WriteString(w, "bad")
	}
	deadAddr := refusingAddr(t)
	other := startBackend(t, "other")
	ngx := fmt.Sprintf(`
upstream nu { server %s; server %s; }
upstream dead { server %s; server %s; }
server {
  listen LISTEN;
%s
  location /nu { proxy_pass http://nu; proxy_next_upstream error timeout http_502; }
  location /dead { proxy_pass http://dead; }
}
`, bad.addr(), good.addr(), deadAddr, other.addr(), nginxContractHeaders)
	toml := upstreamTOML("nu", fmt.Sprintf("address = %q", bad.addr()), fmt.Sprintf("address = %q", good.addr())) +
		upstreamTOML("dead", fmt.Sprintf("address = %q", deadAddr), fmt.Sprintf("address = %q", other.addr())) + `
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/nu"
proxy_pass = "http://nu"
proxy_next_upstream = ["error", "timeout", "http_502"]
[[http.location]]
path = "/dead"
proxy_pass = "http://dead"
`
	nginxAddr := startNginx(t, ngx)
	gw := startGateway(t, toml)
	methods := []string{"POST", "GET", "POST", "PUT", "PATCH", "POST", "DELETE", "GET", "POST"}
	run := func(addr, path string) []string {
		var out []string
		for _, m := range methods {
			b0, g0 := bad.hits.Load(), good.hits.Load()
			st, body := rawRequest(t, addr, "", m+" "+path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody")
			out = append(out, fmt.Sprintf("%s:%s bad+%d good+%d", m, answerer(t, st, body), bad.hits.Load()-b0, good.hits.Load()-g0))
		}
		return out
	}
	for _, path := range []string{"/nu", "/dead"} {
		n := run(nginxAddr, path)
		v := run(gw.addr, path)
		t.Logf("%s outcomes:\n  %s", path, strings.Join(n, "\n  "))
		if strings.Join(n, "\n") != strings.Join(v, "\n") {
			t.Errorf("%s next upstream outcomes differ\nnginx:\n  %s\nvipgate:\n  %s", path, strings.Join(n, "\n  "), strings.Join(v, "\n  "))
		}
	}
}
