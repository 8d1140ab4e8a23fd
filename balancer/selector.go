package balancer

import (
	"slices"
	"strings"
)

// Selector picks one usable server of its tier, or returns nil. Selectors
// are called with the upstream's lock held, so they may keep unsynchronised
// state in their tier's servers (current weights).
type Selector interface {
	Select(c *pickContext) *Server
}

// policies maps a balance name to the constructor of its selector, built
// once per tier (primary servers, backup servers) of each Upstream.
var policies = map[string]func(t *tier) Selector{
	"round_robin": newRoundRobin,
	"ip_hash":     newIPHash,
	"hash":        newConsistentHash,
	"least_conn":  newLeastConn,
	"random":      newRandom,
	"random_two":  newRandomTwo,
}

// Policies returns the balance names Build accepts.
func Policies() []string {
	names := make([]string, 0, len(policies))
	for n := range policies {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func policyNames() string { return strings.Join(Policies(), ", ") }

// hashFallbackTries is how many times nginx's hash policies look for
// another server before falling back to round robin.
const hashFallbackTries = 20
