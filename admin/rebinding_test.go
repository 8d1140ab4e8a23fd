package admin

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestAdminRefusesForeignHost: the admin API listens on loopback and
// has no authentication, so the one thing keeping a web page the
// operator opens from reading /status (backend addresses, VIPs, config
// path, pid) is the browser's same-origin rule, which DNS rebinding
// defeats: the page's own name is made to resolve to 127.0.0.1 and its
// script then reads http://evil.example:9900/status as same-origin. A
// loopback-only API should answer only requests whose Host is a loopback
// address or localhost (as e.g. the Docker and Kubernetes local APIs
// and many exporters do).
func TestAdminRefusesForeignHost(t *testing.T) {
	h := Handler(SourceFunc(func() Status { return sample(false) }))
	for _, path := range []string{"/status", "/metrics", "/healthz"} {
		req := httptest.NewRequest(http.MethodGet, "http://evil.example:9900"+path, nil)
		req.Host = "evil.example:9900"
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusOK {
			t.Errorf("GET %s with Host evil.example:9900 (DNS rebinding) from 127.0.0.1: %d, %d bytes of node data; want it refused (403/421)",
				path, rec.Code, rec.Body.Len())
		}
	}
}
