package balancer

import "math/rand/v2"

// randomTwo is nginx's "random two least_conn": two different usable
// servers drawn by weight, then the one with fewer active connections per
// weight unit (the first drawn on a tie). Unusable or repeated draws count
// against the same 20 tries as random, then round robin decides.
type randomTwo struct{ r *random }

var _ Selector = (*randomTwo)(nil)

func newRandomTwo(t *tier) Selector { return &randomTwo{r: newRandomWith(t, rand.IntN)} }

func (r2 *randomTwo) Select(c *pickContext) *Server {
	servers := r2.r.t.servers
	if len(servers) < 2 {
		return smoothWeighted(c, servers)
	}
	var prev *Server
	for tries := 0; ; {
		s := servers[r2.r.draw()]
		if s != prev && c.usable(s) {
			if prev == nil {
				prev = s
			} else {
				if s.state.conns.Load()*int64(prev.weight) > prev.state.conns.Load()*int64(s.weight) {
					return prev
				}
				return s
			}
		}
		tries++
		if tries > hashFallbackTries {
			return smoothWeighted(c, servers)
		}
	}
}
