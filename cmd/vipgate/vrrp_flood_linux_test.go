package main

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSecOffLinkFloodSplitsBrain: packets of IP protocol 112 that crossed
// a router (TTL 64 here) are not VRRP adverts a node may act on, and are
// dropped, but only after queueing behind the real ones on the
// instance's 64-slot queue and, with a new source address each time, a
// WARN line each. A flood of them with spoofed sources, sent to the
// backup's own address from anywhere that routes to it, pushes the
// master's adverts out of the queue ("queue_full"): the backup stops
// hearing the master and takes the VIP while the master keeps it (two
// MASTERs, an ARP fight). keepalived checks the TTL on each packet as it
// reads it.
func TestSecOffLinkFloodSplitsBrain(t *testing.T) {
	l := newHALab(t, 2)
	a, b := l.nodes[0], l.nodes[1]
	for _, n := range l.nodes {
		n.startBackend("http", "127.0.0.1:8081", "127.0.0.1:8082")
	}
	a.start(nodeConfig{prio: 200})
	b.start(nodeConfig{prio: 100})
	l.waitSoleHolder(a, 5*time.Second)
	settled := time.Now()

	bAddr := b.host.Addr4.Addr().As4()
	sent := 0
	err := l.client.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Addr: bAddr}
		pkt := make([]byte, 20+12)
		pkt[0], pkt[8], pkt[9] = 0x45, 64, 112 // IPv4, TTL 64 (routed), VRRP
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		copy(pkt[16:20], bAddr[:])
		v := pkt[20:]
		v[0], v[1], v[2], v[3] = 0x31, 51, 255, 1 // v3 advert, VRID 51, priority 255, 1 address
		binary.BigEndian.PutUint16(v[4:], 10)
		copy(v[8:], labVIP.AsSlice())
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
			for i := 0; i < 256; i++ {
				src := netip.AddrFrom4([4]byte{198, 18, byte(sent >> 8), byte(sent)}).As4()
				copy(pkt[12:16], src[:])
				if unix.Sendto(fd, pkt, 0, to) == nil {
					sent++
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if b.watch.gained(settled) {
		t.Errorf("%d off-link (TTL 64) VRRP packets with spoofed sources in 3 s made the BACKUP take the VIP from a live MASTER:%s",
			sent, l.histories())
	}
}
