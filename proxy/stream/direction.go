package stream

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vipgate/vipgate/balancer"
)

// direction moves bytes from src to dst until src ends (then dst's write
// side is shut, passing the half-close on) or something fails (then the
// whole session is aborted).
//
// Between bursts it waits for src to become readable without holding
// anything but its goroutine (no buffer, no pipe). Small reads are copied;
// bulk transfers splice exactly the bytes the kernel has queued, so Go's
// splice never parks on an empty socket with a pipe in hand.
//
// Idle limits cost no per-byte work: the read deadline is only moved when
// it fires (to the session's last activity plus proxy_timeout), and the
// write deadline is refreshed when half of it is used up.
type direction struct {
	ss       *session
	src, dst net.Conn
	fromCli  bool // client -> upstream
	timeout  time.Duration
	srv      *balancer.Server

	// Fast path: both sockets are *net.TCPConn.
	dstTCP   *net.TCPConn
	raw      syscall.RawConn // src's
	bulk     bool            // the last round filled a buffer: splice
	avail    int             // bulk: bytes queued on src (up to peekLimit), found by check
	buf      *[]byte         // not bulk: pooled buffer holding what check read
	copied   int             // not bulk: bytes check read into buf
	checkErr error           // socket error found by check
	check    func(fd uintptr) bool
	lr       io.LimitedReader

	readDeadline  time.Duration // since session start
	writeDeadline time.Duration // since session start
	eofAt         time.Duration // since session start; 0 until src ended cleanly
}

func newDirection(ss *session, src, dst net.Conn, timeout time.Duration, fromClient bool, srv *balancer.Server) *direction {
	d := &direction{ss: ss, src: src, dst: dst, fromCli: fromClient, timeout: timeout, srv: srv}
	s, sok := src.(*net.TCPConn)
	t, tok := dst.(*net.TCPConn)
	if sok && tok {
		if raw, err := s.SyscallConn(); err == nil {
			d.dstTCP, d.raw = t, raw
			d.check = d.readable
			d.lr.R = s
		}
	}
	return d
}

func (d *direction) run() {
	defer d.ss.directionDone()
	var err error
	if d.raw != nil {
		err = d.rawLoop()
	} else {
		err = d.copyLoop()
	}
	if err == nil {
		// src ended cleanly: pass the half-close on, unless the other
		// direction has finished too: then the teardown right after this
		// closes dst, which sends the same FIN (everything dst sent was
		// read), and a shutdown call would only cost a system call.
		d.eofAt = time.Since(d.ss.start)
		if d.ss.running.Load() == 1 {
			return
		}
		if cw, ok := d.dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			d.ss.abort(d.ended())
		}
		return
	}
	d.ss.abort(d.failure(err))
}

// ended is the reason when src ended cleanly.
func (d *direction) ended() endReason {
	if d.fromCli {
		return endClientClosed
	}
	return endUpstreamClosed
}

// failure classifies the error that stopped this direction.
func (d *direction) failure(err error) endReason {
	var e *sideError
	if errors.As(err, &e) {
		switch {
		case errors.Is(e.err, errIdle):
			return endIdle
		case isTimeout(e.err) && e.write:
			return endWriteTimeout
		}
		clientSide := d.fromCli != e.write // reading from the client, or writing to it
		if clientSide {
			return endClientError
		}
		return endUpstreamError
	}
	return endInternal
}

// sideError tells whether an error happened reading src or writing dst.
type sideError struct {
	write bool
	err   error
}

func (e *sideError) Error() string { return e.err.Error() }
func (e *sideError) Unwrap() error { return e.err }

var errIdle = errors.New("proxy_timeout: no data either way")

// rawLoop is the path between two TCP sockets. Small reads are copied
// through a pooled buffer (recv and send: fewer and cheaper system calls
// than a readiness check and two splices, which is what MQTT traffic and
// short connections are made of); once a read fills the buffer the
// direction is bulk and moves to splice, the kernel's zero-copy path,
// until a round finds less than a buffer's worth queued.
func (d *direction) rawLoop() error {
	for {
		d.avail, d.copied, d.checkErr = 0, 0, nil
		if err := d.raw.Read(d.check); err != nil {
			if isTimeout(err) {
				if idleErr := d.idleExpired(); idleErr != nil {
					return idleErr
				}
				continue
			}
			return &sideError{err: err}
		}
		if d.checkErr != nil {
			return &sideError{err: d.checkErr}
		}
		if d.bulk {
			if d.avail == 0 {
				return nil // EOF
			}
			if err := d.splice(); err != nil {
				return err
			}
			d.bulk = d.avail >= copyBufSize
			continue
		}
		if d.copied == 0 {
			return nil // EOF
		}
		d.refreshWriteDeadline()
		n, err := d.dstTCP.Write((*d.buf)[:d.copied])
		d.count(int64(n))
		d.bulk = d.copied == copyBufSize
		d.releaseBuf()
		if err != nil {
			return &sideError{write: true, err: err}
		}
	}
}

// splice moves the d.avail bytes queued on src to dst without copying.
func (d *direction) splice() error {
	for {
		d.refreshWriteDeadline()
		d.lr.N = int64(d.avail)
		n, err := d.dstTCP.ReadFrom(&d.lr)
		d.count(n)
		if err == nil {
			return nil
		}
		if isTimeout(err) && time.Since(d.ss.start) >= d.readDeadline {
			// The read deadline is only moved when it fires, so it can
			// fire in the middle of a busy transfer: that is not idleness.
			if idleErr := d.idleExpired(); idleErr != nil {
				return idleErr
			}
			d.avail -= int(n)
			if d.avail > 0 {
				continue
			}
			return nil
		}
		// ReadFrom does not say which socket failed. The bytes were
		// queued on src when it started, so blame the destination.
		return &sideError{write: true, err: err}
	}
}

// readable is the RawConn.Read callback: true once src has bytes (read
// into the buffer, or counted for a bulk direction), is at EOF, or has an
// error; false (wait) while it has nothing. A buffer is taken from the
// pool only for a read and given back at once when there was nothing to
// read, so an idle direction holds none.
func (d *direction) readable(fd uintptr) bool {
	if d.bulk {
		return d.peek(fd)
	}
	if d.buf == nil {
		d.buf = copyBufPool.Get().(*[]byte)
	}
	for {
		n, err := unix.Read(int(fd), *d.buf)
		switch {
		case err == nil:
			d.copied = n
			if n == 0 {
				d.releaseBuf()
			}
			return true
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			d.releaseBuf()
			return false
		default:
			d.releaseBuf()
			d.checkErr = err
			return true
		}
	}
}

func (d *direction) releaseBuf() {
	if d.buf != nil {
		copyBufPool.Put(d.buf)
		d.buf = nil
	}
}

// copyBufSize is the most a direction copies in one round; a read that
// fills it makes the direction bulk (spliced).
const copyBufSize = 16 << 10

var copyBufPool = sync.Pool{New: func() any {
	b := make([]byte, copyBufSize)
	return &b
}}

// peek counts the bytes queued on src for a bulk direction. One
// recv(MSG_PEEK|MSG_TRUNC) tells data, EOF and nothing apart: on TCP,
// MSG_TRUNC with MSG_PEEK counts the queued bytes (up to len) without
// copying them (tcp(7)), so no buffer is passed; 0 means EOF and EAGAIN
// means wait.
func (d *direction) peek(fd uintptr) bool {
	for {
		n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, 0, peekLimit,
			unix.MSG_PEEK|unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			d.avail = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			d.checkErr = errno
			return true
		}
	}
}

// peekLimit bounds one splice round: more than a socket queues by default,
// and what is left is spliced on the next round.
const peekLimit = 4 << 20

// copyLoop is the fallback for connections that are not plain TCP sockets.
func (d *direction) copyLoop() error {
	buf := make([]byte, 32<<10)
	for {
		n, err := d.src.Read(buf)
		if n > 0 {
			d.refreshWriteDeadline()
			if _, werr := d.dst.Write(buf[:n]); werr != nil {
				return &sideError{write: true, err: werr}
			}
			d.count(int64(n))
		}
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if isTimeout(err) {
			if idleErr := d.idleExpired(); idleErr != nil {
				return idleErr
			}
			continue
		}
		return &sideError{err: err}
	}
}

// idleExpired is called when src's read deadline fired: it ends the
// stream if nothing moved either way for proxy_timeout, or moves the
// deadline to proxy_timeout after the last activity.
func (d *direction) idleExpired() error {
	last := time.Duration(d.ss.lastActive.Load())
	if time.Since(d.ss.start)-last >= d.timeout {
		return &sideError{err: errIdle}
	}
	return d.setReadDeadline(last + d.timeout)
}

// setReadDeadline sets src's read deadline, at since session start.
func (d *direction) setReadDeadline(at time.Duration) error {
	d.readDeadline = at
	if err := d.src.SetReadDeadline(d.ss.start.Add(at)); err != nil {
		return &sideError{err: err}
	}
	return nil
}

// refreshWriteDeadline keeps a blocked write bounded by proxy_timeout (at
// least half of it) without a timer update per chunk.
func (d *direction) refreshWriteDeadline() {
	now := time.Since(d.ss.start)
	if now < d.writeDeadline-d.timeout/2 {
		return
	}
	d.writeDeadline = now + d.timeout
	_ = d.dst.SetWriteDeadline(d.ss.start.Add(d.writeDeadline))
}

func (d *direction) count(n int64) {
	if n <= 0 {
		return
	}
	d.ss.touch()
	c := d.ss.r.upCounters
	if d.fromCli {
		d.ss.fromClient.Add(n)
		c.bytesFromClient.Add(uint64(n))
		if d.srv != nil {
			d.srv.AddBytes(n, 0)
		}
	} else {
		d.ss.toClient.Add(n)
		c.bytesToClient.Add(uint64(n))
		if d.srv != nil {
			d.srv.AddBytes(0, n)
		}
	}
}
