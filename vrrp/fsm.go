package vrrp

import (
	"net/netip"
	"time"
)

// State is a VRRP instance's state (RFC 5798 section 6.4, plus FAULT as in
// keepalived).
type State int

// The states. INIT is both "not started yet" and "stopped".
const (
	StateInit State = iota
	StateBackup
	StateMaster
	StateFault
)

func (s State) String() string {
	switch s {
	case StateInit:
		return "INIT"
	case StateBackup:
		return "BACKUP"
	case StateMaster:
		return "MASTER"
	case StateFault:
		return "FAULT"
	}
	return "UNKNOWN"
}

// actionKind names what the state machine asks its runner to do.
type actionKind int

// The actions, executed by the runner in the order they are returned.
const (
	actSendAdvert actionKind = iota // send one advert with action.Priority (and action.Interval when set)
	actAddVIPs                      // configure every VIP
	actRemoveVIPs                   // remove every VIP
	actRenewVIPs                    // re-add the VIPs to renew their finite lifetime
	actGARP                         // send one burst of gratuitous ARP / unsolicited NA
	actNotify                       // run the notify scripts for action.To with action.Priority
	actTransition                   // the state changed From -> To for Reason
	actResigned                     // a Resign has finished (another master heard, or timed out)
)

// action is one step the runner performs.
type action struct {
	Kind     actionKind
	Priority uint8
	// Interval overrides the advert's Max Adver Int when non-zero (the
	// handover's fast adverts).
	Interval time.Duration
	From, To State
	Reason   string
}

// HandoverAdvertInterval is the Max Adver Int a resigning v3 master
// announces just before its priority-0 advert: the field's smallest value
// (one centisecond), so the backup's Skew_Time is at most 10 ms.
const HandoverAdvertInterval = 10 * time.Millisecond

// fsmConfig is the part of Config the state machine decides with.
type fsmConfig struct {
	Version       int
	Priority      uint8 // configured, 1..254
	Interval      time.Duration
	Preempt       bool
	PreemptDelay  time.Duration
	StartAsMaster bool
	Primary       netip.Addr    // our address, for the equal-priority tie-break
	GARPDelay     time.Duration // second GARP burst; 0 = none
	GARPRefresh   time.Duration // periodic GARP while MASTER; 0 = off
	VIPRenew      time.Duration // period of VIP lifetime renewal; 0 = VIPs are permanent
}

type trackState struct {
	fault  bool
	weight int
}

// fsm is the VRRP state machine: pure logic, no I/O, no goroutines. Every
// input carries the current time; timers are deadlines the runner reads
// with nextDeadline and reports back with timer.
type fsm struct {
	cfg            fsmConfig
	state          State
	masterInterval time.Duration // Master_Adver_Interval: learned from the master in v3
	masterAddr     netip.Addr    // the current master's address, ours when MASTER
	tracks         map[string]trackState
	backupSince    time.Time
	resigning      bool
	// unanswered: the last resign heard no new master within
	// Master_Down_Interval (nobody took the VIPs, which are still here).
	unanswered bool
	// handedOver suppresses preemption after a handover until this
	// instance is MASTER again, so the VIPs do not bounce straight back.
	handedOver bool
	lastAnswer time.Time

	// Deadlines; zero means disarmed.
	advertAt, downAt, garpAt, refreshAt, renewAt, resignAt time.Time
}

func newFSM(cfg fsmConfig) *fsm {
	return &fsm{cfg: cfg, masterInterval: cfg.Interval, tracks: map[string]trackState{}}
}

// effectivePriority is the configured priority plus every tracking weight,
// clamped to 1..254: 0 is reserved for "master is leaving" and 255 for the
// address owner, which we never are.
func (f *fsm) effectivePriority() uint8 {
	p := int(f.cfg.Priority)
	for _, t := range f.tracks {
		p += t.weight
	}
	return uint8(min(max(p, 1), 254))
}

func (f *fsm) faulted() (string, bool) {
	for name, t := range f.tracks {
		if t.fault {
			return name, true
		}
	}
	return "", false
}

// skewTime is ((256 - Priority) * Master_Adver_Interval) / 256.
func (f *fsm) skewTime() time.Duration {
	return time.Duration(256-int(f.effectivePriority())) * f.masterInterval / 256
}

// masterDownInterval is 3 * Master_Adver_Interval + Skew_Time.
func (f *fsm) masterDownInterval() time.Duration {
	return 3*f.masterInterval + f.skewTime()
}

func (f *fsm) nextDeadline() time.Time {
	var next time.Time
	for _, d := range []time.Time{f.advertAt, f.downAt, f.garpAt, f.refreshAt, f.renewAt, f.resignAt} {
		if !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	return next
}

func due(d, now time.Time) bool { return !d.IsZero() && !now.Before(d) }

func (f *fsm) disarm() {
	f.advertAt, f.downAt, f.garpAt, f.refreshAt, f.renewAt, f.resignAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
}

func (f *fsm) transition(to State, reason string, acts []action) []action {
	from := f.state
	f.state = to
	return append(acts,
		action{Kind: actTransition, From: from, To: to, Reason: reason},
		action{Kind: actNotify, To: to, Priority: f.effectivePriority()})
}

func (f *fsm) toBackup(now time.Time, reason string) []action {
	var acts []action
	if f.state == StateMaster || f.state == StateInit {
		// From INIT too: a VIP left behind by a crash goes before the election.
		acts = append(acts, action{Kind: actRemoveVIPs})
	}
	f.disarm()
	if f.state != StateMaster {
		f.masterAddr = netip.Addr{}
	}
	f.backupSince = now
	f.downAt = now.Add(f.masterDownInterval())
	return f.transition(StateBackup, reason, acts)
}

func (f *fsm) toMaster(now time.Time, reason string) []action {
	f.disarm()
	f.handedOver = false
	f.masterInterval = f.cfg.Interval
	f.masterAddr = f.cfg.Primary
	acts := []action{
		{Kind: actSendAdvert, Priority: f.effectivePriority()},
		{Kind: actAddVIPs},
	}
	f.advertAt = now.Add(f.cfg.Interval)
	if f.cfg.GARPDelay > 0 {
		f.garpAt = now.Add(f.cfg.GARPDelay)
	}
	if f.cfg.GARPRefresh > 0 {
		f.refreshAt = now.Add(f.cfg.GARPRefresh)
	}
	if f.cfg.VIPRenew > 0 {
		f.renewAt = now.Add(f.cfg.VIPRenew)
	}
	// The transition is recorded once the VIPs are up; the announcements
	// follow.
	acts = f.transition(StateMaster, reason, acts)
	return append(acts, action{Kind: actGARP})
}

func (f *fsm) toFault(reason string) []action {
	var acts []action
	switch f.state {
	case StateMaster:
		// Priority 0 lets the backup take over after Skew_Time instead of
		// the whole Master_Down_Interval.
		acts = append(acts, action{Kind: actSendAdvert, Priority: 0}, action{Kind: actRemoveVIPs})
	case StateInit:
		acts = append(acts, action{Kind: actRemoveVIPs})
	}
	f.disarm()
	f.masterAddr = netip.Addr{}
	return f.transition(StateFault, reason, acts)
}

// start leaves INIT: BACKUP waiting Master_Down_Interval, or one advert
// interval with the MASTER start-up hint, or FAULT when tracking says so.
func (f *fsm) start(now time.Time) []action {
	if f.state != StateInit {
		return nil
	}
	if src, bad := f.faulted(); bad {
		return f.toFault("start-up: " + src + " is down")
	}
	if !f.cfg.StartAsMaster {
		return f.toBackup(now, "start-up")
	}
	acts := f.toBackup(now, "start-up as MASTER: waiting one advert interval for a better master")
	f.downAt = now.Add(f.cfg.Interval)
	return acts
}

// advert handles a received advert that passed the receive checks.
func (f *fsm) advert(now time.Time, src netip.Addr, prio uint8, interval time.Duration) []action {
	switch f.state {
	case StateBackup:
		if prio == 0 {
			f.downAt = now.Add(f.skewTime())
			return nil
		}
		f.masterAddr = src
		local := f.effectivePriority()
		if !f.cfg.Preempt || f.handedOver || prio >= local || now.Before(f.backupSince.Add(f.cfg.PreemptDelay)) {
			if f.cfg.Version == 3 {
				f.masterInterval = interval
			}
			f.downAt = now.Add(f.masterDownInterval())
			return nil
		}
		// Preemption of a lower-priority master. RFC 5798 waits out the
		// whole Master_Down_Interval; we take over after Skew_Time (the
		// best backup first), so a master whose priority dropped through
		// tracking is replaced within Skew_Time plus one advert.
		if skew := now.Add(f.skewTime()); f.downAt.After(skew) {
			f.downAt = skew
		}
		return nil
	case StateMaster:
		if f.resigning {
			if prio > 0 {
				f.resigning = false
				f.disarm()
				f.masterAddr = src
				acts := f.transition(StateInit, "resigned: new master "+src.String()+" heard", nil)
				return append(acts, action{Kind: actResigned})
			}
			return nil
		}
		local := f.effectivePriority()
		if prio == 0 {
			f.advertAt = now.Add(f.cfg.Interval)
			return []action{{Kind: actSendAdvert, Priority: local}}
		}
		if prio > local || (prio == local && src.Compare(f.cfg.Primary) > 0) {
			acts := f.toBackup(now, "advert from "+src.String()+" with higher priority or address")
			f.masterAddr = src
			if f.cfg.Version == 3 {
				f.masterInterval = interval
				f.downAt = now.Add(f.masterDownInterval())
			}
			return acts
		}
		// A lower-priority master (a healed partition, a start-up race):
		// answer at once (at most twice per interval) so it hears us and
		// steps down quickly, and announce the VIPs again: the other one
		// announced them last, so the clients' ARP and neighbour caches
		// point to it, and it is about to drop them (keepalived does the
		// same).
		if now.Sub(f.lastAnswer) >= f.cfg.Interval/2 {
			f.lastAnswer = now
			return []action{{Kind: actSendAdvert, Priority: local}, {Kind: actGARP}}
		}
	}
	return nil
}

// timer handles every deadline that is due at now.
func (f *fsm) timer(now time.Time) []action {
	var acts []action
	switch f.state {
	case StateBackup:
		if due(f.downAt, now) {
			if late := now.Sub(f.downAt); late > f.masterInterval {
				// The timer fired much later than set: this node
				// stalled (SIGSTOP, a paused VM, a snapshot), and the
				// master's adverts sent meanwhile are still queued.
				// Taking over first would add the VIPs and announce
				// them for the few milliseconds before those adverts
				// are read, resetting clients of a healthy master.
				// One more interval reads them (keepalived does not
				// take over in this case either).
				f.downAt = now.Add(f.masterInterval)
				return nil
			}
			return f.toMaster(now, "master down timer expired")
		}
	case StateMaster:
		if due(f.resignAt, now) {
			f.resigning = false
			f.unanswered = true
			f.disarm()
			acts = f.transition(StateInit, "resigned: no new master heard within Master_Down_Interval", nil)
			return append(acts, action{Kind: actResigned})
		}
		if due(f.advertAt, now) {
			prio := f.effectivePriority()
			if f.resigning {
				prio = 0
			}
			acts = append(acts, action{Kind: actSendAdvert, Priority: prio})
			f.advertAt = now.Add(f.cfg.Interval)
		}
		if due(f.renewAt, now) {
			acts = append(acts, action{Kind: actRenewVIPs})
			f.renewAt = now.Add(f.cfg.VIPRenew)
		}
		if f.resigning {
			break
		}
		if due(f.garpAt, now) {
			acts = append(acts, action{Kind: actGARP})
			f.garpAt = time.Time{}
		}
		if due(f.refreshAt, now) {
			acts = append(acts, action{Kind: actGARP})
			f.refreshAt = now.Add(f.cfg.GARPRefresh)
		}
	}
	return acts
}

// setTrack records a tracking source's fault flag and priority weight.
func (f *fsm) setTrack(now time.Time, source string, fault bool, weight int) []action {
	before := f.effectivePriority()
	if !fault && weight == 0 {
		delete(f.tracks, source)
	} else {
		f.tracks[source] = trackState{fault: fault, weight: weight}
	}
	if f.resigning {
		return nil
	}
	_, bad := f.faulted()
	switch {
	case bad && (f.state == StateBackup || f.state == StateMaster):
		reason := source + " is down"
		if !fault {
			reason = "tracking still faulty"
		}
		return f.toFault(reason)
	case !bad && f.state == StateFault:
		return f.toBackup(now, source+" recovered: leaving FAULT")
	case f.state == StateMaster && f.effectivePriority() != before:
		// Tell the backups at once: with preemption, the best one takes
		// over within Skew_Time of hearing a lower priority.
		f.advertAt = now.Add(f.cfg.Interval)
		return []action{{Kind: actSendAdvert, Priority: f.effectivePriority()}}
	}
	return nil
}

// resign makes a MASTER advertise priority 0 while keeping its VIPs until
// another master is heard or Master_Down_Interval passes. Other states
// stop at once (they hold nothing and send nothing).
func (f *fsm) resign(now time.Time) []action {
	switch f.state {
	case StateMaster:
		if f.resigning {
			return nil
		}
		f.resigning = true
		f.unanswered = false
		f.garpAt, f.refreshAt = time.Time{}, time.Time{}
		f.advertAt = now.Add(f.cfg.Interval)
		f.resignAt = now.Add(f.masterDownInterval())
		if f.cfg.Version == 2 {
			return []action{{Kind: actSendAdvert, Priority: 0}}
		}
		// A v3 backup takes over Skew_Time after priority 0, and Skew_Time
		// scales with the Master_Adver_Interval it learned from our last
		// advert (RFC 5798 6.4.2). One advert at our priority carrying the
		// shortest interval first shrinks that wait from up to one interval
		// to at most 10 ms; were the priority-0 advert lost, the backup
		// would still take over after its new, short Master_Down_Interval.
		return []action{
			{Kind: actSendAdvert, Priority: f.effectivePriority(), Interval: HandoverAdvertInterval},
			{Kind: actSendAdvert, Priority: 0, Interval: HandoverAdvertInterval},
		}
	case StateInit:
		return []action{{Kind: actResigned}}
	}
	f.disarm()
	acts := f.transition(StateInit, "resigned", nil)
	return append(acts, action{Kind: actResigned})
}

// rejoin brings a resigned instance back after a handover: BACKUP again,
// without preempting the new master until it fails. A MASTER whose resign
// found no successor (still resigning, or resigned unanswered) keeps its
// role and takes its VIPs back, unless a track has failed meanwhile.
func (f *fsm) rejoin(now time.Time) []action {
	switch {
	case f.state == StateInit && f.unanswered:
		f.unanswered = false
		if src, bad := f.faulted(); bad {
			return f.toFault("rejoined after a handover nobody took: " + src + " is down")
		}
		return f.toMaster(now, "handover: no new master took over, keeping the VIPs")
	case f.state == StateInit:
		f.handedOver = true
		if src, bad := f.faulted(); bad {
			return f.toFault("rejoined after handover: " + src + " is down")
		}
		return f.toBackup(now, "rejoined after handover")
	case f.state == StateMaster && f.resigning:
		f.resigning = false
		f.resignAt = time.Time{}
		if src, bad := f.faulted(); bad {
			// setTrack ignores changes while resigning: look now.
			return f.toFault("rejoined after handover: " + src + " is down")
		}
		f.advertAt = now.Add(f.cfg.Interval)
		return []action{{Kind: actSendAdvert, Priority: f.effectivePriority()}, {Kind: actAddVIPs}, {Kind: actGARP}}
	}
	return nil
}

// shutdown stops the instance: a MASTER sends priority 0 (unless it has
// already resigned) and every VIP goes.
func (f *fsm) shutdown() []action {
	var acts []action
	if f.state == StateMaster && !f.resigning {
		acts = append(acts, action{Kind: actSendAdvert, Priority: 0})
	}
	acts = append(acts, action{Kind: actRemoveVIPs})
	f.resigning = false
	f.disarm()
	if f.state == StateInit {
		return acts
	}
	return f.transition(StateInit, "stopped", acts)
}

// reconfigure applies a reload in place: the state is kept.
func (f *fsm) reconfigure(now time.Time, cfg fsmConfig) []action {
	before := f.effectivePriority()
	old := f.cfg
	f.cfg = cfg
	if cfg.Version == 2 || f.state == StateMaster {
		f.masterInterval = cfg.Interval
	}
	if f.state != StateMaster || f.resigning {
		return nil
	}
	f.masterAddr = cfg.Primary
	if cfg.Interval != old.Interval {
		f.advertAt = now.Add(cfg.Interval)
	}
	if cfg.GARPRefresh != old.GARPRefresh {
		f.refreshAt = time.Time{}
		if cfg.GARPRefresh > 0 {
			f.refreshAt = now.Add(cfg.GARPRefresh)
		}
	}
	if cfg.VIPRenew != old.VIPRenew {
		f.renewAt = time.Time{}
		if cfg.VIPRenew > 0 {
			f.renewAt = now.Add(cfg.VIPRenew)
		}
	}
	if f.effectivePriority() != before || cfg.Interval != old.Interval {
		f.advertAt = now.Add(cfg.Interval)
		return []action{{Kind: actSendAdvert, Priority: f.effectivePriority()}}
	}
	return nil
}
