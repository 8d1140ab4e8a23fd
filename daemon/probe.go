package daemon

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Probe timing: every HTTP listener's handler chain is asked one in-process
// request per probeInterval; no answer within probeTimeout means the proxy
// is hung (the listener may still accept) and the node goes to FAULT.
const (
	probeInterval = time.Second
	probeTimeout  = 2 * time.Second
)

// probeTarget is what is probed: an HTTP generation.
type probeTarget interface {
	Addresses() []string
	Probe(ctx context.Context, listenAddr string) error
}

// prober runs the in-process probes and remembers what failed.
type prober struct {
	timeout  time.Duration
	mu       sync.Mutex
	failing  map[string]string    // listen address -> why
	inFlight map[string]time.Time // probes started and not answered yet
	wg       sync.WaitGroup
}

func newProber() *prober {
	return &prober{timeout: probeTimeout, failing: map[string]string{}, inFlight: map[string]time.Time{}}
}

// round starts a probe of every listen address of target that has none in
// flight, and marks as failing those whose probe has run past the timeout.
func (p *prober) round(target probeTarget, now time.Time) {
	if target == nil {
		p.mu.Lock()
		p.failing = map[string]string{}
		p.mu.Unlock()
		return
	}
	addrs := target.Addresses()
	p.mu.Lock()
	defer p.mu.Unlock()
	current := map[string]bool{}
	for _, addr := range addrs {
		current[addr] = true
		if started, busy := p.inFlight[addr]; busy {
			if now.Sub(started) > p.timeout {
				p.failing[addr] = fmt.Sprintf("no answer to the in-process probe for %s", now.Sub(started).Round(time.Millisecond))
			}
			continue
		}
		p.inFlight[addr] = now
		p.wg.Add(1)
		go func(addr string) {
			defer p.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
			err := target.Probe(ctx, addr)
			cancel()
			p.mu.Lock()
			defer p.mu.Unlock()
			delete(p.inFlight, addr)
			if err != nil {
				p.failing[addr] = "in-process probe: " + err.Error()
			} else {
				delete(p.failing, addr)
			}
		}(addr)
	}
	for addr := range p.failing {
		if !current[addr] {
			delete(p.failing, addr)
		}
	}
}

// problems lists the failing probes, sorted.
func (p *prober) problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.failing))
	for addr, why := range p.failing {
		out = append(out, fmt.Sprintf("listener %s: %s", addr, why))
	}
	sort.Strings(out)
	return out
}

// wait waits for the probes in flight (each ends by its timeout).
func (p *prober) wait() { p.wg.Wait() }
