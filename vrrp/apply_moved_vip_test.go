package vrrp

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// A VIP moved from instance A to instance B (both MASTER here, B listed
// first) must be held when Apply returns. Manager.Apply's first pass has A
// drop it, but A's goroutine runs on between the passes: a VIP renewal
// (vip_lifetime) there re-adds it from A's old configuration, and A's
// reconfigure, after B's, deletes it under B.
func TestMovedVIPSurvivesRenewBetweenPasses(t *testing.T) {
	x := netip.MustParsePrefix("192.0.2.60/24")
	y := netip.MustParsePrefix("192.0.2.61/24")
	z := netip.MustParsePrefix("192.0.2.62/24")
	mk := func(name string, vrid uint8, vips ...netip.Prefix) Config {
		c := testConfig(200)
		c.Name, c.VRID = name, vrid
		c.VIPs = nil
		for _, p := range vips {
			c.VIPs = append(c.VIPs, VIP{Prefix: p})
		}
		c.VIPLifetime = 30 * time.Millisecond // renewed every 10ms
		return c
	}
	n := &fakeNet{}
	node := startTestNode(t, n, "192.0.2.1", mk("B", 52, y), mk("A", 51, x, z))
	eventually(t, 2*time.Second, "both MASTER with their VIPs", func() bool {
		st := node.m.Status()
		return len(st) == 2 && st[0].State == "MASTER" && st[1].State == "MASTER" && len(node.os.held()) == 3
	})
	for i := range 300 {
		// X moves to B (listed first)...
		if err := node.m.Apply([]Config{mk("B", 52, y, x), mk("A", 51, z)}); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(node.os.held(), x) {
			t.Fatalf("reload %d: VIP %v moved to B (MASTER) is not on the node after Apply: %v", i, x, node.os.held())
		}
		// ... and back to A.
		if err := node.m.Apply([]Config{mk("B", 52, y), mk("A", 51, x, z)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i%7) * time.Millisecond)
	}
}
