//go:build !linux

package daemon

import "net/netip"

// holdNewConnections is Linux-only (classic BPF socket filters).
func holdNewConnections([]netip.Addr) (held int, resume func(), err error) {
	return 0, func() {}, nil
}
