// Package netlab builds throw-away network labs in Linux network namespaces
// for tests: a "switch" namespace holding a bridge, and hosts each joined
// to it by a veth pair, with addresses from 192.0.2.0/24 (host i has
// 192.0.2.i) and 2001:db8::/64 (2001:db8::i, nodad; DAD is off in the
// hosts so link-local addresses work at once). Nothing is created in the
// root namespace: the veth pairs are made inside the switch namespace and
// their host ends moved straight into the host namespaces. Every namespace
// is deleted by a t.Cleanup registered in New, even when the test fails or
// panics; processes started with Host.Start are killed by PID before that.
//
// Typical use (the test must run as root; New calls testutil.RequireRoot):
//
//	lab := netlab.New(t, netlab.Options{Hosts: 3})
//	a, b, client := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2]
//	p := a.Start(t, "/path/to/binary", "-c", conf) // killed at cleanup
//	err := client.Reach(netip.MustParseAddr("192.0.2.50")) // nil: it answered
//	a.LinkDown(); a.LinkUp()                       // link flap
//	ok := b.HasAddr(netip.MustParseAddr("192.0.2.50"))
//	mac, _ := client.NeighbourMAC(netip.MustParseAddr("192.0.2.50"))
//
// Names are short and unique per process ("vg<pid>x<n>-h1"), so labs of
// parallel tests and packages do not collide. A script that removes stale
// labs must skip those whose <pid> is still running: deleting a running
// test's namespaces makes it fail in confusing ways.
package netlab

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/mdlayher/arp"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/testutil"
	"golang.org/x/sys/unix"
)

// Options says what lab to build.
type Options struct {
	Hosts int // number of host namespaces, 1..200
}

// Lab is one bridge and its hosts.
type Lab struct {
	t      testing.TB
	Prefix string  // namespace name prefix, unique per lab
	Switch string  // the namespace holding the bridge "br0"
	Hosts  []*Host // Hosts[i] has address 192.0.2.(i+1)
	made   []string
}

// Host is one namespace on the lab's bridge.
type Host struct {
	lab    *Lab
	Index  int    // 1-based
	NS     string // namespace name
	Ifname string // its interface on the bridge, "eth0"
	Addr4  netip.Prefix
	Addr6  netip.Prefix
	MAC    net.HardwareAddr
	port   string // the veth end on the bridge, in the switch namespace
}

var labCount atomic.Int32

// New builds the lab and registers its removal with t.Cleanup.
func New(t testing.TB, opts Options) *Lab {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireCommand(t, "ip")
	if opts.Hosts < 1 || opts.Hosts > 200 {
		t.Fatalf("netlab: %d hosts, want 1..200", opts.Hosts)
	}
	n := labCount.Add(1)
	l := &Lab{t: t, Prefix: fmt.Sprintf("vg%dx%d-", os.Getpid(), n)}
	l.Switch = l.Prefix + "sw"
	t.Cleanup(l.Cleanup)
	l.mustIP("netns", "add", l.Switch)
	l.made = append(l.made, l.Switch)
	l.mustIP("-n", l.Switch, "link", "set", "lo", "up")
	l.mustIP("-n", l.Switch, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	l.mustIP("-n", l.Switch, "link", "set", "br0", "up")
	for i := 1; i <= opts.Hosts; i++ {
		h := &Host{lab: l, Index: i, NS: fmt.Sprintf("%sh%d", l.Prefix, i), Ifname: "eth0",
			Addr4: netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 24),
			Addr6: netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}), 64),
			MAC:   net.HardwareAddr{0x02, 0, 0, 0, 0, byte(i)},
			port:  fmt.Sprintf("p%d", i)}
		l.mustIP("netns", "add", h.NS)
		l.made = append(l.made, h.NS)
		// DAD off before the veth arrives, so its link-local address (the
		// VRRPv3/IPv6 source) and static addresses are usable at once.
		l.must("ip", "netns", "exec", h.NS, "sysctl", "-q", "-w",
			"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
		l.mustIP("-n", l.Switch, "link", "add", h.port, "type", "veth", "peer", "name", h.Ifname,
			"address", h.MAC.String(), "netns", h.NS)
		l.mustIP("-n", l.Switch, "link", "set", h.port, "master", "br0", "up")
		l.mustIP("-n", h.NS, "link", "set", "lo", "up")
		l.mustIP("-n", h.NS, "addr", "add", h.Addr4.String(), "dev", h.Ifname)
		l.mustIP("-n", h.NS, "addr", "add", h.Addr6.String(), "dev", h.Ifname, "nodad")
		l.mustIP("-n", h.NS, "link", "set", h.Ifname, "up")
		l.Hosts = append(l.Hosts, h)
	}
	return l
}

func (l *Lab) must(name string, args ...string) {
	l.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("netlab: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func (l *Lab) mustIP(args ...string) { l.t.Helper(); l.must("ip", args...) }

// Cleanup deletes every namespace the lab created. New registers it with
// t.Cleanup; calling it again is harmless.
func (l *Lab) Cleanup() {
	for i := len(l.made) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "del", l.made[i]).CombinedOutput(); err != nil {
			l.t.Logf("netlab: delete namespace %s: %v %s", l.made[i], err, out)
		}
	}
	l.made = nil
}

// Command returns a command that runs name inside the host's namespace.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Run runs a command in the host and returns its combined output.
func (h *Host) Run(name string, args ...string) (string, error) {
	out, err := h.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), h.NS, err, out)
	}
	return string(out), nil
}

// MustRun is Run failing the test on error.
func (h *Host) MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := h.Run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Reach checks that a answers from the host: it opens a TCP connection to
// port 1 with curl (ping is not installed everywhere); a refused
// connection counts as an answer. It fills the host's neighbour table.
func (h *Host) Reach(a netip.Addr) error {
	url := "http://" + netip.AddrPortFrom(a, 1).String() + "/"
	err := h.Command("curl", "-s", "-o", "/dev/null", "--connect-timeout", "1", url).Run()
	var exit *exec.ExitError
	if err == nil || (errors.As(err, &exit) && exit.ExitCode() == 7) { // 7: connection refused
		return nil
	}
	return fmt.Errorf("%v does not answer from %s: %w", a, h.NS, err)
}

// DialARP opens an ARP socket on the host's lab interface, to watch the
// gratuitous ARPs a VRRP master sends.
func (h *Host) DialARP() (*arp.Client, error) {
	var c *arp.Client
	err := h.Do(func() error {
		ifi, err := net.InterfaceByName(h.Ifname)
		if err != nil {
			return err
		}
		c, err = arp.Dial(ifi)
		return err
	})
	return c, err
}

// Do runs fn on an OS thread that has entered the host's network
// namespace, so sockets fn opens live in the host (they keep working from
// any goroutine afterwards). The thread is never reused: it ends with fn.
func (h *Host) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread dies with this goroutine
		f, err := os.Open("/run/netns/" + h.NS)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter %s: %w", h.NS, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Process is a long-running command started in a host.
type Process struct {
	Cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// Start starts name in the host; a t.Cleanup kills it by PID (SIGKILL) if
// it is still running, and logs its output when the test failed.
func (h *Host) Start(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	p := &Process{Cmd: h.Command(name, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.Cmd.Stdout, p.Cmd.Stderr = p.out, p.out
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s in %s: %v", name, h.NS, err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("output of %s in %s:\n%s", name, h.NS, p.Output())
		}
	})
	return p
}

// Signal sends sig to the process (by PID).
func (p *Process) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	return syscall.Kill(p.Cmd.Process.Pid, sig)
}

// Kill sends SIGKILL and waits for the process to end.
func (p *Process) Kill() {
	if p.Signal(syscall.SIGKILL) == nil {
		<-p.done
	}
}

// Wait waits up to d for the process to exit and returns its exit error;
// it returns os.ErrDeadlineExceeded if it is still running.
func (p *Process) Wait(d time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		return os.ErrDeadlineExceeded
	}
}

// Output is everything the process wrote so far.
func (p *Process) Output() string { return p.out.String() }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Addrs lists the addresses on ifname in the host.
func (h *Host) Addrs(ifname string) ([]netip.Prefix, error) {
	out, err := h.Command("ip", "-j", "addr", "show", "dev", ifname).Output()
	if err != nil {
		return nil, fmt.Errorf("ip addr show dev %s in %s: %w", ifname, h.NS, err)
	}
	var links []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, err
	}
	var ps []netip.Prefix
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if ip, err := netip.ParseAddr(a.Local); err == nil {
				ps = append(ps, netip.PrefixFrom(ip, a.PrefixLen))
			}
		}
	}
	return ps, nil
}

// HasAddr says whether the host's lab interface holds a.
func (h *Host) HasAddr(a netip.Addr) bool {
	ps, err := h.Addrs(h.Ifname)
	if err != nil {
		return false
	}
	for _, p := range ps {
		if p.Addr() == a {
			return true
		}
	}
	return false
}

// Neighbour is one entry of a host's neighbour table.
type Neighbour struct {
	Addr  netip.Addr
	MAC   net.HardwareAddr
	State []string
}

// Neighbours lists the host's neighbour table on its lab interface.
func (h *Host) Neighbours() ([]Neighbour, error) {
	out, err := h.Command("ip", "-j", "neigh", "show", "dev", h.Ifname).Output()
	if err != nil {
		return nil, fmt.Errorf("ip neigh show in %s: %w", h.NS, err)
	}
	var entries []struct {
		Dst    string   `json:"dst"`
		LLAddr string   `json:"lladdr"`
		State  []string `json:"state"`
	}
	if err := json.Unmarshal(out, &entries); err != nil {
		return nil, err
	}
	var ns []Neighbour
	for _, e := range entries {
		a, err := netip.ParseAddr(e.Dst)
		if err != nil {
			continue
		}
		mac, _ := net.ParseMAC(e.LLAddr)
		ns = append(ns, Neighbour{Addr: a, MAC: mac, State: e.State})
	}
	return ns, nil
}

// NeighbourMAC is the MAC the host's neighbour table has for a, or nil.
func (h *Host) NeighbourMAC(a netip.Addr) (net.HardwareAddr, error) {
	ns, err := h.Neighbours()
	if err != nil {
		return nil, err
	}
	for _, n := range ns {
		if n.Addr == a {
			return n.MAC, nil
		}
	}
	return nil, nil
}

// LinkDown sets the host's lab interface down (a link flap, as seen by
// the host: its interface loses the link).
func (h *Host) LinkDown() error {
	_, err := h.Run("ip", "link", "set", h.Ifname, "down")
	return err
}

// LinkUp sets the host's lab interface up again.
func (h *Host) LinkUp() error {
	_, err := h.Run("ip", "link", "set", h.Ifname, "up")
	return err
}

// PortDown cuts the host's cable at the switch: the host's interface stays
// administratively up but loses carrier.
func (h *Host) PortDown() error {
	_, err := exec.Command("ip", "-n", h.lab.Switch, "link", "set", h.port, "down").CombinedOutput()
	return err
}

// PortUp plugs the cable back in.
func (h *Host) PortUp() error {
	_, err := exec.Command("ip", "-n", h.lab.Switch, "link", "set", h.port, "up").CombinedOutput()
	return err
}
