package vrrp

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

type slowAnnounceOS struct {
	*fakeOS
	slow atomic.Bool
}

func (o *slowAnnounceOS) Announce(dev string, a netip.Addr, count int) error {
	if o.slow.Load() {
		time.Sleep(200 * time.Millisecond) // a reconfigure that takes a while (netlink, GARPs)
	}
	return o.fakeOS.Announce(dev, a, count)
}

// A vrrp_script removed by a reload must not leave its verdict behind.
// Its loop can queue a setTrack on in.cmds (buffered) while the instance
// goroutine is inside reconfigure; scripts.apply then cancels the loop and
// clears the track, and the stale queued command runs after it: the
// instance goes to FAULT for a script that no longer exists, and stays
// there (nothing will ever clear "script:chk").
func TestRemovedScriptLeavesNoStaleFault(t *testing.T) {
	n := &fakeNet{}
	o := &slowAnnounceOS{fakeOS: newFakeOS(n, "192.0.2.1")}
	m := newManager(zaptest.NewLogger(t), o)
	var failing atomic.Bool
	m.runScript = func(ctx context.Context, path string, args []string, user string) error {
		if failing.Load() {
			return errors.New("exit status 1")
		}
		return nil
	}
	t.Cleanup(m.Stop)
	cfg := testConfig(200)
	cfg.Scripts = []ScriptConfig{{Name: "chk", Path: "/bin/true", Interval: time.Millisecond, Timeout: time.Second, Weight: 0, Fall: 1, Rise: 1}}
	if err := m.Apply([]Config{cfg}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "MASTER", func() bool { st := m.Status(); return len(st) == 1 && st[0].State == "MASTER" })

	next := testConfig(200)
	next.VIPs = append(next.VIPs, VIP{Prefix: netip.MustParsePrefix("192.0.2.51/24")}) // announced by reconfigure
	next.Scripts = nil                                                                 // chk removed
	o.slow.Store(true)
	done := make(chan error)
	go func() { done <- m.Apply([]Config{next}) }()
	time.Sleep(50 * time.Millisecond) // reconfigure is announcing
	failing.Store(true)               // chk fails once before the reload stops it
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	o.slow.Store(false)
	time.Sleep(300 * time.Millisecond)
	st := m.Status()[0]
	if st.State != "MASTER" {
		t.Fatalf("after removing vrrp_script chk: state %s, faults %v; want MASTER (no script left)", st.State, st.Faults)
	}
}
