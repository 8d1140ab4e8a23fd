package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vipgate/vipgate/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func v2Header(cmd, family byte, length uint16, body []byte) []byte {
	b := append([]byte{}, "\r\n\r\n\x00\r\nQUIT\n"...)
	b = append(b, cmd, family)
	b = binary.BigEndian.AppendUint16(b, length)
	return append(b, body...)
}

var v2IPv4Body = []byte{192, 0, 2, 1, 192, 0, 2, 2, 0x30, 0x39, 0x07, 0x5b} // 192.0.2.1:12345 -> 192.0.2.2:1883

func v2IPv6Body() []byte {
	b := net.ParseIP("2001:db8::1").To16()
	b = append(b, net.ParseIP("2001:db8::2").To16()...)
	return append(b, 0x30, 0x39, 0x07, 0x5b)
}

func TestReadHeaderAccepts(t *testing.T) {
	tests := []struct {
		name     string
		parts    []string // written with a pause between, as separate segments
		src, dst string   // "" = no addresses (LOCAL / UNKNOWN)
		pending  string
	}{
		{name: "v1 tcp4", parts: []string{"PROXY TCP4 192.0.2.1 192.0.2.2 12345 1883\r\n"}, src: "192.0.2.1:12345", dst: "192.0.2.2:1883"},
		{name: "v1 tcp6", parts: []string{"PROXY TCP6 2001:db8::1 2001:db8::2 12345 1883\r\n"}, src: "[2001:db8::1]:12345", dst: "[2001:db8::2]:1883"},
		{name: "v1 unknown", parts: []string{"PROXY UNKNOWN\r\n"}},
		{name: "v1 unknown with addresses ignored", parts: []string{"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"}},
		{name: "v1 of exactly 107 bytes", parts: []string{"PROXY UNKNOWN " + strings.Repeat("f", 91) + "\r\n"}},
		{name: "v1 bytes behind header", parts: []string{"PROXY TCP4 192.0.2.1 192.0.2.2 12345 1883\r\n\x10\x0c\x00\x04MQTT"}, src: "192.0.2.1:12345", dst: "192.0.2.2:1883", pending: "\x10\x0c\x00\x04MQTT"},
		{name: "v1 split in three segments", parts: []string{"PRO", "XY TCP4 192.0.2.1 192.0.2.2 ", "12345 1883\r\nhello"}, src: "192.0.2.1:12345", dst: "192.0.2.2:1883", pending: "hello"},
		{name: "v2 ipv4", parts: []string{string(v2Header(0x21, 0x11, 12, v2IPv4Body))}, src: "192.0.2.1:12345", dst: "192.0.2.2:1883"},
		{name: "v2 ipv6", parts: []string{string(v2Header(0x21, 0x21, 36, v2IPv6Body()))}, src: "[2001:db8::1]:12345", dst: "[2001:db8::2]:1883"},
		{name: "v2 ipv4 with TLV and data", parts: []string{string(v2Header(0x21, 0x11, 12+7, append(append([]byte{}, v2IPv4Body...), 0x01, 0x00, 0x04, 'm', 'q', 't', 't'))) + "CONNECT"}, src: "192.0.2.1:12345", dst: "192.0.2.2:1883", pending: "CONNECT"},
		{name: "v2 local", parts: []string{string(v2Header(0x20, 0x00, 0, nil))}},
		// PROXY on the UNSPEC family: the protocol lets a receiver serve it
		// with the connection's addresses, as nginx and HAProxy do.
		{name: "v2 proxy with unspec family", parts: []string{string(v2Header(0x21, 0x00, 0, nil)) + "x"}, pending: "x"},
		{name: "v2 proxy with unspec family and a block", parts: []string{string(v2Header(0x21, 0x01, 4, []byte{1, 2, 3, 4})) + "x"}, pending: "x"},
		{name: "v2 local ignores its address block", parts: []string{string(v2Header(0x20, 0x11, 12, v2IPv4Body)) + "x"}, pending: "x"},
		{name: "v2 split after signature", parts: []string{string(v2Header(0x21, 0x11, 12, v2IPv4Body)[:13]), string(v2Header(0x21, 0x11, 12, v2IPv4Body)[13:])}, src: "192.0.2.1:12345", dst: "192.0.2.2:1883"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := testutil.TCPPair(t)
			go func() {
				for i, p := range tt.parts {
					if i > 0 {
						time.Sleep(20 * time.Millisecond)
					}
					if _, err := client.Write([]byte(p)); err != nil {
						return
					}
				}
				client.Write([]byte("|after"))
			}()
			conn, src, dst, err := ReadHeader(server, 2*time.Second)
			if err != nil {
				t.Fatalf("ReadHeader: %v", err)
			}
			if got := addrString(src); got != tt.src {
				t.Errorf("src = %q, want %q", got, tt.src)
			}
			if got := addrString(dst); got != tt.dst {
				t.Errorf("dst = %q, want %q", got, tt.dst)
			}
			wantRemote := tt.src
			if wantRemote == "" {
				wantRemote = server.RemoteAddr().String()
			}
			if conn.RemoteAddr().String() != wantRemote {
				t.Errorf("conn.RemoteAddr = %s, want %s", conn.RemoteAddr(), wantRemote)
			}
			// Everything behind the header arrives in order through the conn.
			want := tt.pending + "|after"
			got := make([]byte, len(want))
			if _, err := io.ReadFull(conn, got); err != nil {
				t.Fatalf("read after header: %v", err)
			}
			if string(got) != want {
				t.Errorf("bytes after header = %q, want %q", got, want)
			}
		})
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func TestReadHeaderRefuses(t *testing.T) {
	tests := []struct {
		name  string
		send  string
		close bool // close the client after sending
		want  Reason
	}{
		{name: "nothing sent", send: "", want: ReasonTimeout},
		{name: "closed without a byte", send: "", close: true, want: ReasonEmpty},
		{name: "plain MQTT instead of a header", send: "\x10\x0c\x00\x04MQTT", want: ReasonMissing},
		{name: "HTTP request", send: "GET / HTTP/1.1\r\n\r\n", want: ReasonMissing},
		{name: "P but not PROXY", send: "PUT / HTTP/1.1\r\n", want: ReasonMissing},
		{name: "CR but not v2 signature", send: "\r\n\r\nhello world!!!", want: ReasonMissing},
		{name: "v1 stops mid-line", send: "PROXY TCP4 192.0.2.1 ", want: ReasonTimeout},
		{name: "v1 truncated by close", send: "PROXY TCP4 192.0.2.1 ", close: true, want: ReasonTruncated},
		{name: "v2 truncated by close", send: string(v2Header(0x21, 0x11, 12, v2IPv4Body)[:20]), close: true, want: ReasonTruncated},
		{name: "v2 signature truncated by close", send: "\r\n\r\n\x00", close: true, want: ReasonTruncated},
		{name: "v2 stops in address block", send: string(v2Header(0x21, 0x11, 12, v2IPv4Body)[:20]), want: ReasonTimeout},
		{name: "v1 over 107 bytes", send: "PROXY UNKNOWN " + strings.Repeat("f", 92) + "\r\n", want: ReasonTooLong},
		{name: "v1 without end of line", send: "PROXY TCP4 " + strings.Repeat("1", 200), want: ReasonTooLong},
		{name: "v1 without CR", send: "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n", want: ReasonMalformed},
		{name: "v1 bad address", send: "PROXY TCP4 192.0.2.300 192.0.2.2 1 2\r\n", want: ReasonMalformed},
		{name: "v1 ipv6 address in TCP4", send: "PROXY TCP4 2001:db8::1 192.0.2.2 1 2\r\n", want: ReasonMalformed},
		{name: "v1 bad port", send: "PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n", want: ReasonMalformed},
		{name: "v1 unknown protocol", send: "PROXY UDP4 192.0.2.1 192.0.2.2 1 2\r\n", want: ReasonMalformed},
		{name: "v2 announces too much", send: string(v2Header(0x21, 0x11, 5000, nil)), want: ReasonTooLong},
		{name: "v2 undefined family", send: string(v2Header(0x21, 0x13, 12, v2IPv4Body)), want: ReasonBadFamily},
		{name: "v2 ipv4 length too short", send: string(v2Header(0x21, 0x11, 4, v2IPv4Body[:4])), want: ReasonBadLength},
		{name: "v2 ipv6 length of ipv4", send: string(v2Header(0x21, 0x21, 12, v2IPv4Body)), want: ReasonBadLength},
		{name: "v2 version 1", send: string(v2Header(0x11, 0x11, 12, v2IPv4Body)), want: ReasonMalformed},
		{name: "v2 unknown command", send: string(v2Header(0x22, 0x11, 12, v2IPv4Body)), want: ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := testutil.TCPPair(t)
			if tt.send != "" {
				if _, err := client.Write([]byte(tt.send)); err != nil {
					t.Fatal(err)
				}
			}
			if tt.close {
				client.Close()
			}
			start := time.Now()
			conn, _, _, err := ReadHeader(server, 300*time.Millisecond)
			if err == nil {
				t.Fatalf("ReadHeader accepted %q (conn %v)", tt.send, conn)
			}
			if got := ReasonOf(err); got != tt.want {
				t.Errorf("reason = %q, want %q (err: %v)", got, tt.want, err)
			}
			elapsed := time.Since(start)
			if tt.want != ReasonTimeout && elapsed > 200*time.Millisecond {
				t.Errorf("refusal took %v: a %s header must be refused without waiting for the timeout", elapsed, tt.want)
			}
			// The deadline is cleared: the caller can still use the socket.
			if _, err := server.Write([]byte("x")); err != nil && !tt.close {
				t.Errorf("write after refusal: %v", err)
			}
		})
	}
}

func TestHeaderGolden(t *testing.T) {
	v4a := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 12345}
	v4b := &net.TCPAddr{IP: net.ParseIP("192.0.2.2"), Port: 1883}
	v6a := &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 12345}
	v6b := &net.TCPAddr{IP: net.ParseIP("2001:db8::2"), Port: 1883}
	tests := []struct {
		name     string
		version  string
		src, dst net.Addr
		want     []byte
	}{
		{"v1 ipv4", "v1", v4a, v4b, []byte("PROXY TCP4 192.0.2.1 192.0.2.2 12345 1883\r\n")},
		{"v1 ipv6", "v1", v6a, v6b, []byte("PROXY TCP6 2001:db8::1 2001:db8::2 12345 1883\r\n")},
		{"v1 ipv4 client on ipv6 listener", "v1", v4a, v6b, []byte("PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 12345 1883\r\n")},
		{"v1 unknown for health checks", "v1", nil, nil, []byte("PROXY UNKNOWN\r\n")},
		{"v2 ipv4", "v2", v4a, v4b, v2Header(0x21, 0x11, 12, v2IPv4Body)},
		{"v2 ipv6", "v2", v6a, v6b, v2Header(0x21, 0x21, 36, v2IPv6Body())},
		{"v2 local for health checks", "v2", nil, nil, v2Header(0x20, 0x00, 0, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteHeader(&buf, tt.version, tt.src, tt.dst); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), tt.want) {
				t.Errorf("header = %q\nwant     %q", buf.Bytes(), tt.want)
			}
		})
	}
	if _, err := Header("v3", v4a, v4b); err == nil {
		t.Error("Header accepted version v3")
	}
	if _, err := Header("v1", &net.UDPAddr{}, v4b); err == nil {
		t.Error("Header accepted a UDP source")
	}
}

func TestUnwrapHandsOverPendingBytes(t *testing.T) {
	client, server := testutil.TCPPair(t)
	client.Write([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\nfirst"))
	conn, _, _, err := ReadHeader(server, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	raw, pending := conn.(*Conn).Unwrap()
	if raw != server {
		t.Errorf("Unwrap returned %T %v, want the accepted socket", raw, raw)
	}
	if string(pending) != "first" {
		t.Errorf("pending = %q, want %q", pending, "first")
	}
	if _, ok := raw.(*net.TCPConn); !ok {
		t.Errorf("raw conn is %T, want *net.TCPConn (the splice path needs it)", raw)
	}
}

func TestReasonOfOtherErrors(t *testing.T) {
	if r := ReasonOf(errors.New("x")); r != "" {
		t.Errorf("ReasonOf(plain error) = %q", r)
	}
	if r := ReasonOf(nil); r != "" {
		t.Errorf("ReasonOf(nil) = %q", r)
	}
}
