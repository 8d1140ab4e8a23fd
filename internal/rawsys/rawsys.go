// Package rawsys reads and writes non-blocking sockets with raw system
// calls, for the proxies' hot paths (the stream engine's loops, the HTTP
// fast path's RawConn callbacks).
//
// A call the Go scheduler is told of (syscall.Syscall) marks the P as in
// a system call. On loopback a write does the peer's part of the work
// inline and can take tens of microseconds; with one P, sysmon finding it
// there hands the P to another thread (a futex wake and two context
// switches) for the caller's thread to take it back a moment later. On a
// non-blocking descriptor every call returns at once, so the scheduler
// need not know: measured 10% less CPU per short stream and 3% less per
// small keep-alive HTTP request.
package rawsys

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read is read(2) on a non-blocking descriptor.
func Read(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// Write is write(2) on a non-blocking descriptor.
func Write(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
