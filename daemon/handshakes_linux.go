package daemon

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// connectionsArriving counts the TCP connections to vips that the kernel
// has but the proxies have not yet accepted: handshakes under way (a
// SYN-ACK sent, the client's ACK not yet here) and connections waiting in
// a listener's accept queue. Once new connections are held, this falls to
// zero within a client round trip; the handover waits for that (bounded)
// rather than for a fixed moment, so the VIPs move as soon as nothing is
// on its way here. It asks the kernel with one sock_diag dump per family.
func connectionsArriving(vips []netip.Addr) (int, error) {
	isVIP := map[netip.Addr]bool{}
	families := map[uint8]bool{}
	for _, v := range vips {
		v = v.Unmap()
		isVIP[v] = true
		if v.Is4() {
			families[unix.AF_INET] = true
		} else {
			families[unix.AF_INET6] = true
		}
	}
	n := 0
	for family := range families {
		k, err := diagCount(family, func(state uint8, local netip.Addr, rqueue uint32) bool {
			switch state {
			case tcpSynRecv:
				return isVIP[local]
			case tcpListen:
				// Wildcard listeners count too: their queue may hold a VIP's.
				return rqueue > 0 && (isVIP[local] || local.IsUnspecified())
			}
			return false
		})
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

// The kernel's TCP states (include/net/tcp_states.h) sock_diag filters on.
const (
	tcpSynRecv = 3
	tcpListen  = 10
)

// inetDiagReqV2 is the kernel's struct inet_diag_req_v2.
type inetDiagReqV2 struct {
	Family   uint8
	Protocol uint8
	Ext      uint8
	Pad      uint8
	States   uint32
	ID       [48]byte // struct inet_diag_sockid; zero: every socket
}

// diagCount dumps the family's TCP sockets in LISTEN and SYN_RECV state
// and counts those match accepts.
func diagCount(family uint8, match func(state uint8, local netip.Addr, rqueue uint32) bool) (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_INET_DIAG)
	if err != nil {
		return 0, fmt.Errorf("sock_diag: %w", err)
	}
	defer unix.Close(fd)
	req := struct {
		unix.NlMsghdr
		inetDiagReqV2
	}{
		NlMsghdr: unix.NlMsghdr{Type: unix.SOCK_DIAG_BY_FAMILY, Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: 1},
		inetDiagReqV2: inetDiagReqV2{Family: family, Protocol: unix.IPPROTO_TCP,
			States: 1<<tcpListen | 1<<tcpSynRecv},
	}
	req.Len = uint32(unsafe.Sizeof(req))
	b := unsafe.Slice((*byte)(unsafe.Pointer(&req)), unsafe.Sizeof(req))
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("sock_diag: send: %w", err)
	}
	buf := make([]byte, 64<<10)
	count := 0
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return 0, fmt.Errorf("sock_diag: receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return 0, fmt.Errorf("sock_diag: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return count, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return 0, fmt.Errorf("sock_diag: %w", unix.Errno(-errno))
					}
				}
				return count, nil
			}
			// struct inet_diag_msg: family, state, timer, retrans, then
			// inet_diag_sockid (sport, dport, src[16], dst[16], if,
			// cookie[2]), expires, rqueue, ...
			d := m.Data
			if len(d) < 72 {
				continue
			}
			var local netip.Addr
			if d[0] == unix.AF_INET {
				local = netip.AddrFrom4([4]byte(d[8:12]))
			} else {
				local = netip.AddrFrom16([16]byte(d[8:24])).Unmap()
			}
			if match(d[1], local, binary.NativeEndian.Uint32(d[56:60])) {
				count++
			}
		}
	}
}
