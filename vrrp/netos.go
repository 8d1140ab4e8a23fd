package vrrp

import (
	"fmt"
	"net/netip"
	"time"
)

// advertConn is the raw VRRP socket of one interface and family, shared
// by the instances on it (socket.go).
type advertConn interface {
	// Read blocks for the next VRRP packet and returns its payload length.
	Read(b []byte) (int, received, error)
	// Write sends one advert from src (an instance's address) to dst (the
	// group or a unicast peer).
	Write(b []byte, src, dst netip.Addr) error
	// Join joins (true) or leaves (false) the VRRP multicast group.
	Join(on bool) error
	// Filter has the kernel drop, before they are queued, packets that
	// crossed a router (TTL / hop limit not 255) unless they come from
	// one of routedFrom (unicast peers, which keepalived hears across
	// routers).
	Filter(routedFrom []netip.Addr) error
	Close() error
}

// filterFallbackError is Filter's answer when the kernel refused the
// off-link filter (too many peers for net.core.optmem_max) and the socket
// takes every advert instead: each is still checked as it is read.
type filterFallbackError struct{ err error }

func (e *filterFallbackError) Error() string {
	return fmt.Sprintf("off-link filter refused, every advert checked as it is read: %v", e.err)
}

func (e *filterFallbackError) Unwrap() error { return e.err }

// netOS is everything the runner needs from the operating system, small so
// that the runner is tested with a fake and the real one in namespaces.
type netOS interface {
	// Open opens a raw VRRP socket bound to ifname, not yet joined to the
	// group.
	Open(ifname string, family int) (advertConn, error)
	// PrimaryAddr is the address adverts come from when mcast_src_ip is
	// not set: the first IPv4 address that is not a VIP, or the IPv6
	// link-local address (RFC 5798 section 5.1.2.1).
	PrimaryAddr(ifname string, family int, exclude []netip.Addr) (netip.Addr, error)
	// LinkUp says whether ifname exists, is up and has carrier; a missing
	// interface is (false, nil). An error means the query itself failed
	// (EMFILE, ENOBUFS...): the link's state is unknown, not down.
	LinkUp(ifname string) (bool, error)
	// AddVIP adds or replaces a VIP; lifetime 0 = forever.
	AddVIP(ifname string, p netip.Prefix, lifetime time.Duration) error
	// DelVIP removes a VIP; absent is not an error.
	DelVIP(ifname string, p netip.Prefix) error
	// HasVIP says whether ifname holds the address.
	HasVIP(ifname string, a netip.Addr) (bool, error)
	// Announce sends count gratuitous ARP requests and replies (IPv4) or
	// unsolicited neighbour advertisements (IPv6) for a on ifname.
	Announce(ifname string, a netip.Addr, count int) error
}
