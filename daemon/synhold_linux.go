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
	var v4 []uint32
	isVIP := map[netip.Addr]bool{}
	for _, a := range vips {
		a = a.Unmap()
		isVIP[a] = true
		if a.Is4() {
			b := a.As4()
			v4 = append(v4, uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]))
		}
	}
	if len(v4) > 250 {
		v4 = v4[:250] // jump offsets are 8 bits (the longest skips n + 4)
	}
	dropAll, err := assemble(dropSYNs(nil))
	if err != nil {
		h.err = err
		return h
	}
	dropV4, err := assemble(dropSYNs(v4))
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
		case local.IsUnspecified() && len(v4) > 0:
			h.progs = append(h.progs, dropV4)
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
// VIP drop every SYN; wildcard listeners IPv4 SYNs addressed to an IPv4
// VIP (IPv6 VIPs on wildcard listeners are not held). It fails for MPTCP listeners, which take no
// socket filter. resume removes the filters again (handover).
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
// the listener's filter too) and is served here. With dsts (wildcard
// listeners) only IPv4 SYNs to one of dsts are dropped; without, every
// SYN. A listener's filter sees the packet from its TCP header on;
// skfNetOff reaches the IP header.
func dropSYNs(dsts []uint32) []bpf.Instruction {
	const tcpFlags, syn, synAck = 13, 0x02, 0x12
	n := len(dsts)
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: tcpFlags, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: synAck},
	}
	if n == 0 {
		return append(prog,
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: syn, SkipFalse: 1},
			bpf.RetConstant{Val: 0},
			bpf.RetConstant{Val: 0xffffffff})
	}
	prog = append(prog,
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: syn, SkipFalse: uint8(n + 4)},
		bpf.LoadAbsolute{Off: skfNetOff, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 4, SkipFalse: uint8(n + 1)},
		bpf.LoadAbsolute{Off: skfNetOff + 16, Size: 4},
	)
	for i, d := range dsts {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: d, SkipTrue: uint8(n - i)})
	}
	return append(prog, bpf.RetConstant{Val: 0xffffffff}, bpf.RetConstant{Val: 0})
}

func assemble(prog []bpf.Instruction) (*unix.SockFprog, error) {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assemble listener filter: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}, nil
}
