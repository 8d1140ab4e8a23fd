package balancer

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for the fail_timeout rules.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestTable() (*Table, *fakeClock) {
	clk := newFakeClock()
	return NewTable(clk.Now), clk
}

// servers builds specs named a, b, c... with the given weights, addresses
// 127.0.0.1:8001 upwards, max_fails 1 and fail_timeout 10s (the defaults).
func servers(weights ...int) []ServerSpec {
	out := make([]ServerSpec, len(weights))
	for i, w := range weights {
		out[i] = ServerSpec{Address: addr(i), Weight: w, MaxFails: 1, FailTimeout: 10 * time.Second}
	}
	return out
}

func addr(i int) string { return fmt.Sprintf("127.0.0.1:%d", 8001+i) }

// letter names a server by its position: 127.0.0.1:8001 is "a".
func letter(s *Server) string {
	for i := range 26 {
		if s.Address() == addr(i) {
			return string(rune('a' + i))
		}
	}
	return "?" + s.Address()
}

func mustBuild(t testing.TB, tab *Table, spec UpstreamSpec) *Upstream {
	t.Helper()
	if spec.Name == "" {
		spec.Name = "app"
	}
	u, err := tab.Build(spec)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return u
}

// pickSeq picks n times, releasing each pick at once, and returns the
// letters; "-" stands for ErrNoServer.
func pickSeq(t testing.TB, u *Upstream, n int, req PickRequest) string {
	t.Helper()
	var b strings.Builder
	for range n {
		s, err := u.Pick(req)
		if errors.Is(err, ErrNoServer) {
			b.WriteString("-")
			continue
		}
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		b.WriteString(letter(s))
		s.Release()
	}
	return b.String()
}

func pickOne(t testing.TB, u *Upstream, req PickRequest) *Server {
	t.Helper()
	s, err := u.Pick(req)
	if err != nil {
		t.Fatalf("Pick: %v", err)
	}
	return s
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func count(seq string) map[rune]int {
	m := map[rune]int{}
	for _, r := range seq {
		m[r]++
	}
	return m
}
