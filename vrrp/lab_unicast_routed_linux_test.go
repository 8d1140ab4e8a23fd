package vrrp_test

import (
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/netlab"
	"github.com/vipgate/vipgate/vrrp"
	"golang.org/x/net/ipv4"
)

// In unicast_peer mode the peers are often in other subnets (cloud zones),
// their adverts routed, TTL below 255. keepalived checks TTL/hop limit 255
// only without unicast peers ("MUST verify that the IPv4 TTL/IPv6 HL is
// 255 (but not if unicast)", vrrp.c); the socket filter and the
// per-packet check must let the listed peer's routed adverts in, or each
// node hears nobody and both are MASTER (split brain). Here the peer's
// routed advert (TTL 64) with a higher priority makes the MASTER step
// down, as it does keepalived.
func TestLabUnicastRoutedPeerHeard(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 2})
	a, peer := lab.Hosts[0], lab.Hosts[1]
	cfg := fastConfig(100)
	cfg.UnicastPeers = []netip.Addr{peer.Addr4.Addr()}
	startNode(t, a, cfg)
	waitFor(t, settle, "a MASTER", func() bool { return a.HasAddr(vip4) })

	if !routedAdvertsTakeOver(t, peer, a) {
		t.Fatalf("unicast mode: 3 s of priority-254 adverts from the listed peer %v with TTL 64 (routed, as keepalived's unicast peers may be) and a still MASTER: they are dropped (keepalived accepts them in unicast mode); both nodes would be MASTER", peer.Addr4.Addr())
	}
}

// A reload that changes the unicast peer list (the mode stays unicast)
// must let the new peer's routed adverts in, as keepalived does after a
// reload; the shared socket's member and filter keep the old peer list.
func TestLabUnicastRoutedPeerChangedByReload(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 2})
	a, peer := lab.Hosts[0], lab.Hosts[1]
	cfg := fastConfig(100)
	cfg.UnicastPeers = []netip.Addr{netip.MustParseAddr("192.0.2.99")}
	na := startNode(t, a, cfg)
	waitFor(t, settle, "a MASTER", func() bool { return a.HasAddr(vip4) })
	cfg.UnicastPeers = []netip.Addr{peer.Addr4.Addr()}
	data, _ := json.Marshal([]vrrp.Config{cfg})
	if err := os.WriteFile(na.conf, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := na.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)

	if !routedAdvertsTakeOver(t, peer, a) {
		t.Fatalf("unicast peer changed by reload to %v: 3 s of its priority-254 routed adverts (TTL 64) and a still MASTER; the socket still filters with the old peer list\n%s", peer.Addr4.Addr(), na.proc.Output())
	}
}

// routedAdvertsTakeOver sends from peer, for up to 3 s, priority-254
// adverts for vip4 with TTL 64 (routed: one router on the way) to a, and
// reports whether a gave the VIP up.
func routedAdvertsTakeOver(t *testing.T, peer, a *netlab.Host) bool {
	t.Helper()
	var pc *ipv4.PacketConn
	if err := peer.Do(func() error {
		c, err := net.ListenPacket("ip4:112", peer.Addr4.Addr().String())
		if err != nil {
			return err
		}
		pc = ipv4.NewPacketConn(c)
		return pc.SetTTL(64)
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	p := vrrp.Packet{Version: 3, VRID: 51, Priority: 254, Interval: 100 * time.Millisecond, Addrs: []netip.Addr{vip4}}
	b, err := p.Marshal(peer.Addr4.Addr(), a.Addr4.Addr(), vrrp.ChecksumPseudoHeader)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := pc.WriteTo(b, nil, &net.IPAddr{IP: a.Addr4.Addr().AsSlice()}); err != nil {
			t.Fatal(err)
		}
		if !a.HasAddr(vip4) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}
