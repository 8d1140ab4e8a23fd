package httpproxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/testutil"
)

// Differential tests against nginx for request handling that an operator
// moving from nginx relies on without thinking about it: location
// selection, the request target sent upstream, methods nginx answers
// itself, and answers to HEAD.

// nginxAndGateway starts nginx and vipgate in front of backend b with the
// same locations: pairs of (nginx location argument, proxy_pass). The
// TOML path is the nginx argument, which vipgate parses the same way.
func nginxAndGateway(t *testing.T, b *backend, locs [][2]string) (nginxAddr, vipAddr string) {
	t.Helper()
	testutil.RequireCommand(t, "nginx")
	var ngx, toml strings.Builder
	fmt.Fprintf(&ngx, "upstream one { server %s; }\nserver {\n  listen LISTEN;\n%s\n", b.addr(), nginxContractHeaders)
	toml.WriteString(upstreamTOML("one", fmt.Sprintf("address = %q", b.addr())))
	toml.WriteString("[[http]]\nlisten = [\"LISTEN\"]\n")
	for _, l := range locs {
		fmt.Fprintf(&ngx, "  location %s { proxy_pass %s; }\n", l[0], l[1])
		fmt.Fprintf(&toml, "[[http.location]]\npath = %q\nproxy_pass = %q\n", l[0], l[1])
	}
	ngx.WriteString("}\n")
	return startNginx(t, ngx.String()), startGateway(t, toml.String()).addr
}

// sendAndRead sends raw on a new connection and returns the response and body.
func sendAndRead(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("response to %q: %v", raw, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// seenTarget is what the backend saw, or the start of a body that is not
// the backend's report (an error page).
func seenTarget(body string) string {
	var s seen
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		if len(body) > 40 {
			body = body[:40]
		}
		return fmt.Sprintf("body=%q", body)
	}
	return s.URI
}

// Locations "/a" and "/a/": nginx sends "GET /a" to location /a (a prefix
// equal to the URI wins over /a/'s auto redirect); a 301 there turned a
// POST into a GET in every browser.
func TestPrefixEqualToURIWinsOverAutoRedirect(t *testing.T) {
	b := startBackend(t, "one")
	n, v := nginxAndGateway(t, b, [][2]string{{"/a", "http://one/A"}, {"/a/", "http://one/B/"}, {"/", "http://one/"}})
	for _, target := range []string{"/a?x=1", "/a/y", "/ab"} {
		raw := "GET " + target + " HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
		nr, nb := sendAndRead(t, n, raw)
		vr, vb := sendAndRead(t, v, raw)
		if nr.StatusCode != vr.StatusCode || seenTarget(nb) != seenTarget(vb) {
			t.Errorf("GET %s: nginx %d %s, vipgate %d %s (Location %q)", target,
				nr.StatusCode, seenTarget(nb), vr.StatusCode, seenTarget(vb), vr.Header.Get("Location"))
		}
	}
}

// An exact location ending in "/" with proxy_pass redirects the URI
// without the slash, as a prefix location does.
func TestExactLocationWithSlashRedirects(t *testing.T) {
	b := startBackend(t, "one")
	n, v := nginxAndGateway(t, b, [][2]string{{"= /a/", "http://one/X"}, {"/", "http://one/"}})
	raw := "GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
	nr, _ := sendAndRead(t, n, raw)
	vr, vb := sendAndRead(t, v, raw)
	if nr.StatusCode != vr.StatusCode {
		t.Errorf("GET /a with = /a/ and /: nginx %d (Location %q), vipgate %d %s",
			nr.StatusCode, nr.Header.Get("Location"), vr.StatusCode, seenTarget(vb))
	}
	if got := vr.Header.Get("Location"); vr.StatusCode == http.StatusMovedPermanently && got != "/a/" {
		t.Errorf("redirect to %q, want /a/", got)
	}
}

// With a URI part in proxy_pass the decoded URI is escaped again; nginx
// (1.21.1 on) escapes the characters strict servers such as Tomcat refuse
// in a request line.
func TestProxyPassURIEscapesLikeNginx(t *testing.T) {
	b := startBackend(t, "one")
	n, v := nginxAndGateway(t, b, [][2]string{{"/app1/", "http://one/app1/"}})
	for _, uri := range []string{"/app1/search/%7B%22id%22%3A1%7D", "/app1/a%5Cb", "/app1/x%7Cy%5E%60%3C%3E%20%23"} {
		raw := "GET " + uri + " HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
		_, nb := sendAndRead(t, n, raw)
		_, vb := sendAndRead(t, v, raw)
		if nu, vu := seenTarget(nb), seenTarget(vb); nu != vu {
			t.Errorf("%s: upstream request target nginx %q, vipgate %q", uri, nu, vu)
		}
	}
}

// A raw '#' starts a fragment: routing ignores it, as nginx's does.
func TestFragmentIsNotPartOfTheRoutedPath(t *testing.T) {
	b := startBackend(t, "one")
	n, v := nginxAndGateway(t, b, [][2]string{{"= /login", "http://one/exact-login"}, {"/", "http://one/"}})
	raw := "GET /login#x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
	_, nb := sendAndRead(t, n, raw)
	_, vb := sendAndRead(t, v, raw)
	if nu, vu := seenTarget(nb), seenTarget(vb); nu != vu {
		t.Errorf("GET /login#x: nginx sent %s, vipgate sent %s", nu, vu)
	}
}

// nginx answers TRACE 405 itself: passed on, the server would echo the
// client's cookies and credentials (cross-site tracing). Both front ends.
func TestTraceIsRefusedLikeNginx(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		b := startBackend(t, "one")
		gw := startAppGateway(t, b.addr(), withTLS, "", "")
		out := rawExchangeMaybeTLS(t, gw.addr, withTLS, "TRACE /x HTTP/1.1\r\nHost: front.example\r\nCookie: session=secret\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 405") || b.hits.Load() != 0 {
			t.Errorf("TLS %v: TRACE answered %.40q, server saw %d requests; want 405 and none", withTLS, out, b.hits.Load())
		}
	}
}

// OPTIONS * is answered (400, as nginx) and logged, not answered 200 by
// net/http's built-in handler that no access log sees.
func TestOptionsAsteriskIsAnsweredAndLogged(t *testing.T) {
	b := startBackend(t, "one")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+proxyAllToApp)
	out := rawExchange(t, gw.addr, "OPTIONS * HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 400") {
		t.Errorf("OPTIONS * answered %.40q, want 400 as nginx", out)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(gw.access.String(), "OPTIONS *") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(gw.access.String(), "OPTIONS *") {
		t.Errorf("no access log line for OPTIONS *; log: %q", gw.access.String())
	}
}

// An error answer to HEAD has no body: its bytes would be read as the
// start of the next response on the connection (possibly another user's,
// behind a load balancer that reuses connections).
func TestHeadErrorAnswerHasNoBody(t *testing.T) {
	b := startBackend(t, "one")
	gw := startGateway(t, upstreamTOML("app", fmt.Sprintf("address = %q", b.addr()))+
		upstreamTOML("dead", fmt.Sprintf("address = %q", refusingAddr(t)))+`
[[http]]
listen = ["LISTEN"]
[[http.location]]
path = "/app/"
proxy_pass = "http://app"
[[http.location]]
path = "/down"
proxy_pass = "http://dead"
`)
	for _, target := range []string{"/missing", "/app", "/down"} {
		c, err := net.Dial("tcp", gw.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(c, "HEAD %s HTTP/1.1\r\nHost: h\r\n\r\nGET /app/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", target)
		br := bufio.NewReader(c)
		first, err := http.ReadResponse(br, &http.Request{Method: http.MethodHead})
		if err != nil {
			t.Fatal(err)
		}
		first.Body.Close()
		second, err := http.ReadResponse(br, nil)
		if err != nil {
			rest, _ := io.ReadAll(br)
			t.Errorf("HEAD %s answered %d, then the next response is unreadable: %v (%.60q)", target, first.StatusCode, err, rest)
		} else if second.StatusCode != http.StatusOK {
			t.Errorf("HEAD %s, then GET /app/x: %d", target, second.StatusCode)
		}
		c.Close()
	}
}

// rawExchangeMaybeTLS is rawExchange, over TLS (HTTP/1.1) when withTLS.
func rawExchangeMaybeTLS(t *testing.T, addr string, withTLS bool, raw string) string {
	t.Helper()
	if !withTLS {
		return rawExchange(t, addr, raw)
	}
	c := dialFront(t, addr, true)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(c)
	return string(out)
}

// Client fields with an underscore in their name are dropped, as by
// nginx's defaults: a CGI-style server maps X_Real_IP and X-Real-IP to
// the same variable, so a client could spoof what the proxy sets.
// underscores_in_headers = true passes them, as in nginx.
func TestUnderscoredFieldsDroppedLikeNginx(t *testing.T) {
	raw := "GET /x HTTP/1.1\r\nHost: front.example\r\nX_Real_IP: 6.6.6.6\r\nX-Plain: ok\r\nConnection: close\r\n\r\n"
	for _, withTLS := range []bool{false, true} {
		for _, allow := range []bool{false, true} {
			b := startBackend(t, "one")
			gw := startAppGateway(t, b.addr(), withTLS, fmt.Sprintf("underscores_in_headers = %v", allow), "")
			out := rawExchangeMaybeTLS(t, gw.addr, withTLS, raw)
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), nil)
			if err != nil {
				t.Fatalf("answer %q: %v", out, err)
			}
			body, _ := io.ReadAll(resp.Body)
			s := decodeSeen(t, string(body))
			if _, passed := s.Header["X_real_ip"]; passed != allow || s.Header.Get("X-Plain") != "ok" {
				t.Errorf("TLS %v, underscores_in_headers %v: X_Real_IP passed %v, X-Plain %q", withTLS, allow, passed, s.Header.Get("X-Plain"))
			}
		}
	}
}

// $upstream_response_time (the access log's last field) runs until the
// whole response was received, as in nginx; it stopped at the response
// head, hiding a server slow to send its body.
func TestUpstreamResponseTimeCoversTheBody(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		b := startBackend(t, "one")
		b.handle = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "10")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			time.Sleep(300 * time.Millisecond)
			_, _ = io.WriteString(w, "0123456789")
		}
		gw := startAppGateway(t, b.addr(), withTLS, "", "")
		rawExchangeMaybeTLS(t, gw.addr, withTLS, "GET /slow HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n")
		deadline := time.Now().Add(2 * time.Second)
		for !strings.Contains(gw.access.String(), "/slow") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		fields := strings.Fields(gw.access.String())
		if len(fields) == 0 {
			t.Fatalf("TLS %v: no access log line", withTLS)
		}
		if last := fields[len(fields)-1]; last < "0.300" {
			t.Errorf("TLS %v: $upstream_response_time %s, want >= 0.300 (the server took 0.3 s to send its body): %s", withTLS, last, gw.access.String())
		}
	}
}
