package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// runShort opens one connection per exchange to an echo service: connect,
// send a few bytes, read them back, close; -workers loops at once, for
// -duration or -max connections, whichever comes first. It prints
// "conns=N errors=E seconds=S rate=R us_per_conn=U".
func runShort(args []string) error {
	fs := flag.NewFlagSet("short", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:9100", "echo address (through a proxy)")
	workers := fs.Int("workers", 16, "concurrent loops")
	duration := fs.Duration("duration", 5*time.Second, "run this long at most")
	maxConns := fs.Int64("max", 2_000_000, "connections at most")
	fs.Parse(args)

	var done, errs, started atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(*duration)
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 2 * time.Second}
			var b [5]byte
			for time.Now().Before(deadline) && started.Add(1) <= *maxConns {
				err := func() error {
					c, err := d.Dial("tcp", *addr)
					if err != nil {
						return err
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(2 * time.Second))
					if _, err := io.WriteString(c, "ping\n"); err != nil {
						return err
					}
					if _, err := io.ReadFull(c, b[:]); err != nil {
						return err
					}
					if string(b[:]) != "ping\n" {
						return fmt.Errorf("echo %q", b[:])
					}
					return nil
				}()
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	n := done.Load()
	usPer := 0.0
	if n > 0 {
		usPer = secs * 1e6 / float64(n)
	}
	fmt.Printf("conns=%d errors=%d seconds=%.3f rate=%.1f us_per_conn=%.2f\n", n, errs.Load(), secs, float64(n)/secs, usPer)
	if e := firstErr.Load(); e != nil {
		fmt.Printf("first_error=%q\n", e)
	}
	return nil
}
