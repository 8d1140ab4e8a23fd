package caps

import (
	"strings"
	"testing"

	"github.com/vipgate/vipgate/config"
)

func TestNeedsAndMissing(t *testing.T) {
	cfg, err := config.Parse([]byte(`
[global]
admin_listen = ""
[upstream.app]
[[upstream.app.server]]
address = "127.0.0.1:8080"
[[http]]
listen = ["0.0.0.0:80", "0.0.0.0:8080"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
[[vrrp]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
virtual_ipaddress = ["192.0.2.50/24"]
`), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	needs := Needs(cfg, 1000, 1024)
	var got []string
	for _, n := range needs {
		got = append(got, n.Name())
	}
	if strings.Join(got, ",") != "CAP_NET_RAW,CAP_NET_ADMIN,CAP_NET_BIND_SERVICE" {
		t.Fatalf("needs = %v", got)
	}
	if !strings.Contains(needs[2].Why, "0.0.0.0:80") || strings.Contains(needs[2].Why, "8080") {
		t.Errorf("bind reason names the wrong ports: %q", needs[2].Why)
	}
	// Only CAP_NET_ADMIN held: the other two are missing.
	missing := Missing(needs, 1<<NetAdmin)
	if len(missing) != 2 || missing[0].Cap != NetRaw || missing[1].Cap != NetBindService {
		t.Fatalf("missing = %+v", missing)
	}
	if len(Needs(cfg, 1000, 0)) != 2 {
		t.Errorf("with ip_unprivileged_port_start = 0 no bind capability is needed")
	}
}
