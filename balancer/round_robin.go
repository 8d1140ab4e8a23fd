package balancer

// roundRobin is nginx's smooth weighted round robin
// (ngx_http_upstream_get_peer): every usable server's current weight grows
// by its effective weight, the largest wins and loses the sum. Weights 5:1:1
// give a a b a c a a, never five a in a row.
type roundRobin struct{ t *tier }

var _ Selector = (*roundRobin)(nil)

func newRoundRobin(t *tier) Selector { return &roundRobin{t: t} }

func (r *roundRobin) Select(c *pickContext) *Server { return smoothWeighted(c, r.t.servers) }

// smoothWeighted is the round robin step the other policies fall back to.
func smoothWeighted(c *pickContext, servers []*Server) *Server {
	var best *Server
	total := 0
	for _, s := range servers {
		if !c.usable(s) {
			continue
		}
		s.currentWeight += s.effectiveWeight
		total += s.effectiveWeight
		if s.effectiveWeight < s.weight {
			s.effectiveWeight++
		}
		if best == nil || s.currentWeight > best.currentWeight {
			best = s
		}
	}
	if best == nil {
		return nil
	}
	best.currentWeight -= total
	return best
}
