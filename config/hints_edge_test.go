package config

import (
	"strings"
	"testing"
)

// TestLogPathWithSpaceAccepted: a log file whose directory has a space in
// its name ("/srv/My Site/logs/access.log"; nginx: access_log "/srv/My
// Site/logs/access.log";) is a valid path: only nginx's parameters after
// a path are refused, not every path with a space (and error_log must
// not be told to write log_level = "Site/logs/error.log").
func TestLogPathWithSpaceAccepted(t *testing.T) {
	for _, key := range []string{"access_log", "error_log"} {
		t.Run(key, func(t *testing.T) {
			file := "[global]\n" + key + " = \"/srv/My Site/logs/" + key + ".log\"\n" + httpApp
			if _, err := Parse([]byte(file), "vipgate.toml"); err != nil {
				t.Errorf("a valid path with a space in a directory name is refused:\n%v", err)
			}
		})
	}
}

// TestMistypedSubTableNotCalledDottedName: [[upstream.app.servers]]
// (a typo of server) or [upstream.app.healthcheck] is an unknown table
// three keys deep under upstream, so the hint meant for
// [upstream.tomcat.local] answers: "if "app.servers" is the upstream's
// name, quote it". The upstream is app; the operator mistyped a table.
func TestMistypedSubTableNotCalledDottedName(t *testing.T) {
	for _, tc := range []struct{ name, file, key, want string }{
		{"servers", "[upstream.app]\n[[upstream.app.servers]]\naddress = \"127.0.0.1:8080\"\n" + "[[upstream.app.server]]\naddress = \"127.0.0.1:8081\"\n",
			"upstream.app.servers", "server"},
		{"healthcheck", upApp + "[upstream.app.healthcheck]\ntype = \"tcp\"\n", "upstream.app.healthcheck", "health_check"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file), "vipgate.toml")
			if err == nil {
				t.Fatal("accepted")
			}
			for _, p := range problemList(t, err) {
				if strings.HasPrefix(p.Key, tc.key) {
					if strings.Contains(p.Message, "quote it") || !strings.Contains(p.Message, tc.want) {
						t.Errorf("%v\n  want it to point to %s, not to quoting a dotted upstream name", p, tc.want)
					}
					return
				}
			}
			t.Fatalf("no problem at %s: %v", tc.key, err)
		})
	}
}

// TestQuoteHintFitsTheKeyType: the quote hint added to a syntax
// error quotes whatever bare value the line holds, whatever the key's
// type. For nginx's "proxy_buffering off;" it says to write
// proxy_buffering = "off", which the next -t refuses ("must be a boolean
// (true or false, without quotes)"); for "listen 0.0.0.0:80;" it says
// listen = "0.0.0.0:80", which is refused as not a list.
func TestQuoteHintFitsTheKeyType(t *testing.T) {
	head := upApp + "[[http]]\n"
	tail := "[[http.location]]\npath = \"/\"\nproxy_pass = \"http://app\"\n"
	for _, tc := range []struct{ name, file, bad, want string }{
		{"proxy_buffering off", head + "listen = [\"127.0.0.1:8888\"]\n" + tail + "proxy_buffering = off\n", `proxy_buffering = "off"`, "false"},
		{"listen bare", head + "listen = 0.0.0.0:8080\n" + tail, `listen = "0.0.0.0:8080"`, `["0.0.0.0:8080"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file), "vipgate.toml")
			ps := problemList(t, err)
			if len(ps) != 1 {
				t.Fatalf("got %d problems: %v", len(ps), err)
			}
			if msg := ps[0].Message; strings.Contains(msg, tc.bad) || !strings.Contains(msg, tc.want) {
				t.Errorf("%v\n  tells to write %s, which -t refuses next; want it to say %s", ps[0], tc.bad, tc.want)
			}
		})
	}
	// What the hint says to write is refused:
	_, err := Parse([]byte(head+"listen = [\"127.0.0.1:8888\"]\n"+tail+"proxy_buffering = \"off\"\n"), "vipgate.toml")
	if err == nil {
		t.Fatal("proxy_buffering = \"off\" accepted")
	}
	t.Logf("following the hint: %v", err)
}
