package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const examplesDir = "../examples"

// exampleFiles lists every examples/**/*.toml.
func exampleFiles(t testing.TB) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(examplesDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && filepath.Ext(path) == ".toml" {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", examplesDir, err)
	}
	return files
}

// TestExamplesLoad is `vipgate -t --no-host` on every example: each loads
// without a problem and without a warning (an example teaches; it should
// not need `-t` to explain itself).
func TestExamplesLoad(t *testing.T) {
	files := exampleFiles(t)
	if len(files) < 8 {
		t.Fatalf("found %d example files under %s, want the four pairs at least", len(files), examplesDir)
	}
	for _, path := range files {
		t.Run(path, func(t *testing.T) {
			cfg, err := Load(path)
			if err != nil {
				t.Fatalf("config.Load:\n%v", err)
			}
			for _, w := range cfg.Warnings {
				t.Errorf("warning: %s", w)
			}
			if len(cfg.HTTP)+len(cfg.Stream) == 0 || len(cfg.VRRP) == 0 {
				t.Errorf("an example should proxy something and hold a VIP: %d [[http]], %d [[stream]], %d [[vrrp]]", len(cfg.HTTP), len(cfg.Stream), len(cfg.VRRP))
			}
		})
	}
}

// TestExamplePairsAgree: node A and node B of a pair may differ only in what
// must differ; a pair that disagrees on the router id, VIPs, password or
// advert interval does not form one VRRP group, and one with different
// upstreams serves differently after a failover.
func TestExamplePairsAgree(t *testing.T) {
	pairs := 0
	for _, a := range exampleFiles(t) {
		if filepath.Base(a) != "node-a.toml" {
			continue
		}
		b := filepath.Join(filepath.Dir(a), "node-b.toml")
		if _, err := os.Stat(b); err != nil {
			t.Errorf("%s has no node-b.toml next to it", a)
			continue
		}
		pairs++
		t.Run(filepath.Dir(a), func(t *testing.T) {
			ca, err := Load(a)
			if err != nil {
				t.Fatal(err)
			}
			cb, err := Load(b)
			if err != nil {
				t.Fatal(err)
			}
			if ca.Global.NodeName == cb.Global.NodeName {
				t.Errorf("both nodes are named %q", ca.Global.NodeName)
			}
			for _, part := range []struct {
				name string
				a, b any
			}{
				{"upstreams", ca.Upstream, cb.Upstream},
				{"[[http]]", ca.HTTP, cb.HTTP},
				{"[[stream]]", ca.Stream, cb.Stream},
				{"vrrp_script", ca.VRRPScript, cb.VRRPScript},
			} {
				if !reflect.DeepEqual(part.a, part.b) {
					t.Errorf("%s differ between node A and node B", part.name)
				}
			}
			if len(ca.VRRP) != len(cb.VRRP) {
				t.Fatalf("node A has %d [[vrrp]], node B %d", len(ca.VRRP), len(cb.VRRP))
			}
			for i := range ca.VRRP {
				ra, rb := ca.VRRP[i], cb.VRRP[i]
				same := []struct {
					name string
					a, b any
				}{
					{"name", ra.Name, rb.Name},
					{"virtual_router_id", ra.VirtualRouterID, rb.VirtualRouterID},
					{"version", ra.Version, rb.Version},
					{"advert_int", ra.AdvertInt.Duration, rb.AdvertInt.Duration},
					{"auth_pass", ra.AuthPass, rb.AuthPass},
					{"virtual_ipaddress", ra.VIPs, rb.VIPs},
					{"preempt", *ra.Preempt, *rb.Preempt},
					{"track_script", ra.TrackScript, rb.TrackScript},
				}
				for _, s := range same {
					if !reflect.DeepEqual(s.a, s.b) {
						t.Errorf("vrrp[%d].%s differs: node A %v, node B %v", i, s.name, s.a, s.b)
					}
				}
				if *ra.Priority == *rb.Priority {
					t.Errorf("vrrp[%d]: both nodes have priority %d; the higher primary address would decide", i, *ra.Priority)
				}
				if ra.McastSrcIP != "" && ra.McastSrcIP == rb.McastSrcIP {
					t.Errorf("vrrp[%d]: both nodes use mcast_src_ip %s", i, ra.McastSrcIP)
				}
			}
		})
	}
	if pairs < 4 {
		t.Errorf("found %d node-a/node-b pairs, want 4", pairs)
	}
}

// A server whose locations send $host upstream has a server_name, as the
// tutorials' servers do: $host falls back to it for a request without a
// Host (HTTP/1.0), and without one the server got "Host: :8888" where the
// tutorial's nginx sent "localhost:8888".
func TestExamplesNameTheServerWhereHostIsSent(t *testing.T) {
	for _, path := range exampleFiles(t) {
		cfg, err := Load(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for i, h := range cfg.HTTP {
			for _, l := range h.Location {
				for name, value := range l.ProxySetHeader {
					if strings.Contains(value, "$host") && len(h.ServerName) == 0 {
						t.Errorf("%s: http[%d] sends %s = %q with no server_name for $host to fall back to", path, i, name, value)
					}
				}
			}
		}
	}
}
