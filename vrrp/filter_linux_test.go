package vrrp

import (
	"fmt"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"
)

// runOnLinkOnly runs the socket filter on an IP header (the kernel's
// SKF_NET_OFF loads become plain offsets) and tells whether it accepts it.
func runOnLinkOnly(t *testing.T, family int, peers []netip.Addr, src netip.Addr, ttl byte) bool {
	t.Helper()
	raw := onLinkOnly(family, peers)
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("filter does not disassemble")
	}
	for i, ins := range prog {
		if l, ok := ins.(bpf.LoadAbsolute); ok {
			l.Off -= 0xfff00000
			prog[i] = l
		}
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatalf("filter with %d peers: %v", len(peers), err)
	}
	var pkt []byte
	if family == 4 {
		pkt = make([]byte, 40)
		pkt[0], pkt[8] = 0x45, ttl
		copy(pkt[12:16], src.AsSlice())
	} else {
		pkt = make([]byte, 60)
		pkt[0], pkt[7] = 0x60, ttl
		copy(pkt[8:24], src.AsSlice())
	}
	n, err := vm.Run(pkt)
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// The off-link filter must accept an on-link advert (hop limit 255) and
// a listed peer's routed one, however many unicast peers the members of a
// shared socket list (a jump longer than 255 instructions does not fit
// the 8-bit skip of a classic BPF conditional jump).
func TestOnLinkOnlyManyPeers(t *testing.T) {
	for _, tc := range []struct{ family, peers int }{{4, 0}, {4, 1}, {4, 2}, {4, 60}, {4, 130}, {6, 0}, {6, 1}, {6, 2}, {6, 31}, {6, 32}, {6, 50}, {6, 60}} {
		var peers []netip.Addr
		for i := range tc.peers {
			if tc.family == 4 {
				peers = append(peers, netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i + 1)}))
			} else {
				peers = append(peers, netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::1", i+1)))
			}
		}
		onLink := netip.MustParseAddr("192.0.2.7")
		stranger := netip.MustParseAddr("203.0.113.9")
		if tc.family == 6 {
			onLink, stranger = netip.MustParseAddr("fe80::7"), netip.MustParseAddr("2001:db8:ffff::9")
		}
		name := fmt.Sprintf("IPv%d/%d peers", tc.family, tc.peers)
		if !runOnLinkOnly(t, tc.family, peers, onLink, 255) {
			t.Errorf("%s: on-link advert (TTL/hop limit 255) from %v dropped", name, onLink)
		}
		// Past maxFilterInstructions the socket takes every advert (the
		// checks on each packet read apply).
		filtered := len(onLinkOnly(tc.family, peers)) > 1
		if filtered && runOnLinkOnly(t, tc.family, peers, stranger, 64) {
			t.Errorf("%s: routed advert from a non-peer %v accepted", name, stranger)
		}
		for _, p := range peers {
			if !runOnLinkOnly(t, tc.family, peers, p, 64) {
				t.Errorf("%s: routed advert from the listed peer %v dropped", name, p)
			}
			if !runOnLinkOnly(t, tc.family, peers, p, 255) {
				t.Errorf("%s: on-link advert from the listed peer %v dropped", name, p)
			}
		}
	}
}
