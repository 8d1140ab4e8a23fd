package vrrp

import (
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestSpoofedSourcesBounded: a packet of IP protocol 112 that crossed a
// router (TTL < 255) is dropped before anything else is checked but
// still warned about and remembered once per source address. Anyone who
// can route packets to the node (its address on the VRRP interface is
// often the public one) sends them with a new spoofed source each time:
// every one is a WARN "configuration mismatch (both nodes may hold the
// VIP)" (paging the operator for a split brain that is not there) and a
// map entry that is never removed (memory grows without bound).
func TestSpoofedSourcesBounded(t *testing.T) {
	n := &fakeNet{}
	core, logs := observer.New(zap.WarnLevel)
	m := newManager(zap.New(core), newFakeOS(n, "192.0.2.1"))
	if err := m.Apply([]Config{testConfig(200)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	eventually(t, time.Second, "MASTER", func() bool { return m.Status()[0].State == "MASTER" })
	const sources = 3000
	for i := 0; i < sources; i++ {
		src := netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)})
		p := Packet{Version: 3, VRID: 51, Priority: 100, Interval: testAdvert, Addrs: []netip.Addr{testVIP.Addr()}}
		b, _ := p.Marshal(src, Group4, ChecksumPseudoHeader)
		n.inject(b, src, 50) // routed from afar
		if i%32 == 31 {
			time.Sleep(time.Millisecond) // no queue_full drops: each one is looked at
		}
	}
	eventually(t, 5*time.Second, "every packet dropped", func() bool {
		d := m.Status()[0].Drops
		return d[DropBadTTL]+d[DropQueueFull] == sources
	})
	var in *instance
	for _, i := range m.instances {
		in = i
	}
	remembered := make(chan int)
	in.post(func() { remembered <- len(in.dropWarned) })
	kept := <-remembered
	warned := logs.FilterMessageSnippet("configuration mismatch").Len()
	if warned > 10 || kept > 1000 {
		t.Errorf("%d off-link packets with spoofed sources: %d WARN lines about a configuration mismatch, %d entries kept in memory for good (drops %v)",
			sources, warned, kept, m.Status()[0].Drops)
	}
}
