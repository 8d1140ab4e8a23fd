package proxyproto

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// bytesConn is a net.Conn over a fixed input, delivered in chunks of at
// most chunk bytes so split headers are exercised too.
type bytesConn struct {
	net.Conn // nil: only the methods below are used
	r        *bytes.Reader
	chunk    int
}

func (c *bytesConn) Read(b []byte) (int, error) {
	if len(b) > c.chunk {
		b = b[:c.chunk]
	}
	return c.r.Read(b)
}
func (c *bytesConn) SetReadDeadline(time.Time) error { return nil }
func (c *bytesConn) RemoteAddr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (c *bytesConn) LocalAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2} }

// FuzzReadHeader feeds arbitrary bytes to the inbound header reader: it must
// never panic, must classify every refusal, must hand back exactly the bytes
// behind the header, and what it accepts must survive a round trip.
func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 12345 1883\r\nCONNECT"), uint8(255))
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n"), uint8(7))
	f.Add([]byte("PROXY UNKNOWN\r\n"), uint8(1))
	f.Add(v2Header(0x21, 0x11, 12, v2IPv4Body), uint8(255))
	f.Add(v2Header(0x21, 0x21, 36, v2IPv6Body()), uint8(3))
	f.Add(v2Header(0x20, 0x00, 0, nil), uint8(16))
	f.Add(v2Header(0x21, 0x13, 12, v2IPv4Body), uint8(255))
	f.Fuzz(func(t *testing.T, input []byte, chunk uint8) {
		c := &bytesConn{r: bytes.NewReader(input), chunk: int(chunk%64) + 1}
		conn, src, dst, err := ReadHeader(c, time.Second)
		// Parse, fed the same bytes as they arrive (the stream engine's
		// way), must come to the same verdict.
		pn, psrc, pdst, perr := parseInChunks(input, c.chunk)
		if (err == nil) != (perr == nil) || ReasonOf(err) != ReasonOf(perr) {
			t.Fatalf("ReadHeader: %v; Parse: %v", err, perr)
		}
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("refusal without a reason: %v", err)
			}
			return
		}
		if !sameAddr(src, psrc) || !sameAddr(dst, pdst) {
			t.Fatalf("ReadHeader: %v -> %v; Parse: %v -> %v", src, dst, psrc, pdst)
		}
		if (src == nil) != (dst == nil) {
			t.Fatalf("src %v and dst %v: both or neither", src, dst)
		}
		rest, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("read after header: %v", err)
		}
		if !bytes.HasSuffix(input, rest) {
			t.Fatalf("bytes after header %q are not the input's tail", rest)
		}
		headerLen := len(input) - len(rest)
		if headerLen != pn {
			t.Fatalf("ReadHeader took %d bytes, Parse %d", headerLen, pn)
		}
		if headerLen > readerSize {
			t.Fatalf("header of %d bytes accepted (limit %d)", headerLen, readerSize)
		}
		if src == nil {
			return
		}
		for _, v := range []string{"v1", "v2"} {
			out, err := Header(v, src, dst)
			if err != nil {
				t.Fatalf("accepted %v -> %v cannot be re-encoded as %s: %v", src, dst, v, err)
			}
			_, src2, dst2, err := ReadHeader(&bytesConn{r: bytes.NewReader(out), chunk: 4096}, time.Second)
			if err != nil {
				t.Fatalf("re-encoded %s header %q refused: %v", v, out, err)
			}
			if !sameAddr(src, src2) || !sameAddr(dst, dst2) {
				t.Fatalf("%s round trip: %v -> %v became %v -> %v", v, src, dst, src2, dst2)
			}
		}
	})
}

func sameAddr(a, b net.Addr) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	x, y := a.(*net.TCPAddr), b.(*net.TCPAddr)
	return x.IP.Equal(y.IP) && x.Port == y.Port
}

// parseInChunks calls Parse the way an event loop does: on the bytes
// received so far, chunk by chunk, with eof once the input is exhausted.
func parseInChunks(input []byte, chunk int) (int, net.Addr, net.Addr, error) {
	for k := 0; ; {
		k = min(k+chunk, len(input))
		n, src, dst, err := Parse(input[:k], k == len(input))
		if err != nil || n > 0 {
			return n, src, dst, err
		}
		if k == len(input) {
			return 0, nil, nil, nil // unreachable: at eof Parse decides
		}
	}
}
