package stream

import (
	"errors"
	"io"
	"net"
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
// anything but its goroutine, then splices exactly the bytes the kernel
// has queued (SIOCINQ), so Go's splice never parks on an empty socket with
// a pipe in hand. Idle limits cost no per-byte work: the read deadline is
// only moved when it fires (to the session's last activity plus
// proxy_timeout), and the write deadline is refreshed when half of it is
// used up.
type direction struct {
	ss       *session
	src, dst net.Conn
	fromCli  bool // client -> upstream
	timeout  time.Duration
	srv      *balancer.Server

	// Fast path: both sockets are *net.TCPConn.
	srcTCP, dstTCP *net.TCPConn
	raw            syscall.RawConn
	avail          int   // bytes queued on src, found by check
	checkErr       error // socket error found by check
	check          func(fd uintptr) bool
	lr             io.LimitedReader

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
			d.srcTCP, d.dstTCP, d.raw = s, t, raw
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
		err = d.spliceLoop()
	} else {
		err = d.copyLoop()
	}
	if err == nil {
		// src ended cleanly: pass the half-close on.
		d.eofAt = time.Since(d.ss.start)
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

// spliceLoop is the zero-copy path.
func (d *direction) spliceLoop() error {
	for {
		d.avail, d.checkErr = 0, nil
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
		if d.avail == 0 {
			return nil // EOF
		}
		d.refreshWriteDeadline()
		d.lr.N = int64(d.avail)
		n, err := d.dstTCP.ReadFrom(&d.lr)
		d.count(n)
		if err != nil {
			if isTimeout(err) && time.Since(d.ss.start) >= d.readDeadline {
				// The read deadline is only moved when it fires, so it can
				// fire in the middle of a busy transfer: that is not idleness.
				if idleErr := d.idleExpired(); idleErr != nil {
					return idleErr
				}
				continue
			}
			// ReadFrom does not say which socket failed. The bytes were
			// queued on src when it started, so blame the destination.
			return &sideError{write: true, err: err}
		}
	}
}

// readable is the RawConn.Read callback: true once src has bytes queued,
// is at EOF (avail 0), or has an error; false (wait) while it has nothing.
func (d *direction) readable(fd uintptr) bool {
	for {
		n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		if err != nil {
			d.checkErr = err
			return true
		}
		if n > 0 {
			d.avail = n
			return true
		}
		var b [1]byte
		m, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			d.checkErr = err
			return true
		case m == 0:
			return true // EOF
		}
		// Bytes arrived between the two calls: count them again.
	}
}

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
