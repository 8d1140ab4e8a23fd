package vrrp

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

var (
	t0      = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ourAddr = netip.MustParseAddr("192.0.2.10")
	lowPeer = netip.MustParseAddr("192.0.2.5")
	hiPeer  = netip.MustParseAddr("192.0.2.20")
)

// machine drives an fsm with a fake clock.
type machine struct {
	t   *testing.T
	f   *fsm
	now time.Time
}

func newMachine(t *testing.T, mod func(*fsmConfig)) *machine {
	cfg := fsmConfig{Version: 3, Priority: 100, Interval: time.Second, Preempt: true, Primary: ourAddr}
	if mod != nil {
		mod(&cfg)
	}
	return &machine{t: t, f: newFSM(cfg), now: t0}
}

// advance moves the clock, firing every deadline on the way in order.
func (m *machine) advance(d time.Duration) []action {
	end := m.now.Add(d)
	var acts []action
	for {
		next := m.f.nextDeadline()
		if next.IsZero() || next.After(end) {
			break
		}
		m.now = next
		acts = append(acts, m.f.timer(m.now)...)
	}
	m.now = end
	return acts
}

func (m *machine) advert(src netip.Addr, prio uint8) []action {
	return m.f.advert(m.now, src, prio, m.f.cfg.Interval)
}

func (m *machine) wantState(s State) {
	m.t.Helper()
	if m.f.state != s {
		m.t.Fatalf("state %v, want %v", m.f.state, s)
	}
}

func kinds(acts []action) []actionKind {
	var k []actionKind
	for _, a := range acts {
		k = append(k, a.Kind)
	}
	return k
}

func has(acts []action, k actionKind) bool { return slices.Contains(kinds(acts), k) }

func sent(acts []action) []uint8 {
	var p []uint8
	for _, a := range acts {
		if a.Kind == actSendAdvert {
			p = append(p, a.Priority)
		}
	}
	return p
}

func (m *machine) becomeMaster() {
	m.t.Helper()
	m.f.start(m.now)
	m.advance(m.f.masterDownInterval())
	m.wantState(StateMaster)
}

func TestTimersFromRFC(t *testing.T) {
	m := newMachine(t, nil)
	// Priority 100, 1s: Skew = 156/256 s, Master_Down = 3s + Skew.
	if got, want := m.f.skewTime(), 609375*time.Microsecond; got != want {
		t.Fatalf("skew %v, want %v", got, want)
	}
	if got, want := m.f.masterDownInterval(), 3609375*time.Microsecond; got != want {
		t.Fatalf("master down %v, want %v", got, want)
	}
}

func TestStartAsBackupTakesOverAfterMasterDownInterval(t *testing.T) {
	m := newMachine(t, nil)
	acts := m.f.start(m.now)
	m.wantState(StateBackup)
	if !has(acts, actRemoveVIPs) || !has(acts, actNotify) {
		t.Fatalf("start actions %v: want stale VIPs removed and notify_backup", kinds(acts))
	}
	if acts := m.advance(3609 * time.Millisecond); len(acts) != 0 {
		t.Fatalf("acted before Master_Down_Interval: %v", kinds(acts))
	}
	acts = m.advance(time.Millisecond)
	m.wantState(StateMaster)
	if !slices.Equal(sent(acts), []uint8{100}) || !has(acts, actAddVIPs) || !has(acts, actGARP) {
		t.Fatalf("master entry actions %v", acts)
	}
}

func TestStartAsMasterHint(t *testing.T) {
	t.Run("takes over after one interval", func(t *testing.T) {
		m := newMachine(t, func(c *fsmConfig) { c.StartAsMaster = true })
		m.f.start(m.now)
		m.advance(999 * time.Millisecond)
		m.wantState(StateBackup)
		m.advance(time.Millisecond)
		m.wantState(StateMaster)
	})
	t.Run("yields to a higher priority", func(t *testing.T) {
		m := newMachine(t, func(c *fsmConfig) { c.StartAsMaster = true })
		m.f.start(m.now)
		m.advance(500 * time.Millisecond)
		m.advert(hiPeer, 200)
		m.advance(2 * time.Second) // the master keeps silent for 2.5 of its 3.2s down interval
		m.wantState(StateBackup)
	})
}

func TestStartInFault(t *testing.T) {
	m := newMachine(t, nil)
	m.f.setTrack(m.now, "interface:eth0", true, 0)
	acts := m.f.start(m.now)
	m.wantState(StateFault)
	if !has(acts, actRemoveVIPs) {
		t.Fatalf("stale VIPs not removed on start in FAULT: %v", kinds(acts))
	}
	if acts := m.advance(time.Minute); len(acts) != 0 {
		t.Fatalf("FAULT acted: %v", kinds(acts))
	}
}

func TestBackupAdverts(t *testing.T) {
	for _, tc := range []struct {
		name       string
		preempt    bool
		prio       uint8
		wantMaster time.Duration // when the backup becomes master after the advert; 0 = not within 10s
	}{
		{"higher priority resets the timer", true, 200, 0},
		{"equal priority resets the timer", true, 100, 0},
		{"lower priority with preempt: take over after Skew_Time", true, 50, 609375 * time.Microsecond},
		{"lower priority without preempt resets the timer", false, 50, 0},
		{"priority 0: take over after Skew_Time", true, 0, 609375 * time.Microsecond},
		{"priority 0 without preempt: take over after Skew_Time", false, 0, 609375 * time.Microsecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, func(c *fsmConfig) { c.Preempt = tc.preempt })
			m.f.start(m.now)
			m.advance(2 * time.Second)
			m.advert(lowPeer, tc.prio)
			if tc.wantMaster == 0 {
				// The master keeps advertising every second.
				for range 10 {
					m.advance(time.Second)
					m.advert(lowPeer, tc.prio)
				}
				m.wantState(StateBackup)
				return
			}
			m.advance(tc.wantMaster - time.Microsecond)
			m.wantState(StateBackup)
			m.advance(time.Microsecond)
			m.wantState(StateMaster)
		})
	}
}

func TestPreemptDelay(t *testing.T) {
	m := newMachine(t, func(c *fsmConfig) { c.PreemptDelay = 5 * time.Second })
	m.f.start(m.now)
	for range 4 { // 4s after entering BACKUP: still within the delay
		m.advance(time.Second)
		m.advert(lowPeer, 50)
	}
	m.wantState(StateBackup)
	m.advance(time.Second)
	m.advert(lowPeer, 50) // 5s: the delay is over
	m.advance(m.f.skewTime())
	m.wantState(StateMaster)
}

func TestMasterAdverts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src      netip.Addr
		prio     uint8
		wantStep bool
		wantSent []uint8
		// Another master (not one resigning) announced the VIPs last: the
		// winner announces them again.
		wantGARP bool
	}{
		{"higher priority: step down", lowPeer, 101, true, nil, false},
		{"equal priority, higher address: step down", hiPeer, 100, true, nil, false},
		{"equal priority, lower address: stay, answer, announce", lowPeer, 100, false, []uint8{100}, true},
		{"lower priority: stay, answer, announce", hiPeer, 99, false, []uint8{100}, true},
		{"priority 0: answer at once", hiPeer, 0, false, []uint8{100}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, nil)
			m.becomeMaster()
			m.advance(time.Minute) // the takeover's own announcements are long done
			acts := m.advert(tc.src, tc.prio)
			if tc.wantStep {
				m.wantState(StateBackup)
				if !has(acts, actRemoveVIPs) || len(sent(acts)) != 0 {
					t.Fatalf("step-down actions %v", acts)
				}
				if m.f.masterAddr != tc.src {
					t.Fatalf("master address %v, want %v", m.f.masterAddr, tc.src)
				}
				return
			}
			m.wantState(StateMaster)
			if !slices.Equal(sent(acts), tc.wantSent) || has(acts, actRemoveVIPs) || has(acts, actGARP) != tc.wantGARP {
				t.Fatalf("actions %v, want adverts %v, GARP %v", acts, tc.wantSent, tc.wantGARP)
			}
		})
	}
}

func TestMasterAnswersLowerPriorityAtMostTwicePerInterval(t *testing.T) {
	m := newMachine(t, nil)
	m.becomeMaster()
	m.advance(100 * time.Millisecond)
	n := 0
	for range 10 { // a flood within 100ms
		n += len(sent(m.advert(lowPeer, 50)))
	}
	if n != 1 {
		t.Fatalf("answered a flood of 10 adverts with %d", n)
	}
}

func TestMasterTimers(t *testing.T) {
	m := newMachine(t, func(c *fsmConfig) {
		c.GARPDelay = 5 * time.Second
		c.GARPRefresh = 4 * time.Second
		c.VIPRenew = 3 * time.Second
	})
	m.becomeMaster()
	acts := m.advance(10*time.Second + time.Millisecond)
	count := map[actionKind]int{}
	for _, a := range acts {
		count[a.Kind]++
	}
	// Adverts every second; GARP second burst at 5s and refresh at 4s, 8s;
	// VIP renewal at 3s, 6s, 9s.
	if count[actSendAdvert] != 10 || count[actGARP] != 3 || count[actRenewVIPs] != 3 {
		t.Fatalf("in 10s of MASTER: %v", count)
	}
}

func TestFault(t *testing.T) {
	t.Run("master enters FAULT with a priority-0 advert and releases the VIPs", func(t *testing.T) {
		m := newMachine(t, nil)
		m.becomeMaster()
		acts := m.f.setTrack(m.now, "interface:eth0", true, 0)
		m.wantState(StateFault)
		if !slices.Equal(sent(acts), []uint8{0}) || !has(acts, actRemoveVIPs) {
			t.Fatalf("fault entry %v", acts)
		}
		if acts := m.advance(time.Minute); len(acts) != 0 {
			t.Fatalf("FAULT keeps acting: %v", acts)
		}
		m.advert(hiPeer, 50)
		m.wantState(StateFault)
	})
	t.Run("backup enters FAULT and never takes over", func(t *testing.T) {
		m := newMachine(t, nil)
		m.f.start(m.now)
		acts := m.f.setTrack(m.now, "script:chk", true, 0)
		m.wantState(StateFault)
		if len(sent(acts)) != 0 {
			t.Fatalf("a backup entering FAULT sent %v", acts)
		}
		m.advance(time.Minute)
		m.wantState(StateFault)
	})
	t.Run("leaves FAULT as BACKUP when every source recovered", func(t *testing.T) {
		m := newMachine(t, nil)
		m.f.start(m.now)
		m.f.setTrack(m.now, "a", true, 0)
		m.f.setTrack(m.now, "b", true, 0)
		m.f.setTrack(m.now, "a", false, 0)
		m.wantState(StateFault)
		acts := m.f.setTrack(m.now, "b", false, 0)
		m.wantState(StateBackup)
		if !has(acts, actNotify) {
			t.Fatalf("no notify on leaving FAULT: %v", acts)
		}
		m.advance(m.f.masterDownInterval())
		m.wantState(StateMaster)
	})
}

func TestTrackWeights(t *testing.T) {
	m := newMachine(t, nil)
	m.becomeMaster()
	acts := m.f.setTrack(m.now, "script:chk", false, -30)
	if !slices.Equal(sent(acts), []uint8{70}) {
		t.Fatalf("lowered priority not advertised at once: %v", acts)
	}
	m.f.setTrack(m.now, "script:other", false, -200)
	if got := m.f.effectivePriority(); got != 1 {
		t.Fatalf("priority %d, want clamped to 1", got)
	}
	m.f.setTrack(m.now, "script:other", false, 0)
	m.f.setTrack(m.now, "script:chk", false, 250)
	if got := m.f.effectivePriority(); got != 254 {
		t.Fatalf("priority %d, want clamped to 254", got)
	}
	m.f.setTrack(m.now, "script:chk", false, 0)
	if got := m.f.effectivePriority(); got != 100 {
		t.Fatalf("priority %d after recovery, want 100", got)
	}
}

func TestV3BackupAdoptsMasterInterval(t *testing.T) {
	m := newMachine(t, nil)
	m.f.start(m.now)
	m.f.advert(m.now, hiPeer, 200, 100*time.Millisecond)
	// 3 * 100ms + 156/256 * 100ms (our priority 100).
	want := 300*time.Millisecond + 609375*time.Microsecond/10
	if got := m.f.masterDownInterval(); got != want {
		t.Fatalf("master down %v, want %v", got, want)
	}
	m.advance(want - time.Microsecond)
	m.wantState(StateBackup)
	m.advance(time.Microsecond)
	m.wantState(StateMaster)
	// As master it advertises at its own interval.
	if acts := m.advance(time.Second); len(sent(acts)) != 1 {
		t.Fatalf("master sent %d adverts in its 1s interval", len(sent(acts)))
	}
}

func TestResign(t *testing.T) {
	t.Run("master keeps VIPs until a new master is heard", func(t *testing.T) {
		m := newMachine(t, nil)
		m.becomeMaster()
		acts := m.f.resign(m.now)
		if !slices.Equal(sent(acts), []uint8{100, 0}) || has(acts, actRemoveVIPs) {
			t.Fatalf("resign %v", acts)
		}
		for _, a := range acts {
			if a.Interval != HandoverAdvertInterval {
				t.Fatalf("resign advert interval %v, want %v", a.Interval, HandoverAdvertInterval)
			}
		}
		acts = m.advance(time.Second)
		if !slices.Equal(sent(acts), []uint8{0}) {
			t.Fatalf("resigning master advertised %v", acts)
		}
		acts = m.advert(lowPeer, 50)
		if !has(acts, actResigned) || has(acts, actRemoveVIPs) {
			t.Fatalf("after the new master's advert: %v", acts)
		}
		m.wantState(StateInit)
		if acts := m.advance(time.Minute); len(acts) != 0 {
			t.Fatalf("resigned instance acts: %v", acts)
		}
	})
	t.Run("v2 cannot shorten the interval: priority 0 alone", func(t *testing.T) {
		m := newMachine(t, func(c *fsmConfig) { c.Version = 2 })
		m.becomeMaster()
		acts := m.f.resign(m.now)
		if !slices.Equal(sent(acts), []uint8{0}) || acts[0].Interval != 0 {
			t.Fatalf("v2 resign %v", acts)
		}
	})
	t.Run("a v3 backup hearing the resign takes over within 10 ms", func(t *testing.T) {
		master := newMachine(t, nil)
		master.becomeMaster()
		backup := newMachine(t, func(c *fsmConfig) { c.Priority = 1 })
		backup.f.start(backup.now)
		backup.f.advert(backup.now, ourAddr, 100, time.Second)
		for _, a := range master.f.resign(master.now) {
			backup.f.advert(backup.now, ourAddr, a.Priority, a.Interval)
		}
		// Skew_Time at priority 1 and a 1 s interval would be 996 ms.
		backup.advance(HandoverAdvertInterval - time.Microsecond)
		backup.wantState(StateMaster)
	})
	t.Run("a v3 backup that misses the priority-0 advert still takes over early", func(t *testing.T) {
		master := newMachine(t, nil)
		master.becomeMaster()
		backup := newMachine(t, func(c *fsmConfig) { c.Priority = 1 })
		backup.f.start(backup.now)
		a := master.f.resign(master.now)[0]
		backup.f.advert(backup.now, ourAddr, a.Priority, a.Interval)
		backup.advance(4 * HandoverAdvertInterval)
		backup.wantState(StateMaster)
	})
	t.Run("gives up after Master_Down_Interval", func(t *testing.T) {
		m := newMachine(t, nil)
		m.becomeMaster()
		m.f.resign(m.now)
		acts := m.advance(m.f.masterDownInterval())
		if !has(acts, actResigned) {
			t.Fatalf("no end of resign after Master_Down_Interval: %v", acts)
		}
	})
	t.Run("backup stops at once", func(t *testing.T) {
		m := newMachine(t, nil)
		m.f.start(m.now)
		acts := m.f.resign(m.now)
		if !has(acts, actResigned) || len(sent(acts)) != 0 {
			t.Fatalf("backup resign %v", acts)
		}
		m.advance(time.Minute)
		m.wantState(StateInit)
	})
}

func TestShutdown(t *testing.T) {
	m := newMachine(t, nil)
	m.becomeMaster()
	acts := m.f.shutdown()
	if !slices.Equal(sent(acts), []uint8{0}) || !has(acts, actRemoveVIPs) {
		t.Fatalf("master shutdown %v", acts)
	}
	m = newMachine(t, nil)
	m.f.start(m.now)
	if acts := m.f.shutdown(); len(sent(acts)) != 0 {
		t.Fatalf("backup shutdown sent %v", acts)
	}
}

func TestReconfigureKeepsState(t *testing.T) {
	m := newMachine(t, nil)
	m.becomeMaster()
	cfg := m.f.cfg
	cfg.Priority = 150
	acts := m.f.reconfigure(m.now, cfg)
	m.wantState(StateMaster)
	if !slices.Equal(sent(acts), []uint8{150}) || has(acts, actRemoveVIPs) {
		t.Fatalf("reconfigure %v", acts)
	}
	cfg.Interval = 100 * time.Millisecond
	m.f.reconfigure(m.now, cfg)
	if acts := m.advance(time.Second); len(sent(acts)) != 10 {
		t.Fatalf("%d adverts in 1s at the new 100ms interval", len(sent(acts)))
	}
}

func TestRejoinAfterHandover(t *testing.T) {
	m := newMachine(t, nil)
	m.becomeMaster()
	m.f.resign(m.now)
	m.advert(lowPeer, 100) // the new master
	m.wantState(StateInit)
	acts := m.f.rejoin(m.now)
	m.wantState(StateBackup)
	if len(sent(acts)) != 0 || has(acts, actAddVIPs) {
		t.Fatalf("rejoin %v", acts)
	}
	// Higher priority with preempt, but no bounce back while the new
	// master lives.
	for range 10 {
		m.advance(time.Second)
		m.advert(lowPeer, 100)
	}
	m.wantState(StateBackup)
	// The new master dies: we take over, and preempt normally afterwards.
	m.advance(m.f.masterDownInterval())
	m.wantState(StateMaster)
	if m.f.handedOver {
		t.Fatal("still holding back preemption after becoming MASTER")
	}
}

// A handover nobody takes (the backup is down or in FAULT): once
// Master_Down_Interval has passed without a new master, rejoin makes the
// instance MASTER again with its VIPs, instead of a BACKUP that waits
// another Master_Down_Interval with the address on no node.
func TestRejoinAfterUnansweredResignKeepsMaster(t *testing.T) {
	m := newMachine(t, nil)
	m.becomeMaster()
	m.f.resign(m.now)
	acts := m.advance(m.f.masterDownInterval() + time.Millisecond)
	if !has(acts, actResigned) {
		t.Fatalf("no end of the resign after Master_Down_Interval: %v", acts)
	}
	m.wantState(StateInit)
	acts = m.f.rejoin(m.now)
	m.wantState(StateMaster)
	if !has(acts, actAddVIPs) || !has(acts, actGARP) || !slices.Equal(sent(acts), []uint8{100}) {
		t.Fatalf("rejoin after a handover nobody took: %v", acts)
	}
	if m.f.handedOver {
		t.Fatal("preemption held back although nobody took over")
	}
}

// A track that fails while the instance resigns (setTrack ignores it then)
// is seen when it rejoins: FAULT, not MASTER with a broken proxy.
func TestRejoinSeesTrackFailedWhileResigning(t *testing.T) {
	for _, unanswered := range []bool{false, true} {
		m := newMachine(t, nil)
		m.becomeMaster()
		m.f.resign(m.now)
		m.f.setTrack(m.now, "ext:listeners", true, 0)
		if unanswered {
			m.advance(m.f.masterDownInterval() + time.Millisecond)
		}
		acts := m.f.rejoin(m.now)
		m.wantState(StateFault)
		if has(acts, actAddVIPs) {
			t.Fatalf("unanswered %v: rejoin with a failed track adds the VIPs: %v", unanswered, acts)
		}
	}
}

func TestRejoinWithoutSuccessorKeepsMaster(t *testing.T) {
	m := newMachine(t, nil)
	m.becomeMaster()
	m.f.resign(m.now)
	acts := m.f.rejoin(m.now)
	m.wantState(StateMaster)
	if !slices.Equal(sent(acts), []uint8{100}) || !has(acts, actAddVIPs) {
		t.Fatalf("rejoin of a MASTER that found no successor: %v", acts)
	}
	if acts := m.advance(time.Second); !slices.Equal(sent(acts), []uint8{100}) {
		t.Fatalf("adverts after rejoin %v, want priority 100 again", sent(acts))
	}
}

// A BACKUP whose Master_Down timer fires far later than set stalled
// (SIGSTOP, a paused VM): the master's adverts sent meanwhile are still
// queued, so it waits one more interval for them instead of taking the
// VIPs from a healthy master for the milliseconds until they are read.
// With no advert in that interval, it takes over.
func TestStalledBackupReadsQueuedAdvertsBeforeTakingOver(t *testing.T) {
	m := newMachine(t, nil)
	m.f.start(m.now)
	m.wantState(StateBackup)
	m.advert(hiPeer, 200)
	down := m.f.downAt
	// The timer fires 5 s late.
	m.now = down.Add(5 * time.Second)
	if acts := m.f.timer(m.now); has(acts, actAddVIPs) || m.f.state != StateBackup {
		t.Fatalf("stalled backup: state %v, actions %v; want BACKUP, nothing", m.f.state, kinds(acts))
	}
	m.advert(hiPeer, 200) // the queued advert
	m.advance(time.Second / 2)
	m.wantState(StateBackup)

	// Stalled again, and this time the master is really gone.
	m.now = m.f.downAt.Add(5 * time.Second)
	m.f.timer(m.now)
	m.wantState(StateBackup)
	m.advance(m.f.masterInterval)
	m.wantState(StateMaster)
}
