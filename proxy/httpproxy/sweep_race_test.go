package httpproxy

import (
	"net"
	"sync"
	"testing"
	"time"
)

// TestSweepRacesWithTake: the pool's sweeper peeks at a copy of the
// idle connections outside the lock, through upConn's shared peek state
// (idleDirty, peekBuf, raw, bound once by bindRaw). A request that takes
// the same connection meanwhile (get: take, then idleClean, as every
// connection idle for 250 ms or more is checked) runs that same code on
// the same fields: a data race, and the sweeper's idleDirty = false can
// land between the request's peek and its read of the finding, so a
// connection the server closed is taken as clean (or the reverse).
// Run with -race.
func TestSweepRacesWithTake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	p := &connPool{max: 4}
	addr := ln.Addr().String()
	for i := 0; i < 4; i++ {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		p.put(&upConn{nc: nc, addr: addr}, time.Now().Add(-time.Second))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the sweeper's timer
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				p.sweep()
			}
		}
	}()
	for i := 0; i < 20000; i++ { // requests
		if c := p.get(addr, time.Now()); c != nil {
			p.put(c, time.Now().Add(-time.Second))
		}
	}
	close(stop)
	wg.Wait()
	p.closeAll()
}
