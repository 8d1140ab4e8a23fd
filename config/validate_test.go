package config

import (
	"errors"
	"strings"
	"testing"
)

// Building blocks of small files. Each table case below is one file with
// exactly one mistake; the line holding it ends with the marker "# <-".
const (
	upApp = `
[upstream.app]
[[upstream.app.server]]
address = "127.0.0.1:8080"
`
	httpApp = upApp + `
[[http]]
listen = ["127.0.0.1:8888"]
[[http.location]]
path = "/"
proxy_pass = "http://app"
`
	vrrpHead = `
[[vrrp]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
virtual_ipaddress = ["192.0.2.100/24"]
`
)

const marker = "# <-"

// markedLine is the 1-based line carrying marker, 0 if none.
func markedLine(file string) int {
	for i, l := range strings.Split(file, "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	return 0
}

func problemList(t *testing.T, err error) []*Problem {
	t.Helper()
	var ps *Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error is %T (%v), want *Problems", err, err)
	}
	out := make([]*Problem, 0, len(ps.List))
	for _, e := range ps.List {
		var p *Problem
		if !errors.As(e, &p) {
			t.Fatalf("problem %q is %T, want *Problem", e, e)
		}
		out = append(out, p)
	}
	return out
}

type ruleCase struct {
	name string
	file string
	key  string // exact key path of the problem
	msg  string // part of the message
}

func runRuleCases(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file), "vipgate.toml")
			if err == nil {
				t.Fatalf("Parse accepted a file with a mistake at %s", tc.key)
			}
			ps := problemList(t, err)
			if len(ps) != 1 {
				t.Errorf("got %d problems, want exactly 1:\n%v", len(ps), err)
			}
			p := ps[0]
			if p.Key != tc.key {
				t.Errorf("key = %q, want %q (message: %v)", p.Key, tc.key, p)
			}
			if !strings.Contains(p.Message, tc.msg) {
				t.Errorf("message = %q, want it to contain %q", p.Message, tc.msg)
			}
			if want := markedLine(tc.file); want != 0 && p.Line != want {
				t.Errorf("line = %d, want %d (message: %v)", p.Line, want, p)
			}
			if p.File != "vipgate.toml" || !strings.HasPrefix(p.Error(), "vipgate.toml:") {
				t.Errorf("Error() = %q, want it to start with the file name", p.Error())
			}
			if !strings.Contains(p.Error(), tc.key+": ") {
				t.Errorf("Error() = %q, want it to contain %q", p.Error(), tc.key+": ")
			}
		})
	}
}

func TestValidateGlobal(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{"log_level", "[global]\nlog_level = \"loud\" # <-\n", "global.log_level", `must be debug, info, warn or error, not "loud"`},
		{"log_format", "[global]\nlog_format = \"xml\" # <-\n", "global.log_format", "must be console or json"},
		{"admin_listen syntax", "[global]\nadmin_listen = \"localhost:9900\" # <-\n", "global.admin_listen", "host must be an IP address"},
		{"admin_listen port", "[global]\nadmin_listen = \"127.0.0.1:0\" # <-\n", "global.admin_listen", "from 1 to 65535"},
		{"admin_listen taken by http", "[global]\nadmin_listen = \"127.0.0.1:8888\"\n" + httpApp + "#\n",
			"http[0].listen[0]", "already a listen address of global.admin_listen"},
		{"shutdown_timeout zero", "[global]\nshutdown_timeout = \"0s\" # <-\n", "global.shutdown_timeout", "greater than 0"},
		{"access_log_buffer too big", "[global]\naccess_log_buffer = \"65m\" # <-\n", "global.access_log_buffer", "at most 64m"},
		{"access_log_buffer negative", "[global]\naccess_log_buffer = -1 # <-\n", "global.access_log_buffer", "must not be negative"},
		{"access_log_flush zero", "[global]\naccess_log_flush = \"0s\" # <-\n", "global.access_log_flush", "greater than 0"},
		{"node_name with space", "[global]\nnode_name = \"node a\" # <-\n", "global.node_name", "without spaces"},
		{"script_user blank", "[global]\nscript_user = \"  \" # <-\n", "global.script_user", "must name a user"},
		{"error_log newline", "[global]\nerror_log = \"/var/log/a\\nb\" # <-\n", "global.error_log", "control characters"},
	})
}

func TestValidateUpstream(t *testing.T) {
	server := "[[upstream.app.server]]\naddress = \"127.0.0.1:8080\"\n"
	runRuleCases(t, []ruleCase{
		{"name", "[upstream.\"my app\"] # <-\n[[upstream.\"my app\".server]]\naddress = \"127.0.0.1:80\"\n", "upstream.my app", "must be letters, digits"},
		{"balance", "[upstream.app]\nbalance = \"fastest\" # <-\n" + server, "upstream.app.balance", `not "fastest"`},
		{"hash required", "[upstream.app] # <-\nbalance = \"hash\"\n" + server, "upstream.app.hash", "required with balance = \"hash\""},
		{"hash unknown variable", "[upstream.app]\nbalance = \"hash\"\nhash = \"$request_url\" # <-\n" + server, "upstream.app.hash", "key: unknown variable $request_url"},
		{"keepalive negative", "[upstream.app]\nkeepalive = -1 # <-\n" + server, "upstream.app.keepalive", "must be >= 0"},
		{"max_fails negative", "[upstream.app]\nmax_fails = -1 # <-\n" + server, "upstream.app.max_fails", "must be >= 0"},
		{"no server", "[upstream.app] # <-\nbalance = \"round_robin\"\n", "upstream.app.server", "at least one [[upstream.app.server]]"},
		{"address without port", "[upstream.app]\n[[upstream.app.server]]\naddress = \"127.0.0.1\" # <-\n", "upstream.app.server[0].address", "want host:port"},
		{"address IPv6 without brackets", "[upstream.app]\n[[upstream.app.server]]\naddress = \"2001:db8::1:80\" # <-\n", "upstream.app.server[0].address", "IPv6 in brackets"},
		{"address bad IPv6", "[upstream.app]\n[[upstream.app.server]]\naddress = \"[2001:db8::zz]:80\" # <-\n", "upstream.app.server[0].address", "bad IPv6 address"},
		{"address port range", "[upstream.app]\n[[upstream.app.server]]\naddress = \"127.0.0.1:70000\" # <-\n", "upstream.app.server[0].address", "from 1 to 65535"},
		{"address duplicate", "[upstream.app]\n" + server + server[:len(server)-1] + " # <-\n", "upstream.app.server[1].address", "already server[0]"},
		{"weight", "[upstream.app]\n" + server + "[[upstream.app.server]]\naddress = \"127.0.0.2:8080\"\n[[upstream.app.server]]\naddress = \"127.0.0.3:8080\"\nweight = 0 # <-\n", "upstream.app.server[2].weight", "must be >= 1"},
		{"server max_fails", "[upstream.app]\n" + server + "max_fails = -2 # <-\n", "upstream.app.server[0].max_fails", "must be >= 0"},
		{"max_conns", "[upstream.app]\n" + server + "max_conns = -1 # <-\n", "upstream.app.server[0].max_conns", "must be >= 0"},
		{"health_check type", upApp + "[upstream.app.health_check]\ntype = \"icmp\" # <-\n", "upstream.app.health_check.type", "must be http or tcp"},
		{"health_check path", upApp + "[upstream.app.health_check]\npath = \"health\" # <-\n", "upstream.app.health_check.path", "must start with /"},
		{"health_check expect_status", upApp + "[upstream.app.health_check]\nexpect_status = \"200-700\" # <-\n", "upstream.app.health_check.expect_status", "invalid status range"},
		{"health_check expect_status reversed", upApp + "[upstream.app.health_check]\nexpect_status = \"399-200\" # <-\n", "upstream.app.health_check.expect_status", "invalid status range"},
		{"health_check tcp with path", upApp + "[upstream.app.health_check] # <-\ntype = \"tcp\"\npath = \"/\"\n", "upstream.app.health_check", "only to type = \"http\""},
		{"health_check interval", upApp + "[upstream.app.health_check]\ninterval = \"0s\" # <-\n", "upstream.app.health_check.interval", "greater than 0"},
		{"health_check timeout", upApp + "[upstream.app.health_check]\ntimeout = \"0s\" # <-\n", "upstream.app.health_check.timeout", "greater than 0"},
		{"health_check rise", upApp + "[upstream.app.health_check]\nrise = -1 # <-\n", "upstream.app.health_check.rise", "must be >= 1"},
		{"health_check fall", upApp + "[upstream.app.health_check]\nfall = -1 # <-\n", "upstream.app.health_check.fall", "must be >= 1"},
	})
}

func TestValidateHTTP(t *testing.T) {
	loc := "[[http.location]]\npath = \"/\"\nproxy_pass = \"http://app\"\n"
	srv := func(listen string, extra string) string {
		return "[[http]]\nlisten = [" + listen + "]\n" + extra + loc
	}
	runRuleCases(t, []ruleCase{
		{"listen missing", upApp + "[[http]] # <-\n" + loc, "http[0].listen", "at least one address"},
		{"listen hostname", upApp + srv(`"localhost:80"`, "") + "#\n", "http[0].listen[0]", "host must be an IP address"},
		{"listen port", upApp + srv(`"127.0.0.1:0"`, ""), "http[0].listen[0]", "from 1 to 65535"},
		{"listen IPv6 without brackets", upApp + srv(`"::1:80"`, ""), "http[0].listen[0]", "IPv6 in brackets"},
		{"listen twice in one block", upApp + srv(`"127.0.0.1:80", "127.0.0.1:80"`, ""), "http[0].listen[1]", "listed twice"},
		{"listen wildcard overlap", upApp + srv(`"0.0.0.0:80"`, "") + srv(`"127.0.0.1:80"`, ""), "http[1].listen[0]", "overlaps 0.0.0.0:80 of http[0]"},
		{"listen dual-stack overlap", upApp + srv(`"[::]:80"`, "") + srv(`"0.0.0.0:80"`, ""), "http[1].listen[0]", "overlaps [::]:80 of http[0]"},
		{"tls certificate without key", upApp + "[[http]] # <-\nlisten = [\"127.0.0.1:443\"]\ntls_certificate = \"/etc/c.pem\"\n" + loc, "http[0]", "must be set together"},
		{"tls and plain on one address", upApp + srv(`"127.0.0.1:443"`, "tls_certificate = \"/c\"\ntls_certificate_key = \"/k\"\n") + srv(`"127.0.0.1:443"`, "server_name = [\"b\"]\n"),
			"http[1].listen[0]", "one address is either HTTPS or plain HTTP"},
		{"accept_proxy_protocol differs on one address", upApp + srv(`"127.0.0.1:80"`, "accept_proxy_protocol = true\n") + srv(`"127.0.0.1:80"`, "server_name = [\"b\"]\n"),
			"http[1].listen[0]", "different accept_proxy_protocol"},
		{"server_name twice on one address", upApp + srv(`"127.0.0.1:80"`, "server_name = [\"a\"]\n") + "[[http]]\nlisten = [\"127.0.0.1:80\"]\nserver_name = [\"a\"] # <-\n" + loc,
			"http[1].server_name[0]", `"a" is already a server_name of http[0]`},
		{"set_real_ip_from without accept_proxy_protocol", upApp + "[[http]]\nlisten = [\"127.0.0.1:80\"]\nset_real_ip_from = [\"10.0.0.0/8\"] # <-\n" + loc, "http[0].set_real_ip_from", "needs accept_proxy_protocol"},
		{"set_real_ip_from not an address", upApp + "[[http]]\nlisten = [\"127.0.0.1:80\"]\naccept_proxy_protocol = true\nset_real_ip_from = [\"lb.example\"] # <-\n" + loc, "http[0].set_real_ip_from[0]", "not an address or CIDR"},
		{"server_name invalid", upApp + "[[http]]\nlisten = [\"127.0.0.1:80\"]\nserver_name = [\"a/b\"] # <-\n" + loc, "http[0].server_name[0]", "invalid server name"},
		// Taken as plain names they never matched, every request going to
		// the default server.
		{"server_name regex", upApp + "[[http]]\nlisten = [\"127.0.0.1:80\"]\nserver_name = ['~^(www|api)\\.example\\.com$'] # <-\n" + loc, "http[0].server_name[0]", "regular expression server names are not supported"},
		{"server_name two wildcards", upApp + "[[http]]\nlisten = [\"127.0.0.1:80\"]\nserver_name = [\"*.example.*\"] # <-\n" + loc, "http[0].server_name[0]", "a wildcard name has one *"},
		{"server_name inner wildcard", upApp + "[[http]]\nlisten = [\"127.0.0.1:80\"]\nserver_name = [\"w*.example.com\"] # <-\n" + loc, "http[0].server_name[0]", "a wildcard name has one *"},
		{"listen 0.0.0.0 and [::] (nginx's pair)", upApp + "[[http]]\nlisten = [\"0.0.0.0:80\", \"[::]:80\"] # <-\n" + loc, "http[0].listen[1]", "[::]:80 alone already accepts IPv4 and IPv6"},
		{"client_header_max_size", upApp + srv(`"127.0.0.1:80"`, "client_header_max_size = 100 # <-\n"), "http[0].client_header_max_size", "at least 1k"},
		{"client_header_timeout", upApp + srv(`"127.0.0.1:80"`, "client_header_timeout = \"0s\" # <-\n"), "http[0].client_header_timeout", "greater than 0"},
		{"client_body_timeout", upApp + srv(`"127.0.0.1:80"`, "client_body_timeout = \"0s\" # <-\n"), "http[0].client_body_timeout", "greater than 0"},
		{"keepalive_timeout", upApp + srv(`"127.0.0.1:80"`, "keepalive_timeout = \"0s\" # <-\n"), "http[0].keepalive_timeout", "greater than 0"},
		{"send_timeout", upApp + srv(`"127.0.0.1:80"`, "send_timeout = \"0s\" # <-\n"), "http[0].send_timeout", "greater than 0"},
		{"error_page code", upApp + srv(`"127.0.0.1:80"`, "error_page = { \"502 5x3\" = \"/srv/50x.html\" } # <-\n"), `http[0].error_page."502 5x3"`, `"5x3" is not a status code`},
		{"error_page relative file", upApp + srv(`"127.0.0.1:80"`, "error_page = { \"502\" = \"50x.html\" } # <-\n"), `http[0].error_page."502"`, "absolute file path"},
		{"error_page status twice", upApp + srv(`"127.0.0.1:80"`, "error_page = { \"502 503\" = \"/a.html\", \"503\" = \"/b.html\" } # <-\n"), `http[0].error_page."503"`, "status 503 already has an error page"},
		{"no location", upApp + "[[http]] # <-\nlisten = [\"127.0.0.1:80\"]\n", "http[0].location", "at least one [[http.location]]"},
	})
}

func TestValidateLocation(t *testing.T) {
	head := upApp + "[[http]]\nlisten = [\"127.0.0.1:80\"]\n[[http.location]]\n"
	runRuleCases(t, []ruleCase{
		{"path relative", head + "path = \"app\" # <-\nproxy_pass = \"http://app\"\n", "http[0].location[0].path", "must start with /"},
		{"exact path relative", head + "path = \"= app\" # <-\nproxy_pass = \"http://app\"\n", "http[0].location[0].path", "must start with /"},
		{"nginx ^~ modifier", head + "path = \"^~ /static\" # <-\nproxy_pass = \"http://app\"\n", "http[0].location[0].path", `"^~" modifier is not supported`},
		{"regex empty", head + "path = \"~* \" # <-\nproxy_pass = \"http://app\"\n", "http[0].location[0].path", "empty regex"},
		{"regex invalid", head + "path = \"~ ^/(a\" # <-\nproxy_pass = \"http://app\"\n", "http[0].location[0].path", "invalid regex"},
		{"duplicate", head + "path = \"/a\"\nproxy_pass = \"http://app\"\n[[http.location]]\npath = \"/a\" # <-\nproxy_pass = \"http://app\"\n", "http[0].location[1].path", `duplicate location "/a"`},
		{"proxy_pass and root", head[:len(head)-1] + " # <-\npath = \"/\"\nproxy_pass = \"http://app\"\nroot = \"/srv\"\n", "http[0].location[0]", "cannot both be set"},
		{"neither proxy_pass nor root", head[:len(head)-1] + " # <-\npath = \"/\"\n", "http[0].location[0]", "one of proxy_pass or root is required"},
		{"root relative", head + "path = \"/\"\nroot = \"srv/www\" # <-\n", "http[0].location[0].root", "absolute directory path"},
		{"proxy_pass without scheme", head + "path = \"/\"\nproxy_pass = \"app\" # <-\n", "http[0].location[0].proxy_pass", "want http://UPSTREAM"},
		{"proxy_pass https", head + "path = \"/\"\nproxy_pass = \"https://app\" # <-\n", "http[0].location[0].proxy_pass", `scheme "https" is not supported`},
		{"proxy_pass query", head + "path = \"/\"\nproxy_pass = \"http://app/?a=1\" # <-\n", "http[0].location[0].proxy_pass", "only scheme, host and path"},
		{"proxy_pass unknown upstream", head + "path = \"/\"\nproxy_pass = \"http://ap/x\" # <-\n", "http[0].location[0].proxy_pass", `"ap" names no [upstream.ap] and is not host:port`},
		{"proxy_pass URI in regex location", head + "path = \"~ \\\\.php$\"\nproxy_pass = \"http://app/x\" # <-\n", "http[0].location[0].proxy_pass", "URI part in a regex location"},
		{"header name", head + "path = \"/\"\nproxy_pass = \"http://app\"\nproxy_set_header = { \"X Real\" = \"$remote_addr\" } # <-\n", "http[0].location[0].proxy_set_header", `invalid header name "X Real"`},
		{"header value CRLF", head + "path = \"/\"\nproxy_pass = \"http://app\"\nproxy_set_header = { X-A = \"a\\r\\nX-B: b\" } # <-\n", "http[0].location[0].proxy_set_header", "must not contain CR, LF"},
		{"header unknown variable", head + "path = \"/\"\nproxy_pass = \"http://app\"\nproxy_set_header = { X-Real-IP = \"$remote_adr\" } # <-\n", "http[0].location[0].proxy_set_header", "X-Real-IP: unknown variable $remote_adr"},
		{"header stray dollar", head + "path = \"/\"\nproxy_pass = \"http://app\"\nproxy_set_header = { X-A = \"$ 1\" } # <-\n", "http[0].location[0].proxy_set_header", `X-A: a "$" must start a variable name`},
		{"header unclosed brace", head + "path = \"/\"\nproxy_pass = \"http://app\"\nproxy_set_header = { X-A = \"${host\" } # <-\n", "http[0].location[0].proxy_set_header", "unclosed ${"},
		{"next_upstream unknown", head + "path = \"/\"\nproxy_pass = \"http://app\"\nproxy_next_upstream = [\"error\", \"http_599\"] # <-\n", "http[0].location[0].proxy_next_upstream", `unknown condition "http_599"`},
		{"next_upstream off with others", head + "path = \"/\"\nproxy_pass = \"http://app\"\nproxy_next_upstream = [\"off\", \"error\"] # <-\n", "http[0].location[0].proxy_next_upstream", `"off" cannot be combined`},
		{"next_upstream_tries", head + "path = \"/\"\nproxy_pass = \"http://app\"\nproxy_next_upstream_tries = -1 # <-\n", "http[0].location[0].proxy_next_upstream_tries", "must be >= 0"},
		{"proxy_connect_timeout", head + "path = \"/\"\nproxy_pass = \"http://app\"\nproxy_connect_timeout = \"0s\" # <-\n", "http[0].location[0].proxy_connect_timeout", "greater than 0"},
		{"proxy_read_timeout", head + "path = \"/\"\nproxy_pass = \"http://app\"\nproxy_read_timeout = \"0s\" # <-\n", "http[0].location[0].proxy_read_timeout", "greater than 0"},
		{"proxy_send_timeout", head + "path = \"/\"\nproxy_pass = \"http://app\"\nproxy_send_timeout = \"0s\" # <-\n", "http[0].location[0].proxy_send_timeout", "greater than 0"},
		{"proxy_redirect", head + "path = \"/\"\nproxy_pass = \"http://app\"\nproxy_redirect = \"on\" # <-\n", "http[0].location[0].proxy_redirect", `"default" or "off"`},
	})
}

func TestValidateStream(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{"listen missing", upApp + "[[stream]] # <-\nproxy_pass = \"app\"\n", "stream[0].listen", "at least one address"},
		{"hash on an HTTP variable", "[upstream.app]\nbalance = \"hash\"\nhash = \"${remote_addr}$host\"\n[[upstream.app.server]]\naddress = \"127.0.0.1:1884\"\n" +
			"[[stream]]\nlisten = [\"127.0.0.1:1883\"]\nproxy_pass = \"app\" # <-\n", "stream[0].proxy_pass", "hashes on $host, which a stream does not have"},
		{"listen syntax", upApp + "[[stream]]\nlisten = [\"1883\"] # <-\nproxy_pass = \"app\"\n", "stream[0].listen[0]", "want host:port"},
		{"listen taken by http", httpApp + "[[stream]]\nlisten = [\"127.0.0.1:8888\"] # <-\nproxy_pass = \"app\"\n", "stream[0].listen[0]", "already a listen address of http[0]"},
		{"listen taken by stream", upApp + "[[stream]]\nlisten = [\"127.0.0.1:1883\"]\nproxy_pass = \"app\"\n[[stream]]\nlisten = [\"127.0.0.1:1883\"] # <-\nproxy_pass = \"app\"\n", "stream[1].listen[0]", "already a listen address of stream[0]"},
		{"listen overlaps http", httpApp + "[[stream]]\nlisten = [\"0.0.0.0:8888\"] # <-\nproxy_pass = \"app\"\n", "stream[0].listen[0]", "overlaps 127.0.0.1:8888 of http[0]"},
		{"proxy_pass missing", upApp + "[[stream]] # <-\nlisten = [\"127.0.0.1:1883\"]\n", "stream[0].proxy_pass", "required"},
		{"proxy_pass unknown", upApp + "[[stream]]\nlisten = [\"127.0.0.1:1883\"]\nproxy_pass = \"mqtt\" # <-\n", "stream[0].proxy_pass", `"mqtt" names no [upstream.mqtt] and is not host:port`},
		{"proxy_protocol", upApp + "[[stream]]\nlisten = [\"127.0.0.1:1883\"]\nproxy_pass = \"app\"\nproxy_protocol = \"on\" # <-\n", "stream[0].proxy_protocol", `must be "v1", "v2" or "" (off), not "on"`},
		{"proxy_protocol_timeout", upApp + "[[stream]]\nlisten = [\"127.0.0.1:1883\"]\nproxy_pass = \"app\"\nproxy_protocol_timeout = \"0s\" # <-\n", "stream[0].proxy_protocol_timeout", "greater than 0"},
		{"proxy_connect_timeout", upApp + "[[stream]]\nlisten = [\"127.0.0.1:1883\"]\nproxy_pass = \"app\"\nproxy_connect_timeout = \"0s\" # <-\n", "stream[0].proxy_connect_timeout", "greater than 0"},
		{"proxy_timeout", upApp + "[[stream]]\nlisten = [\"127.0.0.1:1883\"]\nproxy_pass = \"app\"\nproxy_timeout = \"0s\" # <-\n", "stream[0].proxy_timeout", "greater than 0"},
	})
}

func TestValidateVRRPScript(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{"script missing", "[vrrp_script.chk] # <-\ninterval = \"2s\"\n", "vrrp_script.chk.script", "required"},
		{"interval", "[vrrp_script.chk]\nscript = \"/bin/true\"\ninterval = \"0s\" # <-\n", "vrrp_script.chk.interval", "greater than 0"},
		{"timeout", "[vrrp_script.chk]\nscript = \"/bin/true\"\ntimeout = \"0s\" # <-\n", "vrrp_script.chk.timeout", "greater than 0"},
		{"weight", "[vrrp_script.chk]\nscript = \"/bin/true\"\nweight = -254 # <-\n", "vrrp_script.chk.weight", "from -253 to 253"},
		{"fall", "[vrrp_script.chk]\nscript = \"/bin/true\"\nfall = -1 # <-\n", "vrrp_script.chk.fall", "must be >= 1"},
		{"rise", "[vrrp_script.chk]\nscript = \"/bin/true\"\nrise = -1 # <-\n", "vrrp_script.chk.rise", "must be >= 1"},
	})
}

func TestValidateVRRP(t *testing.T) {
	v := func(extra string) string { return vrrpHead + extra }
	hc := upApp + "[upstream.app.health_check]\n"
	runRuleCases(t, []ruleCase{
		{"name missing", "[[vrrp]] # <-\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"192.0.2.100/24\"]\n", "vrrp[0].name", "required"},
		{"name duplicate", v("") + "[[vrrp]]\nname = \"VI_1\" # <-\ninterface = \"eth1\"\nvirtual_router_id = 52\nvirtual_ipaddress = [\"192.0.2.101/24\"]\n", "vrrp[1].name", `"VI_1" is already the name of vrrp[0]`},
		{"interface missing", "[[vrrp]] # <-\nname = \"VI_1\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"192.0.2.100/24\"]\n", "vrrp[0].interface", "required"},
		{"interface alias", "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0:1\" # <-\nvirtual_router_id = 51\nvirtual_ipaddress = [\"192.0.2.100/24\"]\n", "vrrp[0].interface", `invalid interface name "eth0:1"`},
		{"interface too long", "[[vrrp]]\nname = \"VI_1\"\ninterface = \"abcdefghijklmnop\" # <-\nvirtual_router_id = 51\nvirtual_ipaddress = [\"192.0.2.100/24\"]\n", "vrrp[0].interface", "longer than 15"},
		{"virtual_router_id 0", "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 0 # <-\nvirtual_ipaddress = [\"192.0.2.100/24\"]\n", "vrrp[0].virtual_router_id", "from 1 to 255"},
		{"virtual_router_id 256", "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 256 # <-\nvirtual_ipaddress = [\"192.0.2.100/24\"]\n", "vrrp[0].virtual_router_id", "from 1 to 255"},
		{"priority 0", v("priority = 0 # <-\n"), "vrrp[0].priority", "from 1 to 254"},
		{"priority 255", v("priority = 255 # <-\n"), "vrrp[0].priority", "from 1 to 254"},
		{"state", v("state = \"master\" # <-\n"), "vrrp[0].state", `must be MASTER or BACKUP, not "master"`},
		{"v2 advert_int fraction", v("advert_int = \"1500ms\" # <-\n"), "vrrp[0].advert_int", "whole seconds"},
		{"v2 advert_int too long", v("advert_int = \"256s\" # <-\n"), "vrrp[0].advert_int", "whole seconds from 1s to 255s"},
		{"v3 advert_int not centiseconds", v("version = 3\nadvert_int = \"15ms\" # <-\n"), "vrrp[0].advert_int", "multiple of 10ms"},
		{"v3 advert_int too long", v("version = 3\nadvert_int = \"41s\" # <-\n"), "vrrp[0].advert_int", "multiple of 10ms from 10ms to 40.95s"},
		{"v3 auth_pass", v("version = 3\nauth_pass = \"1111\" # <-\n"), "vrrp[0].auth_pass", "no authentication"},
		{"version", v("version = 4 # <-\n"), "vrrp[0].version", "must be 2 or 3"},
		{"no VIP", "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [] # <-\n", "vrrp[0].virtual_ipaddress", "at least one VIP"},
		{"VIP syntax", "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"192.0.2.300/24\"] # <-\n", "vrrp[0].virtual_ipaddress[0]", `invalid VIP "192.0.2.300/24"`},
		{"VIP prefix length", "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"192.0.2.1/33\"] # <-\n", "vrrp[0].virtual_ipaddress[0]", "invalid VIP"},
		{"VIP keepalived scope", "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"192.0.2.1/24 dev eth0 scope global\"] # <-\n", "vrrp[0].virtual_ipaddress[0]", "want \"ADDRESS/PREFIX\""},
		{"VIP dev name", "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"192.0.2.1/24 dev a/b\"] # <-\n", "vrrp[0].virtual_ipaddress[0]", "dev: invalid interface name"},
		{"VIP multicast", "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"224.0.0.18\"] # <-\n", "vrrp[0].virtual_ipaddress[0]", "not a unicast address"},
		{"VIP network address", "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"192.0.2.0/24\"] # <-\n", "vrrp[0].virtual_ipaddress[0]", "network or broadcast address of 192.0.2.0/24"},
		{"VIP broadcast address", "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"192.0.2.127/25\"] # <-\n", "vrrp[0].virtual_ipaddress[0]", "network or broadcast address of 192.0.2.0/25"},
		{"VIP families mixed", "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nversion = 3\nvirtual_router_id = 51\nvirtual_ipaddress = [\"192.0.2.1/24\", \"2001:db8::1/64\"] # <-\n", "vrrp[0].virtual_ipaddress[1]", "mixes IPv4 and IPv6"},
		{"IPv6 VIP with version 2", "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"2001:db8::1/64\"]\nversion = 2 # <-\n", "vrrp[0].version", "IPv6 VIPs need version = 3"},
		{"VIP in two instances", v("") + "[[vrrp]]\nname = \"VI_2\"\ninterface = \"eth1\"\nvirtual_router_id = 52\nvirtual_ipaddress = [\"192.0.2.100/24\"] # <-\n", "vrrp[1].virtual_ipaddress[0]", "192.0.2.100 is already a VIP of vrrp[0]"},
		{"mcast_src_ip syntax", v("mcast_src_ip = \"192.0.2.256\" # <-\n"), "vrrp[0].mcast_src_ip", "invalid address"},
		{"mcast_src_ip family", v("mcast_src_ip = \"2001:db8::2\" # <-\n"), "vrrp[0].mcast_src_ip", "address family differs"},
		{"unicast_peer syntax", v("unicast_peer = [\"node-b\"] # <-\n"), "vrrp[0].unicast_peer[0]", `invalid address "node-b"`},
		{"unicast_peer family", v("unicast_peer = [\"2001:db8::2\"] # <-\n"), "vrrp[0].unicast_peer[0]", "address family differs"},
		{"unicast_peer self", v("mcast_src_ip = \"192.0.2.1\"\nunicast_peer = [\"192.0.2.1\"] # <-\n"), "vrrp[0].unicast_peer[0]", "own mcast_src_ip"},
		{"unicast_peer twice", v("unicast_peer = [\"192.0.2.2\", \"192.0.2.2\"] # <-\n"), "vrrp[0].unicast_peer[1]", "listed twice"},
		{"mcast_src_ip is a VIP", v("mcast_src_ip = \"192.0.2.100\" # <-\n"), "vrrp[0].mcast_src_ip", "192.0.2.100 is also a VIP"},
		{"unicast_peer is a VIP", v("unicast_peer = [\"192.0.2.2\", \"192.0.2.100\"] # <-\n"), "vrrp[0].unicast_peer[1]", "192.0.2.100 is also a VIP"},
		{"same router twice", v("") + "[[vrrp]]\nname = \"VI_2\"\ninterface = \"eth0\"\nvirtual_router_id = 51 # <-\nvirtual_ipaddress = [\"192.0.2.101/24\"]\n", "vrrp[1].virtual_router_id", "vrrp[0] already uses virtual_router_id 51 on eth0 for IPv4"},
		{"garp_master_repeat", v("garp_master_repeat = -1 # <-\n"), "vrrp[0].garp_master_repeat", "must be >= 0"},
		{"vip_lifetime syntax", v("vip_lifetime = \"forever\" # <-\n"), "vrrp[0].vip_lifetime", `must be "auto" or a duration`},
		{"vip_lifetime too short", v("vip_lifetime = \"500ms\" # <-\n"), "vrrp[0].vip_lifetime", "at least 1s"},
		{"preempt_delay too long", v("preempt_delay = \"2h\" # <-\n"), "vrrp[0].preempt_delay", "at most 1h"},
		{"track_script unknown", v("track_script = [\"chk_nginx\"] # <-\n"), "vrrp[0].track_script[0]", "no [vrrp_script.chk_nginx] is defined"},
		{"track_script twice", "[vrrp_script.chk]\nscript = \"/bin/true\"\n" + v("track_script = [\"chk\", \"chk\"] # <-\n"), "vrrp[0].track_script[1]", "listed twice"},
		{"track_interface invalid", v("track_interface = [\"\"] # <-\n"), "vrrp[0].track_interface[0]", "empty interface name"},
		{"track_interface twice", v("track_interface = [\"eth1\", \"eth1\"] # <-\n"), "vrrp[0].track_interface[1]", "listed twice"},
		{"track_upstream unknown", v("track_upstream = [\"web\"] # <-\n"), "vrrp[0].track_upstream[0]", "no [upstream.web] is defined"},
		{"track_upstream without health_check", upApp + v("track_upstream = [\"app\"] # <-\n"), "vrrp[0].track_upstream[0]", "needs a [upstream.app.health_check]"},
		{"track_upstream twice", hc + v("track_upstream = [\"app\", \"app\"] # <-\n"), "vrrp[0].track_upstream[1]", "listed twice"},
		{"track_upstream_weight positive", hc + v("track_upstream = [\"app\"]\ntrack_upstream_weight = 10 # <-\n"), "vrrp[0].track_upstream_weight", "must be 0 (FAULT) or from -253 to -1"},
		{"track_upstream_weight too low", hc + v("track_upstream = [\"app\"]\ntrack_upstream_weight = -254 # <-\n"), "vrrp[0].track_upstream_weight", "from -253 to -1"},
	})
}

// TestUnitErrors covers Duration and Size values the file gets wrong: each
// is reported with its key path (and the other problems are still found).
func TestUnitErrors(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{"duration bare number", "[global]\nshutdown_timeout = 30 # <-\n", "global.shutdown_timeout", `a string with a unit, such as "30s"`},
		{"duration no unit", "[global]\nshutdown_timeout = \"30\" # <-\n", "global.shutdown_timeout", `invalid duration "30"`},
		{"duration nginx unit", upApp + "[[stream]]\nlisten = [\"127.0.0.1:1883\"]\nproxy_pass = \"app\"\nproxy_timeout = \"1d\" # <-\n", "stream[0].proxy_timeout", `invalid duration "1d"`},
		{"duration negative", "[global]\nshutdown_timeout = \"-1s\" # <-\n", "global.shutdown_timeout", "must not be negative"},
		{"duration bool", "[global]\nshutdown_timeout = true # <-\n", "global.shutdown_timeout", "got a boolean"},
		{"duration in a server", "[upstream.app]\n[[upstream.app.server]]\naddress = \"127.0.0.1:1\"\n[[upstream.app.server]]\naddress = \"127.0.0.1:2\"\nfail_timeout = 20 # <-\n", "upstream.app.server[1].fail_timeout", "a bare number is ambiguous"},
		{"duration in a vrrp_script", "[vrrp_script.chk]\nscript = \"/bin/true\"\ninterval = 2 # <-\n", "vrrp_script.chk.interval", `such as "2s"`},
		{"size suffix", upApp + "[[http]]\nlisten = [\"127.0.0.1:80\"]\nclient_max_body_size = \"10 parsecs\" # <-\n[[http.location]]\npath = \"/\"\nproxy_pass = \"http://app\"\n", "http[0].client_max_body_size", `invalid size "10 parsecs"`},
		{"size negative", upApp + "[[http]]\nlisten = [\"127.0.0.1:80\"]\nclient_max_body_size = -1 # <-\n[[http.location]]\npath = \"/\"\nproxy_pass = \"http://app\"\n", "http[0].client_max_body_size", "must not be negative"},
		{"size float", upApp + "[[http]]\nlisten = [\"127.0.0.1:80\"]\nclient_max_body_size = 1.5 # <-\n[[http.location]]\npath = \"/\"\nproxy_pass = \"http://app\"\n", "http[0].client_max_body_size", "got a float"},
	})
}

func TestUnknownKeys(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{"top level", "[gobal] # <-\nlog_level = \"info\"\n", "gobal", "unknown key"},
		{"in global", "[global]\nlog_lvl = \"info\" # <-\n", "global.log_lvl", "unknown key"},
		{"nginx directive", upApp + "[[http]]\nlisten = [\"127.0.0.1:80\"]\n[[http.location]]\npath = \"/\"\nproxy_pass = \"http://app\"\nproxy_http_version = \"1.1\" # <-\n", "http[0].location[0].proxy_http_version", "unknown key"},
		{"in the second server of an upstream", "[upstream.app]\n[[upstream.app.server]]\naddress = \"127.0.0.1:1\"\n[[upstream.app.server]]\naddress = \"127.0.0.1:2\"\nwieght = 2 # <-\n", "upstream.app.server[1].wieght", "unknown key"},
		{"keepalived nopreempt", v0("nopreempt = true # <-\n"), "vrrp[0].nopreempt", "unknown key"},
	})
}

func v0(extra string) string { return vrrpHead + extra }

// TestTypeErrors: a value of the wrong TOML type is reported with its key
// path like any other problem (the decoder alone would stop at the first).
func TestTypeErrors(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{"integer where a string goes", "[global]\nlog_level = 3 # <-\n", "global.log_level", "must be a string, not an integer"},
		{"string where an integer goes", upApp + "[[upstream.app.server]]\naddress = \"127.0.0.2:8080\"\nweight = \"3\" # <-\n", "upstream.app.server[1].weight", "must be an integer, not a string"},
		{"float where an integer goes", "[upstream.app]\nkeepalive = 1.5 # <-\n[[upstream.app.server]]\naddress = \"127.0.0.1:1\"\n", "upstream.app.keepalive", "must be an integer, not a float"},
		{"string where a boolean goes", upApp + "backup = \"yes\" # <-\n", "upstream.app.server[0].backup", "must be a boolean (true or false, without quotes), not a string"},
		{"date where a string goes", "[global]\nadmin_listen = 1979-05-27 # <-\n", "global.admin_listen", "must be a string, not a date or time"},
		{"string where an array goes", upApp + "[[http]]\nlisten = \"0.0.0.0:80\" # <-\n[[http.location]]\npath = \"/\"\nproxy_pass = \"http://app\"\n", "http[0].listen", "must be an array, not a string"},
		{"integer in an array of strings", upApp + "[[http]]\nlisten = [\"127.0.0.1:80\", 8080] # <-\n[[http.location]]\npath = \"/\"\nproxy_pass = \"http://app\"\n", "http[0].listen[1]", "must be a string, not an integer"},
		{"string where a table goes", "http = \"on\" # <-\n", "http", "must be an array, not a string"},
		{"array of tables where a table goes", "[[upstream.app]] # <-\n", "upstream.app", "must be a table, not an array of tables"},
		{"table where a string goes", "[global.log_level] # <-\n", "global.log_level", "must be a string, not a table"},
		{"header value not a string", upApp + "[[http]]\nlisten = [\"127.0.0.1:80\"]\n[[http.location]]\npath = \"/\"\nproxy_pass = \"http://app\"\nproxy_set_header = { X-Port = 80 } # <-\n", "http[0].location[0].proxy_set_header.X-Port", "must be a string, not an integer"},
	})
}

// TestTypeErrorsAllReported: several wrong types and other mistakes in one
// file all come out together.
func TestTypeErrorsAllReported(t *testing.T) {
	file := upApp + `weight = "3"
[[http]]
listen = ["127.0.0.1:80"]
keepalive_timeout = 75
[[http.location]]
path = "/"
proxy_pass = "http://ap"
proxy_buffering = "off"
[[vrrp]]
name = "VI_1"
interface = "eth0"
virtual_router_id = "51"
priority = 300
virtual_ipaddress = ["192.0.2.100/24"]
nopreempt = true
`
	_, err := Parse([]byte(file), "f.toml")
	var keys []string
	for _, p := range problemList(t, err) {
		keys = append(keys, p.Key)
	}
	want := []string{
		"upstream.app.server[0].weight", "http[0].keepalive_timeout", "http[0].location[0].proxy_pass",
		"http[0].location[0].proxy_buffering", "vrrp[0].virtual_router_id", "vrrp[0].priority", "vrrp[0].nopreempt",
	}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Errorf("problems at\n %q\nwant\n %q\n%v", keys, want, err)
	}
}

// TestDecodeErrors: mistakes the TOML decoder stops at (syntax, types)
// still come as one Problem with the line.
func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name, file, key, msg string
	}{
		{"unterminated string", "[global]\nlog_level = \"info\n", "", "strings cannot contain newlines"},
		{"missing value", "[global]\n\nlog_level =\n", "", "expected value"},
		{"duplicate key", "[global]\nlog_level = \"info\"\nlog_level = \"debug\" # <-\n", "", "already been defined"},
		{"bad table header", "[global\nlog_level = \"info\" # <-\n", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file), "f.toml")
			ps := problemList(t, err)
			if len(ps) != 1 {
				t.Fatalf("got %d problems, want 1: %v", len(ps), err)
			}
			p := ps[0]
			want := markedLine(tc.file)
			if want == 0 {
				want = strings.Count(tc.file, "\n") // these break on the last line
			}
			if p.Line != want {
				t.Errorf("line = %d, want %d: %v", p.Line, want, p)
			}
			if tc.key != "" && p.Key != tc.key {
				t.Errorf("key = %q, want %q", p.Key, tc.key)
			}
			if !strings.Contains(p.Message, tc.msg) {
				t.Errorf("message %q does not contain %q", p.Message, tc.msg)
			}
			if !strings.HasPrefix(p.Error(), "f.toml:") {
				t.Errorf("Error() = %q, want file:line first", p.Error())
			}
		})
	}
}
