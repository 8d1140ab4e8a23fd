package balancer

import (
	"encoding/binary"
	"hash/crc32"
	"slices"
	"strings"
)

// consistentHash is nginx's "hash $key consistent"
// (ngx_http_upstream_hash_module.c), ketama style: 160 points per weight
// unit per server name, point j = crc32(host "\0" port prev) where prev is
// point j-1 as 4 little-endian bytes (0 for the first). The name is the
// server as configured (ServerSpec.Name), so the servers a host name
// resolves to share its points and take turns by round robin, as in nginx.
// A key goes to the first point >= crc32(key); when none of the point's
// servers is usable the next point is tried, up to 20 times, then round
// robin decides. Removing a server only moves the keys that were on its
// points. An empty key uses round robin.
type consistentHash struct {
	t      *tier
	points []chashPoint
	groups [][]*Server // the servers of each name, in configuration order
}

type chashPoint struct {
	hash  uint32
	group int // index in groups
}

var _ Selector = (*consistentHash)(nil)

func newConsistentHash(t *tier) Selector {
	h := &consistentHash{t: t}
	var names []string
	weights := map[string]int{}
	groupOf := map[string]int{}
	for _, s := range t.servers {
		g, ok := groupOf[s.name]
		if !ok {
			g = len(h.groups)
			groupOf[s.name] = g
			h.groups = append(h.groups, nil)
			names = append(names, s.name)
		}
		h.groups[g] = append(h.groups[g], s)
		// Each address of a name adds the same chain of points; after
		// removing duplicates the longest chain is what remains.
		weights[s.name] = max(weights[s.name], s.weight)
	}
	for g, name := range names {
		host, port := splitHostPort(name)
		base := crc32.ChecksumIEEE([]byte(host + "\x00" + port))
		var prev [4]byte
		for range 160 * weights[name] {
			p := crc32.Update(base, crc32.IEEETable, prev[:])
			h.points = append(h.points, chashPoint{hash: p, group: g})
			binary.LittleEndian.PutUint32(prev[:], p)
		}
	}
	// nginx sorts by hash and keeps the first of equal hashes; its qsort is
	// not stable, a stable sort keeps configuration order for the rare tie.
	slices.SortStableFunc(h.points, func(a, b chashPoint) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return 0
	})
	h.points = slices.CompactFunc(h.points, func(a, b chashPoint) bool { return a.hash == b.hash })
	return h
}

// splitHostPort splits as nginx does: the port is the all-digit part after
// the last colon, if any.
func splitHostPort(addr string) (host, port string) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr, ""
	}
	for _, c := range addr[i+1:] {
		if c < '0' || c > '9' {
			return addr, ""
		}
	}
	return addr[:i], addr[i+1:]
}

// point returns the index of the first point >= hash (len(points) wraps to 0).
func (h *consistentHash) point(hash uint32) int {
	i, _ := slices.BinarySearchFunc(h.points, hash, func(p chashPoint, h uint32) int {
		switch {
		case p.hash < h:
			return -1
		case p.hash > h:
			return 1
		}
		return 0
	})
	return i
}

func (h *consistentHash) Select(c *pickContext) *Server {
	servers := h.t.servers
	if len(servers) < 2 || !c.hasKey {
		return smoothWeighted(c, servers)
	}
	p := h.point(c.keyHash)
	for tries := 0; ; {
		if s := smoothWeighted(c, h.groups[h.points[p%len(h.points)].group]); s != nil {
			return s
		}
		p++
		tries++
		if tries > hashFallbackTries {
			return smoothWeighted(c, servers)
		}
	}
}
