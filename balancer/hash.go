package balancer

import (
	"encoding/binary"
	"hash/crc32"
	"slices"
	"strings"
)

// consistentHash is nginx's "hash $key consistent"
// (ngx_http_upstream_hash_module.c), ketama style: 160 points per weight
// unit per server, point j = crc32(host "\0" port prev) where prev is point
// j-1 as 4 little-endian bytes (0 for the first). A key goes to the first
// point >= crc32(key); an unusable server passes it on to the next point,
// up to 20 times, then round robin decides. Removing a server only moves
// the keys that were on its points. An empty key uses round robin.
type consistentHash struct {
	t      *tier
	points []chashPoint
}

type chashPoint struct {
	hash   uint32
	server int // index in t.servers
}

var _ Selector = (*consistentHash)(nil)

func newConsistentHash(t *tier) Selector {
	h := &consistentHash{t: t, points: make([]chashPoint, 0, 160*t.totalWeight)}
	for i, s := range t.servers {
		host, port := splitHostPort(s.address)
		base := crc32.ChecksumIEEE([]byte(host + "\x00" + port))
		var prev [4]byte
		for range 160 * s.weight {
			p := crc32.Update(base, crc32.IEEETable, prev[:])
			h.points = append(h.points, chashPoint{hash: p, server: i})
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
		s := servers[h.points[p%len(h.points)].server]
		if c.usable(s) {
			// nginx runs round robin among the peers sharing the point's
			// server name; here that is this one server.
			return s
		}
		p++
		tries++
		if tries > hashFallbackTries {
			return smoothWeighted(c, servers)
		}
	}
}
