package httpproxy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// This file holds the strict HTTP/1.1 request framing check (RFC 9112) that
// runs on the raw client bytes before net/http parses them. net/http quietly
// resolves conflicts that a backend or another proxy may resolve
// differently (it drops Content-Length when Transfer-Encoding is chunked,
// ignores Transfer-Encoding on HTTP/1.0), which is how request smuggling
// works; here such messages are refused instead. It is written without
// per-header allocations so that the HTTP/1.1 fast path can reuse it.

// HeadError refuses a request: Status is the answer (400, 414, 431, 501,
// 505) and the connection is closed after it.
type HeadError struct {
	Status int
	Reason string
	// Line is the request line as read, for the access log's $request
	// (the part read of one too long; "" when none was read).
	Line string
	// Unanswered: the client left mid-head; logged (as nginx's 400), but
	// there is nobody to answer.
	Unanswered bool
}

// maxLoggedLine bounds the request line a refusal logs.
const maxLoggedLine = 8 << 10

// withLine returns a copy of e with Line taken from the bytes that were
// read: the first line, or the part of it read when it was too long
// (nginx logs that too); nothing when it had not ended otherwise.
func (e *HeadError) withLine(read []byte) *HeadError {
	line := read
	if i := bytes.IndexByte(read, '\n'); i >= 0 {
		line = bytes.TrimSuffix(read[:i], []byte("\r"))
	} else if e.Status != 414 && e.Status != 431 {
		line = nil
	}
	c := *e
	c.Line = string(line[:min(len(line), maxLoggedLine)])
	return &c
}

func (e *HeadError) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Reason) }

func badRequest(format string, args ...any) *HeadError {
	return &HeadError{Status: 400, Reason: fmt.Sprintf(format, args...)}
}

// errIncomplete means more bytes are needed to decide.
var errIncomplete = errors.New("incomplete")

// RequestHead is a validated request head. Byte slices alias the input.
type RequestHead struct {
	Method []byte
	Target []byte
	Minor  int // HTTP/1.<Minor>
	// ContentLength is the body length, -1 when the head has none.
	ContentLength int64
	Chunked       bool
	Host          []byte
	HasHost       bool
	// Upgrade is set when the head asks for a protocol switch (Upgrade
	// header and "upgrade" in Connection).
	Upgrade bool
	// Close is set by "Connection: close" (or HTTP/1.0 without keep-alive).
	Close bool
	// Expect is set when the head has an Expect field (its value is read
	// only then: one scan of the fields fewer per request).
	Expect bool
	// Len is the head's length in bytes, final empty line included.
	Len int
}

// maxChunkLine bounds a chunk-size line, as net/http does (4096).
const maxChunkLine = 4096

var tcharTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tcharTable[c] {
			return false
		}
	}
	return true
}

// fieldValueOK reports whether v holds only field-vchar, SP and HTAB
// (obs-text allowed): no NUL, CR, LF or other controls.
func fieldValueOK(v []byte) bool {
	for _, c := range v {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// nextLine returns the line starting at b[pos:] without its terminator and
// the position after it. A line ends with CRLF or a bare LF (RFC 9112 2.2
// lets a recipient accept LF; net/http does); a bare CR is an error.
func nextLine(b []byte, pos int) (line []byte, next int, err error) {
	i := bytes.IndexByte(b[pos:], '\n')
	if i < 0 {
		if bytes.IndexByte(b[pos:], '\r') >= 0 && b[len(b)-1] != '\r' {
			return nil, 0, badRequest("bare CR in request head")
		}
		return nil, 0, errIncomplete
	}
	line = b[pos : pos+i]
	next = pos + i + 1
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, 0, badRequest("bare CR in request head")
	}
	return line, next, nil
}

// ParseRequestHead parses and validates the request head at the start of b
// (the caller has skipped empty lines before it). max bounds the request
// line plus headers (client_header_max_size): beyond it the answer is 414
// while still in the request line, 431 after. It returns errIncomplete when
// b ends before the head does.
func ParseRequestHead(b []byte, max int) (RequestHead, error) {
	h := RequestHead{ContentLength: -1}
	tooLong := func(inLine bool) error {
		if inLine {
			return &HeadError{Status: 414, Reason: "request line too long"}
		}
		return &HeadError{Status: 431, Reason: "request header fields too large"}
	}
	line, pos, err := nextLine(b, 0)
	if err != nil {
		if err == errIncomplete && len(b) > max {
			return h, tooLong(true)
		}
		return h, err
	}
	if pos > max {
		return h, tooLong(true)
	}
	if err := parseRequestLine(&h, line); err != nil {
		return h, err
	}
	var (
		teCount, hostCount int
		connUpgrade        bool
		connKeepAlive      bool
		hasUpgradeHeader   bool
		clText             []byte // the first Content-Length's value
	)
	for {
		line, next, err := nextLine(b, pos)
		if err != nil {
			if err == errIncomplete && len(b) > max {
				return h, tooLong(false)
			}
			return h, err
		}
		if next > max {
			return h, tooLong(false)
		}
		pos = next
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return h, badRequest("obsolete line folding in header")
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return h, badRequest("invalid header name %q", truncate(line, 40))
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !fieldValueOK(value) {
			return h, badRequest("invalid character in header %q", name)
		}
		switch {
		case asciiEqualFold(name, "content-length"):
			n, ok := parseContentLength(value)
			if !ok {
				return h, badRequest("invalid Content-Length %q", truncate(value, 40))
			}
			// A repeated field must repeat the same text, as net/http
			// wants ("05" and "5" are refused: a backend may read one and
			// not the other).
			if clText != nil && !bytes.Equal(clText, value) {
				return h, badRequest("two different Content-Length values")
			}
			clText = value
			h.ContentLength = n
		case asciiEqualFold(name, "transfer-encoding"):
			teCount++
			if !asciiEqualFold(value, "chunked") {
				return h, &HeadError{Status: 501, Reason: fmt.Sprintf("unsupported Transfer-Encoding %q", truncate(value, 40))}
			}
			h.Chunked = true
		case asciiEqualFold(name, "host"):
			if !httpguts.ValidHostHeader(bstr(value)) || hostRefused(bstr(value)) {
				// net/http refuses the first ones too.
				return h, badRequest("invalid Host header")
			}
			hostCount++
			h.Host, h.HasHost = value, true
		case asciiEqualFold(name, "connection"):
			forEachToken(value, func(tok []byte) {
				switch {
				case asciiEqualFold(tok, "close"):
					h.Close = true
				case asciiEqualFold(tok, "upgrade"):
					connUpgrade = true
				case asciiEqualFold(tok, "keep-alive"):
					connKeepAlive = true
				}
			})
		case asciiEqualFold(name, "upgrade"):
			hasUpgradeHeader = true
		case asciiEqualFold(name, "expect"):
			h.Expect = true
		}
	}
	h.Len = pos
	switch {
	case teCount > 1:
		return h, badRequest("more than one Transfer-Encoding header")
	case h.Chunked && h.ContentLength >= 0:
		return h, badRequest("both Transfer-Encoding and Content-Length")
	case h.Chunked && h.Minor == 0:
		// RFC 9112 6.1: framing of an HTTP/1.0 message with
		// Transfer-Encoding is faulty (and net/http ignores the header).
		return h, badRequest("Transfer-Encoding in an HTTP/1.0 request")
	case hostCount > 1:
		return h, badRequest("more than one Host header")
	case hostCount == 0 && h.Minor == 1:
		return h, badRequest("missing Host header")
	}
	if h.Minor == 0 && !connKeepAlive {
		h.Close = true
	}
	h.Upgrade = connUpgrade && hasUpgradeHeader
	return h, nil
}

func parseRequestLine(h *RequestHead, line []byte) error {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return badRequest("invalid request line %q", truncate(line, 60))
	}
	h.Method = line[:sp1]
	if !isToken(h.Method) {
		return badRequest("invalid method %q", truncate(h.Method, 20))
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return badRequest("invalid request line %q", truncate(line, 60))
	}
	h.Target = rest[:sp2]
	for _, c := range h.Target {
		if c <= 0x20 || c == 0x7f {
			return badRequest("invalid character in request target")
		}
	}
	version := rest[sp2+1:]
	if len(version) != 8 || string(version[:5]) != "HTTP/" || version[6] != '.' ||
		version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9' {
		return badRequest("invalid HTTP version %q", truncate(version, 20))
	}
	if version[5] != '1' {
		return &HeadError{Status: 505, Reason: "HTTP version not supported"}
	}
	if version[7] > '1' {
		// HTTP/1.2 and later are still HTTP/1.1 in framing (RFC 9110 2.5).
		h.Minor = 1
	} else {
		h.Minor = int(version[7] - '0')
	}
	return nil
}

// parseContentLength accepts 1 to 18 decimal digits, as net/http's
// ParseUint(…, 63) does for any value that fits.
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func forEachToken(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var tok []byte
		if i < 0 {
			tok, v = v, nil
		} else {
			tok, v = v[:i], v[i+1:]
		}
		if tok = trimOWS(tok); len(tok) > 0 {
			fn(tok)
		}
	}
}

// asciiEqualFold compares b with the lower-case ASCII string s.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// framer follows the message framing of a client byte stream: request
// head, body by Content-Length or chunked coding, next head. It tells how
// many bytes are known to belong to well-formed messages, so that only those
// reach net/http.
type framer struct {
	state     frameState
	remaining int64 // body bytes left (stateBody, stateChunkData)
	maxHead   int
	// stopAtData makes feed return before chunk data (the fast path
	// copies the data itself); stopAtEnd makes it return at the end of
	// the message instead of reading a next head (a response body).
	stopAtData, stopAtEnd bool
	// holdUpgrades stops framing after a request asking for a protocol
	// switch (stateHeld) until its answer is known: bytes behind it are
	// the new protocol's if the server switches, the next request if not.
	holdUpgrades bool
	upgrading    bool  // the message being framed asks for a switch
	heads        int64 // request heads framed
	// excess is chunked framing beyond an allowance per chunk, trailer
	// the trailer section's size so far: both bounded, as in net/http
	// ("too much non-data"), so a body of 1-byte chunks with long
	// extensions, or endless trailers, cannot be read without end.
	excess  int64
	trailer int
}

// maxChunkExcess bounds chunked framing overhead (Go's net/http value).
const maxChunkExcess = 16 << 10

type frameState uint8

const (
	stateHead frameState = iota
	stateBody
	stateChunkSize
	stateChunkData
	stateChunkDataEnd
	stateTrailer
	statePassthrough
	// stateHeld: after a request asking for a protocol switch, until it
	// is answered (clientConn releases it).
	stateHeld
)

// feed looks at b, which starts where the previous call stopped consuming.
// It returns how many bytes at the start of b are complete and valid
// (consumed), and how many bytes after those are to be dropped (empty lines
// before a request line, RFC 9112 2.2). Bytes after consumed+drop are
// presented again with more data appended.
func (f *framer) feed(b []byte) (consumed, drop int, err error) {
	pos := 0
	for pos < len(b) {
		if f.stopAtEnd && f.state == stateHead || f.stopAtData && f.state == stateChunkData {
			return pos, 0, nil
		}
		switch f.state {
		case statePassthrough:
			return len(b), 0, nil
		case stateHeld:
			return pos, 0, nil
		case stateHead:
			if b[pos] == '\r' || b[pos] == '\n' {
				if pos > 0 {
					return pos, 0, nil
				}
				n := 0
				for n < len(b) && (b[n] == '\n' || b[n] == '\r' && n+1 < len(b) && b[n+1] == '\n') {
					if b[n] == '\r' {
						n++
					}
					n++
				}
				if n == 0 {
					if len(b) == 1 {
						return 0, 0, nil // a lone CR: wait for its LF
					}
					return 0, 0, badRequest("bare CR before request line")
				}
				return 0, n, nil
			}
			h, err := ParseRequestHead(b[pos:], f.maxHead)
			if err == errIncomplete {
				return pos, 0, nil
			}
			if err != nil {
				return pos, 0, err
			}
			pos += h.Len
			f.heads++
			f.upgrading = f.holdUpgrades && h.Upgrade && h.Minor >= 1
			switch {
			case h.Chunked:
				f.state = stateChunkSize
				f.excess, f.trailer = 0, 0
			case h.ContentLength > 0:
				f.state, f.remaining = stateBody, h.ContentLength
			default:
				f.messageEnd()
			}
		case stateBody, stateChunkData:
			n := int64(len(b) - pos)
			if n > f.remaining {
				n = f.remaining
			}
			pos += int(n)
			f.remaining -= n
			if f.remaining == 0 {
				if f.state == stateBody {
					f.messageEnd()
				} else {
					f.state = stateChunkDataEnd
				}
			}
		case stateChunkDataEnd:
			if len(b)-pos < 2 {
				if b[pos] != '\r' {
					return pos, 0, badRequest("chunk data not followed by CRLF")
				}
				return pos, 0, nil
			}
			if b[pos] != '\r' || b[pos+1] != '\n' {
				return pos, 0, badRequest("chunk data not followed by CRLF")
			}
			pos += 2
			f.state = stateChunkSize
		case stateChunkSize:
			i := bytes.IndexByte(b[pos:], '\n')
			if i < 0 {
				if len(b)-pos > maxChunkLine {
					return pos, 0, badRequest("chunk size line too long")
				}
				return pos, 0, nil
			}
			size, err := parseChunkSizeLine(b[pos : pos+i+1])
			if err != nil {
				return pos, 0, err
			}
			// As net/http: 16 bytes of framing per chunk, and twice its
			// data, come free; more, over a whole body, is refused.
			if size > maxChunkExcess {
				f.excess = 0
			} else if f.excess += int64(i+1) + 2 - 16 - 2*size; f.excess < 0 {
				f.excess = 0
			}
			if f.excess > maxChunkExcess {
				return pos, 0, badRequest("chunked encoding contains too much non-data")
			}
			pos += i + 1
			if size == 0 {
				f.state = stateTrailer
			} else {
				f.state, f.remaining = stateChunkData, size
			}
		case stateTrailer:
			line, next, err := nextLine(b, pos)
			if err == errIncomplete {
				if len(b)-pos > f.maxHead {
					return pos, 0, &HeadError{Status: 431, Reason: "trailer too large"}
				}
				return pos, 0, nil
			}
			if err != nil {
				return pos, 0, err
			}
			if b[next-2] != '\r' {
				// As for chunk size lines, only CRLF: net/http takes a
				// bare LF here in some places and not in others.
				return pos, 0, badRequest("trailer line not ended by CRLF")
			}
			if f.trailer += next - pos; f.trailer > f.maxHead {
				return pos, 0, &HeadError{Status: 431, Reason: "trailer too large"}
			}
			if len(line) == 0 {
				pos = next
				f.messageEnd()
				continue
			}
			colon := bytes.IndexByte(line, ':')
			if line[0] == ' ' || line[0] == '\t' || colon <= 0 || !isToken(line[:colon]) || !fieldValueOK(line[colon+1:]) {
				return pos, 0, badRequest("invalid trailer field")
			}
			pos = next
		}
	}
	return pos, 0, nil
}

// messageEnd moves on after a complete message: to the next head, or to
// stateHeld after a request asking for a protocol switch.
func (f *framer) messageEnd() {
	f.state = stateHead
	if f.upgrading {
		f.upgrading = false
		f.state = stateHeld
	}
}

// parseChunkSizeLine parses "HEX[;ext...]\r\n". Only CRLF ends it: net/http
// accepts a bare LF here, refusing it is the stricter side.
func parseChunkSizeLine(line []byte) (int64, error) {
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return 0, badRequest("chunk size line not ended by CRLF")
	}
	line = line[:len(line)-2]
	var size int64
	digits := 0
	for digits < len(line) {
		c := line[digits]
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			goto ext
		}
		if digits == 15 {
			return 0, badRequest("chunk size too large")
		}
		size = size<<4 | int64(v)
		digits++
	}
ext:
	if digits == 0 {
		return 0, badRequest("invalid chunk size")
	}
	rest := line[digits:]
	if len(rest) > 0 {
		// chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ):
		// must start with ";" (after optional whitespace) and hold no
		// controls.
		r := trimOWS(rest)
		if len(r) == 0 || r[0] != ';' || !fieldValueOK(rest) {
			return 0, badRequest("invalid chunk extension")
		}
	}
	return size, nil
}

// hostRefused is what nginx refuses in a Host beyond net/http's check: an
// empty host before a port (":80", "::1": an IPv6 address needs brackets)
// and a zone in an IPv6 literal ("[fe80::1%eth0]"), which names an
// interface of the client's, not a host.
func hostRefused(h string) bool {
	return strings.HasPrefix(h, ":") || strings.HasPrefix(h, "[") && strings.Contains(h, "%")
}
