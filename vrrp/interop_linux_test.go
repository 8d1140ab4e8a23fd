package vrrp_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/netlab"
	"github.com/vipgate/vipgate/internal/testutil"
	"github.com/vipgate/vipgate/vrrp"
)

type interopCase struct {
	name     string
	version  int
	interval time.Duration
	auth     string
	unicast  bool
}

var interopCases = []interopCase{
	{name: "v2 auth", version: 2, interval: time.Second, auth: "secret12-beyond-8"},
	{name: "v3", version: 3, interval: 100 * time.Millisecond},
	{name: "v3 unicast", version: 3, interval: 100 * time.Millisecond, unicast: true},
}

func (ic interopCase) vipgate(prio uint8, peer netip.Addr) vrrp.Config {
	c := fastConfig(prio)
	c.Version, c.AdvertInterval, c.AuthPass = ic.version, ic.interval, ic.auth
	c.VIPLifetime = vrrp.AutoVIPLifetime(ic.interval, prio)
	if ic.unicast {
		c.UnicastPeers = []netip.Addr{peer}
	}
	return c
}

// startKeepalived runs Debian's keepalived (VRRP only, foreground) in h
// with its own config and pid files; a cleanup stops it with SIGTERM.
func startKeepalived(t *testing.T, h *netlab.Host, ic interopCase, prio uint8, self, peer netip.Addr) *netlab.Process {
	p, _ := startKeepalivedDir(t, h, ic, prio, self, peer)
	return p
}

// startKeepalivedDir is startKeepalived also returning the directory of
// its pid files (vrrp.pid is the VRRP child's).
func startKeepalivedDir(t *testing.T, h *netlab.Host, ic interopCase, prio uint8, self, peer netip.Addr) (*netlab.Process, string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n  router_id %s\n}\n", h.NS)
	fmt.Fprintf(&b, "vrrp_instance VI_1 {\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority %d\n", prio)
	fmt.Fprintf(&b, "  version %d\n  advert_int %g\n", ic.version, ic.interval.Seconds())
	if ic.auth != "" {
		fmt.Fprintf(&b, "  authentication {\n    auth_type PASS\n    auth_pass %s\n  }\n", ic.auth)
	}
	if ic.unicast {
		fmt.Fprintf(&b, "  unicast_src_ip %v\n  unicast_peer {\n    %v\n  }\n", self, peer)
	}
	fmt.Fprintf(&b, "  virtual_ipaddress {\n    %v/24\n  }\n}\n", vip4)
	return runKeepalived(t, h, b.String())
}

// runKeepalived runs Debian's keepalived (VRRP only, foreground) in h with
// the configuration conf and its own pid files, in a directory it
// returns (vrrp.pid is the VRRP child's); a cleanup stops it with SIGTERM.
func runKeepalived(t *testing.T, h *netlab.Host, conf string) (*netlab.Process, string) {
	t.Helper()
	bin := testutil.RequireCommand(t, "keepalived")
	dir := t.TempDir()
	path := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := h.Start(t, bin, "-n", "-l", "-D", "-P", "-f", path,
		"-p", filepath.Join(dir, "keepalived.pid"), "-r", filepath.Join(dir, "vrrp.pid"), "-c", filepath.Join(dir, "checkers.pid"))
	t.Cleanup(func() {
		// Gracefully, so its VRRP child goes too (Start's cleanup then
		// only reaps the parent).
		if p.Signal(syscall.SIGTERM) == nil {
			if p.Wait(5*time.Second) != nil {
				t.Logf("keepalived in %s did not stop on SIGTERM", h.NS)
			}
		}
		if t.Failed() {
			t.Logf("keepalived config:\n%s", conf)
		}
	})
	return p, dir
}

// TestLabKeepalivedInterop runs vipgate and keepalived in one group, each
// as the master in turn, and fails the master over to the other.
func TestLabKeepalivedInterop(t *testing.T) {
	for _, ic := range interopCases {
		for _, vipgateMaster := range []bool{true, false} {
			name := ic.name + "/keepalived master"
			if vipgateMaster {
				name = ic.name + "/vipgate master"
			}
			t.Run(name, func(t *testing.T) {
				lab := netlab.New(t, netlab.Options{Hosts: 2})
				vg, ka := lab.Hosts[0], lab.Hosts[1]
				vgPrio, kaPrio := uint8(100), uint8(200)
				if vipgateMaster {
					vgPrio, kaPrio = 200, 100
				}
				ng := startNode(t, vg, ic.vipgate(vgPrio, ka.Addr4.Addr()))
				kp := startKeepalived(t, ka, ic, kaPrio, ka.Addr4.Addr(), vg.Addr4.Addr())
				master, backup := ka, vg
				if vipgateMaster {
					master, backup = vg, ka
				}
				// keepalived starts as BACKUP and waits Master_Down_Interval.
				startWait := 2*masterDown(ic.interval, 100) + settle
				waitSoleHolder(t, lab.Hosts, vip4, master, startWait, 2*ic.interval+200*time.Millisecond)

				// Timing is the other tests' business (measured by the
				// nodes' clocks); here only who takes over.
				limit := masterDown(ic.interval, 100) + ic.interval + settle
				start := time.Now()
				if vipgateMaster {
					ng.proc.Kill()
				} else {
					// SIGKILL would leave keepalived's VRRP child running.
					if err := kp.Signal(syscall.SIGTERM); err != nil {
						t.Fatal(err)
					}
				}
				waitFor(t, limit, "the backup takes over", func() bool { return backup.HasAddr(vip4) })
				t.Logf("%s took over after %v", backup.NS, time.Since(start))
				if !vipgateMaster {
					waitSoleHolder(t, lab.Hosts, vip4, backup, 2*time.Second, 2*ic.interval)
				}
			})
		}
	}
}

// TestLabKeepalivedFollowsHandover: a keepalived v3 backup learns the
// handover's 10 ms Max Adver Int from vipgate's last advert, so a SIGTERM
// of the vipgate master hands the VIP over within milliseconds rather
// than the Skew_Time of the configured 1 s interval (609 ms at 100).
func TestLabKeepalivedFollowsHandover(t *testing.T) {
	ic := interopCase{name: "v3 1s", version: 3, interval: time.Second}
	lab := netlab.New(t, netlab.Options{Hosts: 2})
	vg, ka := lab.Hosts[0], lab.Hosts[1]
	ng := startNode(t, vg, ic.vipgate(200, ka.Addr4.Addr()))
	startKeepalived(t, ka, ic, 100, ka.Addr4.Addr(), vg.Addr4.Addr())
	waitSoleHolder(t, lab.Hosts, vip4, vg, 2*masterDown(ic.interval, 100)+settle, 2*ic.interval)
	if err := ng.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, settle, "keepalived takes over", func() bool { return ka.HasAddr(vip4) })
	limit := skew(vrrp.HandoverAdvertInterval, 100) + slack
	t.Logf("keepalived holds the VIP %v after the SIGTERM (limit %v; at the configured interval Skew_Time alone is %v)",
		took, limit, skew(ic.interval, 100))
	if took > limit {
		t.Errorf("keepalived took over after %v, want at most %v", took, limit)
	}
}

// TestLabTsharkDecodesAdverts checks vipgate's adverts with Wireshark's
// VRRP dissector: version, VRID, priority, addresses, and a checksum it
// calls correct.
func TestLabTsharkDecodesAdverts(t *testing.T) {
	testutil.RequireCommand(t, "tshark")
	for _, tc := range []struct {
		name     string
		cfg      func(vrrp.Config) vrrp.Config
		want     []string
		announce []string // tshark filter, fields, and the lines wanted
	}{
		{"v2 auth", func(c vrrp.Config) vrrp.Config {
			c.Version, c.AdvertInterval, c.AuthPass = 2, time.Second, "secret"
			c.StartAsMaster = true // master after one 1s interval, within the capture
			return c
		}, []string{"Version 2", "Simple Text Authentication", "secret", "192.0.2.50"}, nil},
		{"v3 IPv4", func(c vrrp.Config) vrrp.Config { return c }, []string{"Version 3", "192.0.2.50"},
			// Gratuitous ARP as a request and as a reply, both from the master's MAC.
			[]string{"arp.src.proto_ipv4 == 192.0.2.50 && arp.dst.proto_ipv4 == 192.0.2.50", "arp.opcode,arp.src.hw_mac,eth.dst",
				"1\t02:00:00:00:00:01\tff:ff:ff:ff:ff:ff", "2\t02:00:00:00:00:01\tff:ff:ff:ff:ff:ff"}},
		{"v3 IPv6", func(c vrrp.Config) vrrp.Config {
			c.Family, c.VIPs = 6, []vrrp.VIP{{Prefix: netip.PrefixFrom(vip6, 64)}}
			return c
		}, []string{"Version 3", "2001:db8::50"},
			// Unsolicited NA to all nodes, Override set, target link-layer address.
			[]string{"icmpv6.type == 136", "ipv6.dst,icmpv6.nd.na.flag.o,icmpv6.nd.na.target_address,icmpv6.opt.linkaddr",
				"ff02::1\t1\t2001:db8::50\t02:00:00:00:00:01"}},
		{"v3 IPv4 checksum as v2", func(c vrrp.Config) vrrp.Config {
			c.V3ChecksumAsV2 = true
			return c
		}, []string{"Version 3", "192.0.2.50"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := netlab.New(t, netlab.Options{Hosts: 2})
			pcap := filepath.Join(t.TempDir(), "vrrp.pcap")
			cap := lab.Hosts[1].Start(t, "tshark", "-q", "-i", "eth0", "-f", "ip proto 112 or ip6 proto 112 or arp or icmp6", "-w", pcap, "-a", "duration:4")
			waitFor(t, 3*settle, "tshark capturing", func() bool { return strings.Contains(cap.Output(), "Capturing on") })
			startNode(t, lab.Hosts[0], tc.cfg(fastConfig(200)))
			if err := cap.Wait(30 * time.Second); err != nil {
				t.Fatalf("tshark capture: %v\n%s", err, cap.Output())
			}
			cfg := tc.cfg(fastConfig(200))
			asV2 := fmt.Sprintf("vrrp.v3_checksum_as_in_v2:%v", cfg.V3ChecksumAsV2)
			out, err := lab.Hosts[1].Run("tshark", "-r", pcap, "-Y", "vrrp", "-V", "-o", asV2)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "Virtual Router Redundancy Protocol") {
				t.Fatalf("no VRRP packet decoded:\n%s", out)
			}
			for _, w := range append(tc.want, "Virtual Rtr ID: 51", "Priority: 200") {
				if !strings.Contains(out, w) {
					t.Errorf("decoded adverts lack %q", w)
				}
			}
			if bad := regexp.MustCompile(`(?i)malformed|incorrect|bad checksum|checksum status: bad`).FindString(out); bad != "" {
				t.Errorf("tshark flags %q:\n%s", bad, out)
			}
			if !regexp.MustCompile(`(?i)\[correct\]|Checksum Status: Good`).MatchString(out) {
				t.Errorf("tshark did not verify the checksum:\n%.3000s", out)
			}
			if tc.announce == nil {
				return
			}
			args := []string{"-r", pcap, "-Y", tc.announce[0], "-T", "fields"}
			for _, f := range strings.Split(tc.announce[1], ",") {
				args = append(args, "-e", f)
			}
			out = lab.Hosts[1].MustRun(t, "tshark", args...)
			for _, want := range tc.announce[2:] {
				if !strings.Contains(out, want) {
					t.Errorf("announcements lack %q:\n%s", want, out)
				}
			}
		})
	}
}
