package httpproxy

import (
	"fmt"
	"net/http"
	"net/textproto"
	"sort"
	"strings"

	"github.com/vipgate/vipgate/config"
)

// headerRule sets (or, with a nil tmpl, removes) one request header.
type headerRule struct {
	name string // canonical
	tmpl *template
}

// hopByHop are the connection-level headers that never pass a proxy (RFC
// 9110 7.6.1; HTTP2-Settings, RFC 7540 3.2.1) plus Expect (the proxy reads
// the body itself, as nginx).
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Expect", "Http2-Settings",
}

// switchableProtocol reports whether a protocol switch to upgrade (the
// Upgrade value) is passed on. Not h2c: tunnelled, it would let a client
// speak HTTP/2 to the server past the proxy's routing (h2c smuggling).
func switchableProtocol(upgrade string) bool {
	return upgrade != "" && !headerHasToken([]string{upgrade}, "h2c")
}

func isHopByHop(name string) bool {
	for _, h := range hopByHop {
		if h == name {
			return true
		}
	}
	return false
}

// compileHeaders merges the contract's defaults with proxy_set_header.
// Setting one header never drops the defaults of the others (unlike nginx's
// inheritance). Hop-by-hop headers in proxy_set_header are ignored: they are
// removed after the rewrite anyway, and WebSocket upgrades are passed on
// without configuration (so the usual nginx "Upgrade $http_upgrade;
// Connection $connection_upgrade" lines can stay in a migrated config).
func compileHeaders(set map[string]string) ([]headerRule, []string, error) {
	vals := map[string]string{
		"Host":              "$http_host",
		"X-Forwarded-For":   "$proxy_add_x_forwarded_for",
		"X-Real-Ip":         "$remote_addr",
		"X-Forwarded-Proto": "$scheme",
	}
	var ignored []string
	for name, v := range set {
		key := textproto.CanonicalMIMEHeaderKey(name)
		if isHopByHop(key) {
			ignored = append(ignored, name)
			continue
		}
		vals[key] = v
	}
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	sort.Strings(names)
	rules := make([]headerRule, 0, len(names))
	for _, k := range names {
		r := headerRule{name: k}
		if vals[k] != "" {
			t, err := compileTemplate(vals[k])
			if err != nil {
				return nil, nil, fmt.Errorf("proxy_set_header %s: %w", k, err)
			}
			r.tmpl = t
		}
		rules = append(rules, r)
	}
	sort.Strings(ignored)
	return rules, ignored, nil
}

// upstreamHeader is the header net/http's transport sends upstream (the
// net/http path): the fast path's head (upstreamHead.appendTo, the one
// definition of what goes upstream) read back into an http.Header. It
// returns the Host to send ("" = the upstream address).
func upstreamHeader(in http.Header, rules []headerRule, v *reqVars, upgrade string) (http.Header, string) {
	req := *v.req
	req.hdr = headerView{std: in}
	u := upstreamHead{req: &req, target: "/", rules: rules, vars: v, upgrade: upgrade}
	head := u.appendTo(nil, "")
	out := make(http.Header, len(in)+4)
	host := ""
	_, fieldsAt, _ := nextLine(head, 0)
	it := headerLines{head[fieldsAt:]}
	for {
		n, val, ok := it.next()
		if !ok {
			break
		}
		switch name := textproto.CanonicalMIMEHeaderKey(string(n)); name {
		case "Host":
			host = string(val)
		case "Content-Length":
			// The transport writes it from the request's ContentLength.
		default:
			out[name] = append(out[name], string(val))
		}
	}
	if _, ok := out["User-Agent"]; !ok {
		// An empty value stops Go's transport from adding its own
		// "Go-http-client/1.1": a client without one is passed without one.
		out["User-Agent"] = []string{""}
	}
	return out, host
}

// copyResponseHeader copies an upstream response's header minus hop-by-hop
// fields and those its Connection header names, by the same rule as the
// fast path (appendResponseFields; an Upgrade response keeps
// Connection/Upgrade: the caller writes those itself).
func copyResponseHeader(dst, src http.Header) {
	var conn connectionTokens
	for _, c := range src["Connection"] {
		conn.add(c)
	}
	for k, vv := range src {
		if name := []byte(k); hopByHopName(name) || conn.names(name) {
			continue
		}
		dst[k] = vv
	}
}

// redirectRule is one proxy_redirect rewrite: a Location/Refresh URL
// starting with from gets that part replaced by to.
type redirectRule struct {
	from, to string
}

// defaultRedirects is nginx's "proxy_redirect default": the proxy_pass URL
// is replaced by the location ("http://up/two/" in "location /one/" gives
// "/one/"); without a URI part "http://up/" becomes "/".
func defaultRedirects(l *config.Location) []redirectRule {
	if l.Target == nil || l.ProxyRedirect != nil && *l.ProxyRedirect == "off" || l.Match == config.MatchRegex {
		return nil
	}
	host := l.Target.Upstream
	if host == "" {
		host = l.Target.Address
	}
	if l.Target.HasURI {
		return []redirectRule{{from: "http://" + host + l.Target.URI, to: l.Pattern}}
	}
	return []redirectRule{{from: "http://" + host + "/", to: "/"}}
}

// rewriteRedirect applies the rules to one Location value, and also the
// same rules with the answering server's own address in place of the
// proxy_pass host: Tomcat-style backends redirect to their own host:port,
// which must not leak to clients.
func rewriteRedirect(val string, rules []redirectRule, serverAddr string) string {
	for _, r := range rules {
		if strings.HasPrefix(val, r.from) {
			return r.to + val[len(r.from):]
		}
		if serverAddr != "" {
			from := "http://" + serverAddr + r.from[strings.IndexByte(r.from[len("http://"):], '/')+len("http://"):]
			if strings.HasPrefix(val, from) {
				return r.to + val[len(from):]
			}
		}
	}
	return val
}

// rewriteRefresh rewrites the URL of a "5; url=http://..." Refresh value.
func rewriteRefresh(val string, rules []redirectRule, serverAddr string) string {
	i := strings.Index(strings.ToLower(val), "url=")
	if i < 0 {
		return val
	}
	return val[:i+4] + rewriteRedirect(val[i+4:], rules, serverAddr)
}
