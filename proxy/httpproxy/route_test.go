package httpproxy

import (
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/vipgate/vipgate/config"
)

// loc builds a compiled location from its config path ("/a", "= /x",
// "~ re") and proxy_pass.
func testLocation(t testing.TB, path, proxyPass string) *location {
	t.Helper()
	lc := &config.Location{Path: path}
	switch {
	case strings.HasPrefix(path, "= "):
		lc.Match, lc.Pattern = config.MatchExact, path[2:]
	case strings.HasPrefix(path, "~ "):
		lc.Match, lc.Pattern = config.MatchRegex, path[2:]
		lc.Regex = regexp.MustCompile(lc.Pattern)
	default:
		lc.Match, lc.Pattern = config.MatchPrefix, path
	}
	if proxyPass != "" {
		u, err := url.Parse(proxyPass)
		if err != nil {
			t.Fatal(err)
		}
		lc.Target = &config.ProxyTarget{Scheme: "http", Upstream: u.Host}
		if rest := strings.TrimPrefix(proxyPass, "http://"); strings.Contains(rest, "/") {
			lc.Target.HasURI = true
			lc.Target.URI = rest[strings.Index(rest, "/"):]
		}
	}
	l := &location{cfg: lc, pattern: lc.Pattern}
	l.autoRedirect = proxyPass != "" && lc.Match == config.MatchPrefix && strings.HasSuffix(lc.Pattern, "/") && len(lc.Pattern) > 1
	return l
}

func TestFindLocation(t *testing.T) {
	v := newVhost(&config.HTTPServer{}, 0)
	for _, p := range []string{"/", "/app", "/app/static", "= /app/exact", "~ \\.php$", "~ ^/app/static/img", "/api/"} {
		v.addLocation(testLocation(t, p, "http://up"))
	}
	tests := []struct {
		uri      string
		want     string
		redirect bool
	}{
		{"/", "/", false},
		{"/other", "/", false},
		{"/app", "/app", false},
		{"/application", "/app", false}, // prefix, not path segment: nginx too
		{"/app/static/x.css", "/app/static", false},
		{"/app/exact", "/app/exact", false},         // exact beats everything
		{"/app/exact/x", "/app", false},             // exact is not a prefix
		{"/app/static/x.php", "\\.php$", false},     // regex beats the longest prefix
		{"/app/static/img/a.php", "\\.php$", false}, // first regex in file order
		{"/app/static/img/a.png", "^/app/static/img", false},
		{"/api", "/api/", true}, // auto redirect of "/api/"
		{"/api/v1", "/api/", false},
	}
	for _, tc := range tests {
		l, redirect := v.findLocation(tc.uri)
		if l == nil || l.pattern != tc.want || redirect != tc.redirect {
			got := "<nil>"
			if l != nil {
				got = l.pattern
			}
			t.Errorf("%s: got %s (redirect %v), want %s (redirect %v)", tc.uri, got, redirect, tc.want, tc.redirect)
		}
	}
	empty := newVhost(&config.HTTPServer{}, 0)
	empty.addLocation(testLocation(t, "/only", "http://up"))
	if l, _ := empty.findLocation("/else"); l != nil {
		t.Errorf("no matching location: got %s", l.pattern)
	}
}

func TestServerNames(t *testing.T) {
	mk := func(names ...string) *vhost { return newVhost(&config.HTTPServer{ServerName: names}, 0) }
	first := mk("first.example")
	exact := mk("www.example.com")
	wild := mk("*.example.com")
	longer := mk("*.api.example.com")
	dotted := mk(".example.org")
	trailing := mk("mail.*")
	var s serverNames
	for _, v := range []*vhost{first, exact, wild, longer, dotted, trailing} {
		s.add(v)
	}
	tests := []struct {
		host string
		want *vhost
	}{
		{"www.example.com", exact},
		{"a.example.com", wild},
		{"x.api.example.com", longer},
		{"example.org", dotted},
		{"a.b.example.org", dotted},
		{"mail.example.net", trailing},
		{"unknown.net", first},
		{"", first},
	}
	for _, tc := range tests {
		if got := s.find(tc.host); got != tc.want {
			t.Errorf("%q: got %v, want %v", tc.host, got.cfg.ServerName, tc.want.cfg.ServerName)
		}
	}
	for in, want := range map[string]string{"WWW.Example.COM:8080": "www.example.com", "a.b.": "a.b", "[::1]:80": "[::1]", "x": "x"} {
		if got := normalizeHost(in); got != want {
			t.Errorf("normalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		raw, want string
		quoted    bool
		bad       bool
	}{
		{raw: "/", want: "/"},
		{raw: "/a/b", want: "/a/b"},
		{raw: "/a//b///c", want: "/a/b/c"},
		{raw: "/a/./b", want: "/a/b"},
		{raw: "/a/../b", want: "/b"},
		{raw: "/a/b/..", want: "/a/"},
		{raw: "/a/b/.", want: "/a/b/"},
		{raw: "/a/..", want: "/"},
		{raw: "/a/b../c", want: "/a/b../c"},
		{raw: "/a/.b", want: "/a/.b"},
		{raw: "/a%20b", want: "/a b", quoted: true},
		{raw: "/a/%2e%2e/b", want: "/b", quoted: true},
		{raw: "/a%2Fb", want: "/a/b", quoted: true},
		{raw: "/..", bad: true},
		{raw: "/a/../..", bad: true},
		{raw: "/%00", bad: true},
		{raw: "/%zz", bad: true},
		{raw: "/%4", bad: true},
		{raw: "*", bad: true},
	}
	for _, tc := range tests {
		got, quoted, err := normalizePath(tc.raw)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: got %q, want an error", tc.raw, got)
			}
			continue
		}
		if err != nil || got != tc.want || quoted != tc.quoted {
			t.Errorf("%q: got %q quoted=%v err=%v, want %q quoted=%v", tc.raw, got, quoted, err, tc.want, tc.quoted)
		}
	}
}

func TestUpstreamURI(t *testing.T) {
	tests := []struct {
		path, proxyPass, raw, want string
	}{
		// Without a URI part the raw target passes unchanged, escaping kept.
		{"/app1", "http://up", "/app1/x%2Fy?a=1", "/app1/x%2Fy?a=1"},
		{"/app1", "http://up", "/app1//x/../y", "/app1//x/../y"},
		{"~ \\.php$", "http://up", "/a/b.php?x", "/a/b.php?x"},
		// With a URI part the matched prefix is replaced.
		{"/app1", "http://up/app1", "/app1/x?q=1", "/app1/x?q=1"},
		{"/a/", "http://up/b/", "/a/x", "/b/x"},
		{"/a/", "http://up/", "/a/x/y", "/x/y"},
		{"/a", "http://up/b", "/a/x", "/b/x"},
		{"/a/", "http://up/b/", "/a//x/./y", "/b/x/y"},
		{"/a/", "http://up/b/", "/a/x%20y%3F?k=%20", "/b/x%20y%3F?k=%20"},
		{"= /exact", "http://up/other", "/exact?z", "/other?z"},
	}
	for _, tc := range tests {
		l := testLocation(t, tc.path, tc.proxyPass)
		rawPath, _, _ := strings.Cut(tc.raw, "?")
		uri, quoted, err := normalizePath(rawPath)
		if err != nil {
			t.Fatalf("%s: %v", tc.raw, err)
		}
		if got := upstreamURI(l, tc.raw, uri, quoted); got != tc.want {
			t.Errorf("location %s proxy_pass %s: %s -> %s, want %s", tc.path, tc.proxyPass, tc.raw, got, tc.want)
		}
	}
}

func TestUpstreamHeader(t *testing.T) {
	r, _ := http.NewRequest("GET", "http://www.example.com:8080/p?q=1", nil)
	r.RequestURI = "/p?q=1"
	r.Host = "www.example.com:8080"
	r.Header = http.Header{
		"X-Forwarded-For": {"10.0.0.1", "10.0.0.2"},
		"Connection":      {"keep-alive, X-Secret"},
		"X-Secret":        {"hop"},
		"Keep-Alive":      {"300"},
		"Te":              {"trailers"},
		"Cookie":          {"a=1; sid=abc"},
		"Accept":          {"*/*"},
		"X-Drop":          {"x"},
	}
	vars := &reqVars{req: stdRequest(r), remote: "192.0.2.7", port: "5555", scheme: "https", uri: "/p", host: "www.example.com", local: "8080"}
	tests := []struct {
		name     string
		set      map[string]string
		want     http.Header
		wantHost string
	}{
		{
			name: "defaults",
			want: http.Header{
				"X-Forwarded-For":   {"10.0.0.1, 10.0.0.2, 192.0.2.7"},
				"X-Real-Ip":         {"192.0.2.7"},
				"X-Forwarded-Proto": {"https"},
				"Cookie":            {"a=1; sid=abc"},
				"Accept":            {"*/*"},
				"X-Drop":            {"x"},
				"User-Agent":        {""}, // keeps Go's transport from adding one
			},
			wantHost: "www.example.com:8080",
		},
		{
			name: "set, remove, variables, hop-by-hop ignored",
			set: map[string]string{
				"Host": "$host:$server_port", "X-Drop": "", "X-Real-IP": "", "X-Sid": "$cookie_sid",
				"X-Info":     "$scheme://$host$request_uri $uri $remote_port $http_accept",
				"Connection": "upgrade", "Upgrade": "$http_upgrade",
			},
			want: http.Header{
				"X-Forwarded-For":   {"10.0.0.1, 10.0.0.2, 192.0.2.7"},
				"X-Forwarded-Proto": {"https"},
				"Cookie":            {"a=1; sid=abc"},
				"Accept":            {"*/*"},
				"X-Sid":             {"abc"},
				"X-Info":            {"https://www.example.com/p?q=1 /p 5555 */*"},
				"User-Agent":        {""},
			},
			wantHost: "www.example.com:8080",
		},
	}
	for _, tc := range tests {
		rules, _, err := compileHeaders(tc.set)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, host := upstreamHeader(r.Header, rules, vars, "")
		if !reflect.DeepEqual(got, tc.want) || host != tc.wantHost {
			t.Errorf("%s:\n got %v host %q\nwant %v host %q", tc.name, got, host, tc.want, tc.wantHost)
		}
	}
	if _, _, err := compileHeaders(map[string]string{"X": "$nosuchvar"}); err == nil {
		t.Error("unknown variable accepted")
	}
	rules, _, _ := compileHeaders(nil)
	got, _ := upstreamHeader(http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, rules, vars, "websocket")
	if got.Get("Connection") != "Upgrade" || got.Get("Upgrade") != "websocket" {
		t.Errorf("websocket upgrade headers not passed: %v", got)
	}
}

func TestRewriteRedirect(t *testing.T) {
	withURI := testLocation(t, "/one/", "http://up/two/")
	withURI.cfg.Target.Upstream = "up"
	noURI := testLocation(t, "/app/", "http://up")
	tests := []struct {
		l        *location
		in, want string
	}{
		{withURI, "http://up/two/x?y", "/one/x?y"},
		{withURI, "http://10.0.0.5:8080/two/x", "/one/x"}, // the server's own address
		{withURI, "http://elsewhere/two/x", "http://elsewhere/two/x"},
		{withURI, "/two/x", "/two/x"},
		{noURI, "http://up/app/x", "/app/x"},
		{noURI, "http://10.0.0.5:8080/app/x", "/app/x"},
	}
	for _, tc := range tests {
		rules := defaultRedirects(tc.l.cfg)
		if got := rewriteRedirect(tc.in, rules, "10.0.0.5:8080"); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.in, got, tc.want)
		}
	}
	if got := rewriteRefresh("5; url=http://up/two/x", defaultRedirects(withURI.cfg), ""); got != "5; url=/one/x" {
		t.Errorf("refresh: %s", got)
	}
	off := "off"
	withURI.cfg.ProxyRedirect = &off
	if defaultRedirects(withURI.cfg) != nil {
		t.Error("proxy_redirect off still rewrites")
	}
}

func TestEscapeURI(t *testing.T) {
	if got := escapeURI("/a b#c%d?e\x01\xffé+&;=~"); got != "/a%20b%23c%25d%3Fe%01%FF%C3%A9+&;=~" {
		t.Errorf("got %s", got)
	}
}
