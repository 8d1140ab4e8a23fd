package balancer

// ipHash is nginx's ip_hash (ngx_http_upstream_ip_hash_module.c): the first
// three octets of an IPv4 client (all 16 bytes of IPv6) hashed into the
// weights of the servers in configuration order, down servers included, so
// every node with the same server list sends a client to the same server.
// An unusable server is rehashed, up to 20 times, then round robin decides.
type ipHash struct{ t *tier }

var _ Selector = (*ipHash)(nil)

func newIPHash(t *tier) Selector { return &ipHash{t: t} }

func (h *ipHash) Select(c *pickContext) *Server {
	servers := h.t.servers
	if len(servers) < 2 {
		return smoothWeighted(c, servers)
	}
	hash := 89
	for tries := 0; ; {
		for _, b := range c.ip[:c.ipLen] {
			hash = (hash*113 + int(b)) % 6271
		}
		w := hash % h.t.totalWeight
		i := 0
		for w >= servers[i].weight {
			w -= servers[i].weight
			i++
		}
		if c.usable(servers[i]) {
			return servers[i]
		}
		tries++
		if tries > hashFallbackTries {
			return smoothWeighted(c, servers)
		}
	}
}
