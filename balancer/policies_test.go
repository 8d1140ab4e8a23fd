package balancer

import (
	"fmt"
	"hash/crc32"
	"math"
	"strings"
	"testing"
)

func TestRoundRobinSequenceIsNginxSmoothWeighted(t *testing.T) {
	// Sequences of nginx's ngx_http_upstream_get_peer (current weight +=
	// weight, the largest wins and loses the total); the differential test
	// against a real nginx checks the same thing end to end.
	tests := []struct {
		weights []int
		want    string
	}{
		{[]int{3, 1, 4}, "cacabcaccacabcac"},
		{[]int{5, 1, 1}, "aabacaaaabacaa"}, // nginx's own example: never five a in a row
		{[]int{1, 1, 1}, "abcabcabc"},
		{[]int{2, 1}, "abaaba"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.weights), func(t *testing.T) {
			tab, _ := newTestTable()
			u := mustBuild(t, tab, UpstreamSpec{Servers: servers(tt.weights...)})
			if got := pickSeq(t, u, len(tt.want), PickRequest{}); got != tt.want {
				t.Errorf("sequence = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRoundRobinSplitsExactlyByWeight(t *testing.T) {
	tab, _ := newTestTable()
	u := mustBuild(t, tab, UpstreamSpec{Servers: servers(3, 1, 4)})
	got := count(pickSeq(t, u, 800, PickRequest{}))
	if got['a'] != 300 || got['b'] != 100 || got['c'] != 400 {
		t.Errorf("800 picks of 3:1:4 = a %d, b %d, c %d; want exactly 300/100/400", got['a'], got['b'], got['c'])
	}
}

func TestRoundRobinSkipsDownAndTried(t *testing.T) {
	tab, _ := newTestTable()
	specs := servers(1, 1, 1)
	specs[1].Down = true
	u := mustBuild(t, tab, UpstreamSpec{Servers: specs})
	if got := pickSeq(t, u, 4, PickRequest{}); got != "acac" {
		t.Errorf("with b down: %s, want acac", got)
	}
	a := u.Servers()[0]
	if got := pickSeq(t, u, 3, PickRequest{Tried: []*Server{a}}); got != "ccc" {
		t.Errorf("with a tried: %s, want ccc", got)
	}
	if got := pickSeq(t, u, 1, PickRequest{Tried: []*Server{a, u.Servers()[2]}}); got != "-" {
		t.Errorf("with a and c tried and b down: %s, want no server", got)
	}
}

func TestIPHashMatchesNginx(t *testing.T) {
	// Expected servers computed with nginx's formula by an independent
	// implementation (hash = 89; hash = (hash*113 + octet) % 6271 over the
	// first three IPv4 octets or all 16 IPv6 bytes; walk weights 1, 2, 1).
	tests := []struct{ client, want string }{
		{"192.0.2.1", "c"},
		{"198.51.100.7", "a"},
		{"127.0.1.1", "b"},
		{"127.0.2.1", "b"},
		{"127.0.3.1", "c"},
		{"127.0.4.1", "a"},
		{"127.1.0.1", "b"},
		{"127.2.0.1", "b"},
		{"2001:db8::1", "a"},
		{"2001:db8::2", "b"},
		{"2001:db8::3", "b"},
		{"2001:db8::4", "c"},
		{"::ffff:127.0.3.1", "c"}, // a dual-stack listener's IPv4 client hashes as IPv4
	}
	tab, _ := newTestTable()
	u := mustBuild(t, tab, UpstreamSpec{Balance: "ip_hash", Servers: servers(1, 2, 1)})
	// A second node with its own table and the same list must agree.
	other, _ := newTestTable()
	u2 := mustBuild(t, other, UpstreamSpec{Balance: "ip_hash", Servers: servers(1, 2, 1)})
	for _, tt := range tests {
		req := PickRequest{ClientIP: ip(tt.client)}
		if got := pickSeq(t, u, 3, req); got != tt.want+tt.want+tt.want {
			t.Errorf("client %s: %s, want %s every time", tt.client, got, tt.want)
		}
		if got := pickSeq(t, u2, 1, req); got != tt.want {
			t.Errorf("client %s on another node: %s, want %s", tt.client, got, tt.want)
		}
	}
	// The last octet of IPv4 is not hashed: a /24 sticks together.
	if a, b := pickSeq(t, u, 1, PickRequest{ClientIP: ip("127.0.3.1")}), pickSeq(t, u, 1, PickRequest{ClientIP: ip("127.0.3.254")}); a != b {
		t.Errorf("127.0.3.1 -> %s but 127.0.3.254 -> %s", a, b)
	}
}

func TestIPHashRehashesOnlyClientsOfAnUnavailableServer(t *testing.T) {
	tab, _ := newTestTable()
	u := mustBuild(t, tab, UpstreamSpec{Balance: "ip_hash", Servers: servers(1, 1, 1, 1)})
	before := map[string]string{}
	for i := range 256 {
		c := fmt.Sprintf("10.0.%d.1", i)
		before[c] = pickSeq(t, u, 1, PickRequest{ClientIP: ip(c)})
	}
	u.Servers()[1].SetActiveHealth(false, "test")
	moved := 0
	for c, was := range before {
		now := pickSeq(t, u, 1, PickRequest{ClientIP: ip(c)})
		switch {
		case was == "b" && now == "b":
			t.Fatalf("client %s still on unhealthy b", c)
		case was == "b":
			moved++
		case now != was:
			t.Errorf("client %s moved from %s to %s although %s is up", c, was, now, was)
		}
	}
	if moved == 0 {
		t.Fatal("no client was on b: test proves nothing")
	}
}

func TestIPHashFallsBackToRoundRobinAfter20Rehashes(t *testing.T) {
	// With every server but one down, rehashing rarely lands on the live one
	// within 20 tries for some clients; those must still be served.
	tab, _ := newTestTable()
	specs := servers(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
	for i := 1; i < len(specs); i++ {
		specs[i].Down = true
	}
	u := mustBuild(t, tab, UpstreamSpec{Balance: "ip_hash", Servers: specs})
	for i := range 256 {
		if got := pickSeq(t, u, 1, PickRequest{ClientIP: ip(fmt.Sprintf("10.%d.0.1", i))}); got != "a" {
			t.Fatalf("client 10.%d.0.1 got %s, want a (the only live server)", i, got)
		}
	}
}

func TestConsistentHashRemovingServerMovesOnlyItsKeys(t *testing.T) {
	tab, _ := newTestTable()
	four := servers(1, 1, 2, 1)
	u4 := mustBuild(t, tab, UpstreamSpec{Name: "h4", Balance: "hash", Servers: four})
	// The same list without c, as after editing the config.
	three := append(append([]ServerSpec{}, four[:2]...), four[3])
	u3 := mustBuild(t, tab, UpstreamSpec{Name: "h3", Balance: "hash", Servers: three})
	moved, onC := 0, 0
	for i := range 10000 {
		req := PickRequest{HashKey: fmt.Sprintf("/item/%d", i)}
		was := pickSeq(t, u4, 1, req)
		now := pickSeq(t, u3, 1, req)
		if was == "c" {
			onC++
			if now == "c" {
				t.Fatalf("key %s still on removed c", req.HashKey)
			}
			continue
		}
		if now != was {
			moved++
		}
	}
	if moved != 0 {
		t.Errorf("%d keys not on c moved when c was removed", moved)
	}
	// c has weight 2 of 5: about 40% of the keys.
	if frac := float64(onC) / 10000; math.Abs(frac-0.4) > 0.06 {
		t.Errorf("c (weight 2 of 5) held %.2f of the keys, want about 0.40", frac)
	}
}

func TestConsistentHashRingIsNginxs(t *testing.T) {
	// nginx: 160 points per weight unit; point 0 = crc32("host\0port" +
	// four zero bytes); point j chains the previous point little-endian.
	tab, _ := newTestTable()
	u := mustBuild(t, tab, UpstreamSpec{Balance: "hash", Servers: servers(1, 3)})
	h := u.primary.sel.(*consistentHash)
	if len(h.points) != 160*4 {
		t.Errorf("%d points, want 640 (160 per weight unit, no collisions expected here)", len(h.points))
	}
	first := crc32.ChecksumIEEE([]byte("127.0.0.1\x008001\x00\x00\x00\x00"))
	second := crc32.ChecksumIEEE([]byte{'1', '2', '7', '.', '0', '.', '0', '.', '1', 0, '8', '0', '0', '1',
		byte(first), byte(first >> 8), byte(first >> 16), byte(first >> 24)})
	found := 0
	for _, p := range h.points {
		if (p.hash == first || p.hash == second) && p.group == 0 {
			found++
		}
	}
	if found != 2 {
		t.Errorf("the first two points of 127.0.0.1:8001 are not on the ring (%d of 2 found)", found)
	}
	// A key lands on the first point at or after crc32(key), wrapping.
	key := "/some/uri"
	kh := crc32.ChecksumIEEE([]byte(key))
	want := h.points[0].group
	for _, p := range h.points {
		if p.hash >= kh {
			want = p.group
			break
		}
	}
	got := pickOne(t, u, PickRequest{HashKey: key})
	if got != u.Servers()[want] {
		t.Errorf("key %q on %s, want %s", key, got.Address(), u.Servers()[want].Address())
	}
}

func TestConsistentHashPlacesResolvedAddressesByConfiguredName(t *testing.T) {
	// "app.internal:8080" resolving to two addresses is one name on the
	// ring (nginx hashes the server as written); its keys alternate between
	// the two addresses by round robin, and a name's keys do not depend on
	// what it resolves to.
	tab, _ := newTestTable()
	specs := servers(1, 1, 1)
	specs[0].Name = "app.internal:8080"
	specs[1].Name = "app.internal:8080"
	specs[2].Name = "other.internal:8080"
	u := mustBuild(t, tab, UpstreamSpec{Balance: "hash", Servers: specs})
	h := u.primary.sel.(*consistentHash)
	if len(h.groups) != 2 || len(h.points) != 320 {
		t.Fatalf("%d names with %d points, want 2 names with 160 points each", len(h.groups), len(h.points))
	}
	respec := servers(1, 1, 1)
	respec[0].Name = "app.internal:8080"
	respec[1].Name = "other.internal:8080" // the other name now resolves elsewhere
	respec[2].Name = "app.internal:8080"
	u2 := mustBuild(t, tab, UpstreamSpec{Name: "resolved", Balance: "hash", Servers: respec})
	sawA, sawB := false, false
	for i := range 200 {
		key := PickRequest{HashKey: fmt.Sprintf("k%d", i)}
		got := pickSeq(t, u, 2, key)
		onApp := got[0] != 'c'
		if onApp {
			sawA = sawA || strings.Contains(got, "a")
			sawB = sawB || strings.Contains(got, "b")
			if got != "ab" && got != "ba" {
				t.Errorf("key %s on app.internal: %s, want its two addresses in turn", key.HashKey, got)
			}
		} else if got != "cc" {
			t.Errorf("key %s on other.internal: %s, want cc", key.HashKey, got)
		}
		got2 := pickSeq(t, u2, 1, key)
		if onApp == (got2 == "b") {
			t.Errorf("key %s changed name when the addresses changed: %s then %s", key.HashKey, got, got2)
		}
	}
	if !sawA || !sawB {
		t.Error("one address of app.internal never used")
	}
}

func TestConsistentHashSkipsUnavailableToNextPoint(t *testing.T) {
	tab, _ := newTestTable()
	u := mustBuild(t, tab, UpstreamSpec{Balance: "hash", Servers: servers(1, 1, 1)})
	key := PickRequest{HashKey: "session-42"}
	first := pickOne(t, u, key)
	first.Release()
	first.SetActiveHealth(false, "test")
	second := pickOne(t, u, key)
	second.Release()
	if second == first {
		t.Fatal("picked the unhealthy server")
	}
	// Stable while the first stays unhealthy, and back when it recovers.
	if again := pickOne(t, u, key); again != second {
		t.Errorf("key moved again to %s", again.Address())
	} else {
		again.Release()
	}
	first.SetActiveHealth(true, "test")
	if back := pickOne(t, u, key); back != first {
		t.Errorf("key did not return to %s", first.Address())
	}
}

func TestConsistentHashEmptyKeyUsesRoundRobin(t *testing.T) {
	tab, _ := newTestTable()
	u := mustBuild(t, tab, UpstreamSpec{Balance: "hash", Servers: servers(1, 1)})
	if got := pickSeq(t, u, 4, PickRequest{}); got != "abab" {
		t.Errorf("empty key: %s, want round robin abab", got)
	}
}

func TestLeastConnPicksFewestConnectionsPerWeight(t *testing.T) {
	tab, _ := newTestTable()
	u := mustBuild(t, tab, UpstreamSpec{Balance: "least_conn", Servers: servers(1, 2, 1)})
	// Hold connections: a 2, b 3 (1.5 per weight unit), c 1.
	var held []*Server
	hold := func(i, n int) {
		for range n {
			s := u.Servers()[i]
			s.state.conns.Add(1)
			held = append(held, s)
		}
	}
	hold(0, 2)
	hold(1, 3)
	hold(2, 1)
	s := pickOne(t, u, PickRequest{})
	if letter(s) != "c" {
		t.Fatalf("picked %s, want c (1 conn per weight)", letter(s))
	}
	// Now a 2/1, b 3/2, c 2/1: b is least loaded.
	s2 := pickOne(t, u, PickRequest{})
	if letter(s2) != "b" {
		t.Fatalf("picked %s, want b (1.5 per weight unit)", letter(s2))
	}
	s.Release()
	s2.Release()
	for _, h := range held {
		h.Release()
	}
	// No load at all: ties go by smooth weighted round robin.
	if got := pickSeq(t, u, 8, PickRequest{}); got != "bacbbacb" {
		t.Errorf("idle ties: %s, want bacbbacb (smooth round robin 1:2:1)", got)
	}
}

func TestRandomFollowsWeights(t *testing.T) {
	tab, _ := newTestTable()
	for _, policy := range []string{"random", "random_two"} {
		u := mustBuild(t, tab, UpstreamSpec{Name: policy, Balance: policy, Servers: servers(1, 3)})
		got := count(pickSeq(t, u, 8000, PickRequest{}))
		if policy == "random" {
			if frac := float64(got['b']) / 8000; math.Abs(frac-0.75) > 0.03 {
				t.Errorf("random: b (weight 3 of 4) got %.3f of picks, want 0.75", frac)
			}
		} else if got['a'] == 0 || got['b'] == 0 {
			t.Errorf("random_two: idle servers not both used: %v", got)
		}
	}
}

func TestRandomTwoPicksTheLessLoaded(t *testing.T) {
	tab, _ := newTestTable()
	u := mustBuild(t, tab, UpstreamSpec{Balance: "random_two", Servers: servers(1, 1)})
	a := u.Servers()[0]
	a.state.conns.Add(5)
	defer a.state.conns.Add(-5)
	// With two servers both are always drawn: b (idle) always wins.
	if got := pickSeq(t, u, 50, PickRequest{}); count(got)['b'] != 50 {
		t.Errorf("picks with a loaded: %s, want only b", got)
	}
}

func TestRandomSkipsUnusable(t *testing.T) {
	tab, _ := newTestTable()
	for _, policy := range []string{"random", "random_two"} {
		specs := servers(5, 1, 5)
		specs[0].Down = true
		u := mustBuild(t, tab, UpstreamSpec{Name: policy, Balance: policy, Servers: specs})
		u.Servers()[2].SetActiveHealth(false, "test")
		if got := pickSeq(t, u, 200, PickRequest{}); count(got)['b'] != 200 {
			t.Errorf("%s: %s, want only b", policy, got)
		}
	}
}

func TestEveryPolicyUsesBackupOnlyWhenNoPrimaryCanBePicked(t *testing.T) {
	for _, policy := range Policies() {
		t.Run(policy, func(t *testing.T) {
			tab, _ := newTestTable()
			specs := servers(1, 1, 1)
			specs[2].Backup = true
			u := mustBuild(t, tab, UpstreamSpec{Balance: policy, Servers: specs})
			req := PickRequest{ClientIP: ip("192.0.2.7"), HashKey: "k"}
			if got := pickSeq(t, u, 20, req); count(got)['c'] != 0 {
				t.Fatalf("backup used while primaries are up: %s", got)
			}
			u.Servers()[0].SetActiveHealth(false, "test")
			if got := pickSeq(t, u, 20, req); got != "bbbbbbbbbbbbbbbbbbbb" {
				t.Fatalf("with a unhealthy: %s, want only b", got)
			}
			u.Servers()[1].ReportFailure() // max_fails 1: b failed
			if got := pickSeq(t, u, 5, req); got != "ccccc" {
				t.Fatalf("with a unhealthy and b failed: %s, want the backup c", got)
			}
			u.Servers()[0].SetActiveHealth(true, "test")
			if got := pickSeq(t, u, 5, req); got != "aaaaa" {
				t.Fatalf("a healthy again: %s, want a", got)
			}
		})
	}
}

func TestEveryPolicySkipsFullServers(t *testing.T) {
	for _, policy := range Policies() {
		t.Run(policy, func(t *testing.T) {
			tab, _ := newTestTable()
			specs := servers(1, 1)
			specs[0].MaxConns = 1
			specs[1].MaxConns = 2
			u := mustBuild(t, tab, UpstreamSpec{Balance: policy, Servers: specs})
			req := PickRequest{ClientIP: ip("192.0.2.7"), HashKey: "k"}
			var held []*Server
			for range 3 {
				held = append(held, pickOne(t, u, req))
			}
			if got := count(pickSeq(t, u, 1, req)); got['-'] != 1 {
				t.Fatalf("a fourth pick with max_conns 1+2 held got %v, want ErrNoServer", got)
			}
			n := map[string]int{}
			for _, s := range held {
				n[letter(s)]++
			}
			if n["a"] != 1 || n["b"] != 2 {
				t.Errorf("held connections %v, want a 1 and b 2", n)
			}
			held[0].Release()
			if got := pickSeq(t, u, 1, req); got != letter(held[0]) {
				t.Errorf("after releasing one on %s, picked %s", letter(held[0]), got)
			}
			for _, s := range held[1:] {
				s.Release()
			}
			if st := u.Servers()[0].Status(); st.ActiveConns != 0 {
				t.Errorf("active connections %d after every release", st.ActiveConns)
			}
		})
	}
}
