package balancer

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/testutil"
)

// TestSelectionMatchesRealNginx runs Debian's nginx on loopback in front of
// named backends and checks that our policies choose the server nginx
// chooses: the round robin sequence, the ip_hash server of clients with
// different 127.x.y.z source addresses (with a down server, so rehashing is
// compared too), and the consistent-hash server of a set of keys.
func TestSelectionMatchesRealNginx(t *testing.T) {
	nginxPath := testutil.RequireCommand(t, "nginx")

	// Backends answer with their own address.
	var addrs []string
	for range 4 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := ln.Addr().String()
		addrs = append(addrs, a)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, a)
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	weights := []int{3, 1, 4, 2}
	spec := func(name, balance string, down int) UpstreamSpec {
		u := UpstreamSpec{Name: name, Balance: balance}
		for i, a := range addrs {
			u.Servers = append(u.Servers, ServerSpec{Address: a, Weight: weights[i], MaxFails: 1, FailTimeout: 10 * time.Second, Down: i == down})
		}
		return u
	}
	upstreamConf := func(u UpstreamSpec, directive string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "upstream %s {\n %s\n", u.Name, directive)
		for _, s := range u.Servers {
			fmt.Fprintf(&b, " server %s weight=%d", s.Address, s.Weight)
			if s.Down {
				b.WriteString(" down")
			}
			b.WriteString(";\n")
		}
		b.WriteString("}\n")
		return b.String()
	}
	rr := spec("rr", "round_robin", -1)
	iph := spec("iph", "ip_hash", 1)
	ch := spec("ch", "hash", -1)

	port := freePort(t)
	dir := t.TempDir()
	conf := fmt.Sprintf(`
daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 128; }
http {
 access_log off;
 client_body_temp_path %[1]s/body;
 proxy_temp_path %[1]s/proxy;
 fastcgi_temp_path %[1]s/fastcgi;
 uwsgi_temp_path %[1]s/uwsgi;
 scgi_temp_path %[1]s/scgi;
 %[2]s %[3]s %[4]s
 server {
  listen 127.0.0.1:%[5]d;
  location /rr { proxy_pass http://rr; }
  location /iph { proxy_pass http://iph; }
  location /ch { proxy_pass http://ch; }
 }
}
`, dir, upstreamConf(rr, ""), upstreamConf(iph, "ip_hash;"), upstreamConf(ch, "hash $arg_k consistent;"), port)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginxPath, "-e", filepath.Join(dir, "error.log"), "-p", dir, "-c", confPath)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, base+"/rr")

	tab, _ := newTestTable()
	build := func(s UpstreamSpec) *Upstream { return mustBuild(t, tab, s) }

	// Round robin: the sequence continues from the request waitHTTP made.
	urr := build(rr)
	pickOne(t, urr, PickRequest{}).Release()
	for i := range 20 {
		got := get(t, base+"/rr", "")
		if want := pickOne(t, urr, PickRequest{}); got != want.Address() {
			t.Fatalf("round robin request %d: nginx chose %s, we chose %s", i, got, want.Address())
		} else {
			want.Release()
		}
	}

	// ip_hash from many client addresses; server 1 is down in both.
	uiph := build(iph)
	for i := range 48 {
		src := fmt.Sprintf("127.%d.%d.%d", 1+i%5, i*7%256, 1+i)
		got := get(t, base+"/iph", src)
		want := pickOne(t, uiph, PickRequest{ClientIP: ip(src)})
		want.Release()
		if got != want.Address() {
			t.Errorf("ip_hash client %s: nginx chose %s, we chose %s", src, got, want.Address())
		}
	}

	// Consistent hash of request keys.
	uch := build(ch)
	for i := range 64 {
		key := fmt.Sprintf("user-%d", i*37)
		got := get(t, base+"/ch?k="+url.QueryEscape(key), "")
		want := pickOne(t, uch, PickRequest{HashKey: key})
		want.Release()
		if got != want.Address() {
			t.Errorf("hash key %s: nginx chose %s, we chose %s", key, got, want.Address())
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitHTTP(t *testing.T, u string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not answer: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// get fetches u from source address src ("" = any) on a new connection.
func get(t *testing.T, u, src string) string {
	t.Helper()
	d := &net.Dialer{Timeout: 2 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", u, src, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
	}
	return string(b)
}
