package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// runHold opens -n connections to -addr (at most -parallel at a time),
// makes one exchange on each (an HTTP GET with keep-alive, or a few bytes
// echoed back on a stream), prints "ready ok=N failed=M" and then holds
// them idle until -duration passes or it gets SIGTERM. bench.sh reads the
// proxy's RSS and descriptors while they are held.
func runHold(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "address to connect to")
	n := fs.Int("n", 1000, "connections to open")
	mode := fs.String("mode", "http", "http (GET /small, keep-alive) or stream (echo)")
	parallel := fs.Int("parallel", 32, "connections being opened at once")
	duration := fs.Duration("duration", 2*time.Minute, "hold at most this long")
	fs.Parse(args)

	ctx, cancel := untilStopped(*duration)
	defer cancel()

	exchange := exchangeHTTP
	if *mode == "stream" {
		exchange = exchangeStream
	}
	conns := make([]net.Conn, *n)
	var failed atomic.Int64
	var firstErr atomic.Value
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for w := 0; w < *parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 5 * time.Second}
			for {
				i := int(next.Add(1)) - 1
				if i >= *n || ctx.Err() != nil {
					return
				}
				c, err := d.DialContext(ctx, "tcp", *addr)
				if err == nil {
					c.SetDeadline(time.Now().Add(3 * time.Second))
					err = exchange(c)
					c.SetDeadline(time.Time{})
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					if c != nil {
						c.Close()
					}
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	ok := *n - int(failed.Load())
	fmt.Printf("ready ok=%d failed=%d\n", ok, failed.Load())
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(os.Stderr, "hold: first error: %v\n", e)
	}
	<-ctx.Done()
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	return nil
}

func exchangeHTTP(c net.Conn) error {
	if _, err := io.WriteString(c, "GET /small HTTP/1.1\r\nHost: bench\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4096), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != 200 || resp.Close {
		return fmt.Errorf("status %d, close %v", resp.StatusCode, resp.Close)
	}
	return nil
}

func exchangeStream(c net.Conn) error {
	if _, err := io.WriteString(c, "hold"); err != nil {
		return err
	}
	var b [4]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return err
	}
	if string(b[:]) != "hold" {
		return fmt.Errorf("echo %q, want %q", b[:], "hold")
	}
	return nil
}
