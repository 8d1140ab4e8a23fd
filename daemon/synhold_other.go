//go:build !linux

package daemon

import (
	"net/netip"

	"go.uber.org/zap"
)

// connectionHold is Linux-only (classic BPF socket filters).
type connectionHold struct{}

func prepareHold([]netip.Addr) *connectionHold { return &connectionHold{} }

func (*connectionHold) holdNewConnections() (held int, resume func(), err error) {
	return 0, func() {}, nil
}

// connectionsArriving is Linux-only (sock_diag); elsewhere the handover
// waits its whole moment.
func connectionsArriving([]netip.Addr) (int, error) { return 1, nil }

// synForwarder is Linux-only (packet sockets): held clients retransmit.
type synForwarder struct{}

func startSYNForwarder([]netip.Addr, *zap.Logger) (*synForwarder, error) { return nil, nil }

func (*synForwarder) Stop() int { return 0 }
