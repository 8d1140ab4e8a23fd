package balancer

import (
	"fmt"
	"testing"
)

func benchRequest() PickRequest {
	return PickRequest{ClientIP: ip("192.0.2.77"), HashKey: "/api/v1/items/12345"}
}

func BenchmarkPick(b *testing.B) {
	for _, policy := range Policies() {
		b.Run(policy, func(b *testing.B) {
			tab := NewTable(nil)
			u := mustBuild(b, tab, UpstreamSpec{Balance: policy, Servers: servers(3, 1, 4, 2, 2, 1, 1, 2)})
			req := benchRequest()
			b.ReportAllocs()
			for b.Loop() {
				s, err := u.Pick(req)
				if err != nil {
					b.Fatal(err)
				}
				s.Release()
			}
		})
	}
}

func BenchmarkPickParallel(b *testing.B) {
	tab := NewTable(nil)
	u := mustBuild(b, tab, UpstreamSpec{Servers: servers(3, 1, 4, 2)})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := benchRequest()
		for pb.Next() {
			s, err := u.Pick(req)
			if err != nil {
				b.Fatal(err)
			}
			s.Release()
		}
	})
}

func TestPickDoesNotAllocate(t *testing.T) {
	for _, policy := range Policies() {
		t.Run(policy, func(t *testing.T) {
			tab := NewTable(nil)
			u := mustBuild(t, tab, UpstreamSpec{Name: fmt.Sprint(policy), Balance: policy, Servers: servers(3, 1, 4)})
			req := benchRequest()
			req.Tried = []*Server{u.Servers()[1]}
			allocs := testing.AllocsPerRun(200, func() {
				s, err := u.Pick(req)
				if err != nil {
					t.Fatal(err)
				}
				s.ReportSuccess()
				s.ObserveResponse(200, 1000)
				s.Release()
			})
			if allocs != 0 {
				t.Errorf("%.1f allocations per pick, want 0", allocs)
			}
		})
	}
}
