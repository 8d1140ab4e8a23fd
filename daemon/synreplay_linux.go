package daemon

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// synForwarder hands the connection requests held during a switchover to
// the new master instead of leaving their clients to retransmit a second
// later. While new connections are held, a packet socket keeps a copy of
// every SYN to a VIP that reaches this node; once the new master announces
// a VIP (a gratuitous ARP whose sender address is an IPv4 VIP, or an
// unsolicited neighbor advertisement for an IPv6 VIP, from a MAC that is
// not ours), each held SYN that came in on that interface is sent again,
// unchanged but for the Ethernet addresses, to that MAC. The new master
// holds the VIP by then, answers the client's SYN itself, and the client
// is connected there within the switchover's few milliseconds. Without an
// announcement nothing is sent, and clients retransmit as before.
type synForwarder struct {
	fd   int
	log  *zap.Logger
	stop chan struct{}
	done chan struct{}

	// Owned by run; read by Stop once run has ended.
	forwarded int
	ownMAC    map[int]net.HardwareAddr // by interface index
}

// heldSYN is one captured frame and the interface it came in on.
type heldSYN struct {
	frame   []byte
	ifindex int
}

// maxHeldSYNs bounds the frames kept while waiting for the new master.
const maxHeldSYNs = 4096

// synForwardAfter bounds how long SYNs still arriving here are forwarded
// once the new master is known: clients switch with its announcement.
const synForwardAfter = 500 * time.Millisecond

// startSYNForwarder starts capturing SYNs to vips. It returns nil when
// there is no VIP.
func startSYNForwarder(vips []netip.Addr, log *zap.Logger) (*synForwarder, error) {
	if len(vips) == 0 {
		return nil, nil
	}
	prog, err := synOrVIPAnnouncement(vips)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return nil, fmt.Errorf("forward held SYNs: packet socket: %w", err)
	}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, prog); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("forward held SYNs: filter: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	// Frames queued before the filter was attached are anything at all.
	buf := make([]byte, 2048)
	for {
		if _, _, err := unix.Recvfrom(fd, buf, 0); err != nil {
			break
		}
	}
	f := &synForwarder{fd: fd, log: log, stop: make(chan struct{}), done: make(chan struct{}), ownMAC: map[int]net.HardwareAddr{}}
	go f.run()
	return f, nil
}

// Stop ends the forwarding and reports how many SYNs went to the new master.
func (f *synForwarder) Stop() int {
	if f == nil {
		return 0
	}
	close(f.stop)
	<-f.done
	return f.forwarded
}

// interfaceMAC is the address of interface ifindex, looked up once.
func (f *synForwarder) interfaceMAC(ifindex int) net.HardwareAddr {
	mac, ok := f.ownMAC[ifindex]
	if !ok {
		if ifi, err := net.InterfaceByIndex(ifindex); err == nil && len(ifi.HardwareAddr) == 6 {
			mac = ifi.HardwareAddr
		}
		f.ownMAC[ifindex] = mac
	}
	return mac
}

func (f *synForwarder) run() {
	defer close(f.done)
	defer unix.Close(f.fd)
	var held []heldSYN
	newMaster := map[int]net.HardwareAddr{} // by interface index
	var knownAt time.Time
	buf := make([]byte, 2048)
	pfd := []unix.PollFd{{Fd: int32(f.fd), Events: unix.POLLIN}}
	for {
		select {
		case <-f.stop:
			return
		default:
		}
		if !knownAt.IsZero() && time.Since(knownAt) > synForwardAfter {
			return
		}
		if _, err := unix.Poll(pfd, 5); err != nil && err != unix.EINTR {
			f.log.Warn("forward held SYNs: poll", zap.Error(err))
			return
		}
		for {
			n, from, err := unix.Recvfrom(f.fd, buf, 0)
			if err != nil {
				break
			}
			ll, ok := from.(*unix.SockaddrLinklayer)
			if !ok {
				continue
			}
			frame := buf[:n]
			announcer, isSYN := classifyFrame(frame)
			switch {
			case announcer != nil:
				if string(f.interfaceMAC(ll.Ifindex)) == string(announcer) {
					continue
				}
				if _, known := newMaster[ll.Ifindex]; known {
					continue
				}
				mac := net.HardwareAddr(append([]byte(nil), announcer...))
				newMaster[ll.Ifindex] = mac
				if knownAt.IsZero() {
					knownAt = time.Now()
				}
				kept := held[:0]
				for _, h := range held {
					if h.ifindex != ll.Ifindex {
						kept = append(kept, h)
						continue
					}
					f.send(h.frame, h.ifindex, mac)
				}
				held = kept
			case isSYN:
				if mac := newMaster[ll.Ifindex]; mac != nil {
					f.send(frame, ll.Ifindex, mac)
				} else if len(held) < maxHeldSYNs {
					held = append(held, heldSYN{frame: append([]byte(nil), frame...), ifindex: ll.Ifindex})
				}
			}
		}
	}
}

// Frame layout: Ethernet header, then IPv4, ARP or IPv6.
const (
	ethHeaderLen     = 14
	ip6HeaderLen     = 40
	icmp6NeighborAdv = 136
)

// classifyFrame tells a frame the capture filter let through apart: a VIP
// announcement (the announcer's MAC is returned) or a TCP SYN to a VIP.
func classifyFrame(frame []byte) (announcer []byte, isSYN bool) {
	if len(frame) < ethHeaderLen {
		return nil, false
	}
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case unix.ETH_P_ARP:
		if len(frame) < ethHeaderLen+28 {
			return nil, false
		}
		return frame[ethHeaderLen+8 : ethHeaderLen+14], false // sender hardware address
	case unix.ETH_P_IP:
		return nil, true
	case unix.ETH_P_IPV6:
		ip := frame[ethHeaderLen:]
		if len(ip) < ip6HeaderLen+1 {
			return nil, false
		}
		if ip[6] == unix.IPPROTO_ICMPV6 && ip[ip6HeaderLen] == icmp6NeighborAdv {
			return frame[6:12], false // the advertisement's Ethernet source
		}
		return nil, ip[6] == unix.IPPROTO_TCP
	}
	return nil, false
}

// send puts frame on the wire again, from this node to mac.
func (f *synForwarder) send(frame []byte, ifindex int, mac net.HardwareAddr) {
	own := f.interfaceMAC(ifindex)
	if own == nil {
		return
	}
	copy(frame[0:6], mac)
	copy(frame[6:12], own)
	total, ok := fixTCPChecksum(frame)
	if !ok {
		return
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(binary.BigEndian.Uint16(frame[12:14])), Ifindex: ifindex, Halen: 6}
	copy(sa.Addr[:], mac)
	if err := unix.Sendto(f.fd, frame[:total], 0, sa); err != nil {
		f.log.Debug("forward held SYN", zap.Error(err))
		return
	}
	f.forwarded++
}

// synOrVIPAnnouncement accepts, of the frames not sent by this node, TCP
// SYNs (without ACK) to one of vips and the announcements of vips: ARP
// packets whose sender address is an IPv4 VIP (gratuitous ARP) and ICMPv6
// neighbor advertisements whose target is an IPv6 VIP. IPv6 SYNs behind
// extension headers are not matched.
func synOrVIPAnnouncement(vips []netip.Addr) (*unix.SockFprog, error) {
	const (
		packetOutgoing = 4
		ethType        = 12
		arpSenderIP    = ethHeaderLen + 14
		ip4Proto       = ethHeaderLen + 9
		ip4Dst         = ethHeaderLen + 16
		ip6Next        = ethHeaderLen + 6
		ip6Dst         = ethHeaderLen + 24
		ip6Payload     = ethHeaderLen + ip6HeaderLen
		ndTarget       = ip6Payload + 8
		tcpFlags       = 13
		syn, synAck    = 0x02, 0x12
	)
	accept, drop := bpf.RetConstant{Val: 0xffff}, bpf.RetConstant{Val: 0}
	v4, v6 := splitVIPs(vips, 100)
	p := newFilterProgram()
	p.add(bpf.LoadExtension{Num: bpf.ExtType})
	p.jumpIf(bpf.JumpEqual, packetOutgoing, "", "incoming")
	p.add(drop)
	p.label("incoming")
	p.add(bpf.LoadAbsolute{Off: ethType, Size: 2})
	p.jumpIf(bpf.JumpEqual, unix.ETH_P_ARP, "", "not-arp")

	p.add(bpf.LoadAbsolute{Off: arpSenderIP, Size: 4})
	for _, v := range v4 {
		p.jumpIf(bpf.JumpEqual, v, "arp-vip", "")
	}
	p.add(drop)
	p.label("arp-vip")
	p.add(accept)

	p.label("not-arp")
	p.jumpIf(bpf.JumpEqual, unix.ETH_P_IP, "", "not-ip4")
	p.add(bpf.LoadAbsolute{Off: ip4Proto, Size: 1})
	p.jumpIf(bpf.JumpEqual, unix.IPPROTO_TCP, "", "ip4-drop")
	p.add(bpf.LoadAbsolute{Off: ip4Dst, Size: 4})
	for _, v := range v4 {
		p.jumpIf(bpf.JumpEqual, v, "ip4-vip", "")
	}
	p.label("ip4-drop")
	p.add(drop)
	p.label("ip4-vip")
	p.add(
		bpf.LoadMemShift{Off: ethHeaderLen},
		bpf.LoadIndirect{Off: ethHeaderLen + tcpFlags, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: synAck},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: syn, SkipFalse: 1},
		accept,
		drop,
	)

	p.label("not-ip4")
	p.jumpIfFar(bpf.JumpEqual, unix.ETH_P_IPV6, "", "not-ip6")
	p.add(bpf.LoadAbsolute{Off: ip6Next, Size: 1})
	p.jumpIfFar(bpf.JumpEqual, unix.IPPROTO_TCP, "", "ip6-not-tcp")
	for i, a := range v6 {
		p.ip6Equal(ip6Dst, a, "ip6-vip", "dst"+strconv.Itoa(i))
	}
	p.add(drop)
	p.label("ip6-vip")
	p.add(
		bpf.LoadAbsolute{Off: ip6Payload + tcpFlags, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: synAck},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: syn, SkipFalse: 1},
		accept,
		drop,
	)

	p.label("ip6-not-tcp") // A is still the next header
	p.jumpIfFar(bpf.JumpEqual, unix.IPPROTO_ICMPV6, "", "not-ip6")
	p.add(bpf.LoadAbsolute{Off: ip6Payload, Size: 1})
	p.jumpIfFar(bpf.JumpEqual, icmp6NeighborAdv, "", "not-ip6")
	for i, a := range v6 {
		p.ip6Equal(ndTarget, a, "na-vip", "target"+strconv.Itoa(i))
	}
	p.label("not-ip6")
	p.add(drop)
	p.label("na-vip")
	p.add(accept)
	return p.assemble()
}

// fixTCPChecksum recomputes the TCP checksum of the IPv4 or IPv6 frame (an
// IPv6 one with TCP right after the fixed header): a frame captured before
// its checksum was filled in (offloaded to the device, as on veth) would be
// dropped by the new master. It returns the frame's length without
// Ethernet padding, and false for a frame too short to be a TCP segment.
func fixTCPChecksum(frame []byte) (int, bool) {
	if len(frame) < ethHeaderLen {
		return 0, false
	}
	ip := frame[ethHeaderLen:]
	var seg, pseudo []byte
	var end int // of the IP packet, in ip
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case unix.ETH_P_IP:
		if len(ip) < 20 {
			return 0, false
		}
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		if ihl < 20 || total > len(ip) || total < ihl+20 {
			return 0, false
		}
		seg, pseudo, end = ip[ihl:total], ip[12:20], total
	case unix.ETH_P_IPV6:
		if len(ip) < ip6HeaderLen {
			return 0, false
		}
		total := ip6HeaderLen + int(binary.BigEndian.Uint16(ip[4:6]))
		if total > len(ip) || total < ip6HeaderLen+20 {
			return 0, false
		}
		seg, pseudo, end = ip[ip6HeaderLen:total], ip[8:40], total
	default:
		return 0, false
	}
	seg[16], seg[17] = 0, 0
	sum := uint32(unix.IPPROTO_TCP) + uint32(len(seg)) // pseudo-header: protocol, length
	for _, b := range [][]byte{pseudo, seg} {          // addresses, then the segment
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i : i+2]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(seg[16:18], ^uint16(sum))
	return ethHeaderLen + end, true
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
