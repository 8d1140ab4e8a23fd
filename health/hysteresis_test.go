package health

import (
	"errors"
	"strings"
	"testing"
)

func TestHysteresis(t *testing.T) {
	// Results as a string of + (pass) and - (fail); states after each result
	// as U (up) or D (down); a capital after a change, lower case without.
	tests := []struct {
		name       string
		rise, fall int
		results    string
		want       string
	}{
		{"first pass confirms up", 2, 3, "+++", "Uuu"},
		{"first failure marks down at once", 2, 3, "-", "D"},
		{"then fall failures in a row", 2, 3, "+--+---", "UuuuuuD"},
		{"rise passes in a row to come back", 2, 3, "-+-++", "DdddU"},
		{"flapping never changes state", 2, 3, "+-+-+--+-+", "Uuuuuuuuuu"},
		{"rise 1 fall 1 follows every result", 1, 1, "+-+-", "UDUD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := hysteresis{rise: tt.rise, fall: tt.fall}
			var got strings.Builder
			for _, r := range tt.results {
				changed, up := h.observe(r == '+')
				c := map[bool]string{true: "u", false: "d"}[up]
				if changed {
					c = strings.ToUpper(c)
				}
				got.WriteString(c)
			}
			if got.String() != tt.want {
				t.Errorf("results %s: states %s, want %s", tt.results, got.String(), tt.want)
			}
		})
	}
}

func TestHysteresisReasons(t *testing.T) {
	h := hysteresis{rise: 2, fall: 2}
	errRefused := errors.New("connection refused")
	h.observe(false)
	if r := h.reason(errRefused); r != "first health check failed: connection refused" {
		t.Errorf("reason %q", r)
	}
	h.observe(true)
	h.observe(true)
	if r := h.reason(nil); r != "health check passed 2 times in a row (rise 2)" {
		t.Errorf("reason %q", r)
	}
	h.observe(false)
	h.observe(false)
	if r := h.reason(errRefused); r != "health check failed 2 times in a row (fall 2): connection refused" {
		t.Errorf("reason %q", r)
	}
}

func TestValidate(t *testing.T) {
	good := CheckSpec{Type: "http", Path: "/", Interval: 1, Timeout: 1, Rise: 1, Fall: 1, ExpectStatus: [][2]int{{200, 399}}}
	if err := good.Validate(); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*CheckSpec)
		want string
	}{
		{"type", func(s *CheckSpec) { s.Type = "udp" }, `type "udp"`},
		{"interval", func(s *CheckSpec) { s.Interval = 0 }, "interval"},
		{"timeout", func(s *CheckSpec) { s.Timeout = -1 }, "timeout"},
		{"rise", func(s *CheckSpec) { s.Rise = 0 }, "rise 0"},
		{"path", func(s *CheckSpec) { s.Path = "health" }, `path "health"`},
		{"status", func(s *CheckSpec) { s.ExpectStatus = [][2]int{{399, 200}} }, "expect_status 399-200"},
		{"proxy protocol", func(s *CheckSpec) { s.ProxyProtocol = "v3" }, `proxy_protocol "v3"`},
	}
	for _, tt := range tests {
		s := good
		tt.mod(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err %v, want it to mention %q", tt.name, err, tt.want)
		}
	}
}
