package httpproxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// exchange is one attempt of a fast-path request on one server.
type exchange struct {
	uc     *upConn
	buf    *[]byte // upstream read buffer (pooled)
	n      int     // bytes read into buf
	bodyAt int     // where the response body starts in buf
	resp   upResponse
	kind   failKind
	err    error
	sent   bool
	done   time.Time // when the response head was read
}

// discard closes the upstream connection (unless it went back to the
// pool) and returns the buffer.
func (x *exchange) discard() {
	if x.uc != nil {
		_ = x.uc.nc.Close()
		x.uc = nil
	}
	if x.buf != nil {
		if len(*x.buf) == upBufSize {
			upBufPool.Put(x.buf)
		}
		x.buf = nil
	}
}

// proxy sends the request to the location's upstream, trying further
// servers as proxy_next_upstream allows (nextUpstream.retry, shared with
// the net/http path), and relays the answer. false closes the client
// connection.
func (c *fastConn) proxy(loc *location, v *vhost) bool {
	s := c.s
	pool := loc.pool
	next := &loc.next
	start := c.rec.start
	if c.body.size > 0 {
		// The first attempt and proxy_next_upstream_timeout run from when
		// the request is ready to go, as in nginx and the net/http path:
		// not from its first byte, which would count the client's upload.
		// Without a body that is the request's start, microseconds ago.
		start = time.Now()
	}
	maxTries := next.maxTries(pool)
	hashKey := ""
	if pool.hashKey != nil {
		hashKey = pool.hashKey.eval(&c.vars)
	}
	clientIP := c.remote.Addr()
	tried := c.tried[:0]
	p, bs, err := pool.pick(clientIP, hashKey, tried, 0)
	if err != nil {
		s.log.Warn("no live upstream server", zap.String("upstream", pool.name), zap.String("client", c.remoteStr),
			zap.String("host", c.req.host), zap.String("request", c.req.method+" "+c.req.target), zap.Error(err))
		// As nginx: $upstream_addr names the upstream, which had no server.
		c.rec.upstream(pool.name, 0)
		return c.answerError(v, http.StatusBadGateway, "")
	}
	if bs != nil {
		tried = append(tried, bs)
	}
	for attempt := 1; ; attempt++ {
		t0 := start
		if attempt > 1 {
			t0 = time.Now()
		}
		c.attempt(p, loc, t0)
		x := &c.x
		done := time.Now()
		elapsed := done.Sub(t0)
		x.done = done
		c.rec.upstream(p.Address(), elapsed)

		if x.err == errClientGone {
			// Not the server's fault, and nobody to answer.
			p.Release()
			x.discard()
			c.rec.status = 499
			return false
		}
		if x.err != nil && s.cutting.Load() {
			// The stop closed the connections: no answer goes out, and
			// the server is not to blame. 444, as nginx's "closed
			// without a response".
			p.Release()
			x.discard()
			c.rec.status = 444
			return false
		}
		kind := next.judge(p, x.kind, x.err == nil, x.resp.status, elapsed)
		if next.retry(kind, attempt, maxTries, x.sent, c.req.method, start) {
			np, nbs, perr := pool.pick(clientIP, hashKey, tried, attempt)
			if perr == nil {
				if kind == failStatus && statusFails(x.resp.status) {
					p.ReportFailure()
				}
				if x.err != nil {
					c.logFailed(kind, pool.name, p.Address(), np.Address(), x.err)
				} else if ce := s.log.Check(zap.DebugLevel, "next upstream"); ce != nil {
					ce.Write(zap.String("upstream", pool.name), zap.String("failed", p.Address()),
						zap.String("next", np.Address()), zap.Int("status", x.resp.status))
				}
				p.Release()
				x.discard()
				p = np
				if nbs != nil {
					tried = append(tried, nbs)
				}
				continue
			}
		}
		if x.err != nil {
			p.Release()
			c.logFailed(kind, pool.name, p.Address(), "", x.err)
			x.discard()
			return c.answerError(v, failureStatus(kind), "")
		}
		p.ReportSuccess()
		c.upEnd.reset(p, t0)
		ok := c.relay(p, loc, v)
		// $upstream_response_time runs until the whole response was
		// received, as in nginx (the head's time was recorded above):
		// when the relay ends, or earlier when a spool took it all.
		c.upEnd.end()
		c.rec.upTimes[len(c.rec.upTimes)-1] = c.upEnd.elapsed()
		return ok
	}
}

// logFailed logs a failed attempt (see failedAttempt).
func (c *fastConn) logFailed(kind failKind, upstream, server, next string, err error) {
	f := failedAttempt{kind: kind, upstream: upstream, server: server, next: next,
		client: c.remoteStr, host: c.req.host, request: c.req.method + " " + c.req.target, err: err}
	f.log(c.s.log)
}

// attempt sends the request head and kept body to p and reads the
// response head into c.x.
func (c *fastConn) attempt(p peer, loc *location, now time.Time) {
	x := &c.x
	*x = exchange{}
	l := loc.cfg
	addr := p.Address()
	for try := 0; ; try++ {
		var uc *upConn
		if try == 0 {
			// The retry below dials: a server that closed one pooled
			// connection (a restart, a short keep-alive timeout) has
			// usually closed the others too.
			uc = loc.pool.conns.get(addr, now)
		}
		if uc == nil {
			var err error
			uc, err = dialUpstream(addr, l.ProxyConnectTimeout.Duration)
			if err != nil {
				x.kind, x.err = failError, err
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					x.kind = failTimeout
				} else if localDialFailure(err) {
					x.kind = failLocal
				}
				return
			}
		}
		x.uc, x.sent = uc, true
		c.upstream.Store(uc)
		retryable, err := c.exchange(x, addr, now, l.ProxySendTimeout.Duration, l.ProxyReadTimeout.Duration)
		if err == nil {
			return
		}
		if retryable && uc.reused && try == 0 && !(nonIdempotent(c.req.method) && !loc.next.nonIdempotent) {
			// The server closed an idle connection before reading this
			// request: a fresh connection, as Go's transport does. Not for
			// a POST: the server may as well have read it, acted on it and
			// died before answering (nginx does not send it again either).
			// The pool's check of connections idle for awaitIdleLimit
			// leaves a server's close within that time to end up here.
			x.discard()
			continue
		}
		x.err = err
		switch {
		case err == errReadTimeout || err == errSendTimeout:
			x.kind = failTimeout
		case err == errBadResponse:
			x.kind = failInvalidHeader
		default:
			x.kind = failError
		}
		return
	}
}

// exchange writes the request and reads the response head. retryable is
// true when the connection failed before anything of a response arrived.
func (c *fastConn) exchange(x *exchange, addr string, now time.Time, sendTimeout, readTimeout time.Duration) (retryable bool, err error) {
	uc := x.uc
	nc := uc.nc
	body := &c.body
	bp := outBufPool.Get().(*[]byte)
	b := c.upHead.appendTo((*bp)[:0], addr)
	inline := body.file == nil && len(b)+len(body.mem) <= 16<<10
	if inline {
		b = append(b, body.mem...)
	}
	// The wait for the answer is cut in slices so that a client that went
	// away is noticed (nginx closes the upstream request then too).
	slice := readTimeout
	if slice > clientCheckInterval {
		slice = clientCheckInterval
	}
	x.buf = upBufPool.Get().(*[]byte)
	x.n = 0
	var first sendRead // the request sent and its answer's first read, in one wait
	if inline && uc.surelyOpen(now) {
		uc.rd.set(now, slice, nc.SetReadDeadline)
		first = uc.sendAndRead(b, *x.buf)
		err = first.err
	}
	sent := first.sent
	// Anything not gone with sendAndRead takes the usual way.
	slowSend := !inline || sent < len(b)
	if err == nil && sent < len(b) {
		uc.wd.set(now, sendTimeout, nc.SetWriteDeadline)
		_, err = nc.Write(b[sent:])
	}
	*bp = b
	outBufPool.Put(bp)
	if err == nil && !inline {
		err = c.sendBody(uc, sendTimeout)
	}
	if err != nil {
		if isTimeout(err) {
			return false, errSendTimeout
		}
		return true, err
	}
	if slowSend {
		// proxy_read_timeout runs from the end of the request, as in
		// nginx: an upload's time on the wire is not the server's delay.
		now = time.Now()
		uc.rd.forget()
	}
	start := 0
	giveUp := now.Add(readTimeout)
	for reads := 0; ; reads++ {
		if reads > 0 {
			// now is the request's time for the first read (an answer
			// usually waits in the socket); later ones need the clock.
			now = time.Now()
		}
		uc.rd.set(now, slice, nc.SetReadDeadline)
		if x.n == len(*x.buf) {
			// Interim (1xx) heads count too, as in Go's transport: a
			// server sending them without end would grow the buffer
			// without bound.
			if x.n >= maxResponseHead {
				return false, errBadResponse
			}
			nb := make([]byte, 2*len(*x.buf))
			copy(nb, *x.buf)
			upBufPool.Put(x.buf)
			x.buf = &nb
		}
		n, rerr := first.n, first.rerr
		if !first.read {
			n, rerr = uc.read((*x.buf)[x.n:])
		}
		first.read = false
		x.n += n
		if n == 0 {
			if rerr == nil {
				continue
			}
			if isTimeout(rerr) {
				if now = time.Now(); now.Before(giveUp) {
					if c.clientGone() {
						return false, errClientGone
					}
					continue
				}
				return false, errReadTimeout
			}
			return x.n == 0 && (rerr == io.EOF || errors.Is(rerr, syscall.ECONNRESET)), rerr
		}
		for {
			resp, perr := parseResponseHead((*x.buf)[start:x.n], maxResponseHead)
			if perr == errIncomplete {
				break
			}
			if perr != nil {
				return false, errBadResponse
			}
			if resp.status < 200 && resp.status != http.StatusSwitchingProtocols {
				start += len(resp.head) // 100 Continue, 103: not passed on
				continue
			}
			x.resp = resp
			x.bodyAt = start + len(resp.head)
			return false, nil
		}
	}
}

// sendBodyStep is how much of a request body goes to the server under one
// proxy_send_timeout.
const sendBodyStep = 256 << 10

// sendBody writes the kept request body to the server in steps, re-arming
// proxy_send_timeout before each: as in nginx, the timeout bounds the time
// between two writes, so a large upload to a server that reads steadily
// is not cut.
func (c *fastConn) sendBody(uc *upConn, sendTimeout time.Duration) error {
	body := &c.body
	nc := uc.nc
	for off := int64(0); off < body.size; {
		n := min(body.size-off, sendBodyStep)
		uc.wd.set(time.Now(), sendTimeout, nc.SetWriteDeadline)
		var err error
		if body.file != nil {
			_, err = io.Copy(nc, io.NewSectionReader(body.file, off, n))
		} else {
			_, err = nc.Write(body.mem[off : off+n])
		}
		if err != nil {
			return err
		}
		off += n
	}
	return nil
}

// clientCheckInterval is how often a request waiting for its answer
// checks that its client is still there.
const clientCheckInterval = time.Second

var errClientGone = errors.New("client closed the connection")

// clientGone peeks at the client socket without blocking: end of stream
// or an error means the client went away (bytes or nothing to read mean
// it is still there). Control, not Read: Read reports a passed read
// deadline (client_header_timeout, a drain's) without looking.
func (c *fastConn) clientGone() bool {
	if c.raw == nil {
		return false
	}
	gone := false
	err := c.raw.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		gone = err == nil && n == 0 || err != nil && err != unix.EAGAIN && err != unix.EINTR
	})
	// Closed under us (Shutdown) is gone too.
	return gone || err != nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// relayMode is how the response body travels to the client.
type relayMode int

const (
	relayNone    relayMode = iota // no body (HEAD, 204, 304)
	relayLength                   // Content-Length
	relayChunked                  // chunked, passed through as it came (trailers included)
	relayEncode                   // ends with the upstream connection: sent chunked
	// For HTTP/1.0 clients, which know no chunks: the body ends with the
	// connection.
	relayDechunk // chunked from upstream, data only
	relayRaw     // ends with the upstream connection, passed as it comes
)

// relay writes the response to the client. Once its head is written
// nothing can be retried: a failure mid-body closes the client connection
// so the client sees a truncated response, not a complete one.
func (c *fastConn) relay(p peer, loc *location, v *vhost) bool {
	x := &c.x
	defer x.discard()
	resp := &x.resp
	if resp.status == http.StatusSwitchingProtocols {
		return c.tunnel(p, loc, v)
	}
	mode := relayEncode
	switch {
	case resp.bodyless(c.req.method):
		mode = relayNone
	case resp.chunked:
		mode = relayChunked
	case resp.contentLength >= 0:
		mode = relayLength
	}
	if c.head.Minor == 0 && (mode == relayChunked || mode == relayEncode) {
		c.closeIt = true
		if mode == relayChunked {
			mode = relayDechunk
		} else {
			mode = relayRaw
		}
	}
	bp := outBufPool.Get().(*[]byte)
	defer outBufPool.Put(bp)
	b := append((*bp)[:0], "HTTP/1.1 "...)
	statusLine, _, _ := nextLine(resp.head, 0)
	b = append(b, statusLine[9:]...)
	b = append(b, "\r\n"...)
	b = c.appendResponseFields(b, resp, loc, p.Address(), mode)
	if mode == relayChunked || mode == relayEncode {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	b = c.appendConnection(b)
	b = append(b, "\r\n"...)
	*bp = b
	c.rec.status = resp.status

	buf := *x.buf
	body := buf[x.bodyAt:x.n]
	readTimeout := loc.cfg.ProxyReadTimeout.Duration
	uc := x.uc
	up := uc.nc
	reusable := false
	// spliced: the body went by splice, which reads exactly its length;
	// bytes a server sent beyond it are found before the connection is
	// kept (they would be the next request's answer).
	spliced := false
	var received int64
	defer func() { p.AddBytes(c.body.size, received) }()
	// A client that leaves before any of the answer reached it is logged
	// 499; after the head, with the status it was sent, as nginx does (a
	// cancelled download is no client error).
	headOut := false
	write := func(out []byte) bool {
		if err := c.send(out); err != nil {
			if !headOut {
				c.rec.status = 499
			}
			return false
		}
		headOut = true
		return true
	}
	read := func(into []byte) (int, error) {
		uc.rd.set(time.Now(), readTimeout, up.SetReadDeadline)
		n, err := uc.read(into)
		if err != nil && isTimeout(err) {
			err = errReadTimeout
		}
		return n, err
	}
	cut := func(err error) bool {
		s := c.s
		if s.cutting.Load() {
			return false // the stop closed it
		}
		s.log.Warn("upstream response cut", zap.String("upstream", loc.pool.name), zap.String("server", p.Address()),
			zap.String("uri", c.req.target), zap.Error(err))
		return false
	}

	switch mode {
	case relayNone:
		if !write(b) {
			return false
		}
		reusable = len(body) == 0
	case relayLength:
		remaining := resp.contentLength
		n := int64(len(body))
		if n > remaining {
			n = remaining
		}
		extra := int64(len(body)) > n
		switch {
		case len(b)+int(n) <= cap(b):
			b = append(b, body[:n]...)
			*bp = b
			if !write(b) {
				return false
			}
		case len(b) <= x.bodyAt:
			// The client head fits where the upstream's was: one write.
			at := x.bodyAt - len(b)
			copy(buf[at:], b)
			if !write(buf[at : x.bodyAt+int(n)]) {
				return false
			}
		default:
			if !write(b) || !write(body[:n]) {
				return false
			}
		}
		received += n
		c.rec.bytes += n
		remaining -= n
		if remaining >= spoolMin && remaining <= spoolMax && !extra && *loc.cfg.ProxyBuffering {
			sp, err := newSpool("")
			if err != nil {
				c.s.log.Warn("proxy_buffering: cannot make a temporary file, relaying at the client's pace", zap.Error(err))
			} else {
				k, fellBack, ok := c.relaySpooled(sp, loc, remaining, !resp.close, cut)
				received += k
				if !fellBack || !ok {
					return ok
				}
				remaining -= k // the rest straight from the server
				uc = x.uc
			}
		}
		if remaining > spliceMin && !extra {
			// A large rest goes socket to socket in the kernel (splice),
			// proxy_read_timeout re-armed for each step.
			spliced = true
			for remaining > 0 {
				step := remaining
				if step > spliceStep {
					step = spliceStep
				}
				uc.rd.set(time.Now(), readTimeout, up.SetReadDeadline)
				c.armSend()
				k, err := c.spliceN(up, step)
				received += k
				c.rec.bytes += k
				remaining -= k
				if err != nil {
					if isTimeout(err) && c.sendTimedOut() {
						return false // the client stopped reading
					}
					if isTimeout(err) {
						err = errReadTimeout
					}
					return cut(err)
				}
			}
		}
		for remaining > 0 {
			k, err := read(buf)
			if k > 0 {
				m := int64(k)
				if m > remaining {
					m, extra = remaining, true
				}
				if !write(buf[:m]) {
					return false
				}
				received += m
				c.rec.bytes += m
				remaining -= m
				continue
			}
			if err == nil {
				err = io.ErrNoProgress
			}
			return cut(err)
		}
		reusable = !extra
	case relayChunked:
		fr := framer{state: stateChunkSize, maxHead: maxResponseHead, stopAtEnd: true}
		pend := body
		head := b
		for {
			used, _, err := fr.feed(pend)
			if err != nil {
				return cut(err)
			}
			if len(head) > 0 && len(head)+used <= cap(head) {
				head = append(head, pend[:used]...)
				*bp = head
				used2 := used
				if !write(head) {
					return false
				}
				head = nil
				pend = pend[used2:]
				received += int64(used2)
				c.rec.bytes += int64(used2)
			} else {
				if len(head) > 0 {
					if !write(head) {
						return false
					}
					head = nil
				}
				if used > 0 && !write(pend[:used]) {
					return false
				}
				pend = pend[used:]
				received += int64(used)
				c.rec.bytes += int64(used)
			}
			if fr.state == stateHead {
				reusable = len(pend) == 0
				break
			}
			k := copy(buf, pend)
			if k == len(buf) {
				return cut(errBadResponse)
			}
			n, err := read(buf[k:])
			if n == 0 {
				if err == nil {
					err = io.ErrNoProgress
				}
				return cut(err)
			}
			pend = buf[:k+n]
		}
	case relayDechunk:
		if !write(b) {
			return false
		}
		dec := newChunkDecoder(maxResponseHead)
		pend := body
		for {
			used, done, status := dec.decode(pend, func(data []byte) int {
				if !write(data) {
					return 499
				}
				received += int64(len(data))
				c.rec.bytes += int64(len(data))
				return 0
			})
			switch {
			case status == 499:
				return false
			case status != 0:
				return cut(errBadResponse)
			}
			pend = pend[used:]
			if done {
				reusable = len(pend) == 0
				break
			}
			k := copy(buf, pend)
			if k == len(buf) {
				return cut(errBadResponse)
			}
			n, err := read(buf[k:])
			if n == 0 {
				if err == nil {
					err = io.ErrNoProgress
				}
				return cut(err)
			}
			pend = buf[:k+n]
		}
	case relayRaw:
		if !write(b) || len(body) > 0 && !write(body) {
			return false
		}
		received += int64(len(body))
		c.rec.bytes += int64(len(body))
		for {
			n, err := read(buf)
			if n > 0 {
				if !write(buf[:n]) {
					return false
				}
				received += int64(n)
				c.rec.bytes += int64(n)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return cut(err)
			}
		}
	case relayEncode:
		// Chunk framing around the data read: room for the size line in
		// front, CRLF behind.
		const front = 18
		if !write(b) {
			return false
		}
		chunk := func(n int) bool {
			if n == 0 {
				return true
			}
			start := front - 2
			buf[start], buf[start+1] = '\r', '\n'
			for v := n; ; v >>= 4 {
				start--
				buf[start] = "0123456789abcdef"[v&15]
				if v < 16 {
					break
				}
			}
			buf[front+n], buf[front+n+1] = '\r', '\n'
			received += int64(n)
			c.rec.bytes += int64(n)
			return write(buf[start : front+n+2])
		}
		// What came with the head goes first: moved to leave the chunk
		// framing its room, or (a head so short that the body fills the
		// buffer) framed by writes of its own.
		if len(body) <= len(buf)-2-front {
			if !chunk(copy(buf[front:], body)) {
				return false
			}
		} else {
			size := strconv.AppendInt(make([]byte, 0, 20), int64(len(body)), 16)
			received += int64(len(body))
			c.rec.bytes += int64(len(body))
			if !write(append(size, '\r', '\n')) || !write(body) || !write(crlf) {
				return false
			}
		}
		for {
			n, err := read(buf[front : len(buf)-2])
			if !chunk(n) {
				return false
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return cut(err)
			}
		}
		if !write(lastChunk) {
			return false
		}
	}
	if reusable && !resp.close && x.uc != nil && (!spliced || x.uc.idleClean()) {
		loc.pool.conns.put(x.uc, x.done)
		x.uc = nil
	}
	return true
}

// appendResponseFields copies the upstream's fields that pass to the
// client: not hop-by-hop, not named by its Connection header, framing
// fields as mode needs, Location/Refresh rewritten by proxy_redirect;
// Date added when missing.
func (c *fastConn) appendResponseFields(b []byte, resp *upResponse, loc *location, serverAddr string, mode relayMode) []byte {
	_, fieldsAt, _ := nextLine(resp.head, 0)
	var conn connectionTokens
	it := headerLines{resp.head[fieldsAt:]}
	for {
		n, v, ok := it.next()
		if !ok {
			break
		}
		if equalFold(n, "Connection") {
			conn.add(bstr(v))
		}
	}
	hasDate := false
	it = headerLines{resp.head[fieldsAt:]}
	for {
		n, v, ok := it.next()
		if !ok {
			break
		}
		switch {
		case hopByHopName(n):
			// A chunked body passes as it came, trailers included: its
			// Trailer announcement stays true.
			if !(mode == relayChunked && equalFold(n, "Trailer")) {
				continue
			}
		case conn.names(n):
			continue
		case equalFold(n, "Content-Length"):
			if mode != relayLength && mode != relayNone {
				continue
			}
		case equalFold(n, "Date"):
			hasDate = true
		case len(loc.redirects) > 0 && equalFold(n, "Location"):
			b = appendField(b, "Location", rewriteRedirect(string(v), loc.redirects, serverAddr))
			continue
		case len(loc.redirects) > 0 && equalFold(n, "Refresh"):
			b = appendField(b, "Refresh", rewriteRefresh(string(v), loc.redirects, serverAddr))
			continue
		}
		b = append(b, n...)
		b = append(b, ": "...)
		b = append(b, v...)
		b = append(b, "\r\n"...)
	}
	if !hasDate {
		b = appendDate(b)
	}
	return b
}

// tunnel relays a 101 answer, then the raw bytes both ways (WebSocket).
func (c *fastConn) tunnel(p peer, loc *location, v *vhost) bool {
	x := &c.x
	if c.upHead.upgrade == "" {
		// A switch nobody asked for.
		c.answerError(v, http.StatusBadGateway, "")
		return false
	}
	_, fieldsAt, _ := nextLine(x.resp.head, 0)
	upgrade := headerView{raw: x.resp.head[fieldsAt:]}
	b := append([]byte(nil), "HTTP/1.1 101 Switching Protocols\r\n"...)
	b = c.appendResponseFields(b, &x.resp, loc, p.Address(), relayNone)
	b = append(b, "Connection: Upgrade\r\n"...)
	if u := upgrade.get("Upgrade"); u != "" {
		b = appendField(b, "Upgrade", u)
	}
	b = append(b, "\r\n"...)
	greeting := int64(x.n - x.bodyAt) // bytes the server sent right behind
	b = append(b, (*x.buf)[x.bodyAt:x.n]...)
	c.rec.status = http.StatusSwitchingProtocols
	up := x.uc.nc
	x.uc = nil // the tunnel owns it
	t := &tunnel{client: c.nc, up: up}
	c.state.Store(int32(fastTunnel))
	if !c.s.addTunnel(t, c.upgradeEpoch) {
		t.close()
		return false
	}
	defer c.s.removeTunnel(t)
	defer t.close()
	_ = c.nc.SetDeadline(time.Time{})
	c.rd.forget()
	c.wd.forget()
	_ = up.SetDeadline(time.Time{})
	if _, err := c.nc.Write(b); err != nil {
		return false
	}
	// Bytes the client sent right behind its request.
	rest := (*c.buf)[c.r+c.head.Len+c.consumedBody : c.w]
	if len(rest) > 0 {
		if _, err := up.Write(rest); err != nil {
			return false
		}
	}
	toClient, toUpstream := t.run(tunnelLimits{
		idle:       loc.cfg.ProxyReadTimeout.Duration,
		toClient:   c.sendTimeout,
		toUpstream: loc.cfg.ProxySendTimeout.Duration,
	})
	toClient += greeting
	toUpstream += int64(len(rest))
	c.rec.bytes += toClient
	p.AddBytes(toUpstream, toClient)
	return false
}

// relaySpooled sends the rest of a Content-Length body (remaining bytes)
// through sp: the server's connection is drained at the server's pace and
// goes back to the pool (keep) as soon as the whole body is in the file,
// while the client gets it at its own pace from the file (sendfile). It
// returns the bytes sent to the client; fellBack when the file could not
// take the body (disk full): the rest then comes straight from the
// server, whose connection is back in c.x.uc.
func (c *fastConn) relaySpooled(sp *spool, loc *location, remaining int64, keep bool, cut func(error) bool) (sent int64, fellBack, ok bool) {
	x := &c.x
	uc := x.uc
	x.uc = nil // fill owns the server's connection now
	readTimeout := loc.cfg.ProxyReadTimeout.Duration
	pool := &loc.pool.conns
	// What becomes of the connection is decided once, by fill at its end
	// or by an abort (the client left) before it.
	var mu sync.Mutex
	finished, aborted := false, false
	// fill reads through the relay's buffer: what it held has gone to the
	// client, and the relay reads into it again only after fill ended (a
	// full file). One upstream buffer per download, not two.
	fillBuf := *x.buf
	sp.start(func(dst *os.File, progress func(int64)) error {
		err := sp.fillFrom(dst, progress, uc.nc, remaining, fillBuf, func() {
			uc.rd.set(time.Now(), readTimeout, uc.nc.SetReadDeadline)
		})
		mu.Lock()
		defer mu.Unlock()
		finished = true
		switch {
		case aborted:
			_ = uc.nc.Close()
			return errClientGone
		case errors.Is(err, errSpoolFull):
			fellBack = true // the relay takes the connection back
			return err
		case err == nil:
			// Bytes the server sent beyond its Content-Length would be
			// the next request's answer: such a connection is not kept.
			if keep && uc.idleClean() {
				pool.put(uc, time.Now())
			} else {
				_ = uc.nc.Close()
			}
			c.upEnd.end() // the whole response is in
			return nil
		}
		_ = uc.nc.Close()
		if isTimeout(err) {
			return errReadTimeout
		}
		return err
	})
	defer sp.close()
	abort := func() {
		mu.Lock()
		defer mu.Unlock()
		if !finished {
			aborted = true
			_ = uc.nc.SetReadDeadline(time.Unix(1, 0))
		}
	}
	for sent < remaining {
		n, err := sp.waitFor(sent)
		if n == 0 {
			if !errors.Is(err, errSpoolFull) {
				return sent, false, cut(err)
			}
			// fill ended (waitFor saw done): the connection is ours again.
			x.uc = uc
			c.s.log.Warn("proxy_buffering: the temporary file is full, the rest goes at the client's pace",
				zap.String("upstream", loc.pool.name), zap.String("uri", c.req.target), zap.Error(err))
			if len(sp.tail) > 0 {
				if c.send(sp.tail) != nil {
					return sent, true, false
				}
				sent += int64(len(sp.tail))
				c.rec.bytes += int64(len(sp.tail))
			}
			return sent, true, true
		}
		c.armSend()
		k, err := c.spliceN(sp.r, n)
		sent += k
		c.rec.bytes += k
		if err != nil {
			abort()
			return sent, false, false
		}
	}
	return sent, false, true
}

// spliceN copies n bytes from src (a TCP connection or a file) to the
// client; net.TCPConn's ReadFrom splices, or sends the file, from an
// *io.LimitedReader (the one kept in c, so that nothing is allocated).
func (c *fastConn) spliceN(up io.Reader, n int64) (int64, error) {
	rf, ok := c.nc.(io.ReaderFrom)
	if !ok {
		return io.CopyN(c.nc, up, n)
	}
	c.limited = io.LimitedReader{R: up, N: n}
	k, err := rf.ReadFrom(&c.limited)
	c.limited.R = nil
	if err == nil && k < n {
		err = io.ErrUnexpectedEOF
	}
	return k, err
}

// A Content-Length body with more than spliceMin bytes left after the
// first read is spliced, spliceStep bytes at a time.
const (
	spliceMin  = 16 << 10
	spliceStep = 1 << 20
)

// lastChunk ends a chunked body without trailers.
var (
	lastChunk = []byte("0\r\n\r\n")
	crlf      = []byte("\r\n")
)
