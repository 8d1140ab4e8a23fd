package vrrp_test

import (
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/vipgate/vipgate/internal/netlab"
	"github.com/vipgate/vipgate/vrrp"
)

// garpSeen is one gratuitous ARP for the VIP seen by the client.
type garpSeen struct {
	at  time.Time
	op  arp.Operation
	mac string
}

// captureGARPs listens on the client's interface for d and returns the
// gratuitous ARPs (sender and target address both vip4) it saw.
func captureGARPs(t *testing.T, client *netlab.Host, d time.Duration) []garpSeen {
	t.Helper()
	c, err := client.DialARP()
	if err != nil {
		t.Fatalf("ARP socket in the client: %v", err)
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	var seen []garpSeen
	for {
		p, _, err := c.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return seen
		}
		if err != nil {
			continue // not an ARP packet arp can parse
		}
		if p.SenderIP == vip4 && p.TargetIP == vip4 {
			seen = append(seen, garpSeen{at: time.Now(), op: p.Operation, mac: p.SenderHardwareAddr.String()})
		}
	}
}

// garpBursts groups packets less than 50ms apart.
func garpBursts(seen []garpSeen) [][]garpSeen {
	var bursts [][]garpSeen
	for i, g := range seen {
		if i == 0 || g.at.Sub(seen[i-1].at) > 50*time.Millisecond {
			bursts = append(bursts, nil)
		}
		bursts[len(bursts)-1] = append(bursts[len(bursts)-1], g)
	}
	return bursts
}

// With garp_master_refresh the MASTER announces the VIP again at that
// period, as long as it is MASTER (the BACKUP never does), so a client
// whose cache went stale learns it again.
func TestLabGARPMasterRefresh(t *testing.T) {
	const refresh = 400 * time.Millisecond
	lab := netlab.New(t, netlab.Options{Hosts: 3})
	a, b, client := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2]
	cfg := func(prio uint8) vrrp.Config {
		c := fastConfig(prio)
		c.GARPMasterRefresh = refresh
		c.GARPMasterDelay = 0 // only the refresh repeats the announcement
		c.GARPMasterRepeat = 1
		return c
	}
	startNode(t, a, cfg(200))
	startNode(t, b, cfg(100))
	waitSoleHolder(t, lab.Hosts[:2], vip4, a, settle, 200*time.Millisecond)

	const window = 2500 * time.Millisecond
	seen := captureGARPs(t, client, window)
	bursts := garpBursts(seen)
	if len(bursts) < 4 {
		t.Fatalf("%d announcements in %v with a refresh every %v: %+v", len(bursts), window, refresh, seen)
	}
	var gaps []time.Duration
	for i, burst := range bursts {
		var ops []arp.Operation
		for _, g := range burst {
			if g.mac != a.MAC.String() {
				t.Fatalf("gratuitous ARP for the VIP from %s, not from the master %s", g.mac, a.MAC)
			}
			ops = append(ops, g.op)
		}
		if !slices.Contains(ops, arp.OperationRequest) || !slices.Contains(ops, arp.OperationReply) {
			t.Errorf("announcement %d is %v, want a request and a reply", i, ops)
		}
		if i > 0 {
			gaps = append(gaps, burst[0].at.Sub(bursts[i-1][0].at))
		}
	}
	slices.Sort(gaps)
	median := gaps[len(gaps)/2]
	t.Logf("%d announcements, gaps %v", len(bursts), gaps)
	// Timers on a busy machine fire late, never early: the shortest gap
	// bounds the period from below, the median from above.
	if gaps[0] < refresh-100*time.Millisecond || median > refresh+150*time.Millisecond {
		t.Errorf("announcement gaps %v, want every %v", gaps, refresh)
	}
}
