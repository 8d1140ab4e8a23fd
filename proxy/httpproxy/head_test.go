package httpproxy

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestParseRequestHead(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		status  int // 0 = accepted
		cl      int64
		chunked bool
		upgrade bool
		close   bool
	}{
		{name: "simple GET", in: "GET / HTTP/1.1\r\nHost: a\r\n\r\n", cl: -1},
		{name: "LF only lines", in: "GET / HTTP/1.1\nHost: a\n\n", cl: -1},
		{name: "content length", in: "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", cl: 5},
		{name: "same content length twice", in: "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", cl: 5},
		{name: "chunked", in: "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", cl: -1, chunked: true},
		{name: "websocket", in: "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n", cl: -1, upgrade: true},
		{name: "HTTP/1.0 closes", in: "GET / HTTP/1.0\r\n\r\n", cl: -1, close: true},
		{name: "connection close", in: "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", cl: -1, close: true},
		{name: "obs-text in value", in: "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n", cl: -1},

		{name: "TE and CL", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400},
		{name: "CL and TE", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", status: 400},
		{name: "two different CL", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n", status: 400},
		{name: "CL list", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\n", status: 400},
		{name: "CL sign", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\n", status: 400},
		{name: "CL empty", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", status: 400},
		{name: "TE twice", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400},
		{name: "TE gzip", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", status: 501},
		{name: "TE with vertical tab", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", status: 400},
		{name: "TE in HTTP/1.0", in: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400},
		{name: "space before colon", in: "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", status: 400},
		{name: "obs-fold", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", status: 400},
		{name: "header name with slash", in: "GET / HTTP/1.1\r\nHost: a\r\nX/Y: a\r\n\r\n", status: 400},
		{name: "empty header name", in: "GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n", status: 400},
		{name: "NUL in value", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", status: 400},
		{name: "bare CR in value", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", status: 400},
		{name: "missing host", in: "GET / HTTP/1.1\r\n\r\n", status: 400},
		{name: "two hosts", in: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", status: 400},
		{name: "bad method", in: "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "two spaces", in: "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "bad version", in: "GET / HTTP/1.x\r\nHost: a\r\n\r\n", status: 400},
		{name: "HTTP/2 preface", in: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", status: 505},
		{name: "control in target", in: "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseRequestHead([]byte(tc.in), 4096)
			if tc.status != 0 {
				var he *HeadError
				if !errors.As(err, &he) || he.Status != tc.status {
					t.Fatalf("got %v, want status %d", err, tc.status)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if h.Len != len(tc.in) || h.ContentLength != tc.cl || h.Chunked != tc.chunked || h.Upgrade != tc.upgrade || h.Close != tc.close {
				t.Fatalf("got %+v", h)
			}
		})
	}
}

func TestParseRequestHeadSizeLimits(t *testing.T) {
	long := "GET /" + strings.Repeat("a", 2000) + " HTTP/1.1\r\nHost: a\r\n\r\n"
	if _, err := ParseRequestHead([]byte(long), 1024); statusOf414(err) != 414 {
		t.Fatalf("long request line: %v, want 414", err)
	}
	// An incomplete long line is refused before it ends.
	if _, err := ParseRequestHead([]byte(long[:1500]), 1024); statusOf414(err) != 414 {
		t.Fatalf("long partial request line: %v, want 414", err)
	}
	big := "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("b", 2000) + "\r\n\r\n"
	if _, err := ParseRequestHead([]byte(big), 1024); statusOf414(err) != 431 {
		t.Fatalf("large header: %v, want 431", err)
	}
	if _, err := ParseRequestHead([]byte(big[:1500]), 1024); statusOf414(err) != 431 {
		t.Fatalf("large partial header: %v, want 431", err)
	}
	if _, err := ParseRequestHead([]byte(big[:500]), 1024); err != errIncomplete {
		t.Fatalf("partial head: %v, want incomplete", err)
	}
}

func statusOf414(err error) int {
	var he *HeadError
	if errors.As(err, &he) {
		return he.Status
	}
	return 0
}

// feedAll runs a framer over in, split in pieces of n bytes, as a
// connection would see it, and returns the bytes it lets through.
func feedAll(t *testing.T, in string, n int) (string, error) {
	t.Helper()
	f := framer{maxHead: 4096}
	var out, pending []byte
	for i := 0; i < len(in); i += n {
		end := min(i+n, len(in))
		pending = append(pending, in[i:end]...)
		for {
			used, drop, err := f.feed(pending)
			out = append(out, pending[:used]...)
			pending = pending[used+drop:]
			if err != nil {
				return string(out), err
			}
			if used == 0 && drop == 0 {
				break
			}
		}
	}
	if len(pending) > 0 {
		return string(out), errIncomplete
	}
	return string(out), nil
}

func TestFramer(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		out    string // delivered bytes; "" = same as in
		status int
	}{
		{name: "two GETs", in: "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "body then next", in: "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "chunked then next", in: "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "empty lines before request dropped", in: "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", out: "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "smuggled head in body is body", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 33\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "second request refused after first", in: "GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			out: "GET /a HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "chunk data without CRLF", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
			out: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc", status: 400},
		{name: "chunk size with LF only", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
			out: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400},
		{name: "chunk size not hex", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
			out: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400},
		{name: "chunk size overflow", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
			out: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400},
		{name: "bare CR before request", in: "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", out: "", status: 400},
	}
	for _, tc := range tests {
		for _, n := range []int{1, 3, 7, 1 << 20} {
			got, err := feedAll(t, tc.in, n)
			want := tc.out
			if want == "" && tc.status == 0 {
				want = tc.in
			}
			if got != want {
				t.Errorf("%s (pieces of %d): delivered %q, want %q", tc.name, n, got, want)
			}
			if st := statusOf414(err); st != tc.status || tc.status == 0 && err != nil {
				t.Errorf("%s (pieces of %d): err %v, want status %d", tc.name, n, err, tc.status)
			}
		}
	}
}

// FuzzRequestFraming checks the framing check against net/http: every
// request it lets through must be one net/http reads the same way (same
// method, target and body framing), so net/http never sees a message whose
// end it would place elsewhere.
func FuzzRequestFraming(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"GET http://x/y?z HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := framer{maxHead: 8192}
		var delivered []byte
		rest := data
		for len(rest) > 0 {
			used, drop, err := fr.feed(rest)
			delivered = append(delivered, rest[:used]...)
			rest = rest[used+drop:]
			if err != nil || used == 0 && drop == 0 {
				break
			}
		}
		// Every complete head that was delivered must parse in net/http
		// with the same framing.
		br := bufio.NewReader(bytes.NewReader(delivered))
		for {
			if _, err := br.Peek(1); err != nil {
				return
			}
			start := len(delivered) - br.Buffered()
			h, herr := ParseRequestHead(delivered[start:], 8192)
			if herr != nil {
				return // the tail is an incomplete head or body: not delivered whole
			}
			req, err := http.ReadRequest(br)
			if err != nil {
				// net/http refusing what passed is safe (it answers 400 and
				// closes); only a different reading is not.
				return
			}
			if req.Method != string(h.Method) || req.RequestURI != string(h.Target) {
				t.Fatalf("net/http read %s %s, framer %s %s", req.Method, req.RequestURI, h.Method, h.Target)
			}
			wantCL := h.ContentLength
			if wantCL < 0 {
				wantCL = 0
			}
			if h.Chunked {
				wantCL = -1
			}
			if req.ContentLength != wantCL {
				t.Fatalf("net/http Content-Length %d, framer %d (chunked %v)", req.ContentLength, wantCL, h.Chunked)
			}
			body, err := readAllLimited(req)
			if err != nil {
				return // body cut short: nothing after it was delivered
			}
			_ = body
		}
	})
}

func readAllLimited(req *http.Request) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(req.Body)
	return b.Bytes(), err
}

// TestHeaderGet2IsGetTwice: the access line reads Referer and User-Agent
// in one pass; it must find what two gets find (the first of repeated
// fields, in either order, either missing).
func TestHeaderGet2IsGetTwice(t *testing.T) {
	for _, raw := range []string{
		"Host: x\r\nReferer: r1\r\nUser-Agent: u1\r\n\r\n",
		"User-Agent: u1\r\nHost: x\r\nreferer: r1\r\n\r\n",
		"Referer: r1\r\nReferer: r2\r\nUSER-AGENT: u1\r\nUser-Agent: u2\r\n\r\n",
		"Host: x\r\nUser-Agent: u1\r\n\r\n",
		"Referer: r1\r\n\r\n",
		"Host: x\r\n\r\n",
	} {
		h := headerView{raw: []byte(raw)}
		r, u := h.get2("Referer", "User-Agent")
		if wr, wu := h.get("Referer"), h.get("User-Agent"); r != wr || u != wu {
			t.Errorf("%q: get2 = %q, %q; get = %q, %q", raw, r, u, wr, wu)
		}
	}
}
