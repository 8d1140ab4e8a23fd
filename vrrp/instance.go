package vrrp

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// linkPollInterval is how often tracked interfaces are looked at.
const linkPollInterval = 100 * time.Millisecond

// Transition is one state change, given to OnTransition callbacks.
type Transition struct {
	Instance string
	Key      Key
	From, To State
	Reason   string
	Priority uint8 // effective priority at the time
	At       time.Time
}

// InstanceStatus is a snapshot of one instance for the admin API.
type InstanceStatus struct {
	Name              string                `json:"name"`
	Interface         string                `json:"interface"`
	VRID              uint8                 `json:"virtual_router_id"`
	Family            int                   `json:"family"`
	Version           int                   `json:"version"`
	State             string                `json:"state"`
	Priority          uint8                 `json:"priority"`
	EffectivePriority uint8                 `json:"effective_priority"`
	VIPsHeld          []string              `json:"vips_held"`
	LastTransition    time.Time             `json:"last_transition"`
	LastReason        string                `json:"last_transition_reason"`
	Master            string                `json:"master,omitempty"` // current master's address, ours when MASTER
	AdvertsSent       uint64                `json:"adverts_sent"`
	AdvertsReceived   uint64                `json:"adverts_received"`
	SendErrors        uint64                `json:"send_errors"`
	Drops             map[DropReason]uint64 `json:"drops"`                // adverts for our VRID, by reason (others: InterfaceStatus.Drops)
	PeerMismatch      uint64                `json:"peer_config_mismatch"` // adverts whose VIP list differs from ours
	PeerMismatchFrom  string                `json:"peer_config_mismatch_from,omitempty"`
	Faults            []string              `json:"faults,omitempty"` // tracking sources holding FAULT
}

type rxItem struct {
	b []byte
	r received
}

// instance runs one VRRP instance: a goroutine owning the fsm, the
// scripts and the notify queue. Its adverts come from the shared socket of
// its interface and family (socket.go).
type instance struct {
	m   *Manager
	log *zap.Logger
	os  netOS
	key Key

	cmds chan func()
	rx   chan rxItem
	done chan struct{} // closed when the loop has ended
	wg   sync.WaitGroup

	// Owned by the loop goroutine.
	cfg     Config
	fsm     *fsm
	policy  receivePolicy
	sock    *sharedSocket // acquired in newInstance, released by shutdown
	openGen int           // generation of the socket we last found open; 0 = none
	sockGen int           // generation we send on, with src resolved; 0 = none
	src     netip.Addr
	links   map[string]bool // tracked interface -> up
	// linkErrs are the tracked interfaces whose last query failed (their
	// state in links is the last known one), so that is logged once.
	linkErrs map[string]bool
	held     []VIP // VIPs configured on the system
	resigned []chan struct{}
	scripts  *scriptSet
	notify   *notifier
	stopped  bool
	// lastOpenErr keeps a failing socket from logging every poll.
	lastOpenErr string
	// dropWarned is when adverts dropped for a configuration mismatch
	// were last logged, by reason (under mu: the socket's reader drops
	// off-link packets too). Not by peer: spoofed sources would make it
	// grow, and page the operator, once per packet.
	dropWarned map[DropReason]time.Time

	mu     sync.Mutex
	status InstanceStatus
}

func newInstance(m *Manager, cfg Config) *instance {
	in := &instance{
		m: m, os: m.os, key: cfg.Key(), cfg: cfg,
		log:  m.log.With(zap.String("vrrp", cfg.Name), zap.String("interface", cfg.Interface), zap.Uint8("vrid", cfg.VRID), zap.Int("family", cfg.Family)),
		cmds: make(chan func(), 16), rx: make(chan rxItem, 64),
		done:  make(chan struct{}),
		links: map[string]bool{}, linkErrs: map[string]bool{},
	}
	in.fsm = newFSM(cfg.fsmConfig(cfg.SourceIP))
	in.policy = policyFor(&cfg, cfg.SourceIP)
	in.status = InstanceStatus{Drops: map[DropReason]uint64{}}
	in.notify = newNotifier(m.runScript)
	in.scripts = newScriptSet(in)
	in.updateStatus()
	in.sock = m.acquireSocket(cfg.sockKey())
	in.sock.setMember(in, cfg.VRID, cfg.UnicastPeers)
	return in
}

func policyFor(c *Config, src netip.Addr) receivePolicy {
	rp := receivePolicy{Version: c.Version, VRID: c.VRID, Interval: c.AdvertInterval, Own: src,
		Peers: c.UnicastPeers, VIPs: c.vipAddrs()}
	if c.V3ChecksumAsV2 {
		rp.Checksum = ChecksumAsV2
	}
	if c.Version == 2 && c.AuthPass != "" {
		rp.AuthType, rp.AuthData = AuthTypeSimple, AuthPassData(c.AuthPass)
	}
	return rp
}

// post runs f on the instance's goroutine; false once it has stopped.
func (in *instance) post(f func()) bool {
	select {
	case in.cmds <- f:
		return true
	case <-in.done:
		return false
	}
}

// call runs f on the instance's goroutine and waits for it.
func (in *instance) call(f func()) bool {
	ran := make(chan struct{})
	if !in.post(func() { f(); in.updateStatus(); close(ran) }) {
		return false
	}
	select {
	case <-ran:
		return true
	case <-in.done:
		return false
	}
}

func (in *instance) start() {
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		in.run()
	}()
}

func (in *instance) run() {
	defer close(in.done)
	now := in.m.now()
	in.pollLinks(true)
	in.exec(in.fsm.start(now))
	in.scripts.apply(in.cfg.Scripts)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	poll := time.NewTicker(linkPollInterval)
	defer poll.Stop()
	for !in.stopped {
		in.updateStatus()
		if next := in.fsm.nextDeadline(); next.IsZero() {
			timer.Reset(time.Hour)
		} else {
			timer.Reset(max(next.Sub(in.m.now()), 0))
		}
		select {
		case f := <-in.cmds:
			f()
		case item := <-in.rx:
			in.receive(item)
		case <-timer.C:
			in.exec(in.fsm.timer(in.m.now()))
		case <-poll.C:
			in.pollLinks(false)
		}
	}
	in.updateStatus()
}

// pollLinks notices tracked interfaces going down or up (or away). The
// instance's own interface going down closes the shared socket, coming
// back reopens it (joining the multicast group again): whichever instance
// of the interface sees it first does it, once for all.
//
// A query that fails (out of file descriptors, netlink buffer full) says
// nothing about the link: its last known state stands. Taking it as down
// would close the socket and go to FAULT without the priority-0 advert,
// leaving the backup to wait its whole Master_Down_Interval.
func (in *instance) pollLinks(first bool) {
	names := append([]string{in.cfg.Interface}, in.cfg.TrackInterfaces...)
	for name := range in.links {
		if !slices.Contains(names, name) {
			delete(in.links, name)
			delete(in.linkErrs, name)
			in.exec(in.fsm.setTrack(in.m.now(), "interface:"+name, false, 0))
		}
	}
	for _, name := range names {
		up, err := in.os.LinkUp(name)
		was, known := in.links[name]
		if err != nil {
			// Never seen: down until a query says otherwise.
			up = was
			if !in.linkErrs[name] {
				in.linkErrs[name] = true
				in.log.Warn("cannot query tracked interface: keeping its last known state",
					zap.String("track_interface", name), zap.Bool("known", known), zap.Bool("up", up), zap.Error(err))
			}
		} else if in.linkErrs[name] {
			delete(in.linkErrs, name)
			in.log.Info("tracked interface can be queried again", zap.String("track_interface", name), zap.Bool("up", up))
		}
		in.links[name] = up
		if name == in.cfg.Interface {
			if !up && in.openGen != 0 {
				in.sock.linkDown(in.openGen)
				in.openGen, in.sockGen = 0, 0
			}
			if up {
				in.attach()
			}
		}
		if known && was == up && !first {
			continue
		}
		if !up {
			in.log.Warn("tracked interface down or missing", zap.String("track_interface", name))
		} else if known {
			in.log.Info("tracked interface up again", zap.String("track_interface", name))
		}
		in.exec(in.fsm.setTrack(in.m.now(), "interface:"+name, !up, 0))
	}
}

// attach opens the shared socket if needed and, when it is a new one
// (first use, or reopened after the link came back), takes the source
// address again.
func (in *instance) attach() {
	gen, err := in.sock.ensureOpen()
	if err != nil {
		in.openGen, in.sockGen = 0, 0
		in.socketFault(err)
		return
	}
	in.openGen = gen
	if gen == in.sockGen {
		return
	}
	src := in.cfg.SourceIP
	if !src.IsValid() {
		if src, err = in.os.PrimaryAddr(in.cfg.Interface, in.cfg.Family, in.cfg.vipAddrs()); err != nil {
			in.sockGen = 0
			in.socketFault(err)
			return
		}
	}
	in.sockGen, in.src = gen, src
	in.lastOpenErr = ""
	in.policy.Own = src
	in.fsm.cfg.Primary = src
	if in.fsm.state == StateMaster {
		in.fsm.masterAddr = src
	}
	in.exec(in.fsm.setTrack(in.m.now(), "socket", false, 0))
}

// socketFault holds the instance in FAULT while its socket cannot be
// opened; it is retried at every link poll, logged once per new error.
func (in *instance) socketFault(err error) {
	if msg := err.Error(); msg != in.lastOpenErr {
		in.lastOpenErr = msg
		in.log.Error("cannot open the VRRP socket: FAULT until it can", zap.Error(err))
	}
	in.exec(in.fsm.setTrack(in.m.now(), "socket", true, 0))
}

// detach leaves the shared socket; the last instance on it closes it.
func (in *instance) detach() {
	if in.sock == nil {
		return
	}
	in.sock.removeMember(in, in.cfg.VRID)
	in.m.releaseSocket(in.sock)
	in.sock, in.openGen, in.sockGen = nil, 0, 0
}

// deliver queues an advert from the socket's reader for the loop.
func (in *instance) deliver(item rxItem) {
	select {
	case in.rx <- item:
	default:
		// A flood: the loop is behind, so this one is lost. Counted,
		// and the state machine is unaffected.
		in.mu.Lock()
		in.status.Drops[DropQueueFull]++
		in.mu.Unlock()
	}
}

// dropRouted counts an advert that crossed a router (TTL or hop limit not
// 255) from a source that is not a unicast peer, dropped by the socket's
// reader before the instance's queue: a flood of them from off the link,
// spoofed sources and all, must not push a live master's adverts out of
// the queue (the backup would take the VIP: a split brain). The socket's
// filter drops most of them in the kernel already.
func (in *instance) dropRouted(r received) {
	in.mu.Lock()
	in.status.Drops[DropBadTTL]++
	in.mu.Unlock()
	in.warnMismatch(DropBadTTL, r.Src, dropf(DropBadTTL, "ttl %d from %v", r.TTL, r.Src))
}

func (in *instance) receive(item rxItem) {
	p, mismatch, err := in.policy.check(item.b, item.r)
	if err != nil {
		var de *DropError
		reason := DropReason("error")
		if errors.As(err, &de) {
			reason = de.Reason
		}
		in.mu.Lock()
		in.status.Drops[reason]++
		in.mu.Unlock()
		if peerMismatch(reason) {
			in.warnMismatch(reason, item.r.Src, err)
		} else {
			in.log.Debug("advert dropped", zap.String("reason", string(reason)), zap.Error(err))
		}
		return
	}
	in.mu.Lock()
	in.status.AdvertsReceived++
	if mismatch {
		in.status.PeerMismatch++
		if in.status.PeerMismatchFrom != item.r.Src.String() {
			in.status.PeerMismatchFrom = item.r.Src.String()
			in.mu.Unlock()
			in.log.Warn("peer advertises other virtual addresses: configuration mismatch",
				zap.Stringer("peer", item.r.Src), zap.Any("theirs", p.Addrs), zap.Any("ours", in.policy.VIPs))
			in.mu.Lock()
		}
	} else if in.status.PeerMismatchFrom == item.r.Src.String() {
		// Its addresses match again: a later mismatch is news.
		in.status.PeerMismatchFrom = ""
		in.mu.Unlock()
		in.log.Info("peer advertises our virtual addresses again", zap.Stringer("peer", item.r.Src))
		in.mu.Lock()
	}
	in.mu.Unlock()
	in.exec(in.fsm.advert(in.m.now(), item.r.Src.Unmap(), p.Priority, p.Interval))
}

// peerMismatch tells the drop reasons that mean a peer of this virtual
// router is configured differently: while they last, each node hears no
// master and holds the VIP (a split brain).
func peerMismatch(r DropReason) bool {
	switch r {
	case DropAuthMismatch, DropIntervalMismatch, DropBadVersion, DropNotPeer, DropBadTTL:
		return true
	}
	return false
}

// mismatchWarnEvery bounds the warnings about dropped adverts of one
// reason (a peer's come every advert interval).
const mismatchWarnEvery = time.Minute

// warnMismatch logs an advert dropped for a configuration mismatch as a
// warning (keepalived logs each one), at most once a minute per reason;
// the drop counters count them all.
func (in *instance) warnMismatch(reason DropReason, src netip.Addr, err error) {
	now := in.m.now()
	in.mu.Lock()
	last, ok := in.dropWarned[reason]
	quiet := ok && now.Sub(last) < mismatchWarnEvery
	if !quiet {
		if in.dropWarned == nil {
			in.dropWarned = map[DropReason]time.Time{}
		}
		in.dropWarned[reason] = now
	}
	in.mu.Unlock()
	if quiet {
		if ce := in.log.Check(zap.DebugLevel, "advert dropped"); ce != nil {
			ce.Write(zap.String("reason", string(reason)), zap.Error(err))
		}
		return
	}
	in.log.Warn("advert from a peer dropped: configuration mismatch (both nodes may hold the VIP)",
		zap.String("reason", string(reason)), zap.Stringer("peer", src), zap.Error(err))
}

// exec performs the state machine's actions in order.
func (in *instance) exec(acts []action) {
	for _, a := range acts {
		switch a.Kind {
		case actSendAdvert:
			in.sendAdvert(a.Priority, a.Interval)
		case actAddVIPs, actRenewVIPs:
			in.addVIPs()
		case actRemoveVIPs:
			in.removeVIPs(in.cfg.VIPs)
		case actGARP:
			in.announce(in.cfg.VIPs)
		case actNotify:
			in.notify.queue(in.log, in.cfg, a.To, a.Priority)
		case actTransition:
			in.transition(a)
		case actResigned:
			for _, ch := range in.resigned {
				close(ch)
			}
			in.resigned = nil
		}
	}
}

// sendAdvert sends one advert; interval 0 means the configured advert_int.
func (in *instance) sendAdvert(prio uint8, interval time.Duration) {
	if in.sockGen == 0 {
		return
	}
	if interval == 0 {
		interval = in.cfg.AdvertInterval
	}
	p := Packet{Version: in.cfg.Version, VRID: in.cfg.VRID, Priority: prio, Interval: interval,
		AuthType: in.policy.AuthType, AuthData: in.policy.AuthData, Addrs: in.cfg.vipAddrs()}
	dsts := in.cfg.UnicastPeers
	if len(dsts) == 0 {
		dsts = []netip.Addr{Group4}
		if in.cfg.Family == 6 {
			dsts = []netip.Addr{Group6}
		}
	}
	for _, dst := range dsts {
		b, err := p.Marshal(in.src, dst, in.policy.Checksum)
		if err == nil {
			err = in.sock.write(b, in.src, dst)
		}
		in.mu.Lock()
		if err != nil {
			in.status.SendErrors++
		} else {
			in.status.AdvertsSent++
		}
		in.mu.Unlock()
		if err != nil {
			in.log.Warn("send advert", zap.Stringer("to", dst), zap.Uint8("priority", prio), zap.Error(err))
		}
	}
}

func (in *instance) lifetime() time.Duration { return in.cfg.VIPLifetime }

func (in *instance) addVIPs() {
	for _, v := range in.cfg.VIPs {
		dev := in.cfg.device(v)
		if err := in.os.AddVIP(dev, v.Prefix, in.lifetime()); err != nil {
			in.log.Error("add VIP", zap.Stringer("vip", v.Prefix), zap.String("dev", dev), zap.Error(err))
			continue
		}
		if !slices.Contains(in.held, v) {
			in.held = append(in.held, v)
		}
	}
}

func (in *instance) removeVIPs(vips []VIP) {
	for _, v := range vips {
		dev := in.cfg.device(v)
		if err := in.os.DelVIP(dev, v.Prefix); err != nil {
			in.log.Error("remove VIP", zap.Stringer("vip", v.Prefix), zap.String("dev", dev), zap.Error(err))
			continue
		}
		in.held = slices.DeleteFunc(in.held, func(h VIP) bool { return h == v })
	}
}

// keepOnlyVIPs is the first step of a reload: the VIPs not in vips leave
// the interface and the instance's list.
func (in *instance) keepOnlyVIPs(vips []VIP) {
	in.cfg.VIPs = slices.DeleteFunc(slices.Clone(in.cfg.VIPs), func(v VIP) bool { return !slices.Contains(vips, v) })
	in.dropVIPsNotIn(vips)
}

// dropVIPsNotIn removes the VIPs held that a reload took out of the
// instance's list.
func (in *instance) dropVIPsNotIn(vips []VIP) {
	var gone []VIP
	for _, v := range in.held {
		if !slices.Contains(vips, v) {
			gone = append(gone, v)
		}
	}
	in.removeVIPs(gone)
	for _, v := range gone {
		if !slices.Contains(in.held, v) {
			in.log.Info("VIP removed by reload", zap.Stringer("vip", v.Prefix), zap.String("dev", in.cfg.device(v)))
		}
	}
}

func (in *instance) announce(vips []VIP) {
	for _, v := range vips {
		dev := in.cfg.device(v)
		if err := in.os.Announce(dev, v.Prefix.Addr(), in.cfg.garpRepeat()); err != nil {
			in.log.Warn("gratuitous ARP / unsolicited NA", zap.Stringer("vip", v.Prefix), zap.String("dev", dev), zap.Error(err))
		}
	}
}

func (in *instance) transition(a action) {
	now := in.m.now()
	in.log.Info("VRRP state change", zap.Stringer("from", a.From), zap.Stringer("to", a.To),
		zap.String("reason", a.Reason), zap.Uint8("priority", in.fsm.effectivePriority()))
	in.mu.Lock()
	in.status.LastTransition, in.status.LastReason = now, a.Reason
	in.mu.Unlock()
	in.m.emit(Transition{Instance: in.cfg.Name, Key: in.key, From: a.From, To: a.To, Reason: a.Reason,
		Priority: in.fsm.effectivePriority(), At: now})
}

func (in *instance) updateStatus() {
	in.mu.Lock()
	defer in.mu.Unlock()
	s := &in.status
	s.Name, s.Interface, s.VRID, s.Family, s.Version = in.cfg.Name, in.cfg.Interface, in.cfg.VRID, in.cfg.Family, in.cfg.Version
	s.State = in.fsm.state.String()
	s.Priority, s.EffectivePriority = in.cfg.Priority, in.fsm.effectivePriority()
	s.VIPsHeld = s.VIPsHeld[:0]
	for _, v := range in.held {
		s.VIPsHeld = append(s.VIPsHeld, v.Prefix.String())
	}
	s.Master = ""
	if in.fsm.masterAddr.IsValid() {
		s.Master = in.fsm.masterAddr.String()
	}
	s.Faults = s.Faults[:0]
	for name, t := range in.fsm.tracks {
		if t.fault {
			s.Faults = append(s.Faults, name)
		}
	}
	slices.Sort(s.Faults)
}

func (in *instance) snapshot() InstanceStatus {
	in.mu.Lock()
	defer in.mu.Unlock()
	s := in.status
	s.VIPsHeld = slices.Clone(s.VIPsHeld)
	s.Faults = slices.Clone(s.Faults)
	s.Drops = make(map[DropReason]uint64, len(in.status.Drops))
	for k, v := range in.status.Drops {
		s.Drops[k] = v
	}
	return s
}

// reconfigure applies a reload with the same key, on the loop goroutine.
func (in *instance) reconfigure(cfg Config) {
	old := in.cfg
	in.cfg = cfg
	in.key = cfg.Key()
	in.log = in.m.log.With(zap.String("vrrp", cfg.Name), zap.String("interface", cfg.Interface), zap.Uint8("vrid", cfg.VRID), zap.Int("family", cfg.Family))
	src := in.src
	if cfg.SourceIP.IsValid() {
		src = cfg.SourceIP
	}
	in.policy = policyFor(&cfg, src)
	in.mu.Lock()
	in.status.PeerMismatchFrom = "" // checked against the new addresses: a mismatch is news
	in.mu.Unlock()
	in.exec(in.fsm.reconfigure(in.m.now(), cfg.fsmConfig(src)))
	// Unicast or multicast: the shared socket joins the group while any
	// of its instances needs it. A changed source is taken at once.
	if !slices.Equal(old.UnicastPeers, cfg.UnicastPeers) {
		// The mode, or the peers the socket's filter lets in.
		in.sock.setMember(in, cfg.VRID, cfg.UnicastPeers)
	}
	if old.SourceIP != cfg.SourceIP && in.sockGen != 0 {
		in.sockGen = 0
		in.attach()
	}
	// VIPs: removed ones go at once (Manager.Apply has every kept
	// instance drop them before any adds, for a VIP that moves to
	// another instance); added ones come only on a MASTER.
	in.dropVIPsNotIn(cfg.VIPs)
	if in.fsm.state == StateMaster && !in.fsm.resigning {
		var added []VIP
		for _, v := range cfg.VIPs {
			if !slices.Contains(old.VIPs, v) {
				added = append(added, v)
			}
		}
		in.addVIPs()
		for _, v := range added {
			if slices.Contains(in.held, v) {
				in.log.Info("VIP added by reload", zap.Stringer("vip", v.Prefix), zap.String("dev", in.cfg.device(v)))
			}
		}
		in.announce(added)
	}
	in.scripts.apply(cfg.Scripts) // restarts every script when script_user changed
	in.pollLinks(false)
}

// stopLoop shuts the instance down on its goroutine and ends the loop.
func (in *instance) shutdown() {
	in.exec(in.fsm.shutdown())
	in.removeVIPs(slices.Clone(in.held))
	in.scripts.stop()
	in.detach()
	in.stopped = true
}

// wait waits for every goroutine of the instance, notify scripts included.
func (in *instance) wait() {
	in.wg.Wait()
	in.notify.close()
}
