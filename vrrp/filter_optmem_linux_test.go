package vrrp

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vipgate/vipgate/internal/netlab"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// The off-link filter must attach, for any number of unicast peers, on a
// kernel whose net.core.optmem_max is the pre-6.9 default (20480): Debian
// 12, Ubuntu 22.04/24.04, RHEL 8/9. The socket filter is charged against
// optmem_max, so a program of a few thousand instructions is refused
// (ENOMEM) and the socket keeps its old filter: new routed peers are
// dropped in the kernel.
func TestFilterFitsOldOptmemMax(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 1})
	h := lab.Hosts[0]
	h.MustRun(t, "sysctl", "-q", "-w", "net.core.optmem_max=20480")
	for _, tc := range []struct {
		family, peers int
	}{{4, 100}, {4, 200}, {4, 300}, {4, 400}, {4, 600}, {4, 1300}, {6, 50}, {6, 100}, {6, 150}, {6, 200}, {6, 450}} {
		var peers []netip.Addr
		for i := range tc.peers {
			if tc.family == 4 {
				peers = append(peers, netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}))
			} else {
				peers = append(peers, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 14: byte(i >> 8), 15: byte(i)}))
			}
		}
		prog := onLinkOnly(tc.family, peers)
		err := h.Do(func() error {
			if tc.family == 4 {
				c, err := net.ListenPacket("ip4:112", "0.0.0.0")
				if err != nil {
					return err
				}
				defer c.Close()
				return ipv4.NewPacketConn(c).SetBPF(prog)
			}
			c, err := net.ListenPacket("ip6:112", "::")
			if err != nil {
				return err
			}
			defer c.Close()
			return ipv6.NewPacketConn(c).SetBPF(prog)
		})
		if len(prog) == 1 {
			t.Logf("IPv%d, %d routed peers: past the limit, every advert checked as it is read", tc.family, tc.peers)
		}
		if err != nil {
			t.Errorf("IPv%d, %d routed peers: filter of %d instructions not attached: %v", tc.family, tc.peers, len(prog), err)
		} else {
			t.Logf("IPv%d, %d routed peers: filter of %d instructions attached", tc.family, tc.peers, len(prog))
		}
	}
}
