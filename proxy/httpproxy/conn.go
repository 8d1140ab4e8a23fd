package httpproxy

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// clientConn is one accepted client connection as net/http sees it. It
// passes on only bytes that the framer validated (see head.go); a refused
// request is answered with its status when net/http closes the connection,
// which happens after the responses to the earlier requests of the same
// connection were written. It also carries what the handler needs to know
// about the connection (listener, real client address, TLS).
type clientConn struct {
	net.Conn
	listen *listenGroup
	remote netip.AddrPort // the client (from PROXY protocol when accepted)
	local  netip.AddrPort
	tls    bool

	// Read's state: net/http never reads concurrently, and setPassthrough
	// runs after Hijack stopped net/http's reads, so no lock is needed (a
	// lock held across the socket read would block Close).
	framer framer
	in     []byte // read but not yet validated (a partial head), pooled
	out    []byte // validated, not yet returned; aliases in's buffer
	buf    *[]byte
	refuse *HeadError // set once a head is refused
	// answer is refuse for Close, which runs on another goroutine.
	answer atomic.Pointer[HeadError]
	// partial is true while a head has started but is not complete: a
	// timeout then is client_header_timeout (408).
	partial bool

	// handlers counts requests of this connection inside ServeHTTP: a
	// refused head is not reported to net/http (by EOF) while one runs,
	// since net/http would cancel its context on a read error.
	handlers atomic.Int32
	// answered counts requests of this connection whose handler returned:
	// the framer's hold after an upgrade request ends once it is answered.
	answered atomic.Int64
	// readDeadline is the last read deadline set (unix nanos; 0 = none).
	readDeadline atomic.Int64
	hijacked     atomic.Bool
	// sendTimeout (nanoseconds) bounds every write to the client: the
	// request's server block sets it. net/http writes the end of a
	// response after the handler returned, which nothing else bounds.
	sendTimeout atomic.Int64
	closed      atomic.Bool
	onClose     func()
}

// bufSize is the size of a pooled read buffer of the net/http path.
const bufSize = 4096

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, bufSize); return &b }}

func newClientConn(c net.Conn, lg *listenGroup, maxHead int) *clientConn {
	cc := &clientConn{Conn: c, listen: lg}
	cc.framer.maxHead = maxHead
	cc.framer.holdUpgrades = true
	if lg != nil && lg.dflt != nil {
		cc.sendTimeout.Store(int64(lg.dflt.cfg.SendTimeout.Duration))
	}
	// IPv4-mapped addresses (a dual-stack listener) are unmapped, so that
	// $remote_addr and ip_hash see 192.0.2.1 as nginx does.
	cc.remote = addrPortOf(c.RemoteAddr())
	cc.local = addrPortOf(c.LocalAddr())
	return cc
}

// Write bounds each write by send_timeout, as nginx and the fast path do:
// a client that stops reading is cut instead of holding the connection
// for good. Not once upgraded: a tunnel's writes are the tunnel's.
func (c *clientConn) Write(b []byte) (int, error) {
	if d := time.Duration(c.sendTimeout.Load()); d > 0 && !c.hijacked.Load() {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(d))
	}
	return c.Conn.Write(b)
}

func (c *clientConn) Read(b []byte) (int, error) {
	for {
		if len(c.out) > 0 {
			n := copy(b, c.out)
			c.out = c.out[n:]
			c.releaseIfEmpty()
			return n, nil
		}
		if c.refuse != nil {
			return c.readAfterRefusal(b)
		}
		if c.framer.state == stateHeld && c.answered.Load() >= c.framer.heads {
			// The upgrade request was answered without a switch (else
			// setPassthrough ended framing): what the client sent
			// behind it is framed as usual.
			c.framer.state = stateHead
			c.scan()
			c.partial = c.framer.state == stateHead && len(c.in) > 0
			continue
		}
		if len(c.in) == 0 {
			// Common case: nothing pending, read straight into b.
			n, err := c.Conn.Read(b)
			if n > 0 {
				used, drop, ferr := c.framer.feed(b[:n])
				if ferr != nil {
					c.refused(ferr)
				}
				if rest := b[used+drop : n]; len(rest) > 0 && c.refuse == nil {
					c.grab()
					c.in = append(c.in, rest...)
					c.scan()
				}
				c.partial = c.framer.state == stateHead && len(c.in) > 0
				if used > 0 {
					return used, nil
				}
				if err == nil {
					continue
				}
			}
			if err != nil {
				return 0, c.readError(err)
			}
			continue
		}
		// A head is incomplete (or held): read more behind it.
		if c.framer.state == stateHeld && len(c.in) >= c.framer.maxHead {
			// RFC 6455 clients wait for the 101; nginx would leave
			// these bytes in the socket, here they are bounded.
			c.refused(badRequest("more than client_header_max_size sent before the protocol switch"))
			continue
		}
		c.room()
		n, err := c.Conn.Read(c.in[len(c.in):cap(c.in)])
		c.in = c.in[:len(c.in)+n]
		if n > 0 {
			c.scan()
			c.partial = c.framer.state == stateHead && len(c.in) > 0
			continue
		}
		if err != nil {
			return 0, c.readError(err)
		}
	}
}

// scan runs the framer over c.in, moving validated bytes to c.out.
func (c *clientConn) scan() {
	for len(c.in) > 0 && c.refuse == nil {
		used, drop, err := c.framer.feed(c.in)
		if err != nil {
			c.refused(err)
		}
		if used > 0 {
			// out must stay in front of in in the same buffer: copy the
			// validated part out only when out is empty (it is here,
			// since Read drains out before scanning).
			c.out = c.in[:used:used]
			c.in = c.in[used:]
			return
		}
		if drop > 0 {
			c.in = c.in[drop:]
			continue
		}
		return
	}
}

// room makes c.in have free capacity: compact it to the buffer's front, or
// move it to a buffer twice as large (a head may be up to maxHead).
func (c *clientConn) room() {
	if len(c.in) < cap(c.in) {
		return
	}
	full := (*c.buf)[:cap(*c.buf)]
	if len(c.in) <= len(full)/2 {
		n := copy(full, c.in)
		c.in = full[:n]
		return
	}
	nb := make([]byte, len(c.in), 2*len(full))
	copy(nb, c.in)
	c.buf, c.in = &nb, nb
}

func (c *clientConn) grab() {
	if c.buf == nil {
		c.buf = bufPool.Get().(*[]byte)
		c.in = (*c.buf)[:0]
	}
}

func (c *clientConn) releaseIfEmpty() {
	if len(c.out) == 0 && c.buf != nil {
		if len(c.in) > 0 {
			// Move the partial head to the front so the buffer does not
			// creep forward.
			n := copy((*c.buf)[:cap(*c.buf)], c.in)
			c.in = (*c.buf)[:n]
			return
		}
		if cap(*c.buf) <= 64<<10 {
			*c.buf = (*c.buf)[:0]
			bufPool.Put(c.buf)
		}
		c.buf, c.in = nil, nil
	}
}

func (c *clientConn) refused(err error) {
	var he *HeadError
	if !errors.As(err, &he) {
		he = &HeadError{Status: 400, Reason: err.Error()}
	}
	he = he.withLine(c.in)
	c.refuse = he
	c.answer.Store(he)
	c.in = nil
}

// readAfterRefusal: once a head was refused, net/http must see the end of
// the stream, but only when no request of this connection is in a handler
// (net/http's background read would cancel it). Until then it blocks in the
// socket read, which net/http interrupts with a deadline when the handler
// is done.
func (c *clientConn) readAfterRefusal(b []byte) (int, error) {
	if c.handlers.Load() == 0 {
		return 0, io.EOF
	}
	var scratch [512]byte
	for c.handlers.Load() > 0 {
		_, err := c.Conn.Read(scratch[:])
		if err != nil {
			return 0, err
		}
	}
	return 0, io.EOF
}

// SetReadDeadline records the deadline so that readError can tell a real
// client_header_timeout from net/http aborting its background read (it
// sets a deadline in the distant past when a handler ends, which can land
// while the client's next head is half read: that is no timeout).
func (c *clientConn) SetReadDeadline(t time.Time) error {
	c.readDeadline.Store(t.UnixNano())
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline records the read deadline too (see SetReadDeadline).
func (c *clientConn) SetDeadline(t time.Time) error {
	c.readDeadline.Store(t.UnixNano())
	return c.Conn.SetDeadline(t)
}

// abortedRead reports whether the read deadline is an abort (in the past
// when set) rather than a timeout.
func (c *clientConn) abortedRead() bool {
	d := c.readDeadline.Load()
	return d != 0 && d < abortDeadlineBefore
}

// abortDeadlineBefore: deadlines before 2001 are aborts (net/http uses
// time.Unix(1, 0)), never client timeouts.
var abortDeadlineBefore = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

func (c *clientConn) readError(err error) error {
	var ne net.Error
	if c.partial && errors.As(err, &ne) && ne.Timeout() && !c.abortedRead() && c.handlers.Load() == 0 && c.refuse == nil {
		c.refuse = &HeadError{Status: 408, Reason: "client_header_timeout"}
		c.answer.Store(c.refuse)
	}
	return err
}

// setPassthrough stops framing: the connection was upgraded (WebSocket).
// Bytes already read but not yet returned are returned first. false: bytes
// the client sent before the switch were refused (too many), so the
// tunnel cannot start.
func (c *clientConn) setPassthrough() bool {
	if c.refuse != nil {
		return false
	}
	c.framer.state = statePassthrough
	c.hijacked.Store(true)
	if len(c.in) > 0 {
		c.out = append(c.out[:len(c.out):len(c.out)], c.in...)
		c.in = nil
	}
	return true
}

// Close answers a refused request (its status, Connection: close), then
// closes the socket.
func (c *clientConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if refuse := c.answer.Load(); refuse != nil && !c.hijacked.Load() {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = c.Conn.Write(errorResponse(refuse.Status))
		if c.listen != nil {
			c.listen.s.logRefused(c, refuse)
		}
	}
	err := c.Conn.Close()
	if c.onClose != nil {
		c.onClose()
	}
	return err
}

// errorResponse is a complete HTTP/1.1 response with a short body, as
// nginx sends for a refused request.
func errorResponse(status int) []byte {
	body := errorBody(status)
	return []byte("HTTP/1.1 " + strconv.Itoa(status) + " " + statusText(status) +
		"\r\nContent-Type: text/html\r\nContent-Length: " + strconv.Itoa(len(body)) +
		"\r\nConnection: close\r\n\r\n" + body)
}
