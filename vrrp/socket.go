package vrrp

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Sockets: one raw VRRP socket per interface and address family, shared by
// every instance on it (RFC 5798 routers on one link are told apart by
// VRID, and IPv4 and IPv6 by the socket). The socket is bound to the
// device, joined to the group once (when at least one of its instances is
// in multicast mode) and read by one goroutine that hands each advert to
// the instance with its VRID. An advert for a VRID no local instance has
// is counted once, on the socket (InterfaceStatus.Drops), instead of as
// noise in every instance's counters.
//
// Lifetime: the socket is reference-counted by the Manager. Apply takes a
// reference for every (interface, family) of the new configuration before
// removed instances leave, so a reload that replaces the instances of an
// interface keeps its socket; the last instance to leave closes it. The
// socket itself is opened lazily by the first instance that sees its
// interface up, closed by the first that sees it down, and reopened (which
// joins the group again) once, by the first that sees it up again; the
// others find it open at their next link poll.

// sockKey identifies a shared socket.
type sockKey struct {
	Interface string
	Family    int
}

// InterfaceStatus is a snapshot of one shared VRRP socket (one interface
// and address family) for the admin API and metrics.
type InterfaceStatus struct {
	Interface string `json:"interface"`
	Family    int    `json:"family"`
	Open      bool   `json:"open"`
	Joined    bool   `json:"joined"` // member of 224.0.0.18 / ff02::12
	// Opens counts the times the socket was opened: 1, plus one per
	// return of the link or of the interface.
	Opens uint64 `json:"opens"`
	// VRIDs are the local instances' virtual_router_ids on it.
	VRIDs []int `json:"virtual_router_ids"`
	// Drops are adverts no local instance is for: DropWrongVRID (a VRID
	// none of VRIDs), DropTruncated (too short to carry a VRID). Drops of
	// adverts for a local VRID are in that instance's InstanceStatus.
	Drops map[DropReason]uint64 `json:"drops"`
}

// rxBufSize holds the largest advert (v3/IPv6 with 255 addresses is 4088
// bytes) and anything oversized, which is then dropped as too long
// instead of being cut to size by the read.
const rxBufSize = 1 << 16

type sockMember struct {
	in    *instance
	peers []netip.Addr // unicast peers; none: multicast
}

// sharedSocket is the socket of one interface and family.
type sharedSocket struct {
	key sockKey
	os  netOS
	log *zap.Logger

	refs int // guarded by Manager.sockMu

	mu      sync.Mutex
	members map[uint8]sockMember // by VRID
	conn    advertConn           // nil while closed
	gen     int                  // increases at every open
	joined  bool
	// routedFrom is what the socket's filter lets in past its TTL check:
	// every member's unicast peers (filtered: whether it was set on conn).
	routedFrom []netip.Addr
	filtered   bool
	opens      uint64
	drops      map[DropReason]uint64
	stop       chan struct{} // closed when conn is closed
	readerD    chan struct{} // closed when conn's reader has ended
}

// acquireSocket returns the socket of k, creating it, with one more
// reference; releaseSocket gives it back.
func (m *Manager) acquireSocket(k sockKey) *sharedSocket {
	m.sockMu.Lock()
	defer m.sockMu.Unlock()
	s := m.sockets[k]
	if s == nil {
		s = &sharedSocket{key: k, os: m.os, members: map[uint8]sockMember{}, drops: map[DropReason]uint64{},
			log: m.log.With(zap.String("interface", k.Interface), zap.Int("family", k.Family))}
		m.sockets[k] = s
	}
	s.refs++
	return s
}

// releaseSocket drops a reference; the last one closes the socket and
// waits for its reader.
func (m *Manager) releaseSocket(s *sharedSocket) {
	m.sockMu.Lock()
	s.refs--
	last := s.refs == 0
	if last {
		delete(m.sockets, s.key)
	}
	m.sockMu.Unlock()
	if last {
		s.mu.Lock()
		done := s.closeLocked()
		s.mu.Unlock()
		if done != nil {
			<-done
		}
	}
}

// Interfaces returns a snapshot of every shared socket, sorted by
// interface and family.
func (m *Manager) Interfaces() []InterfaceStatus {
	m.sockMu.Lock()
	socks := make([]*sharedSocket, 0, len(m.sockets))
	for _, s := range m.sockets {
		socks = append(socks, s)
	}
	m.sockMu.Unlock()
	out := make([]InterfaceStatus, 0, len(socks))
	for _, s := range socks {
		out = append(out, s.snapshot())
	}
	slices.SortFunc(out, func(a, b InterfaceStatus) int {
		if a.Interface != b.Interface {
			if a.Interface < b.Interface {
				return -1
			}
			return 1
		}
		return a.Family - b.Family
	})
	return out
}

func (s *sharedSocket) snapshot() InterfaceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := InterfaceStatus{Interface: s.key.Interface, Family: s.key.Family, Open: s.conn != nil, Joined: s.joined,
		Opens: s.opens, VRIDs: []int{}, Drops: make(map[DropReason]uint64, len(s.drops))}
	for vrid := range s.members {
		st.VRIDs = append(st.VRIDs, int(vrid))
	}
	slices.Sort(st.VRIDs)
	for k, v := range s.drops {
		st.Drops[k] = v
	}
	return st
}

// setMember registers in (or updates its unicast peers) under its VRID.
func (s *sharedSocket) setMember(in *instance, vrid uint8, peers []netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.members[vrid] = sockMember{in: in, peers: peers}
	if err := s.syncJoinLocked(); err != nil {
		s.log.Error("VRRP socket: multicast group membership or off-link filter: retried at the next link poll", zap.Error(err))
	}
}

// removeMember stops delivering vrid's adverts to in.
func (s *sharedSocket) removeMember(in *instance, vrid uint8) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.members[vrid].in == in {
		delete(s.members, vrid)
	}
	if err := s.syncJoinLocked(); err != nil {
		s.log.Error("VRRP socket: multicast group membership or off-link filter", zap.Error(err))
	}
}

// syncJoinLocked joins the group while a member is in multicast mode and
// leaves it when none is (unicast-only instances hear only their peers),
// and lets the members' unicast peers past the socket's TTL filter.
func (s *sharedSocket) syncJoinLocked() error {
	want := false
	var routed []netip.Addr
	for _, m := range s.members {
		want = want || len(m.peers) == 0
		routed = append(routed, m.peers...)
	}
	slices.SortFunc(routed, func(a, b netip.Addr) int { return a.Compare(b) })
	routed = slices.Compact(routed)
	if s.conn == nil {
		return nil
	}
	if !s.filtered || !slices.Equal(routed, s.routedFrom) {
		if err := s.conn.Filter(routed); err != nil {
			var fallback *filterFallbackError
			if !errors.As(err, &fallback) {
				return err
			}
			s.log.Warn("VRRP socket: no off-link filter in the kernel (too many unicast peers, or net.core.optmem_max); adverts are checked as they are read", zap.Int("unicast_peers", len(routed)), zap.Error(fallback.err))
		}
		s.routedFrom, s.filtered = routed, true
	}
	if want == s.joined {
		return nil
	}
	if err := s.conn.Join(want); err != nil {
		return err
	}
	s.joined = want
	return nil
}

// ensureOpen opens the socket if it is closed, joins or leaves the group
// as its members need, and returns the generation of the open socket. An
// error (the instances go to FAULT and call again at their next link
// poll) leaves the socket closed if it could not be joined at open.
func (s *sharedSocket) ensureOpen() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		if err := s.syncJoinLocked(); err != nil {
			return 0, err
		}
		return s.gen, nil
	}
	conn, err := s.os.Open(s.key.Interface, s.key.Family)
	if err != nil {
		return 0, err
	}
	s.conn, s.joined, s.filtered = conn, false, false
	if err := s.syncJoinLocked(); err != nil {
		conn.Close()
		s.conn = nil
		return 0, err
	}
	s.gen++
	s.opens++
	s.stop, s.readerD = make(chan struct{}), make(chan struct{})
	stop, done := s.stop, s.readerD
	go func() {
		defer close(done)
		s.read(conn, stop)
	}()
	s.log.Debug("VRRP socket open", zap.Bool("joined", s.joined), zap.Int("generation", s.gen))
	return s.gen, nil
}

// linkDown closes the socket if it is still generation gen (a later
// generation was opened after the link came back: keep it).
func (s *sharedSocket) linkDown(gen int) {
	s.mu.Lock()
	var done chan struct{}
	if s.gen == gen {
		done = s.closeLocked()
	}
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

// closeLocked closes the socket and returns the channel closed when its
// reader has ended (nil if it was closed already).
func (s *sharedSocket) closeLocked() chan struct{} {
	if s.conn == nil {
		return nil
	}
	close(s.stop)
	s.conn.Close()
	s.conn, s.joined = nil, false
	return s.readerD
}

var errSocketClosed = errors.New("VRRP socket closed (interface down)")

// write sends one advert from src to dst.
func (s *sharedSocket) write(b []byte, src, dst netip.Addr) error {
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if conn == nil {
		return errSocketClosed
	}
	return conn.Write(b, src, dst)
}

// read reads conn until it is closed, handing each packet to the instance
// with its VRID.
func (s *sharedSocket) read(conn advertConn, stop chan struct{}) {
	buf := make([]byte, rxBufSize)
	for {
		n, r, err := conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("read advert", zap.Error(err))
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		s.dispatch(buf[:n], r)
	}
}

func (s *sharedSocket) dispatch(b []byte, r received) {
	s.mu.Lock()
	var m sockMember
	ok := false
	if len(b) >= 2 {
		m, ok = s.members[b[1]]
	}
	if !ok {
		reason := DropWrongVRID
		if len(b) < 2 {
			reason = DropTruncated
		}
		s.drops[reason]++
		s.mu.Unlock()
		if ce := s.log.Check(zap.DebugLevel, "advert dropped: no local instance for it"); ce != nil {
			vrid := -1
			if len(b) >= 2 {
				vrid = int(b[1])
			}
			ce.Write(zap.String("reason", string(reason)), zap.Int("vrid", vrid), zap.Stringer("from", r.Src))
		}
		return
	}
	s.mu.Unlock()
	if r.TTL >= 0 && r.TTL != 255 && !slices.Contains(m.peers, r.Src.Unmap()) {
		// Crossed a router, and not from a unicast peer: dropped before
		// the instance's queue (see deliver).
		m.in.dropRouted(r)
		return
	}
	m.in.deliver(rxItem{b: slices.Clone(b), r: r})
}
