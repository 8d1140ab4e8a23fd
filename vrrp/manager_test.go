package vrrp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// fakeNet is a shared link: an advert written on a node's socket reaches
// the sockets of the other nodes whose link is up, on the same interface
// name and family: every joined one when sent to the group, the socket of
// the addressed node when unicast (TTL 255). As with multicast loop off, a
// node does not hear itself.
type fakeNet struct {
	mu    sync.Mutex
	conns []*fakeConn
}

type fakePkt struct {
	b []byte
	r received
}

type fakeConn struct {
	net    *fakeNet
	node   *fakeOS
	ifname string
	family int
	joined bool // guarded by net.mu
	in     chan fakePkt
	closed chan struct{}
	once   sync.Once
}

func (c *fakeConn) Read(b []byte) (int, received, error) {
	select {
	case p := <-c.in:
		return copy(b, p.b), p.r, nil
	case <-c.closed:
		return 0, received{}, net.ErrClosed
	}
}

func (c *fakeConn) Write(b []byte, src, dst netip.Addr) error {
	if !c.node.linkUp() {
		return os.ErrDeadlineExceeded
	}
	c.net.deliver(c, b, src, dst)
	return nil
}

func (c *fakeConn) Filter([]netip.Addr) error { return nil }

func (c *fakeConn) Join(on bool) error {
	c.node.mu.Lock()
	err := c.node.joinErr
	c.node.mu.Unlock()
	if err != nil {
		return err
	}
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	c.joined = on
	return nil
}

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	c.net.conns = slices.DeleteFunc(c.net.conns, func(o *fakeConn) bool { return o == c })
	return nil
}

func (n *fakeNet) deliver(from *fakeConn, b []byte, src, dst netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns {
		if c.node == from.node || c.ifname != from.ifname || c.family != from.family || !c.node.linkUp() {
			continue
		}
		if dst.IsMulticast() && !c.joined || !dst.IsMulticast() && dst != c.node.addr {
			continue
		}
		select {
		case c.in <- fakePkt{b: slices.Clone(b), r: received{Src: src, Dst: dst, TTL: 255}}:
		default:
		}
	}
}

// inject sends raw bytes to the group as if from src: every joined socket
// gets them.
func (n *fakeNet) inject(b []byte, src netip.Addr, ttl int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns {
		if c.joined {
			c.in <- fakePkt{b: b, r: received{Src: src, Dst: Group4, TTL: ttl}}
		}
	}
}

// fakeOS is one node's system: its address, link state and VIPs.
type fakeOS struct {
	net   *fakeNet
	addr  netip.Addr
	mu    sync.Mutex
	down  bool
	vips  map[netip.Prefix]time.Duration
	devs  map[netip.Prefix]string // device each VIP is on
	opens int
	garps int
	// joinErr makes joining the group fail, primaryErr finding the
	// source address, linkErr querying the link.
	joinErr, primaryErr, linkErr error
}

func newFakeOS(n *fakeNet, addr string) *fakeOS {
	return &fakeOS{net: n, addr: netip.MustParseAddr(addr), vips: map[netip.Prefix]time.Duration{}, devs: map[netip.Prefix]string{}}
}

func (o *fakeOS) linkUp() bool { o.mu.Lock(); defer o.mu.Unlock(); return !o.down }

func (o *fakeOS) setLink(up bool) { o.mu.Lock(); o.down = !up; o.mu.Unlock() }

func (o *fakeOS) Open(ifname string, family int) (advertConn, error) {
	o.mu.Lock()
	o.opens++
	o.mu.Unlock()
	c := &fakeConn{net: o.net, node: o, ifname: ifname, family: family, in: make(chan fakePkt, 64), closed: make(chan struct{})}
	o.net.mu.Lock()
	o.net.conns = append(o.net.conns, c)
	o.net.mu.Unlock()
	return c, nil
}

func (o *fakeOS) PrimaryAddr(string, int, []netip.Addr) (netip.Addr, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.addr, o.primaryErr
}
func (o *fakeOS) LinkUp(string) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.down, o.linkErr
}

func (o *fakeOS) AddVIP(dev string, p netip.Prefix, life time.Duration) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.vips[p] = life
	o.devs[p] = dev
	return nil
}

func (o *fakeOS) DelVIP(_ string, p netip.Prefix) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.vips, p)
	return nil
}

func (o *fakeOS) HasVIP(_ string, a netip.Addr) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for p := range o.vips {
		if p.Addr() == a {
			return true, nil
		}
	}
	return false, nil
}

func (o *fakeOS) Announce(_ string, _ netip.Addr, count int) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.garps += count
	return nil
}

func (o *fakeOS) held() []netip.Prefix {
	o.mu.Lock()
	defer o.mu.Unlock()
	var ps []netip.Prefix
	for p := range o.vips {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return ps
}

var testVIP = netip.MustParsePrefix("192.0.2.50/24")

// testAdvert is the advert interval of the fake-network tests. For the
// backup (priority 100) Skew_Time is 30ms and Master_Down_Interval 180ms:
// a takeover faster than the latter proves the fast path (priority 0, or
// preemption of a lowered master) was taken.
const (
	testAdvert     = 50 * time.Millisecond
	testMasterDown = 3*testAdvert + 156*testAdvert/256
)

func testConfig(prio uint8) Config {
	return Config{Name: "VI_1", Interface: "eth0", VRID: 51, Priority: prio, Version: 3,
		AdvertInterval: testAdvert, Preempt: true, Family: 4,
		VIPs: []VIP{{Prefix: testVIP}}, GARPMasterRepeat: 2}
}

type testNode struct {
	m  *Manager
	os *fakeOS
}

func startTestNode(t *testing.T, n *fakeNet, addr string, cfgs ...Config) *testNode {
	t.Helper()
	o := newFakeOS(n, addr)
	m := newManager(zaptest.NewLogger(t).Named(addr), o)
	if err := m.Apply(cfgs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return &testNode{m: m, os: o}
}

func (tn *testNode) state() string {
	st := tn.m.Status()
	if len(st) == 0 {
		return "none"
	}
	return st[0].State
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("after %v: %s never happened", d, what)
		}
	}
}

func electA(t *testing.T) (a, b *testNode, n *fakeNet) {
	t.Helper()
	n = &fakeNet{}
	a = startTestNode(t, n, "192.0.2.1", testConfig(200))
	b = startTestNode(t, n, "192.0.2.2", testConfig(100))
	// Both may be MASTER for a moment at start-up (equal start, no
	// adverts yet); then a alone, with the VIP.
	eventually(t, time.Second, "a MASTER with the VIP, b BACKUP without", func() bool {
		return a.state() == "MASTER" && b.state() == "BACKUP" &&
			slices.Equal(a.os.held(), []netip.Prefix{testVIP}) && len(b.os.held()) == 0
	})
	return a, b, n
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestManagerStopHandsOverWithPriorityZero(t *testing.T) {
	a, b, _ := electA(t)
	start := time.Now()
	a.m.Stop()
	if len(a.os.held()) != 0 {
		t.Fatal("stopped master kept its VIP")
	}
	eventually(t, time.Second, "b MASTER", func() bool { return b.state() == "MASTER" })
	if took := time.Since(start); took >= testMasterDown {
		t.Errorf("takeover after a priority-0 advert took %v", took)
	}
}

func TestManagerReloadKeepsMasterAndAppliesChanges(t *testing.T) {
	a, b, _ := electA(t)
	var transitions []Transition
	var mu sync.Mutex
	a.m.OnTransition(func(tr Transition) {
		a.m.Status() // allowed from the callback: must not deadlock
		mu.Lock()
		transitions = append(transitions, tr)
		mu.Unlock()
	})
	cfg := testConfig(150)
	cfg.Name = "renamed"
	added := netip.MustParsePrefix("192.0.2.51/24")
	cfg.VIPs = []VIP{{Prefix: added}}
	if err := a.m.Apply([]Config{cfg}); err != nil {
		t.Fatal(err)
	}
	st := a.m.Status()[0]
	if st.Name != "renamed" || st.State != "MASTER" || st.EffectivePriority != 150 {
		t.Fatalf("after reload: %+v", st)
	}
	if got := a.os.held(); !slices.Equal(got, []netip.Prefix{added}) {
		t.Fatalf("VIPs after reload %v, want only %v", got, added)
	}
	time.Sleep(100 * time.Millisecond)
	if b.state() != "BACKUP" || a.state() != "MASTER" {
		t.Fatalf("reload caused a switchover: a %s, b %s", a.state(), b.state())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(transitions) != 0 {
		t.Fatalf("reload made transitions %+v", transitions)
	}
	if b.m.Status()[0].PeerMismatch == 0 {
		t.Fatal("b did not report the peer configuration mismatch (other VIP list)")
	}
}

func TestManagerReloadRemovingInstanceStepsDown(t *testing.T) {
	a, b, _ := electA(t)
	if err := a.m.Apply(nil); err != nil {
		t.Fatal(err)
	}
	if len(a.os.held()) != 0 || len(a.m.Status()) != 0 {
		t.Fatalf("removed instance left %v / %v", a.os.held(), a.m.Status())
	}
	start := time.Now()
	eventually(t, time.Second, "b MASTER", func() bool { return b.state() == "MASTER" })
	if took := time.Since(start); took >= testMasterDown {
		t.Errorf("takeover after the removed instance's priority-0 advert took %v", took)
	}
}

func TestManagerApplyErrorChangesNothing(t *testing.T) {
	a, _, _ := electA(t)
	bad := testConfig(200)
	bad.AuthPass = "nope" // not allowed with version 3
	dup := testConfig(100)
	if err := a.m.Apply([]Config{bad, dup}); err == nil {
		t.Fatal("invalid config accepted")
	}
	if a.state() != "MASTER" || a.m.Status()[0].Priority != 200 {
		t.Fatalf("failed Apply changed the instance: %+v", a.m.Status()[0])
	}
}

func TestManagerSetTrack(t *testing.T) {
	a, b, _ := electA(t)
	a.m.SetTrack("listener:443", nil, true, 0)
	if a.state() != "FAULT" || len(a.os.held()) != 0 {
		t.Fatalf("a after fault: %s %v", a.state(), a.os.held())
	}
	eventually(t, testMasterDown, "b MASTER", func() bool { return b.state() == "MASTER" })
	a.m.SetTrack("listener:443", nil, false, 0)
	eventually(t, time.Second, "a MASTER again (preempt)", func() bool { return a.state() == "MASTER" })
	eventually(t, time.Second, "b BACKUP", func() bool { return b.state() == "BACKUP" })

	// A negative weight below the backup's priority: b preempts within
	// Skew_Time plus one advert.
	start := time.Now()
	a.m.SetTrack("upstream:app", []string{"VI_1"}, false, -150)
	eventually(t, time.Second, "b MASTER after a's priority fell", func() bool { return b.state() == "MASTER" })
	if took := time.Since(start); took >= testMasterDown {
		t.Errorf("preemption of a lowered master took %v", took)
	}
	eventually(t, time.Second, "a BACKUP with priority 50", func() bool {
		st := a.m.Status()[0]
		return st.EffectivePriority == 50 && st.State == "BACKUP"
	})
	// A track for other instances does not touch this one.
	a.m.SetTrack("other", []string{"VI_2"}, true, 0)
	if a.state() == "FAULT" {
		t.Fatal("a track for VI_2 faulted VI_1")
	}
}

func TestManagerResignKeepsVIPsUntilNewMaster(t *testing.T) {
	a, b, _ := electA(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	a.m.Resign(ctx)
	if ctx.Err() != nil {
		t.Fatal("Resign waited for its deadline")
	}
	// b's advert as MASTER ended the Resign; its status follows at once.
	eventually(t, testAdvert, "b MASTER", func() bool { return b.state() == "MASTER" })
	if len(a.os.held()) != 1 {
		t.Fatal("resigned master released its VIP before Release")
	}
	a.m.Release()
	if len(a.os.held()) != 0 {
		t.Fatal("Release left the VIP")
	}
	time.Sleep(100 * time.Millisecond)
	if a.state() == "MASTER" {
		t.Fatal("resigned instance became master again")
	}
}

// A link query that fails (here EMFILE: the process is out of file
// descriptors) says nothing about the link: the master keeps its state,
// its socket and its VIP; and when a fault then comes from elsewhere (a
// listener that cannot accept), the priority-0 advert still goes out on
// that socket, so the backup takes over within Skew_Time.
func TestManagerLinkQueryErrorKeepsState(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"EMFILE", &os.SyscallError{Syscall: "socket", Err: syscall.EMFILE}},
		{"ENOBUFS", syscall.ENOBUFS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, _ := electA(t)
			a.os.mu.Lock()
			a.os.linkErr = tc.err
			a.os.mu.Unlock()
			time.Sleep(4 * linkPollInterval)
			st, ifs := a.m.Status()[0], a.m.Interfaces()[0]
			if st.State != "MASTER" || len(st.Faults) != 0 || b.state() != "BACKUP" {
				t.Fatalf("after failed link queries: a %s (faults %v), b %s; want MASTER, BACKUP", st.State, st.Faults, b.state())
			}
			if !ifs.Open || ifs.Opens != 1 {
				t.Fatalf("after failed link queries the socket is open=%v, opened %d times; want kept open", ifs.Open, ifs.Opens)
			}
			if !slices.Equal(a.os.held(), []netip.Prefix{testVIP}) {
				t.Fatalf("a holds %v, want %v", a.os.held(), testVIP)
			}
			start := time.Now()
			a.m.SetTrack("listener", nil, true, 0)
			eventually(t, time.Second, "b MASTER", func() bool { return b.state() == "MASTER" })
			if took := time.Since(start); took >= testMasterDown {
				t.Errorf("takeover after a FAULT with failing link queries took %v: no priority-0 advert", took)
			}
			if a.state() != "FAULT" || len(a.os.held()) != 0 {
				t.Fatalf("a %s holding %v, want FAULT without VIPs", a.state(), a.os.held())
			}
		})
	}
}

func TestManagerLinkDownMeansFault(t *testing.T) {
	a, b, _ := electA(t)
	a.os.setLink(false)
	eventually(t, time.Second, "a FAULT", func() bool { return a.state() == "FAULT" })
	eventually(t, time.Second, "b MASTER", func() bool { return b.state() == "MASTER" })
	if len(a.os.held()) != 0 {
		t.Fatal("a kept the VIP in FAULT")
	}
	a.os.setLink(true)
	eventually(t, time.Second, "a MASTER again", func() bool { return a.state() == "MASTER" })
	eventually(t, time.Second, "b BACKUP again", func() bool { return b.state() == "BACKUP" })
	a.os.mu.Lock()
	opens := a.os.opens
	a.os.mu.Unlock()
	if opens != 2 {
		t.Fatalf("socket opened %d times, want a fresh one (group joined again) after the link came back", opens)
	}
}

func TestManagerDropsBadAdverts(t *testing.T) {
	a, b, n := electA(t)
	p := Packet{Version: 3, VRID: 51, Priority: 254, Interval: testAdvert, Addrs: []netip.Addr{testVIP.Addr()}}
	src := netip.MustParseAddr("192.0.2.9")
	good, _ := p.Marshal(src, Group4, ChecksumPseudoHeader)
	bad := slices.Clone(good)
	bad[7] ^= 0xff
	for range 50 {
		n.inject(good, src, 64)          // crossed a router
		n.inject(bad, src, 255)          // bad checksum
		n.inject(good[:5], src, 255)     // truncated
		n.inject([]byte{0x41}, src, 255) // junk
	}
	// Every packet is dropped: by a receive check, or as a flood the
	// loop could not keep up with; the junk, too short to name a VRID,
	// on the interface.
	eventually(t, time.Second, "drops counted", func() bool {
		d := a.m.Status()[0].Drops
		ifd := a.m.Interfaces()[0].Drops
		return d[DropBadTTL]+d[DropBadChecksum]+d[DropTruncated]+d[DropQueueFull] == 150 && d[DropBadTTL] > 0 && d[DropBadChecksum] > 0 &&
			ifd[DropTruncated] == 50
	})
	if a.state() != "MASTER" || b.state() != "BACKUP" {
		t.Fatalf("bad adverts changed the election: a %s, b %s", a.state(), b.state())
	}
}

func TestManagerScriptTracking(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "broken")
	script := filepath.Join(dir, "check.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ntest ! -e "+flag+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	n := &fakeNet{}
	cfg := testConfig(200)
	cfg.Scripts = []ScriptConfig{{Name: "chk", Path: script, Interval: 10 * time.Millisecond, Timeout: time.Second, Weight: -150, Fall: 2, Rise: 2}}
	a := startTestNode(t, n, "192.0.2.1", cfg)
	b := startTestNode(t, n, "192.0.2.2", testConfig(100))
	eventually(t, time.Second, "a MASTER", func() bool { return a.state() == "MASTER" })
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "b MASTER after a's script failed", func() bool { return b.state() == "MASTER" })
	os.Remove(flag)
	eventually(t, 2*time.Second, "a MASTER after its script recovered", func() bool { return a.state() == "MASTER" })
}

func TestScriptFileChecks(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range []struct {
		mode os.FileMode
		gid  int // -1: leave it (root's when we are root)
		ok   bool
	}{
		{0o755, -1, true}, {0o777, -1, false}, {0o757, -1, false},
		{0o775, 0, true},      // group root: only root
		{0o775, 65534, false}, // another group may change it
		{0o755, 65534, true},
	} {
		if tc.gid >= 0 && os.Geteuid() != 0 {
			continue // chown needs root
		}
		p := filepath.Join(dir, strconv.Itoa(i))
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if tc.gid >= 0 {
			os.Chown(p, 0, tc.gid)
		}
		os.Chmod(p, tc.mode)
		err := checkScriptFile(p)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, errScriptRefused) {
			t.Errorf("mode %v gid %d: %v, want ok=%v", tc.mode, tc.gid, err, tc.ok)
		}
	}
}

func TestAutoVIPLifetime(t *testing.T) {
	for _, tc := range []struct {
		advert time.Duration
		prio   uint8
		want   time.Duration
	}{
		{time.Second, 100, 4 * time.Second},        // 3.61s
		{100 * time.Millisecond, 100, time.Second}, // 0.36s
		{time.Second, 254, 4 * time.Second},        // 3.008s
		{3 * time.Second, 1, 12 * time.Second},     // 11.99s
	} {
		if got := AutoVIPLifetime(tc.advert, tc.prio); got != tc.want {
			t.Errorf("AutoVIPLifetime(%v, %d) = %v, want %v", tc.advert, tc.prio, got, tc.want)
		}
	}
}

func TestManagerNotifyScripts(t *testing.T) {
	type call struct {
		cmdline string
		args    []string
		user    string
	}
	var mu sync.Mutex
	var calls []call
	n := &fakeNet{}
	o := newFakeOS(n, "192.0.2.1")
	m := newManager(zaptest.NewLogger(t), o)
	m.runScript = func(_ context.Context, cmdline string, args []string, user string) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{cmdline, args, user})
		return nil
	}
	cfg := testConfig(200)
	cfg.NotifyMaster = "/etc/vipgate/master.sh --now"
	cfg.NotifyBackup = "/etc/vipgate/backup.sh"
	cfg.Notify = "/etc/vipgate/notify.sh"
	cfg.ScriptUser = "nobody"
	if err := m.Apply([]Config{cfg}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "MASTER", func() bool { return m.Status()[0].State == "MASTER" })
	m.Stop()
	mu.Lock()
	defer mu.Unlock()
	want := []call{
		{"/etc/vipgate/backup.sh", nil, "nobody"},
		{"/etc/vipgate/notify.sh", []string{"INSTANCE", "VI_1", "BACKUP", "200"}, "nobody"},
		{"/etc/vipgate/master.sh --now", nil, "nobody"},
		{"/etc/vipgate/notify.sh", []string{"INSTANCE", "VI_1", "MASTER", "200"}, "nobody"},
		{"/etc/vipgate/notify.sh", []string{"INSTANCE", "VI_1", "STOP", "200"}, "nobody"},
	}
	if len(calls) != len(want) {
		t.Fatalf("notify calls %+v, want %+v", calls, want)
	}
	for i := range want {
		if calls[i].cmdline != want[i].cmdline || !slices.Equal(calls[i].args, want[i].args) || calls[i].user != want[i].user {
			t.Errorf("call %d: %+v, want %+v", i, calls[i], want[i])
		}
	}
}

func TestManagerMissingInterfaceIsFault(t *testing.T) {
	n := &fakeNet{}
	o := newFakeOS(n, "192.0.2.1")
	o.setLink(false) // the fake's link state stands for "no such interface" too
	m := newManager(zaptest.NewLogger(t), o)
	if err := m.Apply([]Config{testConfig(200)}); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	time.Sleep(100 * time.Millisecond)
	st := m.Status()[0]
	if st.State != "FAULT" || !slices.Contains(st.Faults, "interface:eth0") || len(o.held()) != 0 {
		t.Fatalf("status %+v, VIPs %v", st, o.held())
	}
}

func TestRunScriptAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755) // nobody must reach the script
	os.Chmod(filepath.Dir(dir), 0o755)
	script := filepath.Join(dir, "uid.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ntest \"$(id -un)\" = \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := runScript(ctx, script+" nobody", nil, "nobody"); err != nil {
		t.Fatalf("script as nobody: %v", err)
	}
	if err := runScript(ctx, script+" root", nil, "nobody"); err == nil {
		t.Fatal("the script ran as root although script_user is nobody")
	}
	os.Chmod(script, 0o777)
	if err := runScript(ctx, script+" nobody", nil, "nobody"); err == nil {
		t.Fatal("a world-writable script ran")
	}
}

func TestManagerVIPDevicesLifetimeAndGARP(t *testing.T) {
	n := &fakeNet{}
	cfg := testConfig(200)
	other := netip.MustParsePrefix("192.0.2.7/32")
	cfg.VIPs = append(cfg.VIPs, VIP{Prefix: other, Device: "eth1"})
	cfg.VIPLifetime = 3 * time.Second
	cfg.GARPMasterRepeat = 3
	a := startTestNode(t, n, "192.0.2.1", cfg)
	eventually(t, time.Second, "MASTER", func() bool { return a.state() == "MASTER" })
	a.os.mu.Lock()
	defer a.os.mu.Unlock()
	if a.os.devs[testVIP] != "eth0" || a.os.devs[other] != "eth1" {
		t.Errorf("VIP devices %v, want the instance's interface and the dev form's eth1", a.os.devs)
	}
	if a.os.vips[testVIP] != 3*time.Second {
		t.Errorf("VIP lifetime %v, want 3s", a.os.vips[testVIP])
	}
	if a.os.garps != 6 {
		t.Errorf("%d announcements, want 3 per VIP", a.os.garps)
	}
}

// The admin layer may read Status from a transition callback, even while
// the transition comes from a Manager call that waits for the instance.
func TestManagerStatusFromTransitionCallback(t *testing.T) {
	o := newFakeOS(&fakeNet{}, "192.0.2.1")
	m := newManager(zaptest.NewLogger(t), o)
	states := make(chan string, 16)
	m.OnTransition(func(tr Transition) {
		st := m.Status()
		if len(st) == 1 {
			states <- tr.To.String()
		}
	})
	if err := m.Apply([]Config{testConfig(200)}); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	done := make(chan struct{})
	go func() { m.SetTrack("listener", nil, true, 0); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("SetTrack deadlocked with a callback reading Status")
	}
	eventually(t, time.Second, "FAULT seen by the callback", func() bool {
		for {
			select {
			case s := <-states:
				if s == "FAULT" {
					return true
				}
			default:
				return false
			}
		}
	})
}

func TestManagerHandoverRejoinsAsBackup(t *testing.T) {
	a, b, _ := electA(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if !a.m.Resign(ctx) {
		t.Fatal("Resign reports nobody took over; b did")
	}
	a.m.Release()
	a.m.Rejoin()
	if a.state() != "BACKUP" || len(a.os.held()) != 0 {
		t.Fatalf("after handover: a %s holding %v", a.state(), a.os.held())
	}
	time.Sleep(5 * testAdvert)
	if a.state() != "BACKUP" || b.state() != "MASTER" {
		t.Fatalf("VIPs bounced back: a %s, b %s", a.state(), b.state())
	}
	b.m.Stop()
	eventually(t, time.Second, "a MASTER after b stopped", func() bool { return a.state() == "MASTER" })
}

// A handover on a MASTER with no backup to take over (peer down): Resign
// says so after Master_Down_Interval, and Rejoin keeps the node MASTER
// with its VIP (the daemon then releases nothing).
func TestManagerHandoverNobodyTakesKeepsMaster(t *testing.T) {
	n := &fakeNet{}
	a := startTestNode(t, n, "192.0.2.1", testConfig(200))
	eventually(t, time.Second, "a MASTER", func() bool { return a.state() == "MASTER" })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if a.m.Resign(ctx) {
		t.Fatal("Resign reports a new master; there is none")
	}
	a.m.Rejoin()
	if a.state() != "MASTER" || !slices.Equal(a.os.held(), []netip.Prefix{testVIP}) {
		t.Fatalf("after a handover nobody took: a is %s holding %v", a.state(), a.os.held())
	}
}

// configVRID is testConfig for another virtual router: its own VRID, name
// and VIP.
func configVRID(vrid uint8, prio uint8) Config {
	c := testConfig(prio)
	c.Name = "VI_" + strconv.Itoa(int(vrid))
	c.VRID = vrid
	c.VIPs = []VIP{{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, vrid}), 24)}}
	return c
}

func (tn *testNode) instance(name string) InstanceStatus {
	for _, st := range tn.m.Status() {
		if st.Name == name {
			return st
		}
	}
	return InstanceStatus{State: "none"}
}

func (tn *testNode) opens() int {
	tn.os.mu.Lock()
	defer tn.os.mu.Unlock()
	return tn.os.opens
}

// Two virtual routers on one interface share one socket: each elects its
// own master, neither counts the other's adverts as drops, and an advert
// for a VRID nobody here has is counted once, on the interface.
func TestManagerSharedSocketDemux(t *testing.T) {
	n := &fakeNet{}
	a := startTestNode(t, n, "192.0.2.1", configVRID(51, 200), configVRID(52, 100))
	b := startTestNode(t, n, "192.0.2.2", configVRID(51, 100), configVRID(52, 200))
	eventually(t, time.Second, "a MASTER of 51, b MASTER of 52", func() bool {
		return a.instance("VI_51").State == "MASTER" && a.instance("VI_52").State == "BACKUP" &&
			b.instance("VI_51").State == "BACKUP" && b.instance("VI_52").State == "MASTER"
	})
	time.Sleep(5 * testAdvert)
	for _, node := range []*testNode{a, b} {
		if node.opens() != 1 {
			t.Errorf("%v: %d sockets opened for one interface", node.os.addr, node.opens())
		}
		for _, st := range node.m.Status() {
			if len(st.Drops) != 0 || st.AdvertsReceived == 0 && st.State == "BACKUP" {
				t.Errorf("%v %s: drops %v, %d adverts received", node.os.addr, st.Name, st.Drops, st.AdvertsReceived)
			}
		}
		ifs := node.m.Interfaces()
		if len(ifs) != 1 || !ifs[0].Open || !ifs[0].Joined || !slices.Equal(ifs[0].VRIDs, []int{51, 52}) || len(ifs[0].Drops) != 0 {
			t.Errorf("%v: interfaces %+v", node.os.addr, ifs)
		}
	}

	stranger := netip.MustParseAddr("192.0.2.9")
	p := Packet{Version: 3, VRID: 99, Priority: 100, Interval: testAdvert, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.99")}}
	pkt, err := p.Marshal(stranger, Group4, ChecksumPseudoHeader)
	if err != nil {
		t.Fatal(err)
	}
	n.inject(pkt, stranger, 255)
	eventually(t, time.Second, "the stranger's advert counted on a's interface", func() bool {
		return a.m.Interfaces()[0].Drops[DropWrongVRID] == 1
	})
	time.Sleep(2 * testAdvert)
	if d := a.m.Interfaces()[0].Drops; len(d) != 1 || d[DropWrongVRID] != 1 {
		t.Errorf("interface drops %v, want one wrong_vrid", d)
	}
	for _, st := range a.m.Status() {
		if len(st.Drops) != 0 {
			t.Errorf("%s counted the advert for VRID 99: %v", st.Name, st.Drops)
		}
	}
}

// A link flap reopens the shared socket once for all its instances, and
// both recover.
func TestManagerSharedSocketLinkFlap(t *testing.T) {
	n := &fakeNet{}
	a := startTestNode(t, n, "192.0.2.1", configVRID(51, 200), configVRID(52, 200))
	b := startTestNode(t, n, "192.0.2.2", configVRID(51, 100), configVRID(52, 100))
	bothMaster := func(tn *testNode) bool {
		return tn.instance("VI_51").State == "MASTER" && tn.instance("VI_52").State == "MASTER"
	}
	eventually(t, time.Second, "a MASTER of both", func() bool { return bothMaster(a) })
	a.os.setLink(false)
	eventually(t, time.Second, "a FAULT, b MASTER of both", func() bool {
		return a.instance("VI_51").State == "FAULT" && a.instance("VI_52").State == "FAULT" && bothMaster(b)
	})
	if ifs := a.m.Interfaces(); len(ifs) != 1 || ifs[0].Open {
		t.Fatalf("socket still open with the link down: %+v", ifs)
	}
	a.os.setLink(true)
	eventually(t, time.Second, "a MASTER of both again", func() bool { return bothMaster(a) })
	if got := a.opens(); got != 2 {
		t.Fatalf("socket opened %d times, want 2: once at start, once after the link came back", got)
	}
	if ifs := a.m.Interfaces(); len(ifs) != 1 || !ifs[0].Open || !ifs[0].Joined || ifs[0].Opens != 2 {
		t.Fatalf("interfaces after the flap: %+v", ifs)
	}
}

// Reloads keep the socket while an instance remains on the interface, or
// comes in the same reload; the last instance to go closes it.
func TestManagerSharedSocketReload(t *testing.T) {
	n := &fakeNet{}
	a := startTestNode(t, n, "192.0.2.1", configVRID(51, 200), configVRID(52, 200))
	eventually(t, time.Second, "MASTER of both", func() bool {
		return a.instance("VI_51").State == "MASTER" && a.instance("VI_52").State == "MASTER"
	})
	conns := func() int {
		n.mu.Lock()
		defer n.mu.Unlock()
		return len(n.conns)
	}
	for _, step := range []struct {
		what  string
		cfgs  []Config
		vrids []int
	}{
		{"remove one", []Config{configVRID(51, 200)}, []int{51}},
		{"add one", []Config{configVRID(51, 200), configVRID(53, 200)}, []int{51, 53}},
		{"replace all", []Config{configVRID(54, 200)}, []int{54}},
	} {
		if err := a.m.Apply(step.cfgs); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Second, step.what+": every instance MASTER", func() bool {
			for _, st := range a.m.Status() {
				if st.State != "MASTER" {
					return false
				}
			}
			return true
		})
		ifs := a.m.Interfaces()
		if len(ifs) != 1 || !slices.Equal(ifs[0].VRIDs, step.vrids) || a.opens() != 1 || conns() != 1 {
			t.Fatalf("%s: interfaces %+v, %d opens, %d open sockets; want the first socket kept", step.what, ifs, a.opens(), conns())
		}
	}
	if err := a.m.Apply(nil); err != nil {
		t.Fatal(err)
	}
	if ifs := a.m.Interfaces(); len(ifs) != 0 || conns() != 0 {
		t.Fatalf("after the last instance left: interfaces %+v, %d open sockets", ifs, conns())
	}
}

// The socket joins the group while one of its instances is in multicast
// mode; unicast instances still hear their peers, and only them.
func TestManagerSharedSocketUnicastAndMulticast(t *testing.T) {
	n := &fakeNet{}
	uni := func(vrid, prio uint8, peer string) Config {
		c := configVRID(vrid, prio)
		c.UnicastPeers = []netip.Addr{netip.MustParseAddr(peer)}
		return c
	}
	a := startTestNode(t, n, "192.0.2.1", uni(51, 200, "192.0.2.2"), configVRID(52, 200))
	b := startTestNode(t, n, "192.0.2.2", uni(51, 100, "192.0.2.1"), configVRID(52, 100))
	eventually(t, time.Second, "a MASTER of both, b BACKUP of both", func() bool {
		return a.instance("VI_51").State == "MASTER" && a.instance("VI_52").State == "MASTER" &&
			b.instance("VI_51").State == "BACKUP" && b.instance("VI_52").State == "BACKUP"
	})
	if ifs := a.m.Interfaces(); !ifs[0].Joined {
		t.Fatalf("a multicast instance on the socket, but it is not joined: %+v", ifs)
	}
	// Both unicast now: the group is left, and unicast adverts still flow.
	if err := a.m.Apply([]Config{uni(51, 200, "192.0.2.2"), uni(52, 200, "192.0.2.2")}); err != nil {
		t.Fatal(err)
	}
	if err := b.m.Apply([]Config{uni(51, 100, "192.0.2.1"), uni(52, 100, "192.0.2.1")}); err != nil {
		t.Fatal(err)
	}
	if ifs := a.m.Interfaces(); ifs[0].Joined {
		t.Fatalf("only unicast instances, but the socket is still joined: %+v", ifs)
	}
	received := b.instance("VI_52").AdvertsReceived
	eventually(t, time.Second, "b hears a's unicast adverts for VRID 52", func() bool {
		return b.instance("VI_52").AdvertsReceived > received+2
	})
	// A stranger's advert to the group reaches nobody now.
	stranger := netip.MustParseAddr("192.0.2.9")
	p := Packet{Version: 3, VRID: 51, Priority: 254, Interval: testAdvert, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.51")}}
	pkt, _ := p.Marshal(stranger, Group4, ChecksumPseudoHeader)
	n.inject(pkt, stranger, 255)
	time.Sleep(3 * testAdvert)
	if a.instance("VI_51").State != "MASTER" || len(a.instance("VI_51").Drops) != 0 {
		t.Fatalf("unicast instance affected by a group advert: %+v", a.instance("VI_51"))
	}
}

// A socket that cannot join the group is a socket fault, retried at every
// link poll: FAULT, then MASTER once the join works.
func TestManagerJoinFailureIsFault(t *testing.T) {
	o := newFakeOS(&fakeNet{}, "192.0.2.1")
	o.joinErr = errors.New("no multicast here")
	m := newManager(zaptest.NewLogger(t), o)
	if err := m.Apply([]Config{testConfig(200)}); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	eventually(t, time.Second, "FAULT held by the socket", func() bool {
		st := m.Status()[0]
		return st.State == "FAULT" && slices.Contains(st.Faults, "socket")
	})
	if ifs := m.Interfaces(); ifs[0].Open {
		t.Fatalf("socket left open without the group: %+v", ifs)
	}
	o.mu.Lock()
	o.joinErr = nil
	o.mu.Unlock()
	eventually(t, time.Second, "MASTER once the group is joined", func() bool { return m.Status()[0].State == "MASTER" })
	if ifs := m.Interfaces(); !ifs[0].Open || !ifs[0].Joined {
		t.Fatalf("interfaces %+v", ifs)
	}
}

// Without a source address the instance is in FAULT (retried at every
// poll); the socket it opened still follows the link.
func TestManagerNoSourceAddressIsFault(t *testing.T) {
	o := newFakeOS(&fakeNet{}, "192.0.2.1")
	o.primaryErr = errors.New("no IPv4 address on eth0")
	m := newManager(zaptest.NewLogger(t), o)
	if err := m.Apply([]Config{testConfig(200)}); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	eventually(t, time.Second, "FAULT held by the socket", func() bool {
		st := m.Status()[0]
		return st.State == "FAULT" && slices.Contains(st.Faults, "socket")
	})
	o.setLink(false)
	eventually(t, time.Second, "socket closed with the link down", func() bool { return !m.Interfaces()[0].Open })
	o.mu.Lock()
	o.primaryErr = nil
	o.mu.Unlock()
	o.setLink(true)
	eventually(t, time.Second, "MASTER with an address and the link", func() bool { return m.Status()[0].State == "MASTER" })
	if ifs := m.Interfaces(); !ifs[0].Open || ifs[0].Opens != 2 {
		t.Fatalf("interfaces %+v, want reopened after the link came back", ifs)
	}
}

// Adverts of this virtual router dropped because the peer is configured
// differently (version, auth_pass, advert_int, a router between) leave
// both nodes MASTER: that is worth a warning, not a debug line. Once per
// minute per peer and reason: they come every advert interval.
func TestPeerMismatchIsWarnedOncePerPeerAndReason(t *testing.T) {
	n := &fakeNet{}
	core, logs := observer.New(zap.WarnLevel)
	m := newManager(zap.New(core), newFakeOS(n, "192.0.2.1"))
	if err := m.Apply([]Config{testConfig(200)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	eventually(t, time.Second, "MASTER", func() bool { return m.Status()[0].State == "MASTER" })
	src := netip.MustParseAddr("192.0.2.9")
	v3 := Packet{Version: 3, VRID: 51, Priority: 100, Interval: testAdvert, Addrs: []netip.Addr{testVIP.Addr()}}
	routed, _ := v3.Marshal(src, Group4, ChecksumPseudoHeader)
	v2 := Packet{Version: 2, VRID: 51, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{testVIP.Addr()}}
	other, _ := v2.Marshal(src, Group4, ChecksumPseudoHeader)
	for range 20 {
		n.inject(routed, src, 64) // crossed a router
		n.inject(other, src, 255) // VRRPv2 peer
		time.Sleep(time.Millisecond)
	}
	eventually(t, time.Second, "drops counted", func() bool {
		d := m.Status()[0].Drops
		return d[DropBadTTL]+d[DropBadVersion]+d[DropQueueFull] == 40
	})
	warned := map[string]int{}
	for _, e := range logs.FilterMessageSnippet("configuration mismatch").All() {
		warned[e.ContextMap()["reason"].(string)]++
	}
	if warned[string(DropBadTTL)] != 1 || warned[string(DropBadVersion)] != 1 || len(warned) != 2 {
		t.Fatalf("warnings by reason %v, want one for bad_ttl and one for bad_version", warned)
	}
}
