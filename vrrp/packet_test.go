package vrrp

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

var (
	a4   = netip.MustParseAddr
	src4 = a4("192.0.2.1")
	src6 = a4("fe80::1")
)

// The golden bytes were computed independently (Python, RFC 1071 sum) and
// agree with tshark's VRRP dissector in the namespace tests.
var goldenPackets = []struct {
	name     string
	pkt      Packet
	src, dst netip.Addr
	mode     ChecksumMode
	hex      string
}{
	{
		name: "v2 simple auth, first 8 bytes of the password",
		pkt: Packet{Version: 2, VRID: 51, Priority: 100, Interval: time.Second,
			AuthType: AuthTypeSimple, AuthData: AuthPassData("secret12345"), Addrs: []netip.Addr{a4("192.0.2.50")}},
		src: src4, dst: Group4,
		hex: "2133640101014a19c00002327365637265743132",
	},
	{
		name: "v3 IPv4 with pseudo-header",
		pkt:  Packet{Version: 3, VRID: 51, Priority: 100, Interval: 100 * time.Millisecond, Addrs: []netip.Addr{a4("192.0.2.50"), a4("192.0.2.51")}},
		src:  src4, dst: Group4,
		hex: "31336402000a43c5c0000232c0000233",
	},
	{
		name: "v3 IPv4 checksum as v2",
		pkt:  Packet{Version: 3, VRID: 51, Priority: 100, Interval: 100 * time.Millisecond, Addrs: []netip.Addr{a4("192.0.2.50"), a4("192.0.2.51")}},
		src:  src4, dst: Group4, mode: ChecksumAsV2,
		hex: "31336402000ae659c0000232c0000233",
	},
	{
		name: "v3 IPv6",
		pkt:  Packet{Version: 3, VRID: 7, Priority: 200, Interval: 3 * time.Second, Addrs: []netip.Addr{a4("2001:db8::50")}},
		src:  src6, dst: Group6,
		hex: "3107c801012cd9a220010db8000000000000000000000050",
	},
}

func TestPacketGolden(t *testing.T) {
	for _, tc := range goldenPackets {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.pkt.Marshal(tc.src, tc.dst, tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(b); got != tc.hex {
				t.Fatalf("marshal\n got %s\nwant %s", got, tc.hex)
			}
			want, _ := hex.DecodeString(tc.hex)
			p, err := Parse(want, tc.src, tc.dst, tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*p, tc.pkt) {
				t.Fatalf("parse\n got %+v\nwant %+v", *p, tc.pkt)
			}
		})
	}
}

func TestPacketRoundTrip(t *testing.T) {
	for _, p := range []Packet{
		{Version: 2, VRID: 1, Priority: 255, Interval: 255 * time.Second},
		{Version: 2, VRID: 255, Priority: 0, Interval: time.Second, Addrs: []netip.Addr{a4("10.0.0.1"), a4("10.0.0.2"), a4("10.0.0.3")}},
		{Version: 3, VRID: 9, Priority: 1, Interval: 40950 * time.Millisecond, Addrs: []netip.Addr{a4("192.0.2.9")}},
		{Version: 3, VRID: 9, Priority: 1, Interval: 10 * time.Millisecond},
	} {
		b, err := p.Marshal(src4, Group4, ChecksumPseudoHeader)
		if err != nil {
			t.Fatalf("%+v: %v", p, err)
		}
		got, err := Parse(b, src4, Group4, ChecksumPseudoHeader)
		if err != nil {
			t.Fatalf("%+v: %v", p, err)
		}
		if p.Addrs == nil {
			p.Addrs = []netip.Addr{}
		}
		if !reflect.DeepEqual(*got, p) {
			t.Fatalf("round trip\n got %+v\nwant %+v", *got, p)
		}
	}
}

func TestPacketMarshalRejects(t *testing.T) {
	for name, p := range map[string]Packet{
		"v2 fractional interval": {Version: 2, Interval: 1500 * time.Millisecond},
		"v2 over IPv6":           {Version: 2, Interval: time.Second},
		"v3 interval too long":   {Version: 3, Interval: 41 * time.Second},
		"v4":                     {Version: 4, Interval: time.Second},
		"mixed families":         {Version: 3, Interval: time.Second, Addrs: []netip.Addr{a4("2001:db8::1")}},
	} {
		src := src4
		if name == "v2 over IPv6" {
			src = src6
		}
		if _, err := p.Marshal(src, Group4, ChecksumPseudoHeader); err == nil {
			t.Errorf("%s: marshalled", name)
		}
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestPacketParseDrops(t *testing.T) {
	v2 := mustHex(goldenPackets[0].hex)
	v3 := mustHex(goldenPackets[1].hex)
	mod := func(b []byte, f func([]byte) []byte) []byte { return f(append([]byte(nil), b...)) }
	for _, tc := range []struct {
		name string
		b    []byte
		src  netip.Addr
		mode ChecksumMode
		want DropReason
	}{
		{"empty", nil, src4, 0, DropTruncated},
		{"short header", v3[:7], src4, 0, DropTruncated},
		{"v3 missing an address", v3[:12], src4, 0, DropTruncated},
		{"v2 missing auth data", v2[:16], src4, 0, DropTruncated},
		{"trailing bytes", append(append([]byte(nil), v3...), 0, 0, 0, 0), src4, 0, DropLength},
		{"count too small for length", mod(v3, func(b []byte) []byte { b[3] = 1; return b }), src4, 0, DropLength},
		{"version 1", mod(v3, func(b []byte) []byte { b[0] = 0x11; return b }), src4, 0, DropBadVersion},
		{"version 2 over IPv6", v2, src6, 0, DropBadVersion},
		{"type 2", mod(v3, func(b []byte) []byte { b[0] = 0x32; return b }), src4, 0, DropBadType},
		{"flipped bit", mod(v3, func(b []byte) []byte { b[2] ^= 1; return b }), src4, 0, DropBadChecksum},
		{"v2 auth data changed", mod(v2, func(b []byte) []byte { b[19] = 'x'; return b }), src4, 0, DropBadChecksum},
		{"pseudo-header expected, as-v2 sent", mustHex(goldenPackets[2].hex), src4, ChecksumPseudoHeader, DropBadChecksum},
		{"as-v2 expected, pseudo-header sent", v3, src4, ChecksumAsV2, DropBadChecksum},
		{"other source", v3, a4("192.0.2.2"), 0, DropBadChecksum},
		{"interval 0", mod(v3, func(b []byte) []byte { b[5] = 0; b[6], b[7] = 0x43, 0xcf; return b }), src4, 0, DropBadInterval},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.b, tc.src, Group4, tc.mode)
			var de *DropError
			if !errors.As(err, &de) || de.Reason != tc.want {
				t.Fatalf("got %v, want drop %s", err, tc.want)
			}
		})
	}
}

// FuzzParse checks that no input panics the decoder and that whatever it
// accepts encodes back to the same bytes.
func FuzzParse(f *testing.F) {
	for _, g := range goldenPackets {
		f.Add(mustHex(g.hex), g.src.Is6(), g.mode == ChecksumAsV2)
	}
	f.Fuzz(func(t *testing.T, b []byte, v6, asV2 bool) {
		src, dst := src4, Group4
		if v6 {
			src, dst = src6, Group6
		}
		mode := ChecksumPseudoHeader
		if asV2 {
			mode = ChecksumAsV2
		}
		p, err := Parse(b, src, dst, mode)
		if err != nil {
			var de *DropError
			if !errors.As(err, &de) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		out, err := p.Marshal(src, dst, mode)
		if err != nil {
			// Version 2 intervals are whole seconds on the wire, so every
			// accepted packet must encode again.
			t.Fatalf("accepted %x but cannot encode it: %v", b, err)
		}
		// Reserved v3 bits are not kept; compare with them cleared.
		want := append([]byte(nil), b...)
		if p.Version == 3 {
			want[4] &= 0x0f
		}
		if string(out) != string(want) && p.Version == 2 {
			t.Fatalf("re-encoded\n%x\nfrom\n%x", out, b)
		}
		if p.Version == 3 {
			if q, err := Parse(out, src, dst, mode); err != nil || !reflect.DeepEqual(p, q) {
				t.Fatalf("re-parse of %x: %v", out, err)
			}
		}
	})
}
