package failoverbench

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// probesFrom builds prober output: one probe every 20 ms from t0, the
// pattern's letters saying a (node-a), b (node-b) or x (failed).
func probesFrom(t0 time.Time, pattern string) string {
	var b strings.Builder
	for i, c := range pattern {
		start := t0.Add(time.Duration(i) * probeInterval).UnixMicro()
		switch c {
		case 'a':
			fmt.Fprintf(&b, "probe %d %d OK node-a\n", i, start)
		case 'b':
			fmt.Fprintf(&b, "probe %d %d OK node-b\n", i, start)
		default:
			fmt.Fprintf(&b, "probe %d %d FAIL refused\n", i, start)
		}
	}
	return b.String()
}

func TestAnalyzeGapFailedAndMove(t *testing.T) {
	t0 := time.Unix(1000, 0)
	event := t0.Add(5 * probeInterval) // the 6th probe starts at the event
	for _, tc := range []struct {
		name       string
		pattern    string
		gap, moved time.Duration
		failed     int
		advertAt   time.Duration // node-a's last advert, from t0
		afterLast  time.Duration
	}{
		{"no failure, moves at once", "aaaaabbbbb", 0, 0, 0, 4 * probeInterval, probeInterval},
		{"three failures then node-b", "aaaaaxxxbb", 3 * probeInterval, 3 * probeInterval, 3, 5 * probeInterval, 3 * probeInterval},
		{"never recovers", "aaaaaxxxxx", -1, -1, 5, 5 * probeInterval, -1},
		{"failure before the event is not counted", "axaaaaxbbb", probeInterval, 2 * probeInterval, 1, 0, 7 * probeInterval},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := probesFrom(t0, tc.pattern) +
				fmt.Sprintf("advert %d 192.0.2.1 100\n", t0.Add(tc.advertAt).UnixMicro()) +
				fmt.Sprintf("advert %d 192.0.2.2 90\n", t0.Add(tc.advertAt).UnixMicro())
			o := analyze(parseProbes(out), parseAdverts(out), event, "node-b", "192.0.2.1")
			if o.gap != tc.gap || o.failed != tc.failed || o.moved != tc.moved || o.afterLast != tc.afterLast {
				t.Errorf("got gap %v failed %d moved %v afterLast %v, want %v %d %v %v",
					o.gap, o.failed, o.moved, o.afterLast, tc.gap, tc.failed, tc.moved, tc.afterLast)
			}
		})
	}
}

func TestServedByNeedsTheLastProbesAllFromOneNode(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ps := parseProbes(probesFrom(t0, "aaxbbbb"))
	if !servedBy(ps, t0, "node-b", 4) {
		t.Error("four node-b answers at the end not seen")
	}
	if servedBy(ps, t0, "node-b", 5) {
		t.Error("a failed probe counted as served")
	}
	if servedBy(ps, t0.Add(time.Second), "node-b", 1) {
		t.Error("probes before the event counted")
	}
}
