package httpproxy

import (
	"net/http"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"

	"github.com/vipgate/vipgate/config"
)

// FuzzRequestPath drives a raw request target through URI normalisation,
// location matching, the proxy_pass URI rule and header rewriting, and
// checks what must always hold.
func FuzzRequestPath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/a//b/./c?x=1", "/a/%2e%2e/%2e%2e/x", "/app1/x%20y", "/%00", "/a/b.php?q", "/exact"} {
		f.Add(s, "X-Forwarded-For: 1.2.3.4")
	}
	v := newVhost(&config.HTTPServer{}, 0)
	for _, p := range [][2]string{{"/", "http://up/root/"}, {"/a/", "http://up/b/"}, {"/app1", "http://up"}, {"= /exact", "http://up/e"}, {"~ \\.php$", "http://up"}} {
		v.addLocation(testLocation(f, p[0], p[1]))
	}
	rules, _, err := compileHeaders(map[string]string{"X-Uri": "$uri", "X-Req": "$request_uri", "X-Cookie": "$cookie_sid", "X-Arg": "$arg_q"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, target, header string) {
		for i := 0; i < len(target); i++ {
			if target[i] <= ' ' || target[i] == 0x7f {
				return // the framing check refuses such a request line
			}
		}
		rawPath, _, _ := strings.Cut(target, "?")
		uri, quoted, err := normalizePath(rawPath)
		if err != nil {
			return
		}
		if !strings.HasPrefix(uri, "/") || strings.Contains(uri, "//") || strings.Contains(uri, "/./") ||
			strings.Contains(uri, "/../") || strings.HasSuffix(uri, "/..") || strings.HasSuffix(uri, "/.") {
			t.Fatalf("%q normalised to %q", target, uri)
		}
		if again, _, err := normalizePath(escapeURI(uri)); err != nil || again != uri {
			t.Fatalf("%q -> %q, escaped and normalised again -> %q (%v)", target, uri, again, err)
		}
		l, _ := v.findLocation(uri)
		if l == nil {
			t.Fatalf("%q matched no location although \"/\" exists", uri)
		}
		up := upstreamURI(l, target, uri, quoted)
		if l.cfg.Target.HasURI && !strings.HasPrefix(up, l.cfg.Target.URI) {
			t.Fatalf("%q in %s: upstream URI %q lacks %q", target, l.pattern, up, l.cfg.Target.URI)
		}
		if !l.cfg.Target.HasURI && up != target {
			t.Fatalf("%q: without URI part sent %q", target, up)
		}
		for i := 0; i < len(up); i++ {
			if up[i] <= ' ' || up[i] == 0x7f {
				t.Fatalf("%q: upstream URI %q has an unescaped control or space", target, up)
			}
		}
		r, err := http.NewRequest("GET", "http://h"+target, nil)
		if err != nil {
			return
		}
		r.RequestURI = target
		name, value, _ := strings.Cut(header, ":")
		r.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
		vars := &reqVars{req: stdRequest(r), remote: "192.0.2.1", port: "1", scheme: "http", uri: uri, host: "h", local: "80"}
		out, _ := upstreamHeader(r.Header, rules, vars, "")
		for k := range out {
			if isHopByHop(k) {
				t.Fatalf("hop-by-hop %s passed", k)
			}
		}
		// A field value has no leading or trailing whitespace on the wire
		// (RFC 9110 5.5): what a server reads of "$uri" is it trimmed.
		if want := strings.Trim(uri, " \t"); out.Get("X-Uri") != want && want != "" && httpguts.ValidHeaderFieldValue(uri) {
			t.Fatalf("$uri = %q, want %q", out.Get("X-Uri"), want)
		}
	})
}
