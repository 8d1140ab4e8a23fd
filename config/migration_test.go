package config

import (
	"strings"
	"testing"
)

// Mistakes an operator makes when translating nginx.conf + keepalived.conf
// (the seed tutorials) by habit. Each one must be refused by -t with one
// problem at the key and line, saying what to write instead; none may be
// accepted and then mean something else.

// TestLogPathsWithNginxParametersRefused: nginx writes `access_log PATH
// FORMAT [buffer=..] [flush=..]` and `error_log PATH LEVEL`. Copied into
// the one string vipgate has, the parameters become part of the file name:
// vipgate then writes to "/var/log/nginx/access.log main" (a file with a
// space in its name that logrotate never rotates) and ignores the level.
func TestLogPathsWithNginxParametersRefused(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{"access_log with a format name", "[global]\naccess_log = \"/var/log/nginx/access.log main\" # <-\n" + httpApp,
			"global.access_log", "access_log"},
		{"access_log with buffer= and flush=", "[global]\naccess_log = \"/var/log/nginx/access.log buffer=32k flush=5s\" # <-\n" + httpApp,
			"global.access_log", "access_log_buffer"},
		{"error_log with a level", "[global]\nerror_log = \"/var/log/nginx/error.log warn\" # <-\n" + httpApp,
			"global.error_log", "log_level"},
	})
}

// TestProxySetHeaderSameNameTwiceRefused: header names are case-insensitive;
// two keys of proxy_set_header that differ only in case name one header.
// The file is accepted and the value sent is whichever key the map
// iteration of compileHeaders meets last, which changes from one start or
// reload to the next.
func TestProxySetHeaderSameNameTwiceRefused(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{"X-Real-IP twice", upApp + "[[http]]\nlisten = [\"127.0.0.1:8888\"]\n[[http.location]]\npath = \"/\"\nproxy_pass = \"http://app\"\n" +
			"proxy_set_header = { X-Real-IP = \"$remote_addr\", x-real-ip = \"$http_x_real_ip\" } # <-\n",
			"http[0].location[0].proxy_set_header", "X-Real-IP"},
	})
}

// TestUnknownKeyNamesItsHome: the README's migration table knows where each
// nginx/keepalived directive went, and the key may exist one table up or
// down, or be a one-letter typo; "unknown key" alone leaves the operator to
// find that out.
func TestUnknownKeyNamesItsHome(t *testing.T) {
	httpWith := func(server, loc string) string {
		return upApp + "[[http]]\nlisten = [\"127.0.0.1:8888\"]\n" + server + "[[http.location]]\npath = \"/\"\nproxy_pass = \"http://app\"\n" + loc
	}
	cases := []struct {
		name, file, key, hint string
	}{
		{"keepalived nopreempt", v0("nopreempt = true # <-\n"), "vrrp[0].nopreempt", "preempt = false"},
		{"keepalived auth_type", v0("auth_type = \"PASS\" # <-\n"), "vrrp[0].auth_type", "auth_pass"},
		{"keepalived unicast_src_ip", v0("unicast_peer = [\"192.0.2.2\"]\nunicast_src_ip = \"192.0.2.1\" # <-\n"), "vrrp[0].unicast_src_ip", "mcast_src_ip"},
		{"keepalived router_id", "[global]\nrouter_id = \"LVS_DEVEL\" # <-\n" + httpApp, "global.router_id", "node_name"},
		{"keepalived vrrp_instance", "[vrrp_instance.VI_1] # <-\ninterface = \"eth0\"\n" + httpApp, "vrrp_instance.VI_1", "[[vrrp]]"},
		{"nginx ip_hash;", "[upstream.app]\nip_hash = true # <-\n[[upstream.app.server]]\naddress = \"127.0.0.1:1\"\n", "upstream.app.ip_hash", `balance = "ip_hash"`},
		{"nginx ssl_certificate", httpWith("ssl_certificate = \"/etc/ssl/a.pem\" # <-\n", ""), "http[0].ssl_certificate", "tls_certificate"},
		{"nginx large_client_header_buffers", httpWith("large_client_header_buffers = \"4 8k\" # <-\n", ""), "http[0].large_client_header_buffers", "client_header_max_size"},
		{"server key written under a location", httpWith("", "client_max_body_size = \"10m\" # <-\n"), "http[0].location[0].client_max_body_size", "[[http]]"},
		{"location key written in the server", httpWith("proxy_read_timeout = \"3600s\" # <-\n", ""), "http[0].proxy_read_timeout", "[[http.location]]"},
		{"typo", "[upstream.app]\n[[upstream.app.server]]\naddress = \"127.0.0.1:1\"\nwieght = 2 # <-\n", "upstream.app.server[0].wieght", "weight"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file), "vipgate.toml")
			if err == nil {
				t.Fatal("accepted")
			}
			var found *Problem
			for _, p := range problemList(t, err) {
				if p.Key == tc.key {
					found = p
				}
			}
			if found == nil {
				t.Fatalf("no problem at %s: %v", tc.key, err)
			}
			if !strings.Contains(found.Message, tc.hint) {
				t.Errorf("%v\n  want the message to point to %s", found, tc.hint)
			}
		})
	}
}

// TestNginxParametersAfterAnAddressNameTheirKey: `server A:P weight=3
// max_fails=3 fail_timeout=30s;`, `listen 80 default_server;` and
// `listen 1883 proxy_protocol;` are what nginx users type; the answer is
// "port "8081 weight=3" must be a number", which sends them to look at the
// port instead of telling them that weight is a key of its own.
func TestNginxParametersAfterAnAddressNameTheirKey(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{"server weight=3", "[upstream.app]\n[[upstream.app.server]]\naddress = \"127.0.0.1:8081 weight=3\" # <-\n",
			"upstream.app.server[0].address", "weight = 3"},
		{"server max_fails= fail_timeout=", "[upstream.app]\n[[upstream.app.server]]\naddress = \"127.0.0.1:8081 max_fails=3 fail_timeout=30s\" # <-\n",
			"upstream.app.server[0].address", "max_fails = 3"},
		{"listen default_server", upApp + "[[http]]\nlisten = [\"0.0.0.0:80 default_server\"] # <-\n[[http.location]]\npath = \"/\"\nproxy_pass = \"http://app\"\n",
			"http[0].listen[0]", "first [[http]]"},
		{"listen proxy_protocol", upApp + "[[stream]]\nlisten = [\"0.0.0.0:1883 proxy_protocol\"] # <-\nproxy_pass = \"app\"\n",
			"stream[0].listen[0]", "accept_proxy_protocol"},
		{"server_name list in one string", upApp + "[[http]]\nlisten = [\"127.0.0.1:80\"]\nserver_name = [\"www.domain.com 192.168.12.189\"] # <-\n[[http.location]]\npath = \"/\"\nproxy_pass = \"http://app\"\n",
			"http[0].server_name[0]", `"www.domain.com", "192.168.12.189"`},
		{"track_script weight override", "[vrrp_script.chk]\nscript = \"/bin/true\"\n" + v0("track_script = [\"chk weight -10\"] # <-\n"),
			"vrrp[0].track_script[0]", "[vrrp_script.chk]"},
	})
}

// TestNginxHabitSyntaxSaysQuote: values written bare as in nginx.conf stop
// the TOML decoder; its words ("Invalid float value", "expected a top-level
// item to end with a newline") do not say that the value wants quotes.
func TestNginxHabitSyntaxSaysQuote(t *testing.T) {
	cases := []struct{ name, file string }{
		{"bare address", "[upstream.app]\n[[upstream.app.server]]\naddress = 127.0.0.1:8080\n"},
		{"bare duration", "[global]\nshutdown_timeout = 30s\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file), "vipgate.toml")
			ps := problemList(t, err)
			if len(ps) != 1 {
				t.Fatalf("got %d problems: %v", len(ps), err)
			}
			if !strings.Contains(ps[0].Message, "quot") {
				t.Errorf("%v\n  want it to say the value must be quoted", ps[0])
			}
		})
	}
}

// TestOnOffStringsSayTrueFalse: nginx's on/off, written as strings, get
// "must be a boolean, not a string", which does not say what a boolean is
// written as in TOML (true / false, no quotes).
func TestOnOffStringsSayTrueFalse(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{"proxy_buffering off", upApp + "[[http]]\nlisten = [\"127.0.0.1:8888\"]\n[[http.location]]\npath = \"/\"\nproxy_pass = \"http://app\"\nproxy_buffering = \"off\" # <-\n",
			"http[0].location[0].proxy_buffering", "false"},
		{"tcp_nodelay on", upApp + "[[stream]]\nlisten = [\"127.0.0.1:1883\"]\nproxy_pass = \"app\"\ntcp_nodelay = \"on\" # <-\n",
			"stream[0].tcp_nodelay", "true"},
	})
}

// TestDottedUpstreamNameSaysQuote: nginx upstream names often carry dots
// (`upstream tomcat.local { ... }`). Written as [upstream.tomcat.local],
// TOML nests the tables; -t printed three problems, one of which ("names
// no [upstream.tomcat.local]") contradicts the line the operator is
// looking at, and none said to quote the name: [upstream."tomcat.local"].
func TestDottedUpstreamNameSaysQuote(t *testing.T) {
	file := `[upstream.tomcat.local]
[[upstream.tomcat.local.server]]
address = "127.0.0.1:8080"
[[http]]
listen = ["127.0.0.1:8888"]
[[http.location]]
path = "/"
proxy_pass = "http://tomcat.local"
`
	_, err := Parse([]byte(file), "vipgate.toml")
	if err == nil {
		t.Fatal("accepted")
	}
	// The problems that follow from the nesting (no upstream of that
	// name, one without servers) stay; the first says what to write.
	var found bool
	for _, p := range problemList(t, err) {
		found = found || p.Key == "upstream.tomcat.local" && strings.Contains(p.Message, `[upstream."tomcat.local"]`)
	}
	if !found {
		t.Errorf("no problem at upstream.tomcat.local says to write [upstream.\"tomcat.local\"]:\n%v", err)
	}
}
