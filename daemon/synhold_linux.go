package daemon

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// skfNetOff is the kernel's SKF_NET_OFF: a classic BPF load at this offset
// reads from the packet's network (IP) header.
const skfNetOff = 0xfff00000 // -0x100000 as uint32

// connectionHold is a prepared holdNewConnections: the listening sockets
// are found beforehand, so that attaching the filters at the right moment
// costs only a few system calls.
type connectionHold struct {
	fds   []int
	progs []*unix.SockFprog
	addrs []netip.Addr
	err   error
}

// prepareHold finds the listening TCP sockets of the process that receive
// connections to vips, for holdNewConnections.
func prepareHold(vips []netip.Addr) *connectionHold {
	h := &connectionHold{}
	if len(vips) == 0 {
		return h
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		h.err = fmt.Errorf("hold new connections: %w", err)
		return h
	}
	isVIP := map[netip.Addr]bool{}
	for _, a := range vips {
		isVIP[a.Unmap()] = true
	}
	dropAll, err := dropSYNs(nil)
	if err != nil {
		h.err = err
		return h
	}
	dropToVIPs, err := dropSYNs(vips)
	if err != nil {
		h.err = err
		return h
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		local, ok := listeningTCP(fd)
		if !ok {
			continue
		}
		switch {
		case isVIP[local]:
			h.progs = append(h.progs, dropAll)
		case local.IsUnspecified():
			h.progs = append(h.progs, dropToVIPs)
		default:
			continue
		}
		h.fds = append(h.fds, fd)
		h.addrs = append(h.addrs, local)
	}
	return h
}

// holdNewConnections makes the kernel silently drop new TCP connections
// (SYNs) to the prepared VIPs on every listening socket of the process,
// while established connections go on as before. The client's TCP
// retransmits its SYN after about a second, by which time the VIP has
// moved, so the connection is made with the new master instead of being
// refused (a closed listener) or reset (a handshake completed here whose
// request the client sends after the new master's gratuitous ARP, which
// then reaches a node that does not know the connection). Handshakes
// already under way complete (only SYNs are dropped). Listeners bound to a
// VIP drop every SYN; wildcard listeners the SYNs addressed to a VIP (IPv4
// or IPv6; an IPv6 SYN with extension headers before TCP is not held). It
// fails for MPTCP listeners, which take no socket filter. resume removes the filters again (handover).
func (h *connectionHold) holdNewConnections() (held int, resume func(), err error) {
	if h.err != nil {
		return 0, func() {}, h.err
	}
	var fds []int
	var errs []error
	for i, fd := range h.fds {
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, h.progs[i]); err != nil {
			errs = append(errs, fmt.Errorf("listener %v: %w", h.addrs[i], err))
			continue
		}
		fds = append(fds, fd)
	}
	resume = func() {
		for _, fd := range fds {
			// Only if it is still the listener we filtered.
			if _, ok := listeningTCP(fd); ok {
				_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
			}
		}
	}
	if len(errs) > 0 {
		return len(fds), resume, fmt.Errorf("hold new connections: %v", errs)
	}
	return len(fds), resume, nil
}

// listeningTCP reports whether fd is a listening TCP socket, and its
// local address.
func listeningTCP(fd int) (netip.Addr, bool) {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return netip.Addr{}, false
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || v != 1 {
		return netip.Addr{}, false
	}
	// Go listens with MPTCP where the kernel has it (its SYNs are TCP).
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || (v != unix.IPPROTO_TCP && v != unix.IPPROTO_MPTCP) {
		return netip.Addr{}, false
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.Addr{}, false
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr), true
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr).Unmap(), true
	}
	return netip.Addr{}, false
}

// dropSYNs is a listener filter dropping connection requests (SYN without
// ACK) and accepting everything else, so that a handshake already under
// way when the hold starts still completes (its ACK and first data pass
// the listener's filter too) and is served here. With vips (wildcard
// listeners) only SYNs to one of vips are dropped; without, every SYN. A
// listener's filter sees the packet from its TCP header on; skfNetOff
// reaches the IP header.
func dropSYNs(vips []netip.Addr) (*unix.SockFprog, error) {
	const tcpFlags, syn, synAck = 13, 0x02, 0x12
	p := newFilterProgram()
	p.add(bpf.LoadAbsolute{Off: tcpFlags, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: synAck})
	if len(vips) == 0 {
		p.jumpIf(bpf.JumpEqual, syn, "drop", "accept")
	} else {
		v4, v6 := splitVIPs(vips, 250)
		p.jumpIfFar(bpf.JumpEqual, syn, "", "accept")
		p.add(bpf.LoadAbsolute{Off: skfNetOff, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
		p.jumpIfFar(bpf.JumpEqual, 4, "", "ip6")
		p.add(bpf.LoadAbsolute{Off: skfNetOff + 16, Size: 4}) // IPv4 destination
		for _, d := range v4 {
			p.jumpIf(bpf.JumpEqual, d, "ip4-vip", "")
		}
		p.jump("accept")
		p.label("ip4-vip")
		p.jump("drop")
		p.label("ip6")
		p.jumpIfFar(bpf.JumpEqual, 6, "", "accept")
		for i, a := range v6 {
			p.ip6Equal(skfNetOff+24, a, "drop", strconv.Itoa(i)) // IPv6 destination
		}
		p.jump("accept")
	}
	p.label("accept")
	p.add(bpf.RetConstant{Val: 0xffffffff})
	p.label("drop")
	p.add(bpf.RetConstant{Val: 0})
	return p.assemble()
}
