package config

import (
	"strings"
	"testing"
)

// keepalived's VRRP version lives in global_defs { vrrp_version 3 } or in
// the instance (version 3); vipgate's default is 2. An operator migrating
// one node at a time who copies vrrp_version must be told where it goes:
// a vipgate v2 node next to a keepalived v3 node is a split brain (each
// drops the other's adverts as bad_version).
func TestVRRPVersionHint(t *testing.T) {
	for _, tc := range []struct{ name, file, key, hint string }{
		{"global vrrp_version", "[global]\nvrrp_version = 3 # <-\n" + httpApp, "global.vrrp_version", "version = 3"},
		{"instance vrrp_version", v0("vrrp_version = 3 # <-\n"), "vrrp[0].vrrp_version", "version = 3"},
		{"global vrrp_garp_master_delay", "[global]\nvrrp_garp_master_delay = \"5s\" # <-\n" + httpApp, "global.vrrp_garp_master_delay", "garp_master_delay"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file), "vipgate.toml")
			if err == nil {
				t.Fatal("accepted")
			}
			var msg string
			for _, p := range problemList(t, err) {
				if p.Key == tc.key {
					msg = p.Message
				}
			}
			if msg == "" {
				t.Fatalf("no problem at %s: %v", tc.key, err)
			}
			if !strings.Contains(msg, tc.hint) {
				t.Errorf("%s: %q; want it to point to %s", tc.key, msg, tc.hint)
			}
		})
	}
}
