//go:build !linux

package vrrp

import (
	"errors"
	"net/netip"
	"time"
)

// VRRP needs Linux (raw sockets bound to a device, netlink); elsewhere the
// package builds, and every instance stays in FAULT.
var errUnsupported = errors.New("vrrp: only supported on Linux")

type unsupportedOS struct{}

func defaultOS() netOS { return unsupportedOS{} }

func (unsupportedOS) Open(string, int) (advertConn, error) {
	return nil, errUnsupported
}
func (unsupportedOS) PrimaryAddr(string, int, []netip.Addr) (netip.Addr, error) {
	return netip.Addr{}, errUnsupported
}
func (unsupportedOS) LinkUp(string) (bool, error)                      { return false, nil }
func (unsupportedOS) AddVIP(string, netip.Prefix, time.Duration) error { return errUnsupported }
func (unsupportedOS) DelVIP(string, netip.Prefix) error                { return nil }
func (unsupportedOS) HasVIP(string, netip.Addr) (bool, error)          { return false, errUnsupported }
func (unsupportedOS) Announce(string, netip.Addr, int) error           { return errUnsupported }

// Announce sends what a new master sends for a VIP (Linux only).
func Announce(string, netip.Addr, int) error { return errUnsupported }
