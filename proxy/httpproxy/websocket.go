package httpproxy

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// tunnel is an upgraded (WebSocket) connection: bytes copied both ways
// until either side closes, the idle limit (proxy_read_timeout) passes, or
// CloseLongLived. It keeps the settings of the generation that accepted it.
type tunnel struct {
	client net.Conn
	up     io.ReadWriteCloser
	once   sync.Once
}

func (t *tunnel) close() {
	t.once.Do(func() {
		_ = t.client.Close()
		_ = t.up.Close()
	})
}

// tunnel relays a 101 answer and then the raw bytes.
func (pr *proxyRequest) tunnel(p peer, res *attemptResult) {
	resp := res.resp
	up, ok := resp.Body.(io.ReadWriteCloser)
	cc := pr.vars.conn
	if !ok || cc == nil || pr.r.ProtoMajor != 1 {
		pr.s.errorResponse(pr.w, pr.vars.server, http.StatusBadGateway)
		return
	}
	conn, brw, err := http.NewResponseController(pr.w).Hijack()
	if err != nil {
		pr.s.log.Warn("websocket: hijack failed", zap.Error(err))
		_ = up.Close()
		return
	}
	if !cc.setPassthrough() {
		pr.s.log.Info("websocket: client sent too much before the protocol switch", zap.String("client", cc.remote.String()))
		_ = conn.Close()
		_ = up.Close()
		return
	}
	pr.rec.status = http.StatusSwitchingProtocols

	var head strings.Builder
	head.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	h := http.Header{}
	copyResponseHeader(h, resp.Header)
	h["Connection"] = []string{"Upgrade"}
	if u := resp.Header.Get("Upgrade"); u != "" {
		h["Upgrade"] = []string{u}
	}
	_ = h.Write(&head)
	head.WriteString("\r\n")

	t := &tunnel{client: conn, up: up}
	if !pr.s.addTunnel(t, pr.upgradeEpoch) {
		t.close()
		return
	}
	defer pr.s.removeTunnel(t)
	defer t.close()

	_ = conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, head.String()); err != nil {
		return
	}
	// Bytes the client sent right behind its request are in net/http's
	// buffer.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := up.Write(b); err != nil {
			return
		}
	}
	toClient, toUpstream := t.run(tunnelLimits{
		idle:       pr.loc.cfg.ProxyReadTimeout.Duration,
		toClient:   time.Duration(cc.sendTimeout.Load()),
		toUpstream: pr.loc.cfg.ProxySendTimeout.Duration,
	})
	pr.rec.bytes += toClient
	p.AddBytes(toUpstream, toClient)
}

// tunnelLimits are the timeouts of a tunnel, as nginx applies them to an
// upgraded connection.
type tunnelLimits struct {
	// idle: nothing read either way for this long (proxy_read_timeout).
	idle time.Duration
	// toClient: one write to the client blocked for this long (send_timeout).
	toClient time.Duration
	// toUpstream: one write to the server blocked for this long
	// (proxy_send_timeout).
	toUpstream time.Duration
}

// direction is one way of a tunnel: when it last read, and since when its
// current write is blocked (0: not writing).
type direction struct {
	lastRead atomic.Int64
	writing  atomic.Int64
}

// run copies both ways until either side closes, nothing moved for
// limits.idle, or a write stayed blocked past its limit (a peer that stops
// reading while the other keeps the tunnel busy), and closes both.
func (t *tunnel) run(limits tunnelLimits) (toClient, toUpstream int64) {
	var down, up direction // down: server to client
	now := time.Now().UnixNano()
	down.lastRead.Store(now)
	up.lastRead.Store(now)
	var (
		timer   *time.Timer
		timerMu sync.Mutex
		stopped bool // run returned: a check under way must not re-arm
	)
	// check closes the tunnel when a limit passed, and else runs again
	// when the next one could pass.
	check := func() {
		timerMu.Lock()
		defer timerMu.Unlock()
		if stopped {
			return
		}
		now := time.Now().UnixNano()
		next := limits.idle - time.Duration(now-max(down.lastRead.Load(), up.lastRead.Load()))
		for _, d := range []struct {
			limit time.Duration
			dir   *direction
		}{{limits.toClient, &down}, {limits.toUpstream, &up}} {
			if d.limit <= 0 {
				continue
			}
			wait := d.limit
			if since := d.dir.writing.Load(); since != 0 {
				wait -= time.Duration(now - since)
			}
			next = min(next, wait)
		}
		if next <= 0 {
			t.close()
			return
		}
		timer.Reset(next)
	}
	timerMu.Lock()
	timer = time.AfterFunc(0, check)
	timerMu.Unlock()
	defer func() {
		timerMu.Lock()
		stopped = true
		timer.Stop()
		timerMu.Unlock()
	}()

	done := make(chan struct{})
	go func() {
		defer close(done)
		toClient = copyActive(t.client, t.up, &down)
		t.close()
	}()
	toUpstream = copyActive(t.up, t.client, &up)
	t.close()
	<-done
	return toClient, toUpstream
}

// copyActive copies src to dst, noting in d the time of every read and of
// the start of every write.
func copyActive(dst io.Writer, src io.Reader, d *direction) int64 {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			now := time.Now().UnixNano()
			d.lastRead.Store(now)
			d.writing.Store(now)
			_, werr := dst.Write(buf[:n])
			d.writing.Store(0)
			if werr != nil {
				return total
			}
			total += int64(n)
		}
		if err != nil {
			return total
		}
	}
}
