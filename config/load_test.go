package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, file string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(file), "test.toml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

// TestDefaults: keys left out get the values the contract documents.
func TestDefaults(t *testing.T) {
	cfg := mustParse(t, `
[upstream.app]
[[upstream.app.server]]
address = "127.0.0.1:8080"
[upstream.app.health_check]

[upstream.tcp]
max_fails = 4
fail_timeout = "7s"
[[upstream.tcp.server]]
address = "127.0.0.1:1883"
[[upstream.tcp.server]]
address = "127.0.0.1:1884"
max_fails = 0
fail_timeout = "1s"
[upstream.tcp.health_check]
type = "tcp"

[[http]]
listen = ["127.0.0.1:8888"]
[[http.location]]
path = "/"
proxy_pass = "http://app"

[[stream]]
listen = ["127.0.0.1:1883"]
proxy_pass = "tcp"

[vrrp_script.chk]
script = "/bin/true"
interval = "3s"

[[vrrp]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
virtual_ipaddress = ["192.0.2.100/24"]
track_script = ["chk"]
`)
	host, _ := os.Hostname()
	g := cfg.Global
	checks := []struct {
		name      string
		got, want any
	}{
		{"global.node_name", g.NodeName, host},
		{"global.log_level", g.LogLevel, "info"},
		{"global.log_format", g.LogFormat, "console"},
		{"global.error_log", g.ErrorLog, "stderr"},
		{"global.access_log", g.AccessLog, "stdout"},
		{"global.access_log_buffer (unbuffered, as nginx)", g.AccessLogBuffer.Bytes, int64(0)},
		{"global.access_log_flush", g.AccessLogFlush.Duration, time.Second},
		{"global.pid_file", g.PidFile, "/run/vipgate.pid"},
		{"global.admin_listen", *g.AdminListen, "127.0.0.1:9900"},
		{"global.shutdown_timeout", g.ShutdownTimeout.Duration, 30 * time.Second},
		{"global.script_user", g.ScriptUser, "nobody"},
	}
	app := cfg.Upstream["app"]
	s0 := app.Server[0]
	checks = append(checks, []struct {
		name      string
		got, want any
	}{
		{"upstream.app.name", app.Name, "app"},
		{"upstream.balance", app.Balance, "round_robin"},
		{"upstream.keepalive", *app.Keepalive, 32},
		{"upstream.max_fails", *app.MaxFails, 1},
		{"upstream.fail_timeout", app.FailTimeout.Duration, 10 * time.Second},
		{"server.weight", *s0.Weight, 1},
		{"server.max_fails", *s0.MaxFails, 1},
		{"server.fail_timeout", s0.FailTimeout.Duration, 10 * time.Second},
		{"server.backup", s0.Backup, false},
		{"server.max_conns", s0.MaxConns, 0},
		{"health_check.type", app.HealthCheck.Type, "http"},
		{"health_check.path", app.HealthCheck.Path, "/"},
		{"health_check.expect_status", app.HealthCheck.StatusRanges, [][2]int{{200, 399}}},
		{"health_check.interval", app.HealthCheck.Interval.Duration, 2 * time.Second},
		{"health_check.timeout", app.HealthCheck.Timeout.Duration, time.Second},
		{"health_check.rise", app.HealthCheck.Rise, 2},
		{"health_check.fall", app.HealthCheck.Fall, 3},
		// Servers inherit the upstream's max_fails/fail_timeout unless they set their own (0 included).
		{"inherited max_fails", *cfg.Upstream["tcp"].Server[0].MaxFails, 4},
		{"inherited fail_timeout", cfg.Upstream["tcp"].Server[0].FailTimeout.Duration, 7 * time.Second},
		{"own max_fails 0", *cfg.Upstream["tcp"].Server[1].MaxFails, 0},
		{"own fail_timeout", cfg.Upstream["tcp"].Server[1].FailTimeout.Duration, time.Second},
		{"tcp check has no path", cfg.Upstream["tcp"].HealthCheck.Path, ""},
	}...)
	h, l := cfg.HTTP[0], cfg.HTTP[0].Location[0]
	checks = append(checks, []struct {
		name      string
		got, want any
	}{
		{"http.client_max_body_size", h.ClientMaxBodySize.Bytes, int64(1 << 20)},
		{"http.client_header_timeout", h.ClientHeaderTimeout.Duration, 60 * time.Second},
		{"http.client_body_timeout", h.ClientBodyTimeout.Duration, 60 * time.Second},
		{"http.keepalive_timeout", h.KeepaliveTimeout.Duration, 75 * time.Second},
		{"http.send_timeout", h.SendTimeout.Duration, 60 * time.Second},
		{"http.client_header_max_size", h.ClientHeaderMaxSize.Bytes, int64(32 << 10)},
		{"http.accept_proxy_protocol", h.AcceptProxyProtocol, false},
		{"location.proxy_next_upstream", l.ProxyNextUpstream, []string{"error", "timeout"}},
		{"location.proxy_next_upstream_tries", l.ProxyNextUpstreamTries, 0},
		{"location.proxy_next_upstream_timeout", l.ProxyNextUpstreamTimeout.Duration, time.Duration(0)},
		{"location.proxy_connect_timeout", l.ProxyConnectTimeout.Duration, 5 * time.Second},
		{"location.proxy_read_timeout", l.ProxyReadTimeout.Duration, 60 * time.Second},
		{"location.proxy_send_timeout", l.ProxySendTimeout.Duration, 60 * time.Second},
		{"location.proxy_buffering", *l.ProxyBuffering, true},
		{"location.proxy_redirect", *l.ProxyRedirect, "default"},
	}...)
	st := cfg.Stream[0]
	checks = append(checks, []struct {
		name      string
		got, want any
	}{
		{"stream.proxy_protocol", st.ProxyProtocol, ""},
		{"stream.proxy_protocol_timeout", st.ProxyProtocolTimeout.Duration, 5 * time.Second},
		{"stream.proxy_connect_timeout", st.ProxyConnectTimeout.Duration, 10 * time.Second},
		{"stream.proxy_timeout", st.ProxyTimeout.Duration, 10 * time.Minute},
		{"stream.tcp_nodelay", *st.TCPNoDelay, true},
		{"stream.so_keepalive", *st.SOKeepalive, true},
		{"stream.upstream", st.Upstream, "tcp"},
	}...)
	r, sc := cfg.VRRP[0], cfg.VRRPScript["chk"]
	checks = append(checks, []struct {
		name      string
		got, want any
	}{
		{"vrrp.priority", *r.Priority, 100},
		{"vrrp.state", r.State, "BACKUP"},
		{"vrrp.version", r.Version, 2},
		{"vrrp.advert_int", r.AdvertInt.Duration, time.Second},
		{"vrrp.preempt", *r.Preempt, true},
		{"vrrp.preempt_delay", r.PreemptDelay.Duration, time.Duration(0)},
		{"vrrp.garp_master_delay", r.GARPMasterDelay.Duration, 5 * time.Second},
		{"vrrp.garp_master_repeat", *r.GARPMasterRepeat, 5},
		{"vrrp.garp_master_refresh", r.GARPMasterRefresh.Duration, time.Duration(0)},
		{"vrrp.vip_lifetime", r.VIPLifetimeAuto, true},
		{"vrrp.track_upstream_weight", r.TrackUpstreamWeight, 0},
		{"vrrp.family", r.Family, 4},
		{"vrrp.vips", r.VIPs, []VIP{{Prefix: netip.MustParsePrefix("192.0.2.100/24")}}},
		{"vrrp_script.name", sc.Name, "chk"},
		{"vrrp_script.timeout follows interval", sc.Timeout.Duration, 3 * time.Second},
		{"vrrp_script.weight", sc.Weight, 0},
		{"vrrp_script.fall", sc.Fall, 1},
		{"vrrp_script.rise", sc.Rise, 1},
	}...)
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("unexpected warnings: %q", cfg.Warnings)
	}
}

// TestSetValuesKept: values the file gives are not overwritten by defaults,
// including the zero values that mean something (admin_listen = "",
// proxy_buffering = false, vip_lifetime = "0s").
func TestSetValuesKept(t *testing.T) {
	cfg := mustParse(t, `
[global]
admin_listen = ""
shutdown_timeout = "5s"
access_log_buffer = "32k"
access_log_flush = "5s"
[upstream.app]
keepalive = 0
[[upstream.app.server]]
address = "127.0.0.1:8080"
[[http]]
listen = ["127.0.0.1:8888"]
client_max_body_size = "0"
[[http.location]]
path = "/"
proxy_pass = "http://app"
proxy_buffering = false
proxy_redirect = "off"
proxy_next_upstream = ["off"]
[[vrrp]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = 1
preempt = false
vip_lifetime = "0s"
garp_master_repeat = 0
virtual_ipaddress = ["192.0.2.100/24"]
`)
	l := cfg.HTTP[0].Location[0]
	r := cfg.VRRP[0]
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"admin_listen off", *cfg.Global.AdminListen, ""},
		{"shutdown_timeout", cfg.Global.ShutdownTimeout.Duration, 5 * time.Second},
		{"access_log_buffer", cfg.Global.AccessLogBuffer.Bytes, int64(32 << 10)},
		{"access_log_flush", cfg.Global.AccessLogFlush.Duration, 5 * time.Second},
		{"keepalive 0", *cfg.Upstream["app"].Keepalive, 0},
		{"client_max_body_size unlimited", cfg.HTTP[0].ClientMaxBodySize.Bytes, int64(0)},
		{"proxy_buffering", *l.ProxyBuffering, false},
		{"proxy_redirect", *l.ProxyRedirect, "off"},
		{"proxy_next_upstream", l.ProxyNextUpstream, []string{"off"}},
		{"priority", *r.Priority, 1},
		{"preempt", *r.Preempt, false},
		{"vip_lifetime forever", [2]any{r.VIPLifetimeAuto, r.VIPLifetimeDuration.Duration}, [2]any{false, time.Duration(0)}},
		{"garp_master_repeat", *r.GARPMasterRepeat, 0},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

// TestManyMistakesAllReported: one file with a mistake in every section
// gives every problem at once, in file order, each with key path and line.
func TestManyMistakesAllReported(t *testing.T) {
	file := `[global]
log_level = "verbose"
shutdown_timeout = 30

[upstream.myapp]
balance = "ip_hash"
colour = "blue"

[[upstream.myapp.server]]
address = "192.0.2.1:8080"

[[upstream.myapp.server]]
address = "192.0.2.2"

[[upstream.myapp.server]]
address = "192.0.2.3:8080"
weight = 0

[[http]]
listen = ["0.0.0.0:8888"]

[[http.location]]
path = "app1"
proxy_pass = "http://myap/app1"

[[stream]]
listen = ["0.0.0.0:8888"]
proxy_pass = "myapp"
proxy_protocol = "on"

[[vrrp]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 300
priority = 255
advert_int = "1500ms"
virtual_ipaddress = ["192.0.2.100/33"]
track_script = ["chk_nginx"]
`
	_, err := Parse([]byte(file), "/etc/vipgate/vipgate.toml")
	if err == nil {
		t.Fatal("Parse accepted a file full of mistakes")
	}
	want := []string{
		"/etc/vipgate/vipgate.toml:2: global.log_level: must be debug, info, warn or error",
		"/etc/vipgate/vipgate.toml:3: global.shutdown_timeout: duration must be a string with a unit",
		"/etc/vipgate/vipgate.toml:7: upstream.myapp.colour: unknown key",
		"/etc/vipgate/vipgate.toml:13: upstream.myapp.server[1].address: invalid address \"192.0.2.2\"",
		"/etc/vipgate/vipgate.toml:17: upstream.myapp.server[2].weight: must be >= 1",
		"/etc/vipgate/vipgate.toml:23: http[0].location[0].path: must start with /",
		"/etc/vipgate/vipgate.toml:24: http[0].location[0].proxy_pass: \"myap\" names no [upstream.myap]",
		"/etc/vipgate/vipgate.toml:27: stream[0].listen[0]: 0.0.0.0:8888 is already a listen address of http[0]",
		"/etc/vipgate/vipgate.toml:29: stream[0].proxy_protocol: must be \"v1\", \"v2\" or \"\" (off)",
		"/etc/vipgate/vipgate.toml:34: vrrp[0].virtual_router_id: must be from 1 to 255",
		"/etc/vipgate/vipgate.toml:35: vrrp[0].priority: must be from 1 to 254",
		"/etc/vipgate/vipgate.toml:36: vrrp[0].advert_int: VRRP version 2 needs whole seconds",
		"/etc/vipgate/vipgate.toml:37: vrrp[0].virtual_ipaddress[0]: invalid VIP \"192.0.2.100/33\"",
		"/etc/vipgate/vipgate.toml:38: vrrp[0].track_script[0]: no [vrrp_script.chk_nginx] is defined",
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(got), len(want), err)
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d:\n got %s\nwant %s...", i, got[i], want[i])
		}
	}
}

func TestWarnings(t *testing.T) {
	cases := []struct {
		name, file, want string
	}{
		{"long auth_pass", vrrpHead + "auth_pass = \"123456789\"\n", "vrrp[0].auth_pass: only the first 8 characters are used"},
		{"negative script weight without preempt", "[vrrp_script.chk]\nscript = \"/bin/true\"\nweight = -20\n" + vrrpHead + "preempt = false\ntrack_script = [\"chk\"]\n",
			"vrrp[0].preempt: a negative track weight with preempt = false"},
		{"negative upstream weight without preempt", upApp + "[upstream.app.health_check]\n" + vrrpHead + "preempt = false\ntrack_upstream = [\"app\"]\ntrack_upstream_weight = -30\n",
			"vrrp[0].preempt: a negative track weight with preempt = false"},
		{"nopreempt with state MASTER", vrrpHead + "state = \"MASTER\"\npreempt = false\n", "vrrp[0].preempt: preempt = false is ignored with state = \"MASTER\""},
		{"preempt_delay with state MASTER", vrrpHead + "state = \"MASTER\"\npreempt_delay = \"10s\"\n", "vrrp[0].preempt_delay: ignored with state = \"MASTER\""},
		{"preempt_delay without preempt", vrrpHead + "preempt = false\npreempt_delay = \"10s\"\n", "vrrp[0].preempt_delay: has no effect"},
		{"v3 checksum option on v2", vrrpHead + "v3_checksum_as_v2 = true\n", "vrrp[0].v3_checksum_as_v2: only applies to version = 3"},
		{"unused upstream", upApp + vrrpHead, "upstream.app: not used by any proxy_pass"},
		{"every server down", upApp + "down = true\n" + httpApp[len(upApp):], "upstream.app.server: every server is down"},
		// The contract's own [upstream.myapp] example sets hash beside
		// round_robin: ignored with a warning, not refused.
		{"hash without balance hash", strings.Replace(httpApp, "[upstream.app]\n", "[upstream.app]\nhash = \"$remote_addr\"\n", 1), "upstream.app.hash: only used with balance = \"hash\""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, tc.file)
			if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], tc.want) {
				t.Errorf("warnings = %q, want one containing %q", cfg.Warnings, tc.want)
			}
			if !strings.HasPrefix(cfg.Warnings[0], "test.toml:") {
				t.Errorf("warning %q has no file:line", cfg.Warnings[0])
			}
		})
	}
}

// TestAcceptedSetups: combinations the rules must not refuse.
func TestAcceptedSetups(t *testing.T) {
	cases := []struct{ name, file string }{
		{"nginx variables the HTTP proxy expands", upApp + `
[[http]]
listen = ["0.0.0.0:80"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
proxy_set_header = { X-Q = "$args$is_args", X-M = "$request_method", X-Id = "$arg_id", X-S = "$server_name:$server_addr", X-P = "$proxy_host" }
`},
		{"two [[http]] share a socket by server_name", upApp + `
[[http]]
listen = ["0.0.0.0:80", "[2001:db8::1]:80"]
server_name = ["a.example"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
[[http]]
listen = ["0.0.0.0:80"]
server_name = ["b.example"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
`},
		{"IPv4 wildcard next to a specific IPv6 address", upApp + `
[[http]]
listen = ["0.0.0.0:80"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
[[stream]]
listen = ["[2001:db8::1]:80"]
proxy_pass = "app"
`},
		{"same router id on one interface for IPv4 and IPv6", vrrpHead + `
[[vrrp]]
name = "VI_1_v6"
interface = "eth0"
virtual_router_id = 51
version = 3
virtual_ipaddress = ["2001:db8::100/64"]
`},
		{"v3 centisecond adverts", vrrpHead + "version = 3\nadvert_int = \"100ms\"\n"},
		{"literal host:port targets", `
[[http]]
listen = ["127.0.0.1:80"]
[[http.location]]
path = "/"
proxy_pass = "http://[::1]:8080/x"
[[stream]]
listen = ["127.0.0.1:1883"]
proxy_pass = "backend.example:1883"
`},
		{"hostnames in upstream servers", "[upstream.app]\n[[upstream.app.server]]\naddress = \"tomcat-1.internal:8080\"\n" + vrrpHead},
		{"backup-only and hash policy", "[upstream.app]\nbalance = \"hash\"\nhash = \"$remote_addr$http_x_user\"\n[[upstream.app.server]]\naddress = \"127.0.0.1:1\"\nbackup = true\n" + vrrpHead},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { mustParse(t, tc.file) })
	}
}

// TestDerivedFields: what validation fills in for the runtime.
func TestDerivedFields(t *testing.T) {
	cfg := mustParse(t, upApp+`
[[http]]
listen = ["127.0.0.1:80"]
error_page = { "502 503" = "/srv/50x.html", "404" = "/srv/404.html" }
[[http.location]]
path = "/app1"
proxy_pass = "http://app/app1/"
[[http.location]]
path = "= /exact"
proxy_pass = "http://127.0.0.1:9000"
[[http.location]]
path = "~* \\.(png|jpg)$"
root = "/srv/www"
[[http.location]]
path = "=/50x.html"
root = "/srv/www"
[[http.location]]
path = "~^/api/v[0-9]+/"
proxy_pass = "http://app"
proxy_set_header = { Host = "${host}:$server_port", X-Forwarded-For = "$proxy_add_x_forwarded_for", X-Client = "$remote_addr:$remote_port $scheme $request_uri $uri", X-Agent = "$http_user_agent", X-Session = "$cookie_JSESSIONID", X-Empty = "" }
[[vrrp]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
mcast_src_ip = "192.0.2.1"
unicast_peer = ["192.0.2.2"]
virtual_ipaddress = ["192.0.2.100/24 dev eth1", "192.0.2.101"]
`)
	h := cfg.HTTP[0]
	if want := map[int]string{502: "/srv/50x.html", 503: "/srv/50x.html", 404: "/srv/404.html"}; !reflect.DeepEqual(h.ErrorPages, want) {
		t.Errorf("ErrorPages = %v, want %v", h.ErrorPages, want)
	}
	l0, l1, l2 := h.Location[0], h.Location[1], h.Location[2]
	if want := (ProxyTarget{Scheme: "http", Upstream: "app", URI: "/app1/", HasURI: true}); *l0.Target != want {
		t.Errorf("prefix target = %+v, want %+v", *l0.Target, want)
	}
	if l0.Match != MatchPrefix || l0.Pattern != "/app1" {
		t.Errorf("location 0 = %s %q", l0.Match, l0.Pattern)
	}
	if want := (ProxyTarget{Scheme: "http", Address: "127.0.0.1:9000"}); *l1.Target != want || l1.Match != MatchExact || l1.Pattern != "/exact" {
		t.Errorf("exact location = %s %q %+v", l1.Match, l1.Pattern, *l1.Target)
	}
	if l2.Match != MatchRegex || l2.Regex == nil || !l2.Regex.MatchString("/A.PNG") || l2.Regex.MatchString("/a.gif") || l2.Target != nil {
		t.Errorf("~* location: match %s, regex %v", l2.Match, l2.Regex)
	}
	if l3, l4 := h.Location[3], h.Location[4]; l3.Match != MatchExact || l3.Pattern != "/50x.html" ||
		l4.Match != MatchRegex || l4.Pattern != "^/api/v[0-9]+/" || !l4.Regex.MatchString("/api/v2/x") {
		t.Errorf("locations without a space after the modifier: %s %q, %s %q", l3.Match, l3.Pattern, l4.Match, l4.Pattern)
	}
	r := cfg.VRRP[0]
	wantVIPs := []VIP{{Prefix: netip.MustParsePrefix("192.0.2.100/24"), Device: "eth1"}, {Prefix: netip.MustParsePrefix("192.0.2.101/32")}}
	if !reflect.DeepEqual(r.VIPs, wantVIPs) {
		t.Errorf("VIPs = %v, want %v", r.VIPs, wantVIPs)
	}
	if r.SourceIP != netip.MustParseAddr("192.0.2.1") || !reflect.DeepEqual(r.UnicastPeers, []netip.Addr{netip.MustParseAddr("192.0.2.2")}) {
		t.Errorf("SourceIP %v, UnicastPeers %v", r.SourceIP, r.UnicastPeers)
	}
}

func TestDurationParsing(t *testing.T) {
	cases := []struct {
		in      any
		want    time.Duration
		wantErr string
	}{
		{"500ms", 500 * time.Millisecond, ""},
		{"2s", 2 * time.Second, ""},
		{"30m", 30 * time.Minute, ""},
		{"1h30m", 90 * time.Minute, ""},
		{" 5s ", 5 * time.Second, ""},
		{"0s", 0, ""},
		{"0", 0, ""},
		{"2", 0, "invalid duration"},
		{"1d", 0, "invalid duration"},
		{"", 0, "invalid duration"},
		{"-1s", 0, "must not be negative"},
		{int64(2), 0, `"2s"`},
		{2.5, 0, "got a float"},
	}
	for _, tc := range cases {
		got, err := ParseDuration(tc.in)
		switch {
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("ParseDuration(%#v) = %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ParseDuration(%#v) error = %v, want one containing %q", tc.in, err, tc.wantErr)
		}
	}
}

func TestSizeParsing(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"123", 123, true},
		{"64k", 64 << 10, true},
		{"64K", 64 << 10, true},
		{"64KB", 64 << 10, true},
		{"10m", 10 << 20, true},
		{"10MB", 10 << 20, true},
		{"1g", 1 << 30, true},
		{"1G", 1 << 30, true},
		{"512b", 512, true},
		{"", 0, false},
		{"k", 0, false},
		{"1.5m", 0, false},
		{"-1k", 0, false},
		{"10 MB", 0, false},
		{"99999999999g", 0, false},
		{"1t", 0, false},
	}
	for _, tc := range cases {
		got, err := ParseSize(tc.in)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if !tc.ok && err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", tc.in, got)
		}
	}
	// Integers in the file are bytes.
	var s Size
	if err := s.UnmarshalTOML(int64(4096)); err != nil || s.bad != nil || s.Bytes != 4096 || !s.Set {
		t.Errorf("Size from integer = %+v, %v", s, err)
	}
}

func TestParseListen(t *testing.T) {
	cases := []struct{ in, want string }{
		{"0.0.0.0:80", "0.0.0.0:80"},
		{":80", "0.0.0.0:80"},
		{"[::]:443", "[::]:443"},
		{"[2001:DB8::1]:8080", "[2001:db8::1]:8080"},
		{"192.0.2.50:8888", "192.0.2.50:8888"},
		{"localhost:80", ""},
		{"::1:80", ""},
		{"0.0.0.0:65536", ""},
		{"0.0.0.0", ""},
	}
	for _, tc := range cases {
		got, err := ParseListen(tc.in)
		if (err == nil) != (tc.want != "") || got != tc.want {
			t.Errorf("ParseListen(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestLoadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vipgate.toml")
	if err := os.WriteFile(path, []byte(httpApp), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Path != path || len(cfg.HTTP) != 1 {
		t.Errorf("Load gave Path %q and %d [[http]]", cfg.Path, len(cfg.HTTP))
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml")); err == nil || !strings.Contains(err.Error(), "read config") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

// TestPositions covers the line scanner on the shapes TOML allows: values
// over several lines, quoted keys, dotted keys, arrays of tables in arrays
// of tables.
func TestPositions(t *testing.T) {
	file := `# comment
[global]
log_level = "info"   # [not.a.table]
[upstream."a.b"]
hash = """
x = 1
[[fake]]
"""
[[upstream."a.b".server]]
address = "1"
[[upstream."a.b".server]]
address = [
  "x",
  "y = 2",
]
weight = 2
[[http]]
[[http.location]]
[[http.location]]
path = '/p'
[[http]]
[[http.location]]
proxy_set_header = { Host = "h" }
site.name = "n"
error_page = { "502 503" = "/x" }
`
	p := scanPositions([]byte(file))
	cases := []struct {
		path string
		line int
	}{
		{"global", 2},
		{"global.log_level", 3},
		{"upstream.a.b", 4},
		{"upstream.a.b.hash", 5},
		{"upstream.a.b.server[0]", 9},
		{"upstream.a.b.server[0].address", 10},
		{"upstream.a.b.server[1].address", 12},
		{"upstream.a.b.server[1].weight", 16},
		{"upstream.a.b.server[1].max_fails", 11}, // not in the file: its table's line
		{"http[0]", 17},
		{"http[0].location[1].path", 20},
		{"http[1].location[0]", 22},
		{"http[1].location[0].proxy_set_header", 23},
		{"http[1].location[0].site.name", 24},
		{`http[1].location[0].error_page."502 503"`, 25},
		{"http[1].listen[3]", 21},
		{"fake", 0},
		{"x", 0},
		{"vrrp[0].name", 0},
	}
	for _, tc := range cases {
		if got := p.line(tc.path); got != tc.line {
			t.Errorf("line(%q) = %d, want %d", tc.path, got, tc.line)
		}
	}
}

// A health check on an upstream only [[stream]] uses defaults to tcp: an
// HTTP GET to MQTT brokers would fail on every one of them (and fault the
// node through track_upstream). Used by HTTP, or by nothing, it stays http.
func TestHealthCheckTypeFollowsItsUse(t *testing.T) {
	cfg := mustParse(t, `
[upstream.mqtt]
[[upstream.mqtt.server]]
address = "127.0.0.1:1883"
[upstream.mqtt.health_check]

[upstream.web]
[[upstream.web.server]]
address = "127.0.0.1:8080"
[upstream.web.health_check]

[upstream.both]
[[upstream.both.server]]
address = "127.0.0.1:8081"
[upstream.both.health_check]

[[http]]
listen = ["127.0.0.1:8888"]
[[http.location]]
path = "/"
proxy_pass = "http://web"
[[http.location]]
path = "/b/"
proxy_pass = "http://both/x/"

[[stream]]
listen = ["127.0.0.1:1883"]
proxy_pass = "mqtt"
[[stream]]
listen = ["127.0.0.1:1884"]
proxy_pass = "both"
`)
	for name, want := range map[string]string{"mqtt": "tcp", "web": "http", "both": "http"} {
		if got := cfg.Upstream[name].HealthCheck.Type; got != want {
			t.Errorf("upstream %s: health_check type %q, want %q", name, got, want)
		}
	}
}

// TOML has no closing brackets: a file emptied, or cut short before its
// first [[http]], [[stream]] or [[vrrp]], parses. Accepted by a reload it
// closed every listener; it is refused, as nginx refuses an empty file.
func TestNothingToServeIsRefused(t *testing.T) {
	for name, file := range map[string]string{
		"empty":                  "",
		"cut before [[http]]":    "[global]\nnode_name = \"a\"\n" + upApp,
		"only an admin listener": "[global]\nadmin_listen = \"127.0.0.1:9090\"\n",
	} {
		_, err := Parse([]byte(file), "test.toml")
		if err == nil || !strings.Contains(err.Error(), "nothing to serve") {
			t.Errorf("%s: err = %v, want \"nothing to serve\"", name, err)
		}
	}
}

// As keepalived, state = "MASTER" clears nopreempt and preempt_delay: a
// file moved from keepalived keeps its failover behaviour.
func TestStateMasterClearsNopreemptLikeKeepalived(t *testing.T) {
	cfg := mustParse(t, vrrpHead+"state = \"MASTER\"\npreempt = false\npreempt_delay = \"10s\"\n")
	if r := cfg.VRRP[0]; !*r.Preempt || r.PreemptDelay.Duration != 0 {
		t.Fatalf("state MASTER: preempt %v, preempt_delay %v; want true and 0 as in keepalived", *r.Preempt, r.PreemptDelay.Duration)
	}
	cfg = mustParse(t, vrrpHead+"state = \"BACKUP\"\npreempt = false\n")
	if *cfg.VRRP[0].Preempt {
		t.Fatal("state BACKUP: preempt = false not kept")
	}
}

// Link-local addresses are often written with their zone (fe80::2%eth0, as
// ping and ip want them). Adverts arrive without one, so a zoned
// unicast_peer never matched its sender: every advert was dropped and
// both nodes became MASTER. The zone is the instance's interface; it is
// dropped, and one naming another interface is refused.
func TestVRRPAddressesLoseTheirZone(t *testing.T) {
	v6 := "[[vrrp]]\nname = \"VI_6\"\ninterface = \"eth0\"\nvirtual_router_id = 51\nversion = 3\nvirtual_ipaddress = [\"2001:db8::100/64\"]\n"
	cfg := mustParse(t, v6+"mcast_src_ip = \"fe80::1%eth0\"\nunicast_peer = [\"fe80::2%eth0\", \"fe80::3\"]\n")
	r := cfg.VRRP[0]
	if want := netip.MustParseAddr("fe80::1"); r.SourceIP != want {
		t.Errorf("mcast_src_ip = %v, want %v", r.SourceIP, want)
	}
	if want := []netip.Addr{netip.MustParseAddr("fe80::2"), netip.MustParseAddr("fe80::3")}; !slices.Equal(r.UnicastPeers, want) {
		t.Errorf("unicast_peer = %v, want %v", r.UnicastPeers, want)
	}
	_, err := Parse([]byte(v6+"unicast_peer = [\"fe80::2%eth1\"]\n"), "test.toml")
	if err == nil || !strings.Contains(err.Error(), "zone %eth1 is not the instance's interface eth0") {
		t.Errorf("peer zoned on another interface: %v", err)
	}
	_, err = Parse([]byte(v6+"mcast_src_ip = \"fe80::1%eth0\"\nunicast_peer = [\"fe80::1\"]\n"), "test.toml")
	if err == nil || !strings.Contains(err.Error(), "own mcast_src_ip") {
		t.Errorf("peer equal to the zoned source: %v", err)
	}
}

// [::ffff:127.0.0.1]:P is bound as 127.0.0.1:P: beside 127.0.0.1:P it is
// the same listener, refused by the check rather than at the bind.
func TestIPv4MappedListenIsItsIPv4Address(t *testing.T) {
	_, err := Parse([]byte(`
[[stream]]
listen = ["[::ffff:127.0.0.1]:1883"]
proxy_pass = "127.0.0.1:1"
[[stream]]
listen = ["127.0.0.1:1883"]
proxy_pass = "127.0.0.1:2"
`), "test.toml")
	if err == nil || !strings.Contains(err.Error(), "stream[1].listen") {
		t.Fatalf("two streams on [::ffff:127.0.0.1]:1883 and 127.0.0.1:1883: %v; want the second refused", err)
	}
}

// An IPv6 proxy_pass without brackets gets the message that says how to
// write it, as listen and server addresses do.
func TestUnbracketedIPv6ProxyPassSaysBrackets(t *testing.T) {
	for name, text := range map[string]string{
		"stream proxy_pass": "[[stream]]\nlisten = [\"127.0.0.1:9000\"]\nproxy_pass = \"::1:8080\"\n",
		"http proxy_pass":   "[[http]]\nlisten = [\"127.0.0.1:9000\"]\n[[http.location]]\npath = \"/\"\nproxy_pass = \"http://::1:8080/\"\n",
	} {
		if _, err := Parse([]byte(text), "test.toml"); err == nil || !strings.Contains(err.Error(), "brackets") {
			t.Errorf("%s = ::1:8080: %v; want the hint to write IPv6 in brackets", name, err)
		}
	}
}
