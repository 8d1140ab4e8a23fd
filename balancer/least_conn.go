package balancer

// leastConn is nginx's least_conn (ngx_http_upstream_least_conn_module.c):
// the usable server with the fewest active connections per weight unit;
// ties are broken by smooth weighted round robin among the tied servers.
type leastConn struct{ t *tier }

var _ Selector = (*leastConn)(nil)

func newLeastConn(t *tier) Selector { return &leastConn{t: t} }

func (l *leastConn) Select(c *pickContext) *Server {
	servers := l.t.servers
	if len(servers) == 1 {
		return smoothWeighted(c, servers)
	}
	var best *Server
	var bestConns int64
	first, many := 0, false
	for i, s := range servers {
		if !c.usable(s) {
			continue
		}
		conns := s.state.conns.Load()
		// conns/weight < best.conns/best.weight without division.
		switch {
		case best == nil || conns*int64(best.weight) < bestConns*int64(s.weight):
			best, bestConns, first, many = s, conns, i, false
		case conns*int64(best.weight) == bestConns*int64(s.weight):
			many = true
		}
	}
	if best == nil || !many {
		return best
	}
	total, bestWeight := 0, int64(best.weight)
	for _, s := range servers[first:] {
		if !c.usable(s) || s.state.conns.Load()*bestWeight != bestConns*int64(s.weight) {
			continue
		}
		s.currentWeight += s.effectiveWeight
		total += s.effectiveWeight
		if s.effectiveWeight < s.weight {
			s.effectiveWeight++
		}
		if s.currentWeight > best.currentWeight {
			best = s
		}
	}
	best.currentWeight -= total
	return best
}
