package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var labVIP6 = netip.MustParseAddr("2001:db8::50")

// The IPv4 VRRP socket now has a BPF filter that drops adverts with TTL
// != 255 in the kernel, before they take room in the socket's receive
// buffer. The IPv6 socket has none (the hop limit is checked per packet,
// in Go, after the read): an off-link flood of protocol-112 packets to
// the backup's own IPv6 address (hop limit 64, i.e. routed) fills the
// receive buffer faster than it is read, the kernel drops the master's
// adverts along with the flood, and the backup takes the VIP from a live
// master (two MASTERs).
func TestNetnsOffLinkFloodIPv6SplitsBrain(t *testing.T) { offLinkFlood(t, 6) }

// The same flood, same rate, against an IPv4 instance: the BPF filter
// holds it (the control: the flood itself does not starve the nodes).
func TestNetnsOffLinkFloodIPv4Control(t *testing.T) { offLinkFlood(t, 4) }

func offLinkFlood(t *testing.T, family int) {
	vip, vipLen := labVIP6, 64
	if family == 4 {
		vip, vipLen = labVIP, 24
	}
	l := newHALab(t, 2)
	a, b := l.nodes[0], l.nodes[1]
	for i, n := range []*haNode{a, b} {
		conf := fmt.Sprintf(`[global]
node_name = %q
pid_file = "%s/%s.pid"
admin_listen = ""
access_log = "off"
shutdown_timeout = "1s"

[[vrrp]]
name = "VI_6"
interface = "eth0"
virtual_router_id = 52
priority = %d
version = 3
advert_int = "%v"
virtual_ipaddress = ["%v/%d"]
`, n.name, l.dir, n.name, []int{200, 100}[i], advertInt, vip, vipLen)
		if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(l.dir, n.name+".pid"))
		n.proc = n.host.Start(t, l.bin, "-c", n.conf)
	}
	deadline := time.Now().Add(8 * time.Second)
	for !(a.host.HasAddr(vip) && !b.host.HasAddr(vip)) {
		if time.Now().After(deadline) {
			t.Fatalf("node-a never sole holder of %v:\n%s\n%s", vip, a.proc.Output(), b.proc.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	const takeover = `"from": "BACKUP", "to": "MASTER"`
	before := strings.Count(b.proc.Output(), takeover)

	bAddr := b.host.Addr6.Addr().As16()
	var sent atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := l.client.Do(func() error {
				var fd int
				var err error
				var to unix.Sockaddr = &unix.SockaddrInet6{Addr: bAddr}
				if family == 6 {
					fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW, 112)
					if err == nil {
						err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, 64)
					}
				} else {
					to = &unix.SockaddrInet4{Addr: b.host.Addr4.Addr().As4()}
					fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, 112)
					if err == nil {
						err = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, 64)
					}
				}
				if err != nil {
					return err
				}
				defer unix.Close(fd)
				v := make([]byte, 8+len(vip.AsSlice()))
				v[0], v[1], v[2], v[3] = 0x31, 52, 255, 1 // v3 advert, VRID 52, priority 255, 1 address
				v[4], v[5] = 0, 10
				copy(v[8:], vip.AsSlice())
				for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
					for i := 0; i < 256; i++ {
						if unix.Sendto(fd, v, 0, to) == nil {
							sent.Add(1)
						}
					}
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond)
	out := b.proc.Output()
	if n := strings.Count(out, takeover); n > before {
		t.Errorf("%d off-link (hop limit 64) IPv6 VRRP packets (IPv%d) in 3 s made the BACKUP take the VIP from a live MASTER %d time(s)", sent.Load(), family, n-before)
	} else {
		t.Logf("%d packets sent; backup held", sent.Load())
	}
}
