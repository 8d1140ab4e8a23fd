package daemon

import (
	"testing"

	"github.com/vipgate/vipgate/balancer"
	"github.com/vipgate/vipgate/config"
)

// trackRecorder keeps SetTrack's contract: a call replaces the last one of
// its source. effect is what an instance then gets from all sources.
type trackRecorder map[string]struct {
	instances []string
	fault     bool
	weight    int
}

func (r trackRecorder) set(source string, instances []string, fault bool, weight int) {
	r[source] = struct {
		instances []string
		fault     bool
		weight    int
	}{instances, fault, weight}
}

func (r trackRecorder) effect(instance string) (fault bool, weight int) {
	for _, t := range r {
		for _, in := range t.instances {
			if in == instance {
				fault = fault || t.fault
				weight += t.weight
			}
		}
	}
	return fault, weight
}

// Two instances tracking one upstream (IPv4 and IPv6 of one service) both
// see it down, by fault or by weight; a track removed by a reload is
// cleared.
func TestTrackUpstreamPerInstance(t *testing.T) {
	down := map[string]*balancer.Upstream{} // "app" has no live server
	for _, weight := range []int{0, -50} {
		gen := &generation{upstreams: down, cfg: &config.Config{VRRP: []*config.VRRP{
			{Name: "VI_4", TrackUpstream: []string{"app"}, TrackUpstreamWeight: weight},
			{Name: "VI_6", TrackUpstream: []string{"app"}, TrackUpstreamWeight: weight},
		}}}
		rec := trackRecorder{}
		tracked := trackUpstreams(gen, nil, rec.set)
		tracked = trackUpstreams(gen, tracked, rec.set) // a second round changes nothing
		for _, in := range []string{"VI_4", "VI_6"} {
			if fault, w := rec.effect(in); fault != (weight == 0) || w != weight {
				t.Errorf("weight %d, upstream down: %s gets fault %v weight %d", weight, in, fault, w)
			}
		}
		// A reload removes VI_4's track and has VI_6 track "db" instead.
		gen = &generation{upstreams: down, cfg: &config.Config{VRRP: []*config.VRRP{
			{Name: "VI_4"},
			{Name: "VI_6", TrackUpstream: []string{"db"}, TrackUpstreamWeight: weight},
		}}}
		trackUpstreams(gen, tracked, rec.set)
		if fault, w := rec.effect("VI_4"); fault || w != 0 {
			t.Errorf("weight %d: VI_4 still gets fault %v weight %d after its track_upstream was removed", weight, fault, w)
		}
		if fault, w := rec.effect("VI_6"); fault != (weight == 0) || w != weight {
			t.Errorf("weight %d: VI_6 tracking db (down): fault %v weight %d", weight, fault, w)
		}
	}
}
