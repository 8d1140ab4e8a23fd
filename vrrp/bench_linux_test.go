package vrrp_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/netlab"
)

// serveName answers every connection to port 8080 in h with name: the
// node's service, in the test process so it outlives a killed VRRP
// daemon (as nginx outlives a killed keepalived).
func serveName(t *testing.T, h *netlab.Host, name string) {
	var ln net.Listener
	if err := h.Do(func() (err error) {
		ln, err = net.Listen("tcp", "0.0.0.0:8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(name))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
}

type answer struct {
	at   time.Time
	from string
}

// prober asks the VIP's service every 20ms who it is.
type prober struct {
	mu      sync.Mutex
	answers []answer
	stop    chan struct{}
	done    chan error
}

func startProber(client *netlab.Host, target string) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		p.done <- client.Do(func() error {
			buf := make([]byte, 16)
			for {
				select {
				case <-p.stop:
					return nil
				default:
				}
				start := time.Now()
				if c, err := net.DialTimeout("tcp", target, 20*time.Millisecond); err == nil {
					c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
					if n, err := c.Read(buf); err == nil {
						p.mu.Lock()
						p.answers = append(p.answers, answer{time.Now(), string(buf[:n])})
						p.mu.Unlock()
					}
					c.Close()
				}
				time.Sleep(max(20*time.Millisecond-time.Since(start), 0))
			}
		})
	}()
	return p
}

// after returns how long after t0 the first answer from "to" came, and the
// longest stretch without any answer before it.
func (p *prober) after(t0 time.Time, to string) (moved, silent time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	last := t0
	for _, a := range p.answers {
		if a.at.Before(t0) {
			continue
		}
		silent = max(silent, a.at.Sub(last))
		last = a.at
		if a.from == to {
			return a.at.Sub(t0), silent
		}
	}
	return -1, silent
}

func (p *prober) close() { close(p.stop); <-p.done }

// TestLabBenchFailover measures the service gap a client sees after the
// master is killed (SIGKILL) or stopped (SIGTERM), for a keepalived pair
// and a vipgate pair in the same lab, with v2 at 1s and v3 at 100ms. It
// runs only with VIPGATE_BENCH=1 (make bench) and prints a table.
func TestLabBenchFailover(t *testing.T) {
	if os.Getenv("VIPGATE_BENCH") != "1" {
		t.Skip("set VIPGATE_BENCH=1 (make bench)")
	}
	repeats := 3
	if n, err := strconv.Atoi(os.Getenv("VIPGATE_BENCH_REPEAT")); err == nil && n > 0 {
		repeats = n
	}
	var table []string
	for _, ic := range []interopCase{
		{name: "v2 1s", version: 2, interval: time.Second},
		{name: "v3 100ms", version: 3, interval: 100 * time.Millisecond},
	} {
		for _, impl := range []string{"keepalived", "vipgate"} {
			for _, scenario := range []string{"SIGKILL", "SIGTERM"} {
				var moved, silent []time.Duration
				for range repeats {
					m, s := benchOnce(t, ic, impl, scenario)
					moved, silent = append(moved, m), append(silent, s)
				}
				table = append(table, fmt.Sprintf("| %-8s | %-10s | %-7s | %s | %s |", ic.name, impl, scenario, summary(moved), summary(silent)))
			}
		}
	}
	t.Logf("a client asks the VIP's service every 20ms (priorities 200/100); moved: signal to the first answer\n"+
		"from the backup; silent: longest time without any answer (the old node's service keeps running, as\n"+
		"nginx does next to a killed keepalived). Median [all runs]:\n"+
		"| timers   | pair       | master  | moved | silent |\n|---|---|---|---|---|\n%s", strings.Join(table, "\n"))
}

func summary(ds []time.Duration) string {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	var s []string
	for _, d := range ds {
		s = append(s, d.Round(time.Millisecond).String())
	}
	return fmt.Sprintf("%v [%s]", ds[len(ds)/2].Round(time.Millisecond), strings.Join(s, " "))
}

func benchOnce(t *testing.T, ic interopCase, impl, scenario string) (moved, silent time.Duration) {
	t.Run(fmt.Sprintf("%s/%s/%s", ic.name, impl, scenario), func(t *testing.T) {
		lab := netlab.New(t, netlab.Options{Hosts: 3})
		a, b, client := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2]
		serveName(t, a, "a")
		serveName(t, b, "b")
		var signal func()
		if impl == "vipgate" {
			na := startNode(t, a, ic.vipgate(200, b.Addr4.Addr()))
			startNode(t, b, ic.vipgate(100, a.Addr4.Addr()))
			signal = func() {
				if scenario == "SIGKILL" {
					na.proc.Kill()
				} else {
					na.proc.Signal(syscall.SIGTERM)
				}
			}
		} else {
			ka, dir := startKeepalivedDir(t, a, ic, 200, a.Addr4.Addr(), b.Addr4.Addr())
			startKeepalived(t, b, ic, 100, b.Addr4.Addr(), a.Addr4.Addr())
			signal = func() {
				if scenario == "SIGTERM" {
					ka.Signal(syscall.SIGTERM)
					return
				}
				// The whole keepalived: its VRRP child first, then the parent.
				if pid, err := readPid(filepath.Join(dir, "vrrp.pid")); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
				ka.Kill()
			}
		}
		waitSoleHolder(t, lab.Hosts, vip4, a, 2*masterDown(ic.interval, 100)+3*time.Second, ic.interval)
		p := startProber(client, vip4.String()+":8080")
		defer p.close()
		time.Sleep(300 * time.Millisecond) // steady answers from a first
		t0 := time.Now()
		signal()
		waitFor(t, 10*time.Second, "answers from the backup", func() bool { m, _ := p.after(t0, "b"); return m >= 0 })
		moved, silent = p.after(t0, "b")
		t.Logf("moved after %v, silent for %v", moved, silent)
	})
	return moved, silent
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
