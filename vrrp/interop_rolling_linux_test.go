package vrrp_test

// A rolling migration keepalived -> vipgate: one node runs keepalived
// 2.2.7, the other vipgate (vrrpnode), in the same virtual router.

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/netlab"
	"github.com/vipgate/vipgate/vrrp"
)

type kaOpts struct {
	version   int
	interval  time.Duration
	prio      uint8
	family    int
	unicast   bool
	self      netip.Addr
	peer      netip.Addr
	vips      []string // as written in virtual_ipaddress
	nopreempt bool
	auth      string
	master    bool
	global    string // extra global_defs lines
}

func startKA(t *testing.T, h *netlab.Host, o kaOpts) (*netlab.Process, string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n  router_id %s\n%s}\n", h.NS, o.global)
	state := "BACKUP"
	if o.master {
		state = "MASTER"
	}
	fmt.Fprintf(&b, "vrrp_instance VI_1 {\n  state %s\n", state)
	fmt.Fprintf(&b, "  interface eth0\n  virtual_router_id 51\n  priority %d\n", o.prio)
	fmt.Fprintf(&b, "  version %d\n  advert_int %g\n", o.version, o.interval.Seconds())
	if o.nopreempt {
		b.WriteString("  nopreempt\n")
	}
	if o.auth != "" {
		fmt.Fprintf(&b, "  authentication {\n    auth_type PASS\n    auth_pass %s\n  }\n", o.auth)
	}
	if o.unicast {
		fmt.Fprintf(&b, "  unicast_src_ip %v\n  unicast_peer {\n    %v\n  }\n", o.self, o.peer)
	}
	fmt.Fprintf(&b, "  virtual_ipaddress {\n")
	for _, v := range o.vips {
		fmt.Fprintf(&b, "    %s\n", v)
	}
	b.WriteString("  }\n}\n")
	return runKeepalived(t, h, b.String())
}

// sampler records, every 20 ms, who holds each VIP.
type sampler struct {
	hosts []*netlab.Host
	vips  []netip.Addr
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	log   []sample
}

type sample struct {
	at   time.Time
	held [][]bool // [vip][host]
}

func startSampler(hosts []*netlab.Host, vips ...netip.Addr) *sampler {
	s := &sampler{hosts: hosts, vips: vips, stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			sm := sample{at: time.Now(), held: make([][]bool, len(vips))}
			addrs := make([]map[netip.Addr]bool, len(hosts))
			for i, h := range hosts {
				addrs[i] = map[netip.Addr]bool{}
				ps, _ := h.Addrs("eth0")
				for _, p := range ps {
					addrs[i][p.Addr()] = true
				}
			}
			for v, a := range vips {
				sm.held[v] = make([]bool, len(hosts))
				for i := range hosts {
					sm.held[v][i] = addrs[i][a]
				}
			}
			s.mu.Lock()
			s.log = append(s.log, sm)
			s.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return s
}

// stats over samples since from: longest split (VIP on >1 host), longest
// gap (VIP nowhere), number of holder changes, per VIP.
type vipStats struct {
	split, gap time.Duration
	changes    int
	samples    int
}

func (s *sampler) stats(from, to time.Time) []vipStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]vipStats, len(s.vips))
	for v := range s.vips {
		var splitStart, gapStart time.Time
		prev := -2
		for _, sm := range s.log {
			if sm.at.Before(from) || sm.at.After(to) {
				continue
			}
			out[v].samples++
			n, who := 0, -1
			for i, h := range sm.held[v] {
				if h {
					n++
					who = i
				}
			}
			if n > 1 {
				who = 99
				if splitStart.IsZero() {
					splitStart = sm.at
				}
				out[v].split = max(out[v].split, sm.at.Sub(splitStart)+20*time.Millisecond)
			} else {
				splitStart = time.Time{}
			}
			if n == 0 {
				if gapStart.IsZero() {
					gapStart = sm.at
				}
				out[v].gap = max(out[v].gap, sm.at.Sub(gapStart)+20*time.Millisecond)
			} else {
				gapStart = time.Time{}
			}
			if prev != -2 && who != prev {
				out[v].changes++
			}
			prev = who
		}
	}
	return out
}

func (s *sampler) close() { close(s.stop); s.wg.Wait() }

// checkSteady: from `from` to now, no split, no gap, no change.
func (s *sampler) checkSteady(t *testing.T, what string, from time.Time) {
	t.Helper()
	for v, st := range s.stats(from, time.Now()) {
		t.Logf("%s: %v split %v gap %v changes %d over %d samples", what, s.vips[v], st.split, st.gap, st.changes, st.samples)
		if st.split > 0 || st.gap > 0 || st.changes > 0 {
			t.Errorf("%s: %v not steady: split %v, gap %v, %d holder changes", what, s.vips[v], st.split, st.gap, st.changes)
		}
	}
}

func v6cfg(c vrrp.Config) vrrp.Config {
	c.Family = 6
	c.VIPs = []vrrp.VIP{{Prefix: netip.PrefixFrom(vip6, 64)}}
	return c
}

// IPv6 VRRPv3, multicast and unicast, each side master in turn, failover
// both ways.
func TestRollingIPv6(t *testing.T) {
	iv := 100 * time.Millisecond
	for _, unicast := range []bool{false, true} {
		for _, vgMaster := range []bool{true, false} {
			name := fmt.Sprintf("unicast=%v/vipgateMaster=%v", unicast, vgMaster)
			t.Run(name, func(t *testing.T) {
				lab := netlab.New(t, netlab.Options{Hosts: 2})
				vg, ka := lab.Hosts[0], lab.Hosts[1]
				vgP, kaP := uint8(100), uint8(200)
				if vgMaster {
					vgP, kaP = 200, 100
				}
				c := v6cfg(fastConfig(vgP))
				if unicast {
					// operator: mcast_src_ip/unicast_src_ip -> mcast_src_ip, unicast_peer
					c.SourceIP = vg.Addr6.Addr()
					c.UnicastPeers = []netip.Addr{ka.Addr6.Addr()}
				}
				s := startSampler(lab.Hosts, vip6)
				defer s.close()
				ng := startNode(t, vg, c)
				kp, _ := startKA(t, ka, kaOpts{version: 3, interval: iv, prio: kaP, family: 6, unicast: unicast,
					self: ka.Addr6.Addr(), peer: vg.Addr6.Addr(), vips: []string{vip6.String() + "/64"}})
				master, backup := ka, vg
				if vgMaster {
					master, backup = vg, ka
				}
				waitSoleHolder(t, lab.Hosts, vip6, master, 2*masterDown(iv, 100)+settle, 200*time.Millisecond)
				t0 := time.Now()
				time.Sleep(3 * time.Second)
				s.checkSteady(t, "steady", t0)
				if vgMaster {
					ng.proc.Kill()
				} else {
					kp.Signal(syscall.SIGTERM)
				}
				waitFor(t, masterDown(iv, 100)+iv+settle, "backup takes over", func() bool { return backup.HasAddr(vip6) })
				if !vgMaster {
					waitSoleHolder(t, lab.Hosts, vip6, backup, 2*time.Second, time.Second)
				}
				if bad := grepLines(kp.Output(), "checksum", "invalid", "bad", "mismatch"); bad != "" {
					t.Errorf("keepalived complains:\n%s", bad)
				}
			})
		}
	}
}

func grepLines(out string, words ...string) string {
	var r []string
	for _, l := range strings.Split(out, "\n") {
		ll := strings.ToLower(l)
		for _, w := range words {
			if strings.Contains(ll, w) {
				r = append(r, l)
				break
			}
		}
	}
	return strings.Join(r, "\n")
}

// Several VIPs, other order on the vipgate side.
func TestRollingVIPOrder(t *testing.T) {
	iv := 100 * time.Millisecond
	a, b, c3 := netip.MustParseAddr("192.0.2.50"), netip.MustParseAddr("192.0.2.51"), netip.MustParseAddr("192.0.2.52")
	for _, vgMaster := range []bool{true, false} {
		t.Run(fmt.Sprintf("vipgateMaster=%v", vgMaster), func(t *testing.T) {
			lab := netlab.New(t, netlab.Options{Hosts: 2})
			vg, ka := lab.Hosts[0], lab.Hosts[1]
			vgP, kaP := uint8(100), uint8(200)
			if vgMaster {
				vgP, kaP = 200, 100
			}
			cfg := fastConfig(vgP)
			cfg.VIPs = []vrrp.VIP{{Prefix: netip.PrefixFrom(c3, 24)}, {Prefix: netip.PrefixFrom(a, 24)}, {Prefix: netip.PrefixFrom(b, 24)}}
			s := startSampler(lab.Hosts, a, b, c3)
			defer s.close()
			ng := startNode(t, vg, cfg)
			kp, _ := startKA(t, ka, kaOpts{version: 3, interval: iv, prio: kaP,
				vips: []string{a.String() + "/24", b.String() + "/24", c3.String() + "/24"}})
			master := ka
			if vgMaster {
				master = vg
			}
			for _, v := range []netip.Addr{a, b, c3} {
				waitSoleHolder(t, lab.Hosts, v, master, settle, 0)
			}
			t0 := time.Now()
			time.Sleep(3 * time.Second)
			s.checkSteady(t, "vip order", t0)
			st, _ := ng.report(t)
			t.Logf("vipgate status: %+v", st)
			if bad := grepLines(kp.Output(), "mismatch", "address", "dropp"); bad != "" {
				t.Logf("keepalived says:\n%s", bad)
			}
			t.Logf("vipgate says:\n%s", grepLines(ng.proc.Output(), "mismatch", "differ", "warn"))
		})
	}
}
