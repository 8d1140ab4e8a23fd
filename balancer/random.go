package balancer

import "math/rand/v2"

// random is nginx's "random" (ngx_http_upstream_random_module.c): a server
// drawn with probability weight/total weight (down servers included in the
// draw, then skipped); an unusable draw is redrawn, up to 20 times, then
// round robin decides.
type random struct {
	t      *tier
	starts []int // starts[i] = sum of the weights before server i
	intN   func(n int) int
}

var _ Selector = (*random)(nil)

func newRandom(t *tier) Selector { return newRandomWith(t, rand.IntN) }

func newRandomWith(t *tier, intN func(int) int) *random {
	r := &random{t: t, starts: make([]int, len(t.servers)), intN: intN}
	sum := 0
	for i, s := range t.servers {
		r.starts[i] = sum
		sum += s.weight
	}
	return r
}

// draw returns a server index with probability proportional to its weight.
func (r *random) draw() int {
	x := r.intN(r.t.totalWeight)
	i, j := 0, len(r.starts)
	for j-i > 1 {
		k := (i + j) / 2
		if x < r.starts[k] {
			j = k
		} else {
			i = k
		}
	}
	return i
}

func (r *random) Select(c *pickContext) *Server {
	servers := r.t.servers
	if len(servers) < 2 {
		return smoothWeighted(c, servers)
	}
	for tries := 0; ; {
		if s := servers[r.draw()]; c.usable(s) {
			return s
		}
		tries++
		if tries > hashFallbackTries {
			return smoothWeighted(c, servers)
		}
	}
}
