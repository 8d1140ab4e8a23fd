package daemon

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// fakeTarget answers probes per address: "ok", "fail", or "hang" (blocks
// until released, ignoring the context, as a hung handler would).
type fakeTarget struct {
	mode    map[string]string
	release chan struct{}
	calls   atomic.Int32
}

func (f *fakeTarget) Addresses() []string {
	out := make([]string, 0, len(f.mode))
	for a := range f.mode {
		out = append(out, a)
	}
	return out
}

func (f *fakeTarget) Probe(ctx context.Context, addr string) error {
	f.calls.Add(1)
	switch f.mode[addr] {
	case "fail":
		return errors.New("status 500")
	case "hang":
		<-f.release
	}
	return nil
}

func TestProberFindsHungAndFailingHandlers(t *testing.T) {
	defer goleak.VerifyNone(t)
	target := &fakeTarget{mode: map[string]string{"127.0.0.1:1": "ok", "127.0.0.1:2": "fail", "127.0.0.1:3": "hang"}, release: make(chan struct{})}
	p := newProber()
	p.timeout = 50 * time.Millisecond
	start := time.Now()
	p.round(target, start)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && len(p.problems()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if got := p.problems(); len(got) != 1 || !strings.Contains(got[0], "127.0.0.1:2") {
		t.Fatalf("after the first round: %v, want only the failing listener", got)
	}
	// The hung probe is still in flight: the next round past the timeout
	// reports it without starting a second probe of it.
	p.round(target, start.Add(100*time.Millisecond))
	got := p.problems()
	if len(got) != 2 || !strings.Contains(got[1], "127.0.0.1:3") || !strings.Contains(got[1], "no answer") {
		t.Fatalf("hung handler not reported: %v", got)
	}
	// It answers again: the next round clears it.
	close(target.release)
	p.wait()
	target.mode["127.0.0.1:3"] = "ok"
	p.round(target, start.Add(200*time.Millisecond))
	p.wait()
	if got := p.problems(); len(got) != 1 {
		t.Fatalf("after recovery: %v", got)
	}
	// A generation without HTTP listeners has nothing failing.
	p.round(nil, time.Now())
	if got := p.problems(); len(got) != 0 {
		t.Fatalf("no target: %v", got)
	}
}
