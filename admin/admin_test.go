package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func sample(unhealthy bool) Status {
	st := Status{
		Node: "node-a", Generation: 3, Reloads: ReloadCounts{OK: 2, Failed: 1},
		Listeners:     []ListenerStatus{{Address: "127.0.0.1:8080", Serving: true, Accepted: 7}},
		HTTPResponses: map[string]uint64{"2xx": 5, "5xx": 1},
		AccessLog:     AccessLogStatus{Target: "/var/log/vipgate/access.log", LinesWritten: 41, LinesLost: 3},
		VRRP: []VRRPStatus{{Name: "VI_1", Interface: "eth0", VirtualRouterID: 51, Family: "IPv4", State: "MASTER",
			Priority: 100, EffectivePriority: 80, VIPs: []string{"192.0.2.50/24"}, VIPsHeld: []string{"192.0.2.50/24"},
			Drops: map[string]uint64{"bad_ttl": 2}, AdvertsSent: 10}},
		Upstreams: []UpstreamStatus{{Name: "app", Balance: "round_robin", Available: true, Servers: []ServerStatus{
			{Address: "127.0.0.1:9001", State: "up", Weight: 1, Pickable: true, Requests: 4, Responses: map[string]uint64{"2xx": 4},
				ResponseTime: Histogram{Buckets: []float64{0.1, 1}, Counts: []uint64{3, 4}, Count: 4, Sum: 0.5}},
			{Address: "127.0.0.1:9002", State: "failed", Reason: "3 failures within 10s", Weight: 1},
			{Address: "127.0.0.1:9003", State: "backup", Weight: 1, Pickable: true},
			{Address: "127.0.0.1:9004", State: "full", Weight: 1, Pickable: true},
			{Address: "127.0.0.1:9005", State: "failed", Reason: "fail_timeout elapsed, the next request probes it", Weight: 1, Pickable: true},
		}}},
	}
	if unhealthy {
		st.Unhealthy = []string{"upstream app: no server available"}
	}
	return st
}

func TestAdminEndpoints(t *testing.T) {
	defer goleak.VerifyNone(t)
	var unhealthy atomic.Bool
	s, err := Start("127.0.0.1:0", SourceFunc(func() Status { return sample(unhealthy.Load()) }), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	base := "http://" + s.Addr()
	get := func(path string) (int, string) {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	code, body := get("/status")
	var st map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("/status: %d %s", code, body)
	}
	vr := st["vrrp"].([]any)[0].(map[string]any)
	if vr["state"] != "MASTER" || vr["effective_priority"].(float64) != 80 || vr["vips_held"].([]any)[0] != "192.0.2.50/24" {
		t.Errorf("/status vrrp fields: %v", vr)
	}
	if al := st["access_log"].(map[string]any); al["target"] != "/var/log/vipgate/access.log" || al["lines_written"].(float64) != 41 || al["lines_lost"].(float64) != 3 {
		t.Errorf("/status access_log: %v", al)
	}
	srv := st["upstreams"].([]any)[0].(map[string]any)["servers"].([]any)[1].(map[string]any)
	if srv["state"] != "failed" || srv["reason"] == "" {
		t.Errorf("/status server fields: %v", srv)
	}

	code, body = get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse as Prometheus text: %v", err)
	}
	findGauge := func(name string, labels map[string]string) float64 {
		t.Helper()
		mf, ok := families[name]
		if !ok {
			t.Fatalf("metric %s missing", name)
		}
	next:
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
		t.Fatalf("metric %s%v missing", name, labels)
		return 0
	}
	if v := findGauge("vipgate_vrrp_state", map[string]string{"instance": "VI_1", "state": "MASTER"}); v != 1 {
		t.Errorf("vrrp MASTER state gauge = %v", v)
	}
	if v := findGauge("vipgate_upstream_server_up", map[string]string{"server": "127.0.0.1:9002"}); v != 0 {
		t.Errorf("failed server up gauge = %v", v)
	}
	// A healthy backup server, a full one and a failed one past its
	// fail_timeout can be picked: an alert on server_up == 0 must not
	// fire for them (on an idle node the last may get no request for long).
	for _, s := range []string{"127.0.0.1:9001", "127.0.0.1:9003", "127.0.0.1:9004", "127.0.0.1:9005"} {
		if v := findGauge("vipgate_upstream_server_up", map[string]string{"server": s}); v != 1 {
			t.Errorf("server %s up gauge = %v, want 1", s, v)
		}
	}
	if w, l := findGauge("vipgate_access_log_lines_total", map[string]string{"result": "written"}),
		findGauge("vipgate_access_log_lines_total", map[string]string{"result": "lost"}); w != 41 || l != 3 {
		t.Errorf("access log lines: written %v, lost %v; want 41 and 3", w, l)
	}
	if v := findGauge("vipgate_vrrp_adverts_dropped_total", map[string]string{"reason": "bad_ttl"}); v != 2 {
		t.Errorf("drops counter = %v", v)
	}
	if v := findGauge("vipgate_upstream_response_seconds", map[string]string{"server": "127.0.0.1:9001"}); v != 4 {
		t.Errorf("histogram count = %v", v)
	}
	if v := findGauge("vipgate_reloads_total", map[string]string{"result": "failed"}); v != 1 {
		t.Errorf("reloads failed = %v", v)
	}

	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz healthy: %d", code)
	}
	unhealthy.Store(true)
	if code, body := get("/healthz"); code != 503 || !strings.Contains(body, "no server available") {
		t.Errorf("/healthz unhealthy: %d %q", code, body)
	}

	resp, err := client.Post(base+"/status", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /status: %d, want 405", resp.StatusCode)
	}
}
