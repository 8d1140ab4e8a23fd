// Package proxyproto reads the PROXY protocol header (v1 and v2) that an L4
// balancer puts in front of a connection, and writes one in front of an
// outgoing connection. The codec is github.com/pires/go-proxyproto; this
// package owns the buffering around it: the whole header must arrive within
// a timeout (a header split over several segments is waited for, never
// guessed), every rejection carries a typed Reason for counters and logs,
// and bytes the reader took past the header are handed back so that the
// caller can forward them before switching to a zero-copy path.
package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	pp "github.com/pires/go-proxyproto"
)

// Reason says why an inbound header was refused. It is short, stable and
// fit for a metric label.
type Reason string

// Reasons a header is refused.
const (
	// ReasonMissing: the first bytes are not a PROXY signature.
	ReasonMissing Reason = "missing"
	// ReasonEmpty: the peer closed before sending any byte: usually the
	// TCP health check of the balancer in front, not worth a log line.
	ReasonEmpty Reason = "empty"
	// ReasonTimeout: the header was not complete within the timeout (a
	// client that sends nothing, or stops in the middle of the header).
	ReasonTimeout Reason = "timeout"
	// ReasonTruncated: the peer closed in the middle of the header.
	ReasonTruncated Reason = "truncated"
	// ReasonTooLong: a v1 line without CRLF within 107 bytes, or a v2 header
	// announcing more than MaxV2Length bytes of addresses and TLVs.
	ReasonTooLong Reason = "too_long"
	// ReasonBadFamily: an address family or transport the protocol does not
	// define (UNSPEC is served with the connection's own addresses).
	ReasonBadFamily Reason = "bad_family"
	// ReasonBadLength: a v2 length too short for its family's addresses.
	ReasonBadLength Reason = "bad_length"
	// ReasonMalformed: anything else the codec refuses (bad version or
	// command, bad address or port text, no CRLF, stray tokens).
	ReasonMalformed Reason = "malformed"
	// ReasonIO: a read error other than EOF or timeout (connection reset).
	ReasonIO Reason = "io_error"
)

// Reasons lists every Reason, so counters can be created up front.
var Reasons = []Reason{ReasonMissing, ReasonEmpty, ReasonTimeout, ReasonTruncated, ReasonTooLong, ReasonBadFamily, ReasonBadLength, ReasonMalformed, ReasonIO}

// HeaderError is the error ReadHeader returns for a refused header.
type HeaderError struct {
	Reason Reason
	Err    error
}

func (e *HeaderError) Error() string {
	return fmt.Sprintf("PROXY protocol header %s: %v", e.Reason, e.Err)
}

func (e *HeaderError) Unwrap() error { return e.Err }

// ReasonOf returns the Reason of a ReadHeader error, or "" for other errors.
func ReasonOf(err error) Reason {
	var he *HeaderError
	if errors.As(err, &he) {
		return he.Reason
	}
	return ""
}

const (
	v1MaxLength = 107 // the longest line the spec allows, CRLF included
	v2FixedLen  = 16  // signature, version/command, family, length
	// MaxV2Length bounds the address and TLV part of a v2 header; the codec
	// refuses more.
	MaxV2Length = 4096
	// readerSize holds the largest v2 header, so the whole header can be
	// peeked before the codec parses it.
	readerSize = v2FixedLen + MaxV2Length
)

var sigV1 = []byte("PROXY ")

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readerSize) }}

// ReadHeader reads a PROXY v1 or v2 header from c within timeout (no limit
// when timeout <= 0). On success it returns a conn that first yields any
// bytes read past the header (an MQTT CONNECT sent right behind it), then
// reads from c; its RemoteAddr and LocalAddr are the header's source and
// destination. src and dst are the header's addresses, or nil, nil for a v1
// UNKNOWN or v2 LOCAL header (and for a v2 header of the UNIX family): then
// the socket's own addresses apply. A refused header returns a *HeaderError.
// c's read deadline is cleared before returning.
func ReadHeader(c net.Conn, timeout time.Duration) (conn net.Conn, src, dst net.Addr, err error) {
	if timeout > 0 {
		if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return nil, nil, nil, &HeaderError{Reason: ReasonIO, Err: err}
		}
	}
	r := readerPool.Get().(*bufio.Reader)
	r.Reset(c)
	defer func() {
		r.Reset(nil)
		readerPool.Put(r)
	}()

	h, err := readHeader(r)
	if timeout > 0 {
		// Clear the header deadline even on failure: the caller may still
		// write a reply or log before closing.
		_ = c.SetReadDeadline(time.Time{})
	}
	if err != nil {
		return nil, nil, nil, err
	}
	src, dst = headerAddrs(h)
	var pending []byte
	if n := r.Buffered(); n > 0 {
		b, _ := r.Peek(n)
		pending = bytes.Clone(b)
	}
	return &Conn{Conn: c, pending: pending, src: src, dst: dst}, src, dst, nil
}

// readHeader makes sure the whole header is buffered, then lets the codec
// parse it. Buffering first is what tells a header split over segments
// (waited for) from one that stops (timeout) or is cut by a close
// (truncated), which the codec alone cannot: it refuses a v1 line that
// did not arrive in one read.
func readHeader(r *bufio.Reader) (*pp.Header, error) {
	for {
		b, _ := r.Peek(r.Buffered()) // everything buffered, no I/O
		done, err := headerComplete(b)
		if err != nil {
			return nil, err
		}
		if done {
			break
		}
		if _, err := r.Peek(len(b) + 1); err != nil {
			b, _ = r.Peek(r.Buffered())
			if done, cerr := headerComplete(b); cerr != nil {
				return nil, cerr
			} else if !done {
				return nil, ioFailure(err, len(b) == 0)
			}
			break
		}
	}
	if b, _ := r.Peek(r.Buffered()); unspecV2(b) {
		n := v2FixedLen + int(binary.BigEndian.Uint16(b[14:16]))
		_, _ = r.Discard(n)
		return &pp.Header{Version: 2, Command: pp.LOCAL}, nil
	}
	h, err := pp.Read(r)
	if err != nil {
		return nil, codecFailure(err)
	}
	return h, nil
}

// unspecV2 tells whether b starts with a whole v2 header of the UNSPEC
// family with the PROXY command (family byte's high nibble 0): the
// protocol lets a receiver serve it with the connection's own addresses,
// as nginx and HAProxy do (an L4 balancer sends it for protocols it does
// not know). Families and transports the protocol does not define are
// still refused (bad_family).
func unspecV2(b []byte) bool {
	return len(b) >= v2FixedLen && b[0] == '\r' && b[12] == 0x21 && b[13]>>4 == 0 &&
		len(b) >= v2FixedLen+int(binary.BigEndian.Uint16(b[14:16]))
}

// headerComplete tells whether b starts with a whole header, or is a
// prefix of one (false, nil), or can never become one (a *HeaderError).
func headerComplete(b []byte) (bool, error) {
	if len(b) == 0 {
		return false, nil
	}
	switch b[0] {
	case sigV1[0]:
		if !bytes.HasPrefix(b, sigV1[:min(len(b), len(sigV1))]) {
			return false, errNoSignature
		}
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			if i >= v1MaxLength {
				return false, &HeaderError{Reason: ReasonTooLong, Err: fmt.Errorf("v1 line longer than %d bytes", v1MaxLength)}
			}
			return true, nil
		}
		if len(b) >= v1MaxLength {
			return false, &HeaderError{Reason: ReasonTooLong, Err: fmt.Errorf("no CRLF within %d bytes of a v1 header", v1MaxLength)}
		}
		return false, nil
	case pp.SIGV2[0]:
		if !bytes.HasPrefix(b, pp.SIGV2[:min(len(b), len(pp.SIGV2))]) {
			return false, errNoSignature
		}
		if len(b) < v2FixedLen {
			return false, nil
		}
		length := int(binary.BigEndian.Uint16(b[14:16]))
		if length > MaxV2Length {
			return false, &HeaderError{Reason: ReasonTooLong, Err: fmt.Errorf("v2 header announces %d bytes (limit %d)", length, MaxV2Length)}
		}
		return len(b) >= v2FixedLen+length, nil
	default:
		return false, errNoSignature
	}
}

var errNoSignature = &HeaderError{Reason: ReasonMissing, Err: errors.New("no PROXY signature")}

// ioFailure classifies a read error while the header is incomplete.
func ioFailure(err error, nothingRead bool) error {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return &HeaderError{Reason: ReasonTimeout, Err: err}
	case errors.Is(err, io.EOF) && nothingRead:
		return &HeaderError{Reason: ReasonEmpty, Err: errors.New("connection closed before any byte")}
	case errors.Is(err, io.EOF):
		return &HeaderError{Reason: ReasonTruncated, Err: io.ErrUnexpectedEOF}
	default:
		return &HeaderError{Reason: ReasonIO, Err: err}
	}
}

// codecFailure maps the codec's errors on a fully buffered header.
func codecFailure(err error) error {
	reason := ReasonMalformed
	switch {
	case errors.Is(err, pp.ErrVersion1HeaderTooLong):
		reason = ReasonTooLong
	case errors.Is(err, pp.ErrUnsupportedAddressFamilyAndProtocol):
		reason = ReasonBadFamily
	case errors.Is(err, pp.ErrInvalidLength):
		reason = ReasonBadLength
	}
	return &HeaderError{Reason: reason, Err: err}
}

// headerAddrs returns the addresses a header vouches for, as *net.TCPAddr.
func headerAddrs(h *pp.Header) (src, dst net.Addr) {
	if !h.Command.IsProxy() || !(h.TransportProtocol.IsIPv4() || h.TransportProtocol.IsIPv6()) {
		return nil, nil
	}
	sip, dip, ok := h.IPs()
	if !ok {
		return nil, nil
	}
	sport, dport, ok := h.Ports()
	if !ok {
		return nil, nil
	}
	return &net.TCPAddr{IP: sip, Port: sport}, &net.TCPAddr{IP: dip, Port: dport}
}

// Conn is the connection ReadHeader returns: reads yield the bytes taken
// past the header first. Callers that want the raw connection (for splice)
// call Unwrap and forward Pending themselves.
type Conn struct {
	net.Conn
	pending  []byte
	src, dst net.Addr
}

// Read yields the pending bytes, then reads from the connection.
func (c *Conn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	return c.Conn.Read(b)
}

// RemoteAddr is the header's source, or the socket's peer for LOCAL/UNKNOWN.
func (c *Conn) RemoteAddr() net.Addr {
	if c.src != nil {
		return c.src
	}
	return c.Conn.RemoteAddr()
}

// LocalAddr is the header's destination, or the socket's own address.
func (c *Conn) LocalAddr() net.Addr {
	if c.dst != nil {
		return c.dst
	}
	return c.Conn.LocalAddr()
}

// Unwrap hands over the raw connection and the bytes already read past the
// header, which the caller must deliver before anything read from raw.
// The Conn must not be read from afterwards.
func (c *Conn) Unwrap() (raw net.Conn, pending []byte) {
	raw, pending = c.Conn, c.pending
	c.pending = nil
	return raw, pending
}

// Header renders an outbound header. version is "v1" or "v2". With src
// and dst both TCP addresses the header carries them (IPv4 when both are
// IPv4, IPv6 otherwise, IPv4 then written v4-mapped); with either nil it
// is a v1 "PROXY UNKNOWN" or v2 LOCAL header, as a health check sends.
func Header(version string, src, dst net.Addr) ([]byte, error) {
	var v byte
	switch version {
	case "v1":
		v = 1
	case "v2":
		v = 2
	default:
		return nil, fmt.Errorf("PROXY protocol version %q: want v1 or v2", version)
	}
	var h *pp.Header
	if src == nil || dst == nil {
		h = &pp.Header{Version: v, Command: pp.LOCAL, TransportProtocol: pp.UNSPEC}
	} else {
		s, sok := src.(*net.TCPAddr)
		d, dok := dst.(*net.TCPAddr)
		if !sok || !dok {
			return nil, fmt.Errorf("PROXY protocol header for %s -> %s: want TCP addresses", src, dst)
		}
		h = pp.HeaderProxyFromAddrs(v, s, d)
		if !h.Command.IsProxy() {
			return nil, fmt.Errorf("PROXY protocol header for %s -> %s: no usable address family", src, dst)
		}
	}
	b, err := h.Format()
	if err != nil {
		return nil, fmt.Errorf("PROXY protocol header for %v -> %v: %w", src, dst, err)
	}
	return b, nil
}

// WriteHeader writes an outbound header (see Header) to w in one write.
func WriteHeader(w io.Writer, version string, src, dst net.Addr) error {
	b, err := Header(version, src, dst)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write PROXY protocol header: %w", err)
	}
	return nil
}

// Parse reads a header from the start of b, the bytes received so far, for
// callers that read the socket themselves (an event loop). It returns the
// header's length n, or n == 0 and a nil error while b is a prefix of a
// header (read more and call again); eof says the peer closed after b, so
// a prefix is final: missing (no byte) or truncated. src and dst are as
// ReadHeader's. A refused header returns a *HeaderError.
func Parse(b []byte, eof bool) (n int, src, dst net.Addr, err error) {
	done, err := headerComplete(b)
	if err != nil {
		return 0, nil, nil, err
	}
	if !done {
		if eof {
			return 0, nil, nil, ioFailure(io.EOF, len(b) == 0)
		}
		return 0, nil, nil, nil
	}
	if b[0] == sigV1[0] {
		n = bytes.IndexByte(b, '\n') + 1
	} else {
		n = v2FixedLen + int(binary.BigEndian.Uint16(b[14:16]))
		if unspecV2(b) {
			return n, nil, nil, nil // served with the connection's addresses
		}
	}
	h, err := pp.Read(bufio.NewReaderSize(bytes.NewReader(b[:n]), max(n, 16)))
	if err != nil {
		return 0, nil, nil, codecFailure(err)
	}
	src, dst = headerAddrs(h)
	return n, src, dst, nil
}

// Trusted tells whether a PROXY header that came from peer names the
// client (set_real_ip_from; an empty list trusts every source). From
// another source the header is still required, but the connection's own
// address stays the client's, as nginx's realip module has it.
func Trusted(from []netip.Prefix, peer netip.Addr) bool {
	if len(from) == 0 {
		return true
	}
	peer = peer.Unmap()
	for _, p := range from {
		if p.Contains(peer) {
			return true
		}
	}
	return false
}
