package balancer

import (
	"errors"
	"fmt"
	"testing"
)

// TestCombinedServerState walks every combination of configured down,
// active check down, passive failure, max_conns reached and backup: the
// reported state follows the precedence down > unhealthy > failed > full >
// backup > up, and the server can be picked exactly when none of the first
// four applies.
func TestCombinedServerState(t *testing.T) {
	for mask := range 32 {
		down, unhealthy, failed, full, backup := mask&1 != 0, mask&2 != 0, mask&4 != 0, mask&8 != 0, mask&16 != 0
		name := fmt.Sprintf("down=%v/unhealthy=%v/failed=%v/full=%v/backup=%v", down, unhealthy, failed, full, backup)
		t.Run(name, func(t *testing.T) {
			tab, _ := newTestTable()
			specs := servers(1, 1) // a: another primary, b: the server under test
			specs[1].Down = down
			specs[1].Backup = backup
			specs[1].MaxConns = 1
			u := mustBuild(t, tab, UpstreamSpec{Servers: specs})
			a, b := u.Servers()[0], u.Servers()[1]
			if unhealthy {
				b.SetActiveHealth(false, "check failed")
			}
			if failed {
				b.ReportFailure()
			}
			if full {
				b.state.conns.Add(1)
				defer b.state.conns.Add(-1)
			}

			want := StateUp
			switch {
			case down:
				want = StateDown
			case unhealthy:
				want = StateUnhealthy
			case failed:
				want = StateFailed
			case full:
				want = StateFull
			case backup:
				want = StateBackup
			}
			if st := b.Status(); st.State != want {
				t.Errorf("state %s (%s), want %s", st.State, st.Reason, want)
			}

			// With a tried, b is the only candidate whatever its tier.
			s, err := u.Pick(PickRequest{Tried: []*Server{a}})
			pickable := !down && !unhealthy && !failed && !full
			switch {
			case pickable && err != nil:
				t.Errorf("not picked: %v", err)
			case !pickable && !errors.Is(err, ErrNoServer):
				t.Errorf("picked %v, want ErrNoServer", s.Address())
			}
			if s != nil {
				s.Release()
			}
		})
	}
}
