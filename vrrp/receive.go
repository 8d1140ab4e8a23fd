package vrrp

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// DropReason names why a received advertisement was not acted on. The same
// value labels the drop counter and the debug log line.
type DropReason string

// Every reason an advertisement is dropped (RFC 5798 section 7.1, RFC 3768
// section 7.1, and the packet codec).
const (
	DropTruncated        DropReason = "truncated"         // shorter than its header or its address count says
	DropLength           DropReason = "length_mismatch"   // longer than its address count says
	DropBadVersion       DropReason = "bad_version"       // not 2 or 3, or not the instance's version
	DropBadType          DropReason = "bad_type"          // not an advertisement
	DropBadChecksum      DropReason = "bad_checksum"      // checksum does not match
	DropBadInterval      DropReason = "bad_interval"      // advert interval 0
	DropBadTTL           DropReason = "bad_ttl"           // TTL / hop limit not 255: it crossed a router
	DropWrongVRID        DropReason = "wrong_vrid"        // another virtual router on the same link
	DropAuthMismatch     DropReason = "auth_mismatch"     // v2: auth type or password differs
	DropIntervalMismatch DropReason = "interval_mismatch" // v2: advert_int differs from ours
	DropOwnAddress       DropReason = "own_address"       // our own advert came back
	DropNotPeer          DropReason = "not_a_peer"        // unicast mode: sender is not a unicast_peer
	DropQueueFull        DropReason = "queue_full"        // a flood: the instance's loop was behind
)

// DropError is the error for a dropped advertisement.
type DropError struct {
	Reason DropReason
	Detail string
}

func (e *DropError) Error() string {
	return fmt.Sprintf("vrrp advert dropped: %s: %s", e.Reason, e.Detail)
}

func dropf(r DropReason, format string, args ...any) *DropError {
	return &DropError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// received is what the socket layer knows about one packet besides its bytes.
type received struct {
	Src, Dst netip.Addr
	TTL      int // IPv4 TTL or IPv6 hop limit; -1 when the kernel did not say
}

// receivePolicy holds what an instance checks an incoming advert against.
type receivePolicy struct {
	Version  int
	VRID     uint8
	Interval time.Duration // our advert_int, compared in version 2 only
	AuthType uint8
	AuthData [8]byte
	Checksum ChecksumMode
	Own      netip.Addr   // our source address
	Peers    []netip.Addr // unicast peers; empty = multicast, any sender
	VIPs     []netip.Addr // compared with the advert's list: a difference is reported, not dropped
}

// check applies the receive checks to b. It returns the packet and whether
// its address list differs from ours (a peer configuration mismatch), or a
// *DropError.
func (rp *receivePolicy) check(b []byte, r received) (*Packet, bool, error) {
	// In unicast mode the peers may be routers away, as keepalived allows
	// ("but not if unicast"); the sender check below still applies.
	if r.TTL >= 0 && r.TTL != 255 && len(rp.Peers) == 0 {
		return nil, false, dropf(DropBadTTL, "ttl %d from %v", r.TTL, r.Src)
	}
	p, err := Parse(b, r.Src, r.Dst, rp.Checksum)
	if err != nil {
		return nil, false, err
	}
	if p.VRID != rp.VRID {
		return nil, false, dropf(DropWrongVRID, "vrid %d from %v", p.VRID, r.Src)
	}
	if p.Version != rp.Version {
		return nil, false, dropf(DropBadVersion, "version %d from %v, we speak %d", p.Version, r.Src, rp.Version)
	}
	src := r.Src.Unmap()
	if src == rp.Own {
		return nil, false, dropf(DropOwnAddress, "from %v", src)
	}
	if len(rp.Peers) > 0 && !slices.Contains(rp.Peers, src) {
		return nil, false, dropf(DropNotPeer, "from %v", src)
	}
	if p.Version == 2 {
		if p.AuthType != rp.AuthType || (rp.AuthType == AuthTypeSimple && p.AuthData != rp.AuthData) {
			return nil, false, dropf(DropAuthMismatch, "auth type %d from %v", p.AuthType, src)
		}
		if p.Interval != rp.Interval {
			return nil, false, dropf(DropIntervalMismatch, "advert_int %v from %v, ours %v", p.Interval, src, rp.Interval)
		}
	}
	return p, !sameAddrSet(p.Addrs, rp.VIPs), nil
}

func sameAddrSet(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
