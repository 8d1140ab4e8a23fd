package config

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeKeyPair writes a self-signed certificate and its key as PEM files.
func writeKeyPair(t *testing.T, dir, name string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "vipgate.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writeFile(t, certPath, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o644)
	writeFile(t, keyPath, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})), 0o600)
	return certPath, keyPath
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is masked by umask
		t.Fatal(err)
	}
}

// hostFixture is a directory with every file a valid host check needs.
type hostFixture struct {
	dir, cert, key, otherKey, script, page, root string
}

func newHostFixture(t *testing.T) hostFixture {
	dir := t.TempDir()
	f := hostFixture{dir: dir}
	f.cert, f.key = writeKeyPair(t, dir, "site")
	_, f.otherKey = writeKeyPair(t, dir, "other")
	f.script = filepath.Join(dir, "check.sh")
	writeFile(t, f.script, "#!/bin/sh\nexit 0\n", 0o755)
	f.page = filepath.Join(dir, "50x.html")
	writeFile(t, f.page, "<h1>down</h1>\n", 0o644)
	f.root = filepath.Join(dir, "www")
	if err := os.Mkdir(f.root, 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

// file is a complete configuration naming the fixture's files; replace
// swaps one value for a mistake.
func (f hostFixture) file(replace ...string) string {
	s := `
[global]
pid_file = "DIR/vipgate.pid"
error_log = "DIR/error.log"
access_log = "DIR/access.log"
script_user = "nobody"

[upstream.app]
[[upstream.app.server]]
address = "127.0.0.1:8080"

[[http]]
listen = ["127.0.0.1:8443"]
tls_certificate = "CERT"
tls_certificate_key = "KEY"
error_page = { "502 503" = "PAGE" }

[[http.location]]
path = "/"
proxy_pass = "http://app"

[[http.location]]
path = "/static"
root = "ROOT"

[vrrp_script.chk]
script = "SCRIPT --quiet"

[[vrrp]]
name = "VI_1"
interface = "lo"
virtual_router_id = 51
mcast_src_ip = "127.0.0.1"
virtual_ipaddress = ["192.0.2.100/24 dev lo"]
track_interface = ["lo"]
track_script = ["chk"]
notify_master = "SCRIPT"
notify = "SCRIPT"
`
	s = strings.NewReplacer("DIR", f.dir, "CERT", f.cert, "KEY", f.key, "PAGE", f.page, "ROOT", f.root, "SCRIPT", f.script).Replace(s)
	for i := 0; i+1 < len(replace); i += 2 {
		if !strings.Contains(s, replace[i]) {
			panic("fixture has no " + replace[i])
		}
		s = strings.Replace(s, replace[i], replace[i+1], 1)
	}
	return s
}

func TestCheckHostAcceptsGoodHost(t *testing.T) {
	f := newHostFixture(t)
	cfg := mustParse(t, f.file())
	if err := CheckHost(cfg); err != nil {
		t.Fatalf("CheckHost: %v", err)
	}
}

func TestCheckHostFindings(t *testing.T) {
	f := newHostFixture(t)
	worldWritable := filepath.Join(f.dir, "ww.sh")
	writeFile(t, worldWritable, "#!/bin/sh\n", 0o777)
	notExec := filepath.Join(f.dir, "noexec.sh")
	writeFile(t, notExec, "#!/bin/sh\n", 0o644)
	notPEM := filepath.Join(f.dir, "garbage.pem")
	writeFile(t, notPEM, "not a certificate\n", 0o644)
	missing := filepath.Join(f.dir, "missing")

	cases := []struct {
		name     string
		replace  []string
		key, msg string
	}{
		{"vrrp interface", []string{`interface = "lo"`, `interface = "nonexistent0"`}, "vrrp[0].interface", `interface "nonexistent0" does not exist`},
		{"VIP dev", []string{"dev lo", "dev nonexistent0"}, "vrrp[0].virtual_ipaddress[0]", `interface "nonexistent0" does not exist`},
		{"track_interface", []string{`track_interface = ["lo"]`, `track_interface = ["lo", "nonexistent0"]`}, "vrrp[0].track_interface[1]", `interface "nonexistent0" does not exist`},
		{"mcast_src_ip not local", []string{`mcast_src_ip = "127.0.0.1"`, `mcast_src_ip = "192.0.2.77"`}, "vrrp[0].mcast_src_ip", "not an address of this host"},
		{"certificate missing", []string{f.cert, missing}, "http[0].tls_certificate", missing + " does not exist"},
		{"key missing", []string{f.key, missing}, "http[0].tls_certificate_key", missing + " does not exist"},
		{"certificate not PEM", []string{f.cert, notPEM}, "http[0].tls_certificate", "not a usable certificate and key pair"},
		{"key of another certificate", []string{f.key, f.otherKey}, "http[0].tls_certificate", "not a usable certificate and key pair"},
		{"error page missing", []string{f.page, missing}, `http[0].error_page."502 503"`, missing + " does not exist"},
		{"error page is a directory", []string{f.page, f.dir}, `http[0].error_page."502 503"`, "is a directory"},
		{"root missing", []string{f.root, missing}, "http[0].location[1].root", missing + " does not exist"},
		{"root is a file", []string{f.root, f.page}, "http[0].location[1].root", "is not a directory"},
		{"vrrp_script missing", []string{`script = "` + f.script, `script = "` + missing}, "vrrp_script.chk.script", missing + " does not exist"},
		{"vrrp_script not executable", []string{`script = "` + f.script, `script = "` + notExec}, "vrrp_script.chk.script", "is not executable"},
		{"vrrp_script world-writable", []string{`script = "` + f.script, `script = "` + worldWritable}, "vrrp_script.chk.script", "writable by every user"},
		{"vrrp_script not in PATH", []string{`script = "` + f.script, `script = "no-such-check-command`}, "vrrp_script.chk.script", "not found in PATH"},
		{"notify_master missing", []string{`notify_master = "` + f.script, `notify_master = "` + missing}, "vrrp[0].notify_master", "does not exist"},
		{"notify directory", []string{`notify = "` + f.script, `notify = "` + f.dir}, "vrrp[0].notify", "is not a regular file"},
		{"script_user", []string{`script_user = "nobody"`, `script_user = "no-such-user-vipgate"`}, "global.script_user", `user "no-such-user-vipgate" does not exist`},
		{"pid_file directory", []string{f.dir + "/vipgate.pid", missing + "/vipgate.pid"}, "global.pid_file", missing + " does not exist"},
		{"error_log directory", []string{f.dir + "/error.log", missing + "/error.log"}, "global.error_log", "does not exist"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := f.file(tc.replace...)
			cfg := mustParse(t, file)
			err := CheckHost(cfg)
			if err == nil {
				t.Fatal("CheckHost found nothing")
			}
			ps := problemList(t, err)
			if len(ps) != 1 {
				t.Errorf("got %d problems, want 1:\n%v", len(ps), err)
			}
			p := ps[0]
			if p.Key != tc.key || !strings.Contains(p.Message, tc.msg) {
				t.Errorf("got %v\nwant key %s, message containing %q", p, tc.key, tc.msg)
			}
			if p.Line == 0 {
				t.Errorf("problem %v has no line", p)
			}
		})
	}
}

// TestCheckHostReportsAll: every host problem at once, like Parse.
func TestCheckHostReportsAll(t *testing.T) {
	f := newHostFixture(t)
	cfg := mustParse(t, f.file(`interface = "lo"`, `interface = "nonexistent0"`, f.page, "/nonexistent/50x.html", f.root, "/nonexistent/www"))
	ps := problemList(t, CheckHost(cfg))
	if len(ps) != 3 {
		t.Errorf("got %d problems, want 3: %v", len(ps), ps)
	}
}

func TestCheckHostVRRPSourceAddress(t *testing.T) {
	f := newHostFixture(t)
	// Without mcast_src_ip, lo's 127.0.0.1 is the IPv4 source.
	cfg := mustParse(t, f.file(`mcast_src_ip = "127.0.0.1"`, ``))
	if err := CheckHost(cfg); err != nil {
		t.Errorf("IPv4 instance on lo: %v", err)
	}
	// lo has ::1 but no link-local address, which VRRP over IPv6 sends from.
	cfg = mustParse(t, f.file(`mcast_src_ip = "127.0.0.1"`, `version = 3`, `virtual_ipaddress = ["192.0.2.100/24 dev lo"]`, `virtual_ipaddress = ["2001:db8::100/64"]`))
	ps := problemList(t, CheckHost(cfg))
	if len(ps) != 1 || ps[0].Key != "vrrp[0].interface" || !strings.Contains(ps[0].Message, "no IPv6 link-local address") {
		t.Errorf("IPv6 instance on lo: %v", ps)
	}
}

// TestCheckHostResolvesNames uses a fake resolver: tests send no DNS query.
func TestCheckHostResolvesNames(t *testing.T) {
	cfg := mustParse(t, `
[upstream.app]
[[upstream.app.server]]
address = "tomcat-1.internal:8080"
[[upstream.app.server]]
address = "tomcat-2.internal:8080"
[[upstream.app.server]]
address = "198.51.100.3:8080"

[[http]]
listen = ["127.0.0.1:8888"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
[[http.location]]
path = "/legacy"
proxy_pass = "http://tomcat-2.internal:8080/old"

[[stream]]
listen = ["127.0.0.1:1883"]
proxy_pass = "broker.internal:1883"
`)
	asked := map[string]int{}
	err := checkHost(cfg, func(ctx context.Context, host string) error {
		asked[host]++
		if _, ok := ctx.Deadline(); !ok {
			t.Errorf("lookup of %s has no deadline", host)
		}
		if host == "tomcat-1.internal" {
			return nil
		}
		return errors.New("no such host")
	})
	want := map[string]int{"tomcat-1.internal": 1, "tomcat-2.internal": 1, "broker.internal": 1}
	if !reflect.DeepEqual(asked, want) {
		t.Errorf("looked up %v, want each name once: %v", asked, want)
	}
	var keys []string
	for _, p := range problemList(t, err) {
		if !strings.Contains(p.Message, "does not resolve: no such host") {
			t.Errorf("unexpected problem %v", p)
		}
		keys = append(keys, p.Key)
	}
	wantKeys := []string{"upstream.app.server[1].address", "http[0].location[1].proxy_pass", "stream[0].proxy_pass"}
	if !reflect.DeepEqual(keys, wantKeys) {
		t.Errorf("problems at %q, want %q", keys, wantKeys)
	}
}
