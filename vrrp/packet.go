package vrrp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// IPProtocol is the IP protocol number of VRRP (RFC 5798 section 5.1.1.4).
const IPProtocol = 112

// The multicast groups adverts are sent to (RFC 5798 section 5.1.1.2/5.1.2.2).
var (
	Group4 = netip.MustParseAddr("224.0.0.18")
	Group6 = netip.MustParseAddr("ff02::12")
)

const (
	typeAdvertisement = 1
	headerLen         = 8
	authDataLen       = 8 // v2 only: the RFC 2338 authentication data
	// AuthTypeNone and AuthTypeSimple are the v2 Auth Type values we speak
	// (RFC 2338; keepalived's auth_type PASS). IP AH (2) is not supported.
	AuthTypeNone   = 0
	AuthTypeSimple = 1
	maxV3Interval  = 4095 * 10 * time.Millisecond
)

// Packet is a decoded VRRP advertisement, version 2 or 3.
type Packet struct {
	Version  int // 2 (RFC 3768) or 3 (RFC 5798)
	VRID     uint8
	Priority uint8
	// Interval is the advertisement interval: whole seconds on the wire in
	// version 2, centiseconds (Max Adver Int, 12 bits) in version 3.
	Interval time.Duration
	AuthType uint8   // version 2 only
	AuthData [8]byte // version 2 only
	// Addrs are the virtual addresses the sender announces: IPv4 in v2,
	// the family of the IP header in v3.
	Addrs []netip.Addr
}

// AuthPassData turns an auth_pass into the 8 bytes of authentication data
// keepalived sends: the first 8 bytes, zero padded.
func AuthPassData(pass string) (d [8]byte) {
	copy(d[:], pass)
	return d
}

// ChecksumMode says what the VRRPv3-over-IPv4 checksum covers.
type ChecksumMode int

const (
	// ChecksumPseudoHeader is RFC 5798 and keepalived's default: the IPv4
	// or IPv6 pseudo-header is part of the checksum in version 3.
	ChecksumPseudoHeader ChecksumMode = iota
	// ChecksumAsV2 leaves the pseudo-header out for VRRPv3 over IPv4, as
	// keepalived's vrrp_v3_checksum_as_v2 does. IPv6 always uses it.
	ChecksumAsV2
)

// Marshal encodes p as sent from src to dst (the multicast group or, in
// unicast mode, the peer; both enter the v3 checksum).
func (p *Packet) Marshal(src, dst netip.Addr, mode ChecksumMode) ([]byte, error) {
	v6 := src.Is6() && !src.Is4In6()
	addrLen := 4
	if v6 {
		addrLen = 16
	}
	switch p.Version {
	case 2:
		if v6 {
			return nil, fmt.Errorf("vrrp: version 2 is IPv4 only")
		}
		if p.Interval < time.Second || p.Interval > 255*time.Second || p.Interval%time.Second != 0 {
			return nil, fmt.Errorf("vrrp: version 2 advert interval %v is not 1-255 whole seconds", p.Interval)
		}
	case 3:
		if p.Interval < 10*time.Millisecond || p.Interval > maxV3Interval || p.Interval%(10*time.Millisecond) != 0 {
			return nil, fmt.Errorf("vrrp: version 3 advert interval %v is not 10ms-40.95s in centiseconds", p.Interval)
		}
	default:
		return nil, fmt.Errorf("vrrp: unknown version %d", p.Version)
	}
	if len(p.Addrs) > 255 {
		return nil, fmt.Errorf("vrrp: %d addresses, at most 255 fit", len(p.Addrs))
	}
	n := headerLen + addrLen*len(p.Addrs)
	if p.Version == 2 {
		n += authDataLen
	}
	b := make([]byte, n)
	b[0] = byte(p.Version)<<4 | typeAdvertisement
	b[1] = p.VRID
	b[2] = p.Priority
	b[3] = byte(len(p.Addrs))
	if p.Version == 2 {
		b[4] = p.AuthType
		b[5] = byte(p.Interval / time.Second)
	} else {
		binary.BigEndian.PutUint16(b[4:], uint16(p.Interval/(10*time.Millisecond)))
	}
	off := headerLen
	for _, a := range p.Addrs {
		a = a.Unmap()
		if a.Is6() != v6 || !a.IsValid() {
			return nil, fmt.Errorf("vrrp: address %v does not match the packet's family", a)
		}
		copy(b[off:], a.AsSlice())
		off += addrLen
	}
	if p.Version == 2 {
		copy(b[off:], p.AuthData[:])
	}
	binary.BigEndian.PutUint16(b[6:], checksum(b, p.Version, src, dst, mode))
	return b, nil
}

// Parse decodes an advertisement received from src to dst (addresses from
// the IP header). Every reason to drop it is a *DropError.
func Parse(b []byte, src, dst netip.Addr, mode ChecksumMode) (*Packet, error) {
	if len(b) < headerLen {
		return nil, dropf(DropTruncated, "%d bytes, the header alone is %d", len(b), headerLen)
	}
	p := &Packet{Version: int(b[0] >> 4), VRID: b[1], Priority: b[2]}
	if t := b[0] & 0x0f; t != typeAdvertisement {
		return nil, dropf(DropBadType, "type %d", t)
	}
	src, dst = src.Unmap(), dst.Unmap()
	v6 := src.Is6()
	addrLen := 4
	if v6 {
		addrLen = 16
	}
	count := int(b[3])
	want := headerLen + addrLen*count
	switch p.Version {
	case 2:
		if v6 {
			return nil, dropf(DropBadVersion, "version 2 over IPv6")
		}
		want += authDataLen
		p.AuthType = b[4]
		p.Interval = time.Duration(b[5]) * time.Second
	case 3:
		p.Interval = time.Duration(binary.BigEndian.Uint16(b[4:])&0x0fff) * 10 * time.Millisecond
	default:
		return nil, dropf(DropBadVersion, "version %d", p.Version)
	}
	if len(b) < want {
		return nil, dropf(DropTruncated, "%d bytes, %d addresses need %d", len(b), count, want)
	}
	if len(b) > want {
		return nil, dropf(DropLength, "%d bytes, %d addresses make %d", len(b), count, want)
	}
	if got, sum := binary.BigEndian.Uint16(b[6:]), checksum(b, p.Version, src, dst, mode); got != sum {
		return nil, dropf(DropBadChecksum, "checksum %#04x, computed %#04x", got, sum)
	}
	if p.Interval == 0 {
		return nil, dropf(DropBadInterval, "advert interval 0")
	}
	p.Addrs = make([]netip.Addr, count)
	off := headerLen
	for i := range p.Addrs {
		p.Addrs[i], _ = netip.AddrFromSlice(b[off : off+addrLen])
		off += addrLen
	}
	if p.Version == 2 {
		copy(p.AuthData[:], b[off:])
	}
	return p, nil
}

// checksum computes the VRRP checksum of b, its own field taken as zero.
func checksum(b []byte, version int, src, dst netip.Addr, mode ChecksumMode) uint16 {
	var sum uint32
	if version == 3 && (src.Is6() || mode == ChecksumPseudoHeader) {
		s, d := src.AsSlice(), dst.AsSlice()
		sum = sumWords(sum, s)
		sum = sumWords(sum, d)
		if src.Is6() {
			sum += uint32(len(b)>>16) + uint32(len(b)&0xffff) // 32-bit length
		} else {
			sum += uint32(len(b))
		}
		sum += IPProtocol
	}
	sum = sumWords(sum, b[:6])
	sum = sumWords(sum, b[8:])
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func sumWords(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}
