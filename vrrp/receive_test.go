package vrrp

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestReceiveChecks(t *testing.T) {
	vip := a4("192.0.2.50")
	peer := a4("192.0.2.2")
	base := receivePolicy{Version: 2, VRID: 51, Interval: time.Second, AuthType: AuthTypeSimple,
		AuthData: AuthPassData("secret"), Own: src4, VIPs: []netip.Addr{vip}}
	good := Packet{Version: 2, VRID: 51, Priority: 100, Interval: time.Second, AuthType: AuthTypeSimple,
		AuthData: AuthPassData("secret"), Addrs: []netip.Addr{vip}}
	for _, tc := range []struct {
		name     string
		policy   func(*receivePolicy)
		pkt      func(*Packet)
		src      netip.Addr
		ttl      int
		want     DropReason // "" = accepted
		mismatch bool
	}{
		{name: "good", src: peer, ttl: 255},
		{name: "ttl unknown", src: peer, ttl: -1},
		{name: "ttl 254", src: peer, ttl: 254, want: DropBadTTL},
		{name: "other vrid", src: peer, ttl: 255, pkt: func(p *Packet) { p.VRID = 52 }, want: DropWrongVRID},
		{name: "v3 advert to a v2 instance", src: peer, ttl: 255, pkt: func(p *Packet) { p.Version = 3 }, want: DropBadVersion},
		{name: "own address", src: src4, ttl: 255, want: DropOwnAddress},
		{name: "wrong password", src: peer, ttl: 255, pkt: func(p *Packet) { p.AuthData = AuthPassData("guess") }, want: DropAuthMismatch},
		{name: "no auth", src: peer, ttl: 255, pkt: func(p *Packet) { p.AuthType, p.AuthData = 0, [8]byte{} }, want: DropAuthMismatch},
		{name: "password beyond 8 bytes ignored", src: peer, ttl: 255, policy: func(rp *receivePolicy) { rp.AuthData = AuthPassData("secret12") },
			pkt: func(p *Packet) { p.AuthData = AuthPassData("secret12-and-more") }},
		{name: "v2 interval differs", src: peer, ttl: 255, pkt: func(p *Packet) { p.Interval = 2 * time.Second }, want: DropIntervalMismatch},
		{name: "v3 interval differs is fine", src: peer, ttl: 255,
			policy: func(rp *receivePolicy) { rp.Version = 3; rp.AuthType = 0; rp.AuthData = [8]byte{} },
			pkt:    func(p *Packet) { p.Version = 3; p.Interval = 2 * time.Second; p.AuthType = 0; p.AuthData = [8]byte{} }},
		{name: "unicast: listed peer", src: peer, ttl: 255, policy: func(rp *receivePolicy) { rp.Peers = []netip.Addr{peer} }},
		{name: "unicast: stranger", src: a4("192.0.2.3"), ttl: 255, policy: func(rp *receivePolicy) { rp.Peers = []netip.Addr{peer} }, want: DropNotPeer},
		{name: "other VIP list: accepted, reported", src: peer, ttl: 255, pkt: func(p *Packet) { p.Addrs = []netip.Addr{a4("192.0.2.51")} }, mismatch: true},
		{name: "same VIPs in another order", src: peer, ttl: 255,
			policy: func(rp *receivePolicy) { rp.VIPs = []netip.Addr{a4("192.0.2.51"), vip} },
			pkt:    func(p *Packet) { p.Addrs = []netip.Addr{vip, a4("192.0.2.51")} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp, p := base, good
			if tc.policy != nil {
				tc.policy(&rp)
			}
			if tc.pkt != nil {
				tc.pkt(&p)
			}
			b, err := p.Marshal(tc.src, Group4, 0)
			if err != nil {
				t.Fatal(err)
			}
			got, mismatch, err := rp.check(b, received{Src: tc.src, Dst: Group4, TTL: tc.ttl})
			if tc.want != "" {
				var de *DropError
				if !errors.As(err, &de) || de.Reason != tc.want {
					t.Fatalf("got %v, want drop %s", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Priority != 100 || mismatch != tc.mismatch {
				t.Fatalf("accepted %+v mismatch=%v, want mismatch=%v", got, mismatch, tc.mismatch)
			}
		})
	}
}
