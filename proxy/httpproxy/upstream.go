package httpproxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/vipgate/vipgate/balancer"
)

// peer is one server to send an attempt to: a balancer server, or the
// single literal address of a proxy_pass without upstream.
type peer interface {
	Address() string
	Release()
	ReportFailure()
	ReportSuccess()
	ObserveResponse(status int, d time.Duration)
	AddBytes(sent, received int64)
}

var _ peer = (*balancer.Server)(nil)

// literalPeer is a proxy_pass host:port: no balancing, no failure state.
type literalPeer struct{ addr string }

func (p *literalPeer) Address() string                    { return p.addr }
func (p *literalPeer) Release()                           {}
func (p *literalPeer) ReportFailure()                     {}
func (p *literalPeer) ReportSuccess()                     {}
func (p *literalPeer) ObserveResponse(int, time.Duration) {}
func (p *literalPeer) AddBytes(int64, int64)              {}

// upstreamPool is one upstream (or literal address) of a generation with
// its own keep-alive connection pool.
type upstreamPool struct {
	name      string
	bal       *balancer.Upstream // nil for a literal address
	literal   *literalPeer
	hashKey   *template // balance = "hash"
	transport *http.Transport
	// conns are the fast path's idle connections (keepalive of them).
	conns connPool
}

type connectTimeoutKey struct{}

// newTransport is an HTTP/1.1 client whose idle pool holds keepalive
// connections (not Go's default of 2 per host). Timeouts are per attempt:
// the connect timeout travels in the context, read and send timeouts are
// enforced by the forwarder.
func newTransport(keepalive int) *http.Transport {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{KeepAlive: 30 * time.Second}
		d.SetMultipathTCP(false) // see dialUpstream
		if t, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok && t > 0 {
			d.Timeout = t
		}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, &dialError{err: err}
		}
		return c, nil
	}
	t := &http.Transport{
		DialContext:            dial,
		MaxIdleConns:           keepalive,
		MaxIdleConnsPerHost:    keepalive,
		IdleConnTimeout:        60 * time.Second, // nginx's keepalive_timeout for upstreams
		DisableCompression:     true,
		DisableKeepAlives:      keepalive <= 0,
		MaxResponseHeaderBytes: 64 << 10,
		WriteBufferSize:        16 << 10,
		ReadBufferSize:         16 << 10,
		// HTTP/1.1 only: an empty map turns HTTP/2 off.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	return t
}

// dialError marks a failure to connect: nothing was sent, so even a POST
// may go to the next server.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// pick chooses the next server for an attempt.
func (p *upstreamPool) pick(client netip.Addr, hashKey string, tried []*balancer.Server, attempts int) (peer, *balancer.Server, error) {
	if p.bal == nil {
		if attempts > 0 || p.literal == nil {
			return nil, nil, balancer.ErrNoServer
		}
		return p.literal, nil, nil
	}
	s, err := p.bal.Pick(balancer.PickRequest{ClientIP: client, HashKey: hashKey, Tried: tried})
	if err != nil {
		return nil, nil, err
	}
	return s, s, nil
}
