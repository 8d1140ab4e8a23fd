package daemon

import (
	"fmt"
	"os"
	"sort"

	"github.com/vipgate/vipgate/admin"
	"github.com/vipgate/vipgate/vrrp"
)

// Status assembles the admin API's snapshot.
func (d *Daemon) Status() admin.Status {
	gen := d.current.Load()
	if gen == nil {
		return admin.Status{Version: d.version, PID: os.Getpid(), Unhealthy: []string{"starting"}}
	}
	cfg := gen.cfg
	st := admin.Status{
		Node: cfg.Global.NodeName, Version: d.version, PID: os.Getpid(), ConfigFile: cfg.Path,
		Generation: gen.id, StartedAt: d.startedAt,
		Reloads:       admin.ReloadCounts{OK: d.reloadsOK.Load(), Failed: d.reloadsBad.Load()},
		HTTPResponses: map[string]uint64{},
	}
	for _, l := range d.listeners.Status() {
		st.Listeners = append(st.Listeners, admin.ListenerStatus{Address: l.Address, Serving: l.Serving, Accepted: l.Accepted, AcceptErrors: l.AcceptErrors, LastError: l.LastError,
			ProxyHeaderRefused: d.httpResponses.HeaderRefusals(l.Address)})
	}
	_, st.Unhealthy = d.SelfCheck()
	st.HTTPResponses = d.httpResponses.Snapshot()
	st.AccessLog.Target = d.accessLog.Target()
	st.AccessLog.LinesWritten, st.AccessLog.LinesLost = d.accessLog.Counters()
	configured := map[string][]string{}
	for _, v := range cfg.VRRP {
		configured[v.Name] = v.VirtualIPAddress
	}
	transitions := d.transitionCounts()
	for _, v := range d.vrrp.Status() {
		vs := admin.VRRPStatus{
			Name: v.Name, Interface: v.Interface, VirtualRouterID: int(v.VRID), Family: fmt.Sprintf("IPv%d", v.Family),
			State: v.State, Priority: int(v.Priority), EffectivePriority: int(v.EffectivePriority),
			VIPs: configured[v.Name], VIPsHeld: v.VIPsHeld, Master: v.Master,
			Transitions: transitions[v.Name], AdvertsSent: v.AdvertsSent, AdvertsReceived: v.AdvertsReceived,
			Drops: map[string]uint64{}, PeerMismatches: v.PeerMismatch, FaultReasons: v.Faults,
		}
		if last, ok := d.lastTransition(v.Name); ok {
			vs.LastTransition = admin.Transition{At: last.At, From: last.From.String(), To: last.To.String(), Reason: last.Reason}
		} else {
			vs.LastTransition = admin.Transition{At: v.LastTransition, To: v.State, Reason: v.LastReason}
		}
		for reason, n := range v.Drops {
			vs.Drops[string(reason)] = n
		}
		st.VRRP = append(st.VRRP, vs)
	}
	for _, i := range d.vrrp.Interfaces() {
		is := admin.VRRPInterfaceStatus{Interface: i.Interface, Family: fmt.Sprintf("IPv%d", i.Family), Open: i.Open, Joined: i.Joined,
			Opens: i.Opens, VRIDs: i.VRIDs, Drops: map[string]uint64{}}
		for reason, n := range i.Drops {
			is.Drops[string(reason)] = n
		}
		st.VRRPInterfaces = append(st.VRRPInterfaces, is)
	}
	for _, name := range sortedNames(gen.upstreams) {
		u := gen.upstreams[name]
		us := admin.UpstreamStatus{Name: name, Balance: cfg.Upstream[name].Balance, Available: u.Available()}
		for _, s := range u.Servers() {
			ss := s.Status()
			h := admin.Histogram{Count: ss.ResponseTime.Count, Sum: ss.ResponseTime.Sum.Seconds(), Counts: ss.ResponseTime.Counts}
			for _, b := range ss.ResponseTime.Bounds {
				h.Buckets = append(h.Buckets, b.Seconds())
			}
			resp := map[string]uint64{}
			for i, n := range ss.Responses {
				resp[fmt.Sprintf("%dxx", i+1)] = n
			}
			us.Servers = append(us.Servers, admin.ServerStatus{
				Address: ss.Address, State: ss.State, Reason: ss.Reason, Weight: ss.Weight, Backup: ss.Backup, Pickable: ss.Pickable,
				Failures: ss.FailuresTotal, Active: ss.ActiveConns, Requests: ss.Requests, Responses: resp, ResponseTime: h,
			})
		}
		st.Upstreams = append(st.Upstreams, us)
	}
	for _, v := range cfg.VRRP {
		for _, name := range v.TrackUpstream {
			if u := gen.upstreams[name]; u == nil || !u.Available() {
				st.Unhealthy = append(st.Unhealthy, fmt.Sprintf("upstream %s (tracked by %s) has no available server", name, v.Name))
			}
		}
	}
	sort.Strings(st.Unhealthy)
	for _, g := range d.generations() {
		g.addCounters(&st)
	}
	ups, lis := d.streamStats.Snapshot()
	for _, u := range ups {
		st.Streams.Upstreams = append(st.Streams.Upstreams, admin.StreamUpstream(u))
	}
	for _, l := range lis {
		st.Streams.Listeners = append(st.Streams.Listeners, admin.StreamListener(l))
	}
	return st
}

// transitions remembers the last VRRP transition of each instance and how
// many there were, for the admin API.
type transitions struct {
	last  map[string]vrrp.Transition
	count map[string]uint64
}

func (d *Daemon) recordTransition(t vrrp.Transition) {
	d.transMu.Lock()
	defer d.transMu.Unlock()
	d.trans.last[t.Instance] = t
	d.trans.count[t.Instance]++
}

func (d *Daemon) lastTransition(name string) (vrrp.Transition, bool) {
	d.transMu.Lock()
	defer d.transMu.Unlock()
	t, ok := d.trans.last[name]
	return t, ok
}

func (d *Daemon) transitionCounts() map[string]uint64 {
	d.transMu.Lock()
	defer d.transMu.Unlock()
	out := make(map[string]uint64, len(d.trans.count))
	for k, v := range d.trans.count {
		out[k] = v
	}
	return out
}
