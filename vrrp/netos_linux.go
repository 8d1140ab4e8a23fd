package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// linuxOS is the real netOS: raw sockets, netlink and packet sockets.
//
// Its netlink queries and changes (links, VIPs) go through one netlink
// socket opened with the Manager and kept until Stop: a process that has
// run out of file descriptors (EMFILE) can then still see its links and,
// above all, remove its VIPs when it goes to FAULT, instead of leaving
// them on both nodes until their lifetime ends.
type linuxOS struct {
	mu     sync.RWMutex // read-held while h is in use, held to replace it
	h      *netlink.Handle
	closed bool
}

// netlinkTimeout bounds a netlink request, so that a lost reply cannot
// hang an instance.
const netlinkTimeout = 2 * time.Second

var errNetlinkClosed = errors.New("vrrp: netlink handle closed (manager stopped)")

func defaultOS() netOS {
	o := &linuxOS{}
	_ = o.open() // now, in the daemon's namespace and before any descriptor shortage; else at first use
	return o
}

// open opens the netlink socket unless it is open.
func (o *linuxOS) open() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return errNetlinkClosed
	}
	if o.h != nil {
		return nil
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink socket: %w", err)
	}
	if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
		h.Close()
		return fmt.Errorf("netlink socket timeout: %w", err)
	}
	o.h = h
	return nil
}

// do runs fn with the netlink handle, opening it if needed; a socket
// that broke is closed, and the next call opens a new one.
func (o *linuxOS) do(fn func(h *netlink.Handle) error) error {
	o.mu.RLock()
	h := o.h
	if h == nil {
		o.mu.RUnlock()
		if err := o.open(); err != nil {
			return err
		}
		o.mu.RLock()
		if h = o.h; h == nil {
			o.mu.RUnlock()
			return errNetlinkClosed
		}
	}
	err := fn(h)
	o.mu.RUnlock()
	if netlinkBroken(err) {
		o.mu.Lock()
		if o.h == h {
			h.Close()
			o.h = nil
		}
		o.mu.Unlock()
	}
	return err
}

// netlinkBroken says whether err means the netlink socket itself is
// unusable (not a refused request, nor a shortage of descriptors, which a
// new socket would not fix but closing this one would make worse).
func netlinkBroken(err error) bool {
	if err == nil {
		return false
	}
	for _, e := range []error{unix.EBADF, unix.ENOTSOCK, unix.EPIPE, unix.ECONNRESET, unix.ECONNREFUSED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return strings.HasPrefix(err.Error(), "Wrong sender portid")
}

// Close closes the netlink socket; later calls fail.
func (o *linuxOS) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	if o.h != nil {
		o.h.Close()
		o.h = nil
	}
	return nil
}

func (o *linuxOS) linkByName(ifname string) (link netlink.Link, err error) {
	err = o.do(func(h *netlink.Handle) error {
		link, err = h.LinkByName(ifname)
		return err
	})
	return link, err
}

func (*linuxOS) Open(ifname string, family int) (advertConn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	network, any := "ip4:112", "0.0.0.0"
	if family == 6 {
		network, any = "ip6:112", "::"
	}
	var sockErr error
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		err := c.Control(func(fd uintptr) {
			// Only this interface's packets, whatever the routing says.
			if sockErr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname); sockErr != nil {
				sockErr = fmt.Errorf("SO_BINDTODEVICE: %w", sockErr)
				return
			}
			// Without this a raw socket receives the groups joined by any
			// socket on the host, other interfaces included.
			if family == 4 {
				sockErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0)
			} else {
				_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0) // Linux >= 4.20
			}
		})
		if err != nil {
			return err
		}
		return sockErr
	}}
	pc, err := lc.ListenPacket(context.Background(), network, any)
	if err != nil {
		return nil, err
	}
	if family == 4 {
		c, err := newConn4(pc, ifi)
		if err != nil {
			pc.Close()
			return nil, err
		}
		return c, nil
	}
	c, err := newConn6(pc, ifi)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return c, nil
}

type conn4 struct {
	pc  *ipv4.PacketConn
	ifi *net.Interface
}

func newConn4(c net.PacketConn, ifi *net.Interface) (*conn4, error) {
	pc := ipv4.NewPacketConn(c)
	for _, step := range []struct {
		what string
		err  func() error
	}{
		{"control messages", func() error { return pc.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true) }},
		{"TTL", func() error { return pc.SetTTL(255) }},
		{"multicast TTL", func() error { return pc.SetMulticastTTL(255) }},
		{"multicast loop", func() error { return pc.SetMulticastLoopback(false) }},
		{"multicast interface", func() error { return pc.SetMulticastInterface(ifi) }},
		{"off-link filter", func() error { return pc.SetBPF(onLinkOnly(4, nil)) }},
	} {
		if err := step.err(); err != nil {
			return nil, fmt.Errorf("%s on %s: %w", step.what, ifi.Name, err)
		}
	}
	return &conn4{pc: pc, ifi: ifi}, nil
}

// onLinkOnly is a socket filter that lets in only packets with TTL / hop
// limit 255, and those from routedFrom (unicast peers, heard across
// routers as keepalived hears them): an advert that crossed a router is
// otherwise invalid (RFC 5798 7.1), and a flood of them from off the link,
// each from another spoofed source, would fill the socket's buffer faster
// than it is read and push a live master's adverts out: the backup would
// take the VIP (a split brain). The kernel drops them before they are
// queued; the checks on each packet read stay. The header is read through
// SKF_NET_OFF (raw IPv6 sockets start at the payload).
func onLinkOnly(family int, routedFrom []netip.Addr) []bpf.RawInstruction {
	const netOff = 0xfff00000                      // SKF_NET_OFF, -0x100000
	ttlAt, srcAt, size := uint32(8), uint32(12), 4 // IPv4: TTL, source address
	if family == 6 {
		ttlAt, srcAt, size = 7, 8, 16 // IPv6: hop limit, source address
	}
	accept := bpf.RetConstant{Val: 1 << 16} // the whole packet
	// Every match is followed by its own accept, so that every jump is
	// short (a classic BPF jump skips at most 255 instructions, whatever
	// the number of peers).
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: netOff + ttlAt, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 255, SkipFalse: 1},
		accept,
	}
	for _, peer := range routedFrom {
		b := peer.AsSlice()
		if len(b) != size {
			continue
		}
		words := size / 4
		for w := range words {
			prog = append(prog, bpf.LoadAbsolute{Off: netOff + srcAt + uint32(4*w), Size: 4})
			val := uint32(b[4*w])<<24 | uint32(b[4*w+1])<<16 | uint32(b[4*w+2])<<8 | uint32(b[4*w+3])
			if w < words-1 {
				// A word that differs: on to the next peer, past this
				// peer's remaining loads, jumps and accept.
				prog = append(prog, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: val, SkipTrue: uint8(2*(words-1-w) + 1)})
				continue
			}
			prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: val, SkipFalse: 1}, accept)
		}
	}
	prog = append(prog, bpf.RetConstant{Val: 0}) // dropped
	if len(prog) > maxFilterInstructions {
		return acceptAll
	}
	return mustAssemble(prog)
}

// maxFilterInstructions keeps the filter within what a kernel with the
// net.core.optmem_max of before 6.9 (20480) attaches: about 600
// instructions measured (some 200 IPv4 or 60 IPv6 unicast peers). Past it
// the socket takes every advert; the checks on each packet read apply.
const maxFilterInstructions = 512

var acceptAll = mustAssemble([]bpf.Instruction{bpf.RetConstant{Val: 1 << 16}})

// setFilter attaches the off-link filter, or every advert when the kernel
// refuses it.
func setFilter(set func([]bpf.RawInstruction) error, family int, routedFrom []netip.Addr) error {
	prog := onLinkOnly(family, routedFrom)
	err := set(prog)
	if err == nil && len(prog) == len(acceptAll) && len(routedFrom) > 0 {
		return &filterFallbackError{fmt.Errorf("%d unicast peers need more than %d instructions", len(routedFrom), maxFilterInstructions)}
	}
	if err == nil {
		return nil
	}
	if err2 := set(acceptAll); err2 != nil {
		return fmt.Errorf("off-link filter: %w", err)
	}
	return &filterFallbackError{err}
}

func mustAssemble(prog []bpf.Instruction) []bpf.RawInstruction {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		panic(err)
	}
	return raw
}

func (c *conn4) Read(b []byte) (int, received, error) {
	for {
		n, cm, src, err := c.pc.ReadFrom(b)
		if err != nil {
			return 0, received{}, err
		}
		r := received{TTL: -1}
		if a, ok := src.(*net.IPAddr); ok {
			r.Src, _ = netip.AddrFromSlice(a.IP.To4())
		}
		if cm != nil {
			if cm.IfIndex != 0 && cm.IfIndex != c.ifi.Index {
				continue
			}
			r.TTL = cm.TTL
			r.Dst, _ = netip.AddrFromSlice(cm.Dst.To4())
		}
		return n, r, nil
	}
}

func (c *conn4) Write(b []byte, src, dst netip.Addr) error {
	cm := &ipv4.ControlMessage{Src: src.AsSlice(), IfIndex: c.ifi.Index}
	_, err := c.pc.WriteTo(b, cm, &net.IPAddr{IP: dst.AsSlice()})
	return err
}

func (c *conn4) Filter(routedFrom []netip.Addr) error {
	return setFilter(c.pc.SetBPF, 4, routedFrom)
}

func (c *conn4) Join(on bool) error {
	group := &net.IPAddr{IP: Group4.AsSlice()}
	if on {
		return wrapJoin(c.pc.JoinGroup(c.ifi, group), on, Group4, c.ifi)
	}
	return wrapJoin(c.pc.LeaveGroup(c.ifi, group), on, Group4, c.ifi)
}

func wrapJoin(err error, on bool, group netip.Addr, ifi *net.Interface) error {
	if err == nil {
		return nil
	}
	what := "leave"
	if on {
		what = "join"
	}
	return fmt.Errorf("%s %v on %s: %w", what, group, ifi.Name, err)
}

func (c *conn4) Close() error { return c.pc.Close() }

type conn6 struct {
	pc  *ipv6.PacketConn
	ifi *net.Interface
}

func newConn6(c net.PacketConn, ifi *net.Interface) (*conn6, error) {
	pc := ipv6.NewPacketConn(c)
	for _, step := range []struct {
		what string
		err  func() error
	}{
		{"control messages", func() error {
			return pc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true)
		}},
		{"hop limit", func() error { return pc.SetHopLimit(255) }},
		{"multicast hop limit", func() error { return pc.SetMulticastHopLimit(255) }},
		{"multicast loop", func() error { return pc.SetMulticastLoopback(false) }},
		{"multicast interface", func() error { return pc.SetMulticastInterface(ifi) }},
		{"off-link filter", func() error { return pc.SetBPF(onLinkOnly(6, nil)) }},
	} {
		if err := step.err(); err != nil {
			return nil, fmt.Errorf("%s on %s: %w", step.what, ifi.Name, err)
		}
	}
	return &conn6{pc: pc, ifi: ifi}, nil
}

func (c *conn6) Read(b []byte) (int, received, error) {
	for {
		n, cm, src, err := c.pc.ReadFrom(b)
		if err != nil {
			return 0, received{}, err
		}
		r := received{TTL: -1}
		if a, ok := src.(*net.IPAddr); ok {
			r.Src, _ = netip.AddrFromSlice(a.IP.To16())
		}
		if cm != nil {
			if cm.IfIndex != 0 && cm.IfIndex != c.ifi.Index {
				continue
			}
			r.TTL = cm.HopLimit
			r.Dst, _ = netip.AddrFromSlice(cm.Dst.To16())
		}
		return n, r, nil
	}
}

func (c *conn6) Write(b []byte, src, dst netip.Addr) error {
	cm := &ipv6.ControlMessage{Src: src.AsSlice(), IfIndex: c.ifi.Index, HopLimit: 255}
	to := &net.IPAddr{IP: dst.AsSlice()}
	if dst.IsLinkLocalUnicast() || dst.IsLinkLocalMulticast() {
		to.Zone = c.ifi.Name
	}
	_, err := c.pc.WriteTo(b, cm, to)
	return err
}

func (c *conn6) Filter(routedFrom []netip.Addr) error {
	return setFilter(c.pc.SetBPF, 6, routedFrom)
}

func (c *conn6) Join(on bool) error {
	group := &net.IPAddr{IP: Group6.AsSlice()}
	if on {
		return wrapJoin(c.pc.JoinGroup(c.ifi, group), on, Group6, c.ifi)
	}
	return wrapJoin(c.pc.LeaveGroup(c.ifi, group), on, Group6, c.ifi)
}

func (c *conn6) Close() error { return c.pc.Close() }

func (o *linuxOS) PrimaryAddr(ifname string, family int, exclude []netip.Addr) (netip.Addr, error) {
	link, err := o.linkByName(ifname)
	if err != nil {
		return netip.Addr{}, err
	}
	nlFamily := netlink.FAMILY_V4
	if family == 6 {
		nlFamily = netlink.FAMILY_V6
	}
	var addrs []netlink.Addr
	err = o.do(func(h *netlink.Handle) error {
		addrs, err = h.AddrList(link, nlFamily)
		return err
	})
	if err != nil {
		return netip.Addr{}, err
	}
	tentative := false
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if family == 6 && !ip.IsLinkLocalUnicast() {
			continue
		}
		if family == 6 && a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			// Not usable as a source until duplicate address detection
			// ends (after a link flap, at boot): adverts sent from it
			// fail, and the peer, hearing none, becomes MASTER too.
			tentative = true
			continue
		}
		if family == 4 && (!ip.Is4() || a.Flags&unix.IFA_F_SECONDARY != 0) {
			continue
		}
		excluded := false
		for _, x := range exclude {
			excluded = excluded || x == ip
		}
		if !excluded {
			return ip, nil
		}
	}
	if tentative {
		return netip.Addr{}, fmt.Errorf("the link-local address of %s is tentative (duplicate address detection): no advert can be sent yet", ifname)
	}
	return netip.Addr{}, fmt.Errorf("no IPv%d address on %s to send adverts from", family, ifname)
}

func (o *linuxOS) LinkUp(ifname string) (bool, error) {
	link, err := o.linkByName(ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return false, nil
		}
		return false, fmt.Errorf("query link %s: %w", ifname, err)
	}
	a := link.Attrs()
	return a.Flags&net.FlagUp != 0 && a.RawFlags&unix.IFF_RUNNING != 0, nil
}

func vipAddr(link netlink.Link, p netip.Prefix, lifetime time.Duration) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		// A VIP is unique by election; DAD would only delay it by seconds.
		a.Flags = unix.IFA_F_NODAD
	}
	if lifetime > 0 {
		secs := int((lifetime + time.Second - 1) / time.Second)
		a.ValidLft, a.PreferedLft = secs, secs
	}
	return a
}

func (o *linuxOS) AddVIP(ifname string, p netip.Prefix, lifetime time.Duration) error {
	link, err := o.linkByName(ifname)
	if err != nil {
		return err
	}
	return o.do(func(h *netlink.Handle) error { return h.AddrReplace(link, vipAddr(link, p, lifetime)) })
}

func (o *linuxOS) DelVIP(ifname string, p netip.Prefix) error {
	link, err := o.linkByName(ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil // the interface is gone, and the address with it
		}
		return err
	}
	err = o.do(func(h *netlink.Handle) error { return h.AddrDel(link, vipAddr(link, p, 0)) })
	if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func (o *linuxOS) HasVIP(ifname string, ip netip.Addr) (bool, error) {
	link, err := o.linkByName(ifname)
	if err != nil {
		return false, err
	}
	var addrs []netlink.Addr
	err = o.do(func(h *netlink.Handle) error {
		addrs, err = h.AddrList(link, netlink.FAMILY_ALL)
		return err
	})
	if err != nil {
		return false, err
	}
	for _, a := range addrs {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip {
			return true, nil
		}
	}
	return false, nil
}

func (*linuxOS) Announce(ifname string, ip netip.Addr, count int) error {
	return Announce(ifname, ip, count)
}

// Announce sends, count times, what a new master sends for a VIP on
// ifname: a gratuitous ARP (request and reply) for IPv4, an unsolicited
// neighbor advertisement with the override flag for IPv6.
func Announce(ifname string, ip netip.Addr, count int) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	if ip.Is4() {
		c, err := arp.Dial(ifi)
		if err != nil {
			return fmt.Errorf("arp socket: %w", err)
		}
		defer c.Close()
		// Both forms: some hosts update their cache only from requests,
		// others only from replies (as MetalLB does).
		req, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, ip, ethernet.Broadcast, ip)
		if err != nil {
			return err
		}
		rep, err := arp.NewPacket(arp.OperationReply, ifi.HardwareAddr, ip, ifi.HardwareAddr, ip)
		if err != nil {
			return err
		}
		for range count {
			if err := c.WriteTo(req, ethernet.Broadcast); err != nil {
				return err
			}
			if err := c.WriteTo(rep, ethernet.Broadcast); err != nil {
				return err
			}
		}
		return nil
	}
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return fmt.Errorf("ndp socket: %w", err)
	}
	defer c.Close()
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ifi.HardwareAddr}},
	}
	for range count {
		if err := c.WriteTo(na, nil, netip.MustParseAddr("ff02::1")); err != nil {
			return err
		}
	}
	return nil
}
