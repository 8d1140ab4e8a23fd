package main

// What a SIGHUP does to a running VRRP pair: real vipgate processes in
// netlab namespaces, the VIPs sampled on both nodes every 20 ms for split
// brain (a VIP on both), flaps and gaps (a VIP on neither).

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vipgate/vipgate/internal/netlab"
	"github.com/vipgate/vipgate/internal/testutil"
)

type rlInst struct {
	name    string
	vrid    int
	prio    int
	vips    []string // last octet of 192.0.2.X
	preempt *bool
	advert  string // default 100ms
	version int    // default 3
	auth    string
	state   string
	extra   string
}

type rlNode struct {
	l     *rlLab
	host  *netlab.Host
	name  string
	conf  string
	proc  *netlab.Process
	admin string // admin_listen, "" = off
}

type rlSample struct {
	at   time.Time
	vips [][]string // per node, sorted
}

type rlLab struct {
	t       *testing.T
	dir     string
	bin     string
	lab     *netlab.Lab
	nodes   []*rlNode
	client  *netlab.Host
	mu      sync.Mutex
	samples []rlSample
	stop    chan struct{}
	done    chan struct{}
}

func newRLLab(t *testing.T) *rlLab {
	t.Helper()
	testutil.RequireRoot(t)
	l := &rlLab{t: t, dir: t.TempDir(), bin: testutil.Binary(t), stop: make(chan struct{}), done: make(chan struct{})}
	l.lab = netlab.New(t, netlab.Options{Hosts: 3})
	for i := 0; i < 2; i++ {
		name := "node-" + string(rune('a'+i))
		l.nodes = append(l.nodes, &rlNode{l: l, host: l.lab.Hosts[i], name: name, conf: filepath.Join(l.dir, name+".toml")})
	}
	l.client = l.lab.Hosts[2]
	var handles []*netlink.Handle
	for _, n := range l.nodes {
		ns, err := netns.GetFromName(n.host.NS)
		if err != nil {
			t.Fatal(err)
		}
		h, err := netlink.NewHandleAt(ns)
		ns.Close()
		if err != nil {
			t.Fatal(err)
		}
		handles = append(handles, h)
	}
	go func() {
		defer close(l.done)
		defer func() {
			for _, h := range handles {
				h.Close()
			}
		}()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			s := rlSample{at: time.Now()}
			for i, h := range handles {
				var got []string
				if link, err := h.LinkByName("eth0"); err == nil {
					addrs, _ := h.AddrList(link, netlink.FAMILY_V4)
					for _, a := range addrs {
						ip, _ := netip.AddrFromSlice(a.IP)
						ip = ip.Unmap()
						if ip != l.nodes[i].host.Addr4.Addr() {
							got = append(got, ip.String())
						}
					}
				}
				sort.Strings(got)
				s.vips = append(s.vips, got)
			}
			l.mu.Lock()
			if n := len(l.samples); n == 0 || fmt.Sprint(l.samples[n-1].vips) != fmt.Sprint(s.vips) {
				l.samples = append(l.samples, s)
			}
			l.mu.Unlock()
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(l.stop); <-l.done })
	return l
}

func vipOf(o string) string { return "192.0.2." + o }

func (n *rlNode) write(insts ...rlInst) {
	var b strings.Builder
	fmt.Fprintf(&b, `[global]
node_name = %q
pid_file = "%s/%s.pid"
admin_listen = %q
access_log = "off"
shutdown_timeout = "1s"
`, n.name, n.l.dir, n.name, n.admin)
	for _, in := range insts {
		adv := in.advert
		if adv == "" {
			adv = "100ms"
		}
		ver := in.version
		if ver == 0 {
			ver = 3
		}
		var vips []string
		for _, v := range in.vips {
			if o, bits, ok := strings.Cut(v, "/"); ok {
				vips = append(vips, fmt.Sprintf("%q", vipOf(o)+"/"+bits))
			} else {
				vips = append(vips, fmt.Sprintf("%q", vipOf(v)+"/24"))
			}
		}
		fmt.Fprintf(&b, "\n[[vrrp]]\nname = %q\ninterface = \"eth0\"\nvirtual_router_id = %d\npriority = %d\nversion = %d\nadvert_int = %q\nvirtual_ipaddress = [%s]\n",
			in.name, in.vrid, in.prio, ver, adv, strings.Join(vips, ", "))
		if in.preempt != nil {
			fmt.Fprintf(&b, "preempt = %v\n", *in.preempt)
		}
		if in.auth != "" {
			fmt.Fprintf(&b, "auth_pass = %q\n", in.auth)
		}
		if in.state != "" {
			fmt.Fprintf(&b, "state = %q\n", in.state)
		}
		b.WriteString(in.extra)
	}
	if err := os.WriteFile(n.conf, []byte(b.String()), 0o644); err != nil {
		n.l.t.Fatal(err)
	}
}

func (n *rlNode) start(insts ...rlInst) {
	n.write(insts...)
	n.proc = n.host.Start(n.l.t, n.l.bin, "-c", n.conf)
}

// reload writes the new config and sends SIGHUP, waiting for the reload's
// log line; it returns when the signal was sent.
func (n *rlNode) reload(insts ...rlInst) time.Time {
	n.l.t.Helper()
	n.write(insts...)
	time.Sleep(300 * time.Millisecond) // settleAge
	before := strings.Count(n.proc.Output(), "reload")
	at := time.Now()
	if err := n.proc.Signal(syscall.SIGHUP); err != nil {
		n.l.t.Fatal(err)
	}
	waitFor(n.l.t, 3*time.Second, func() bool { return strings.Count(n.proc.Output(), "reload") > before })
	return at
}

// holds reports whether node i holds vip in the latest sample.
func (l *rlLab) now() rlSample {
	for {
		l.mu.Lock()
		if n := len(l.samples); n > 0 {
			s := l.samples[n-1]
			l.mu.Unlock()
			return s
		}
		l.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
}

func has(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// waitState waits until every node holds exactly want[i] (octets) for 300ms.
func (l *rlLab) waitState(within time.Duration, want ...[]string) {
	l.t.Helper()
	var w []string
	for _, ws := range want {
		var full []string
		for _, o := range ws {
			full = append(full, vipOf(o))
		}
		sort.Strings(full)
		w = append(w, fmt.Sprint(full))
	}
	deadline := time.Now().Add(within)
	var since time.Time
	for {
		s := l.now()
		ok := true
		for i := range l.nodes {
			if fmt.Sprint(s.vips[i]) != w[i] {
				ok = false
			}
		}
		if ok {
			if since.IsZero() {
				since = time.Now()
			}
			if time.Since(since) > 300*time.Millisecond {
				return
			}
		} else {
			since = time.Time{}
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("VIPs not %v within %s:%s", w, within, l.history(time.Time{}))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *rlLab) history(from time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	t0 := l.samples[0].at
	for _, s := range l.samples {
		if s.at.Before(from) {
			continue
		}
		fmt.Fprintf(&b, "\n  +%6.0fms a=%v b=%v", float64(s.at.Sub(t0))/1e6, s.vips[0], s.vips[1])
	}
	return b.String()
}

// problems lists, from `from` on: a VIP on both nodes, and any VIP in
// steady (octets per node) that left its node.
// problems lists the split brains and flaps seen since from: a VIP on both
// nodes is a split brain, unless it was on both for less than handover
// (0: any sample), for checkHandover.
func (l *rlLab) problems(from time.Time, handover time.Duration, steady ...[]string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	both := map[string]time.Time{} // VIP -> first sample with it on both nodes
	for _, s := range l.samples {
		if s.at.Before(from) {
			continue
		}
		for _, v := range s.vips[0] {
			if _, seen := both[v]; !seen && has(s.vips[1], v) {
				both[v] = s.at
			}
		}
		for v, since := range both {
			if has(s.vips[0], v) && has(s.vips[1], v) {
				continue
			}
			if d := s.at.Sub(since); d > handover {
				out = append(out, fmt.Sprintf("split brain: %s on both nodes at %s for %v", v, since.Format("15:04:05.000"), d.Round(time.Millisecond)))
			}
			delete(both, v)
		}
		for i, st := range steady {
			for _, o := range st {
				if !has(s.vips[i], vipOf(o)) {
					out = append(out, fmt.Sprintf("flap: %s left %s at %s", vipOf(o), l.nodes[i].name, s.at.Format("15:04:05.000")))
				}
			}
		}
	}
	for v, since := range both {
		out = append(out, fmt.Sprintf("split brain: %s on both nodes from %s to the end", v, since.Format("15:04:05.000")))
	}
	return out
}

func (l *rlLab) check(from time.Time, what string, steady ...[]string) {
	l.t.Helper()
	l.report(what, from, l.problems(from, 0, steady...))
}

// preemptHandover bounds the overlap of a preemption: the preempting node
// adds the VIPs and sends its advert, and the old master drops them when
// that advert arrives (a millisecond or so, keepalived alike). The sampler
// reads one node after the other every 20 ms, so it may see that moment
// as one sample with the VIP on both; a real split brain lasts until
// adverts settle it, far longer.
const preemptHandover = 150 * time.Millisecond

// checkHandover is check for a change that makes one node preempt the
// other: an overlap shorter than preemptHandover is the handover.
func (l *rlLab) checkHandover(from time.Time, what string, steady ...[]string) {
	l.t.Helper()
	l.report(what, from, l.problems(from, preemptHandover, steady...))
}

func (l *rlLab) report(what string, from time.Time, p []string) {
	l.t.Helper()
	if len(p) > 0 {
		if len(p) > 5 {
			p = p[:5]
		}
		l.t.Errorf("%s: %s%s", what, strings.Join(p, "; "), l.history(from))
	}
}

// checkMoved checks a VIP that a reload moved from one instance to another
// on node i: it may leave the interface between the one instance dropping
// it and the other adding it (milliseconds: seen in at most a sample or
// two of 20 ms), but not for longer, and it must be there at the end
// (keepalived loses it). Samples are kept only when something changed.
func (l *rlLab) checkMoved(from time.Time, what string, i int, octet string) {
	l.t.Helper()
	l.mu.Lock()
	present := true
	var left time.Time
	var longest time.Duration
	for _, s := range l.samples {
		now := has(s.vips[i], vipOf(octet))
		switch {
		case s.at.Before(from):
		case present && !now:
			left = s.at
		case !present && now && !left.IsZero():
			longest = max(longest, s.at.Sub(left))
		}
		present = now
	}
	l.mu.Unlock()
	if longest > 60*time.Millisecond || !present {
		l.t.Errorf("%s: %s off %s for up to %v, there at the end: %v%s", what, vipOf(octet), l.nodes[i].name, longest, present, l.history(from))
	}
}

func bp(b bool) *bool { return &b }

func o(s ...string) []string { return s }

// TestReloadVIPAddRemove: MASTER and BACKUP both reload adding .61
// and removing .60 (of VRID 51, with .62 kept): the removed VIP leaves the
// master, the added one appears on the master only (with gratuitous ARP),
// .62 never flaps.
func TestReloadVIPAddRemove(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	a.start(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60", "62")})
	b.start(rlInst{name: "VI_1", vrid: 51, prio: 90, vips: o("60", "62")})
	l.waitState(5*time.Second, o("60", "62"), o())

	from := time.Now()
	garps := make(chan []net.HardwareAddr, 1)
	go func() { garps <- captureGARPFor(t, l.client, netip.MustParseAddr(vipOf("61")), 2*time.Second) }()
	time.Sleep(100 * time.Millisecond)
	a.reload(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("61", "62")})
	b.reload(rlInst{name: "VI_1", vrid: 51, prio: 90, vips: o("61", "62")})
	l.waitState(3*time.Second, o("61", "62"), o())
	l.check(from, "VIP add/remove", o("62"))
	seen := <-garps
	t.Logf("gratuitous ARPs for .61: %v", seen)
	if len(seen) == 0 {
		t.Errorf("no gratuitous ARP for the added VIP")
	}
	for _, m := range seen {
		if m.String() != a.host.MAC.String() {
			t.Errorf("gratuitous ARP for .61 from %v, not the master", m)
		}
	}
	// And the BACKUP-first order.
	from = time.Now()
	b.reload(rlInst{name: "VI_1", vrid: 51, prio: 90, vips: o("60", "62")})
	a.reload(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60", "62")})
	l.waitState(3*time.Second, o("60", "62"), o())
	l.check(from, "VIP add/remove (backup first)", o("62"))
}

func captureGARPFor(t *testing.T, client *netlab.Host, vip netip.Addr, d time.Duration) []net.HardwareAddr {
	c, err := client.DialARP()
	if err != nil {
		t.Errorf("ARP socket: %v", err)
		return nil
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(d))
	var seen []net.HardwareAddr
	for {
		p, _, err := c.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return seen
		}
		if err != nil {
			continue
		}
		if p.SenderIP == vip && p.TargetIP == vip {
			seen = append(seen, p.SenderHardwareAddr)
		}
	}
}

// TestReloadVIPMovedBetweenInstances: node-a is MASTER of VRID 51
// and 52; one reload moves VIP .60 from VI_51 to VI_52 (VI_52 listed
// first). The VIP must stay on node-a.
func TestReloadVIPMovedBetweenInstances(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	life := "vip_lifetime = \"0s\"\n"
	a.admin = "127.0.0.1:9900"
	a.start(rlInst{name: "VI_52", vrid: 52, prio: 100, vips: o("70"), extra: life}, rlInst{name: "VI_51", vrid: 51, prio: 100, vips: o("60", "61"), extra: life})
	b.start(rlInst{name: "VI_52", vrid: 52, prio: 90, vips: o("70"), extra: life}, rlInst{name: "VI_51", vrid: 51, prio: 90, vips: o("60", "61"), extra: life})
	l.waitState(5*time.Second, o("60", "61", "70"), o())
	from := time.Now()
	a.reload(rlInst{name: "VI_52", vrid: 52, prio: 100, vips: o("70", "60"), extra: life}, rlInst{name: "VI_51", vrid: 51, prio: 100, vips: o("61"), extra: life})
	b.reload(rlInst{name: "VI_52", vrid: 52, prio: 90, vips: o("70", "60"), extra: life}, rlInst{name: "VI_51", vrid: 51, prio: 90, vips: o("61"), extra: life})
	time.Sleep(2 * time.Second)
	var status string
	a.host.Do(func() error {
		c, err := net.Dial("tcp", "127.0.0.1:9900")
		if err != nil {
			status = err.Error()
			return err
		}
		defer c.Close()
		io.WriteString(c, "GET /status HTTP/1.0\r\nHost: 127.0.0.1:9900\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		body, _ := io.ReadAll(c)
		status = string(body)
		return nil
	})
	out, _ := a.host.Run("ip", "-o", "-4", "addr", "show", "dev", "eth0")
	t.Logf("node-a addresses:\n%s\nnode-a /status:\n%s", out, status)
	l.check(from, "VIP .60 moved from VI_51 to VI_52 on the master", o("61", "70"))
	l.checkMoved(from, "VIP .60 moved from VI_51 to VI_52 on the master", 0, "60")
}

// TestReloadActiveActive: node-a MASTER of 51, node-b MASTER of 52.
// Reloads that touch only one instance (priority, VIPs, advert_int) never
// flap the other's VIPs on either node.
func TestReloadActiveActive(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	a.start(rlInst{name: "VI_51", vrid: 51, prio: 100, vips: o("60")}, rlInst{name: "VI_52", vrid: 52, prio: 90, vips: o("70")})
	b.start(rlInst{name: "VI_51", vrid: 51, prio: 90, vips: o("60")}, rlInst{name: "VI_52", vrid: 52, prio: 100, vips: o("70")})
	l.waitState(5*time.Second, o("60"), o("70"))

	from := time.Now()
	// node-a: VI_52 (its BACKUP one) gets a new VIP and a new priority (still lower).
	a.reload(rlInst{name: "VI_51", vrid: 51, prio: 100, vips: o("60")}, rlInst{name: "VI_52", vrid: 52, prio: 95, vips: o("70", "71")})
	b.reload(rlInst{name: "VI_51", vrid: 51, prio: 90, vips: o("60")}, rlInst{name: "VI_52", vrid: 52, prio: 100, vips: o("70", "71")})
	l.waitState(3*time.Second, o("60"), o("70", "71"))
	l.check(from, "reload of VI_52 only", o("60"), o("70"))

	from = time.Now()
	// node-b: advert_int of VI_51 (its BACKUP one) 100ms -> 200ms on both.
	b.reload(rlInst{name: "VI_51", vrid: 51, prio: 90, vips: o("60"), advert: "200ms"}, rlInst{name: "VI_52", vrid: 52, prio: 100, vips: o("70", "71")})
	a.reload(rlInst{name: "VI_51", vrid: 51, prio: 100, vips: o("60"), advert: "200ms"}, rlInst{name: "VI_52", vrid: 52, prio: 95, vips: o("70", "71")})
	time.Sleep(1500 * time.Millisecond)
	l.check(from, "advert_int change of VI_51", o("60"), o("70", "71"))

	from = time.Now()
	// node-a removes VI_52 (BACKUP there) entirely: nothing moves.
	a.reload(rlInst{name: "VI_51", vrid: 51, prio: 100, vips: o("60"), advert: "200ms"})
	time.Sleep(1500 * time.Millisecond)
	l.check(from, "removing a BACKUP instance", o("60"), o("70", "71"))
	// node-a adds it back: it starts as BACKUP and does not take .70 (lower priority).
	from = time.Now()
	a.reload(rlInst{name: "VI_51", vrid: 51, prio: 100, vips: o("60"), advert: "200ms"}, rlInst{name: "VI_52", vrid: 52, prio: 95, vips: o("70", "71")})
	time.Sleep(1500 * time.Millisecond)
	l.check(from, "adding a BACKUP instance", o("60"), o("70", "71"))
	// node-b removes VI_52 (MASTER there): node-a takes .70/.71, node-b's .60 is not touched... (node-b holds none of 51)
	from = time.Now()
	b.reload(rlInst{name: "VI_51", vrid: 51, prio: 90, vips: o("60"), advert: "200ms"})
	l.waitState(3*time.Second, o("60", "70", "71"), o())
	l.check(from, "removing a MASTER instance", o("60"))
	for _, n := range l.nodes {
		for _, line := range strings.Split(n.proc.Output(), "\n") {
			if strings.Contains(line, "state change") || strings.Contains(line, "removed") || strings.Contains(line, "WARN") {
				t.Logf("%s: %s", n.name, line)
			}
		}
	}
}

// TestReloadPriority: priority changes across the peer's, with
// preempt true and false.
func TestReloadPriority(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	a.start(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60")})
	b.start(rlInst{name: "VI_1", vrid: 51, prio: 90, vips: o("60")})
	l.waitState(5*time.Second, o("60"), o())

	// BACKUP raised above the MASTER, preempt (default true): takes over.
	from := time.Now()
	b.reload(rlInst{name: "VI_1", vrid: 51, prio: 110, vips: o("60")})
	l.waitState(3*time.Second, o(), o("60"))
	l.checkHandover(from, "backup raised above master")
	// MASTER (b) lowered below a (100): a preempts.
	from = time.Now()
	b.reload(rlInst{name: "VI_1", vrid: 51, prio: 80, vips: o("60")})
	l.waitState(3*time.Second, o("60"), o())
	l.checkHandover(from, "master lowered below backup")
	// preempt=false on b; raise b above a: nothing moves.
	b.reload(rlInst{name: "VI_1", vrid: 51, prio: 80, vips: o("60"), preempt: bp(false)})
	from = time.Now()
	b.reload(rlInst{name: "VI_1", vrid: 51, prio: 120, vips: o("60"), preempt: bp(false)})
	time.Sleep(1500 * time.Millisecond)
	l.check(from, "backup without preempt raised above master", o("60"))
	// a (master) lowered below b (nopreempt): a stays MASTER (keepalived: nopreempt backup does not take over).
	a.reload(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60"), preempt: bp(false)})
	from = time.Now()
	a.reload(rlInst{name: "VI_1", vrid: 51, prio: 50, vips: o("60"), preempt: bp(false)})
	time.Sleep(1500 * time.Millisecond)
	l.check(from, "master lowered, backup nopreempt", o("60"))
}

// TestReloadInvalid: an invalid reload on either node changes
// nothing.
func TestReloadInvalid(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	a.start(rlInst{name: "VI_51", vrid: 51, prio: 100, vips: o("60")}, rlInst{name: "VI_52", vrid: 52, prio: 90, vips: o("70")})
	b.start(rlInst{name: "VI_51", vrid: 51, prio: 90, vips: o("60")}, rlInst{name: "VI_52", vrid: 52, prio: 100, vips: o("70")})
	l.waitState(5*time.Second, o("60"), o("70"))
	from := time.Now()
	// priority 0 (invalid) on VI_51, a new VIP for VI_52: all or nothing.
	for _, n := range []*rlNode{a, b} {
		n.write(rlInst{name: "VI_51", vrid: 51, prio: 0, vips: o("60", "61")}, rlInst{name: "VI_52", vrid: 52, prio: 90, vips: o("70", "71")})
		time.Sleep(300 * time.Millisecond)
		n.proc.Signal(syscall.SIGHUP)
	}
	// version 3 with auth_pass (invalid), and a duplicate VRID.
	time.Sleep(time.Second)
	for _, n := range []*rlNode{a, b} {
		n.write(rlInst{name: "VI_51", vrid: 51, prio: 100, vips: o("60"), auth: "x"}, rlInst{name: "VI_52", vrid: 52, prio: 90, vips: o("71")})
		time.Sleep(300 * time.Millisecond)
		n.proc.Signal(syscall.SIGHUP)
	}
	time.Sleep(time.Second)
	for _, n := range []*rlNode{a, b} {
		n.write(rlInst{name: "VI_51", vrid: 51, prio: 100, vips: o("60")}, rlInst{name: "VI_52", vrid: 51, prio: 90, vips: o("70")})
		time.Sleep(300 * time.Millisecond)
		n.proc.Signal(syscall.SIGHUP)
	}
	time.Sleep(1500 * time.Millisecond)
	l.check(from, "invalid reloads", o("60"), o("70"))
	l.waitState(time.Second, o("60"), o("70"))
	for _, n := range []*rlNode{a, b} {
		t.Logf("%s log:\n%s", n.name, n.proc.Output())
	}
}

// TestReloadVIPMovedBetweenInstancesDefaultLifetime: the same with
// the default vip_lifetime: the VIP comes back at the next renewal only.
func TestReloadVIPMovedBetweenInstancesDefaultLifetime(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	a.start(rlInst{name: "VI_52", vrid: 52, prio: 100, vips: o("70")}, rlInst{name: "VI_51", vrid: 51, prio: 100, vips: o("60", "61")})
	b.start(rlInst{name: "VI_52", vrid: 52, prio: 90, vips: o("70")}, rlInst{name: "VI_51", vrid: 51, prio: 90, vips: o("60", "61")})
	l.waitState(5*time.Second, o("60", "61", "70"), o())
	from := time.Now()
	a.reload(rlInst{name: "VI_52", vrid: 52, prio: 100, vips: o("70", "60")}, rlInst{name: "VI_51", vrid: 51, prio: 100, vips: o("61")})
	time.Sleep(2 * time.Second)
	l.check(from, "VIP .60 moved from VI_51 to VI_52 on the master (vip_lifetime auto)", o("61", "70"))
	l.checkMoved(from, "VIP .60 moved from VI_51 to VI_52 on the master (vip_lifetime auto)", 0, "60")
}

// TestReloadPeerMismatchWarnedAgain: a VIP list that differs from
// the peer's is warned about; after the configurations match again, a new
// mismatch (the next one-sided edit) must be warned about again.
func TestReloadPeerMismatchWarnedAgain(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	a.start(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60")})
	b.start(rlInst{name: "VI_1", vrid: 51, prio: 90, vips: o("60")})
	l.waitState(5*time.Second, o("60"), o())
	const warn = "peer advertises other virtual addresses"
	// Rolling change: a first, then b.
	a.reload(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60", "61")})
	time.Sleep(500 * time.Millisecond)
	b.reload(rlInst{name: "VI_1", vrid: 51, prio: 90, vips: o("60", "61")})
	time.Sleep(500 * time.Millisecond)
	n1 := strings.Count(b.proc.Output(), warn)
	t.Logf("warnings on node-b after the first one-sided change: %d", n1)
	// Later: an edit done on node-a only.
	a.reload(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60", "61", "62")})
	time.Sleep(time.Second)
	n2 := strings.Count(b.proc.Output(), warn)
	t.Logf("warnings on node-b after the second one-sided change: %d", n2)
	if n1 == 0 || n2 <= n1 {
		t.Errorf("the second VIP mismatch (node-a advertises .60 .61 .62, node-b has .60 .61) was not logged on node-b: %d warnings before, %d after\n%s", n1, n2, b.proc.Output())
	}
}

// TestReloadVIPChangeLogged: a reload that removes a VIP from the
// MASTER's interface and adds another must say so in the log (keepalived
// 2.2.7: "(VI_1) ip address 192.0.2.60/24 dev veth0, no longer exist",
// "(VI_1) Sending/queueing gratuitous ARPs on veth0 for 192.0.2.61").
func TestReloadVIPChangeLogged(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	a.start(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60", "62")})
	b.start(rlInst{name: "VI_1", vrid: 51, prio: 90, vips: o("60", "62")})
	l.waitState(5*time.Second, o("60", "62"), o())
	before := len(a.proc.Output())
	a.reload(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("61", "62")})
	l.waitState(3*time.Second, o("61", "62"), o())
	logged := a.proc.Output()[before:]
	t.Logf("node-a log of the reload:\n%s", logged)
	if !strings.Contains(logged, "192.0.2.60") {
		t.Errorf("the MASTER removed VIP 192.0.2.60 from eth0 without a log line")
	}
	if !strings.Contains(logged, "192.0.2.61") {
		t.Errorf("the MASTER added VIP 192.0.2.61 to eth0 without a log line")
	}
}

// TestReloadIPv6Instance: VRID 51 for IPv4 (.60) and for IPv6
// (2001:db8::60) on both nodes; a reload changing only the IPv6 VIPs
// (::60 -> ::61) leaves the IPv4 VIP alone and moves the IPv6 one on the
// master only.
func TestReloadIPv6Instance(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	v6 := func(prio int, vip string) string {
		return fmt.Sprintf("\n[[vrrp]]\nname = \"VI_6\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = %d\nversion = 3\nadvert_int = \"100ms\"\nvirtual_ipaddress = [%q]\n", prio, vip)
	}
	in := func(prio int, vip string) rlInst {
		return rlInst{name: "VI_4", vrid: 51, prio: prio, vips: o("60"), extra: v6(prio, vip)}
	}
	a.start(in(100, "2001:db8::60/64"))
	b.start(in(90, "2001:db8::60/64"))
	l.waitState(5*time.Second, o("60"), o())
	has6 := func(n *rlNode, ip string) bool { return n.host.HasAddr(netip.MustParseAddr(ip)) }
	waitFor(t, 3*time.Second, func() bool { return has6(a, "2001:db8::60") })
	from := time.Now()
	a.reload(in(100, "2001:db8::61/64"))
	b.reload(in(90, "2001:db8::61/64"))
	time.Sleep(1500 * time.Millisecond)
	l.check(from, "IPv6 instance reloaded", o("60"))
	if has6(a, "2001:db8::60") || has6(b, "2001:db8::60") {
		t.Errorf("removed IPv6 VIP still present: a=%v b=%v", has6(a, "2001:db8::60"), has6(b, "2001:db8::60"))
	}
	if !has6(a, "2001:db8::61") || has6(b, "2001:db8::61") {
		t.Errorf("added IPv6 VIP: on master %v, on backup %v", has6(a, "2001:db8::61"), has6(b, "2001:db8::61"))
	}
}

// TestReloadFailingScriptKeepsFault: node-a (priority 100) tracks a
// check script that fails (weight 0: FAULT), so node-b (90) is MASTER. A
// reload on node-a that edits the script's interval (or anything else)
// must not make node-a forget that its check fails: it must not leave
// FAULT and take the VIP from node-b.
func TestReloadFailingScriptKeepsFault(t *testing.T) {
	for _, weight := range []int{0, -20} {
		t.Run(fmt.Sprintf("weight=%d", weight), func(t *testing.T) {
			l := newRLLab(t)
			a, b := l.nodes[0], l.nodes[1]
			script := func(interval string) string {
				return fmt.Sprintf("track_script = [\"chk\"]\n\n[vrrp_script.chk]\nscript = \"/bin/false\"\ninterval = %q\ntimeout = \"200ms\"\nweight = %d\nfall = 2\nrise = 2\n", interval, weight)
			}
			a.start(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60"), extra: script("200ms")})
			b.start(rlInst{name: "VI_1", vrid: 51, prio: 90, vips: o("60")})
			l.waitState(5*time.Second, o(), o("60"))
			waitFor(t, 3*time.Second, func() bool { return strings.Contains(a.proc.Output(), "now failing") })
			time.Sleep(500 * time.Millisecond)
			from := time.Now()
			before := len(a.proc.Output())
			a.reload(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60"), extra: script("300ms")})
			time.Sleep(2 * time.Second)
			t.Logf("node-a log after the reload:\n%s", a.proc.Output()[before:])
			l.check(from, "reload of the node whose check fails", o(), o("60"))
		})
	}
}

// TestReloadPreemptToggle: node-b (BACKUP, priority 120, preempt
// false) under node-a (MASTER, 100): a reload setting preempt = true on
// node-b makes it take over.
func TestReloadPreemptToggle(t *testing.T) {
	l := newRLLab(t)
	a, b := l.nodes[0], l.nodes[1]
	a.start(rlInst{name: "VI_1", vrid: 51, prio: 100, vips: o("60")})
	l.waitState(5*time.Second, o("60"), o())
	b.start(rlInst{name: "VI_1", vrid: 51, prio: 120, vips: o("60"), preempt: bp(false)})
	time.Sleep(1500 * time.Millisecond)
	l.waitState(time.Second, o("60"), o())
	from := time.Now()
	b.reload(rlInst{name: "VI_1", vrid: 51, prio: 120, vips: o("60"), preempt: bp(true)})
	l.waitState(3*time.Second, o(), o("60"))
	l.checkHandover(from, "preempt turned on")
}
