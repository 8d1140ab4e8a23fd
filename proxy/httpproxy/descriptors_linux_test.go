package httpproxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/testutil"
)

// With no descriptor left for an upstream socket (a connection flood at
// the open-files limit), the proxy answers 500 as nginx does and blames no
// server: before, every server got a max_fails strike and was taken out
// for fail_timeout (a track_upstream instance saw none available), and
// the first request once descriptors were back still got a 502.
func TestNoDescriptorForTheServerIsNotItsFault(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	for _, withTLS := range []bool{false, true} {
		cfg := "[upstream.app]\nkeepalive = 0\n" +
			fmt.Sprintf("[[upstream.app.server]]\naddress = %q\n[[upstream.app.server]]\naddress = %q\n", a.addr(), b.addr())
		extra := ""
		if withTLS {
			cert, key := writeCert(t, t.TempDir(), "one", "front.example")
			extra = fmt.Sprintf("tls_certificate = %q\ntls_certificate_key = %q\n", cert, key)
		}
		gw := startGateway(t, cfg+"[[http]]\nlisten = [\"LISTEN\"]\n"+extra+"[[http.location]]\npath = \"/\"\nproxy_pass = \"http://app\"\n")
		c := dialFront(t, gw.addr, withTLS)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		ask := func() int {
			t.Helper()
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: front.example\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			return resp.StatusCode
		}
		if st := ask(); st != http.StatusOK {
			t.Fatalf("TLS %v: first request: %d", withTLS, st)
		}
		time.Sleep(100 * time.Millisecond) // its upstream socket closed
		restore := testutil.LeaveDescriptorNumbers(t, 0)
		st := ask()
		restore()
		if st != http.StatusInternalServerError {
			t.Errorf("TLS %v: with no descriptor left: %d, want 500", withTLS, st)
		}
		for _, s := range gw.table.Statuses() {
			if s.FailuresTotal != 0 || s.State != "up" {
				t.Errorf("TLS %v: server %s: %s, %d failures; the proxy's own lack of descriptors is no server failure",
					withTLS, s.Address, s.State, s.FailuresTotal)
			}
		}
		if st := ask(); st != http.StatusOK {
			t.Errorf("TLS %v: once descriptors are back: %d, want 200", withTLS, st)
		}
		c.Close()
	}
}
