package httpproxy

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The fast path reads and writes its sockets (all non-blocking) with raw
// system calls, inside RawConn callbacks, as the stream engine does (see
// proxy/stream/sys.go): a call the scheduler is told of marks the P as in
// a system call, and on loopback a write does the peer's part of the work
// inline and can take tens of microseconds; with one P, sysmon finding it
// there hands the P to another thread (a futex wake, two context
// switches) for the loop's thread to take it back a moment later.
// Measured on small keep-alive GETs: 3% less CPU per request.

func rawRead(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
