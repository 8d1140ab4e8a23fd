package clockfmt

import (
	"net/http"
	"testing"
	"time"
)

// TestPerSecondIsTheFormat: the cached text must be what formatting each
// time gives, when seconds follow each other, repeat, go back (a line
// finished earlier written later), cross a zone's offset change, or come
// in another zone; for the access line's layout and the Date header's.
func TestPerSecondIsTheFormat(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		berlin = time.FixedZone("CET", 3600)
	}
	base := time.Date(2026, 3, 29, 0, 59, 58, 0, time.UTC) // Berlin's switch to summer time at 01:00 UTC
	var times []time.Time
	for _, d := range []time.Duration{0, 300 * time.Millisecond, time.Second, 2 * time.Second, time.Second, 3*time.Second + 999*time.Millisecond} {
		times = append(times, base.Add(d).In(berlin))
	}
	times = append(times, base.Add(2*time.Second), base.Add(2*time.Second).In(berlin), time.Now(), time.Now().UTC())
	for _, layout := range []string{"02/Jan/2006:15:04:05 -0700", http.TimeFormat} {
		p := New(layout)
		for _, tm := range times {
			got := string(p.Append([]byte("x "), tm))
			if want := "x " + tm.Format(layout); got != want {
				t.Errorf("%s, %v: %q, want %q", layout, tm, got, want)
			}
		}
	}
}
