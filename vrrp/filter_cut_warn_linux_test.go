package vrrp

import (
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"
)

// Past maxFilterInstructions the socket takes every advert (no off-link
// filter in the kernel): setFilter answers a *filterFallbackError so that
// syncJoinLocked warns, as when the kernel refuses the filter.
func TestFilterCutIsWarned(t *testing.T) {
	var peers []netip.Addr
	for i := range 300 {
		peers = append(peers, netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}))
	}
	var set [][]bpf.RawInstruction
	err := setFilter(func(p []bpf.RawInstruction) error { set = append(set, p); return nil }, 4, peers)
	var fb *filterFallbackError
	if len(set) == 1 && len(set[0]) == 1 && !errors.As(err, &fb) {
		t.Errorf("300 IPv4 unicast peers: the socket takes every advert (filter of %d instruction) and setFilter answers %v: no warning is logged", len(set[0]), err)
	}
}
