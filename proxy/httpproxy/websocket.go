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
	toClient, toUpstream := t.run(pr.loc.cfg.ProxyReadTimeout.Duration)
	pr.rec.bytes += toClient
	p.AddBytes(toUpstream, toClient)
}

// run copies both ways until either side closes or nothing moved for idle
// (proxy_read_timeout), and closes both.
func (t *tunnel) run(idle time.Duration) (toClient, toUpstream int64) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var (
		timer   *time.Timer
		timerMu sync.Mutex
	)
	check := func() {
		timerMu.Lock()
		defer timerMu.Unlock()
		since := time.Since(time.Unix(0, last.Load()))
		if since >= idle {
			t.close()
			return
		}
		timer.Reset(idle - since)
	}
	timerMu.Lock()
	timer = time.AfterFunc(idle, check)
	timerMu.Unlock()
	defer timer.Stop()

	done := make(chan struct{})
	go func() {
		defer close(done)
		toClient = copyActive(t.client, t.up, &last)
		t.close()
	}()
	toUpstream = copyActive(t.up, t.client, &last)
	t.close()
	<-done
	return toClient, toUpstream
}

// copyActive copies src to dst, noting the time of every read in last.
func copyActive(dst io.Writer, src io.Reader, last *atomic.Int64) int64 {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return total
			}
			total += int64(n)
		}
		if err != nil {
			return total
		}
	}
}
