package config

import (
	"errors"
	"os"
	"testing"
)

// FuzzParse: no input makes the loader panic or hang, a rejected file always
// comes with at least one readable problem, an accepted one has what the
// runtime relies on, and the answer is the same every time (messages must
// not depend on map order; only the decoder's own stop-at-first error may
// vary when a file has several). Seeds: every example file plus the small files
// in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, path := range exampleFiles(f) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.toml")
		if err != nil {
			var ps *Problems
			if !errors.As(err, &ps) || len(ps.List) == 0 {
				t.Fatalf("error without problems: %T %v", err, err)
			}
			for _, p := range ps.List {
				if p.Error() == "" {
					t.Fatal("empty problem message")
				}
			}
			_, again := Parse(data, "fuzz.toml")
			var p *Problem
			fromDecoder := errors.As(ps.List[0], &p) && p.decoder
			if again == nil || !fromDecoder && again.Error() != err.Error() {
				t.Fatalf("second Parse of the same bytes said:\n%v\nfirst said:\n%v", again, err)
			}
			return
		}
		for _, h := range cfg.HTTP {
			for _, l := range h.Location {
				if (l.Target == nil) == (l.Root == "") {
					t.Fatalf("location %q has neither or both of a proxy target and a root", l.Path)
				}
				if l.Target != nil && l.Target.Upstream != "" && cfg.Upstream[l.Target.Upstream] == nil {
					t.Fatalf("location %q targets a missing upstream", l.Path)
				}
			}
		}
		for _, s := range cfg.Stream {
			if (s.Upstream == "") == (s.Address == "") {
				t.Fatalf("stream %v has neither or both of an upstream and an address", s.Listen)
			}
		}
		for _, r := range cfg.VRRP {
			if len(r.VIPs) == 0 || r.Family == 0 || *r.Priority < 1 || *r.Priority > 254 {
				t.Fatalf("accepted vrrp %q with VIPs %v, family %d, priority %d", r.Name, r.VIPs, r.Family, *r.Priority)
			}
		}
		for _, u := range cfg.Upstream {
			for _, s := range u.Server {
				if *s.Weight < 1 {
					t.Fatalf("accepted weight %d", *s.Weight)
				}
			}
		}
	})
}
