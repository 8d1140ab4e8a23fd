package daemon

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// synForwarder hands the connection requests held during a switchover to
// the new master instead of leaving their clients to retransmit a second
// later. While new connections are held, a packet socket keeps a copy of
// every SYN to an IPv4 VIP that reaches this node; once the new master's
// gratuitous ARP for a VIP is seen (its sender address is the VIP and it
// is not ours), each held SYN is sent again, unchanged but for the
// Ethernet addresses, to that MAC. The new master holds the VIP by then,
// answers the client's SYN itself, and the client is connected there
// within the switchover's few milliseconds. Without a gratuitous ARP
// nothing is sent, and clients retransmit as before. IPv6 VIPs are not
// forwarded (their SYNs are still held).
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
// once the new master is known: clients switch with its gratuitous ARP.
const synForwardAfter = 500 * time.Millisecond

// startSYNForwarder starts capturing SYNs to vips (IPv4 only). It returns
// nil when there is no IPv4 VIP.
func startSYNForwarder(vips []netip.Addr, log *zap.Logger) (*synForwarder, error) {
	var v4 []uint32
	for _, a := range vips {
		if a = a.Unmap(); a.Is4() {
			v4 = append(v4, binary.BigEndian.Uint32(a.AsSlice()))
		}
	}
	if len(v4) == 0 {
		return nil, nil
	}
	if len(v4) > 100 {
		v4 = v4[:100] // jump offsets are 8 bits
	}
	prog, err := assemble(synOrVIPARP(v4))
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
			if !ok || n < 14 {
				continue
			}
			frame := buf[:n]
			switch binary.BigEndian.Uint16(frame[12:14]) {
			case unix.ETH_P_ARP:
				if n < 42 {
					continue
				}
				mac := net.HardwareAddr(append([]byte(nil), frame[22:28]...))
				if string(f.interfaceMAC(ll.Ifindex)) == string(mac) {
					continue
				}
				if _, known := newMaster[ll.Ifindex]; !known {
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
				}
			case unix.ETH_P_IP:
				if mac := newMaster[ll.Ifindex]; mac != nil {
					f.send(frame, ll.Ifindex, mac)
				} else if len(held) < maxHeldSYNs {
					held = append(held, heldSYN{frame: append([]byte(nil), frame...), ifindex: ll.Ifindex})
				}
			}
		}
	}
}

// send puts frame on the wire again, from this node to mac.
func (f *synForwarder) send(frame []byte, ifindex int, mac net.HardwareAddr) {
	own := f.interfaceMAC(ifindex)
	if own == nil {
		return
	}
	copy(frame[0:6], mac)
	copy(frame[6:12], own)
	if !fixTCPChecksum(frame) {
		return
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex, Halen: 6}
	copy(sa.Addr[:], mac)
	total := 14 + int(binary.BigEndian.Uint16(frame[16:18])) // no Ethernet padding
	if err := unix.Sendto(f.fd, frame[:total], 0, sa); err != nil {
		f.log.Debug("forward held SYN", zap.Error(err))
		return
	}
	f.forwarded++
}

// synOrVIPARP accepts, of the frames not sent by this node, IPv4 TCP SYNs
// (without ACK) to one of vips and ARP packets whose sender address is one
// of vips (the new master's gratuitous ARP).
func synOrVIPARP(vips []uint32) []bpf.Instruction {
	n := len(vips)
	const (
		packetOutgoing = 4
		ethType        = 12
		ipProto        = 14 + 9
		ipDst          = 14 + 16
		arpSenderIP    = 14 + 14
	)
	accept := bpf.RetConstant{Val: 0xffff}
	drop := bpf.RetConstant{Val: 0}
	prog := []bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: packetOutgoing, SkipTrue: 0, SkipFalse: 1},
		drop,
		bpf.LoadAbsolute{Off: ethType, Size: 2},
		// ARP: sender address one of vips.
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_ARP, SkipFalse: uint8(n + 3)},
		bpf.LoadAbsolute{Off: arpSenderIP, Size: 4},
	}
	for i, v := range vips {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: v, SkipTrue: uint8(n - i)})
	}
	prog = append(prog, drop, accept)
	// IPv4 TCP to one of vips with SYN and not ACK.
	prog = append(prog,
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IP, SkipTrue: 1},
		drop,
		bpf.LoadAbsolute{Off: ipProto, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_TCP, SkipTrue: 1},
		drop,
		bpf.LoadAbsolute{Off: ipDst, Size: 4},
	)
	for i, v := range vips {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: v, SkipTrue: uint8(n - i)})
	}
	return append(prog,
		drop,
		bpf.LoadMemShift{Off: 14},
		bpf.LoadIndirect{Off: 14 + 13, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x12},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x02, SkipTrue: 1},
		drop,
		accept,
	)
}

// fixTCPChecksum recomputes the TCP checksum of the IPv4 frame: a frame
// captured before its checksum was filled in (offloaded to the device, as
// on veth) would be dropped by the new master. It reports false for a
// frame too short to be a TCP segment.
func fixTCPChecksum(frame []byte) bool {
	if len(frame) < 14+20 {
		return false
	}
	ip := frame[14:]
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if ihl < 20 || total > len(ip) || total < ihl+20 {
		return false
	}
	seg := ip[ihl:total]
	seg[16], seg[17] = 0, 0
	sum := uint32(0)
	for i := 12; i < 20; i += 2 { // source and destination addresses
		sum += uint32(binary.BigEndian.Uint16(ip[i : i+2]))
	}
	sum += unix.IPPROTO_TCP + uint32(len(seg))
	for i := 0; i+1 < len(seg); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(seg[i : i+2]))
	}
	if len(seg)%2 == 1 {
		sum += uint32(seg[len(seg)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(seg[16:18], ^uint16(sum))
	return true
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
