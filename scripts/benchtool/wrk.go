package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// runWrk reads `wrk --latency` output on stdin and prints
// "rps p50_ms p99_ms requests errors": errors counts socket errors and
// non-2xx/3xx responses, so a proxy that answers fast with 502s is seen.
func runWrk(args []string) error {
	fs := flag.NewFlagSet("wrk", flag.ExitOnError)
	fs.Parse(args)
	r, err := parseWrk(os.Stdin)
	if err != nil {
		return err
	}
	fmt.Printf("%.1f %.3f %.3f %d %d\n", r.rps, r.p50, r.p99, r.requests, r.errors)
	return nil
}

type wrkResult struct {
	rps, p50, p99    float64 // p50 and p99 in milliseconds
	requests, errors int64
}

func parseWrk(in io.Reader) (wrkResult, error) {
	r := wrkResult{p50: -1, p99: -1}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			r.rps, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "50%":
			r.p50 = durationMS(f[1])
		case len(f) == 2 && f[0] == "99%":
			r.p99 = durationMS(f[1])
		case len(f) > 2 && f[1] == "requests" && f[2] == "in":
			r.requests, _ = strconv.ParseInt(f[0], 10, 64)
		case len(f) > 1 && f[0] == "Socket" && f[1] == "errors:":
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for i := 2; i+1 < len(f); i += 2 {
				n, _ := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				r.errors += n
			}
		case len(f) > 4 && f[0] == "Non-2xx":
			n, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
			r.errors += n
		}
	}
	if err := sc.Err(); err != nil {
		return r, err
	}
	if r.requests == 0 || r.p50 < 0 || r.p99 < 0 {
		return r, fmt.Errorf("no wrk results in its output")
	}
	return r, nil
}

// durationMS converts wrk's "1.23ms", "456.00us", "1.02s" to milliseconds.
func durationMS(s string) float64 {
	units := []struct {
		suffix string
		ms     float64
	}{{"us", 1e-3}, {"ms", 1}, {"m", 60e3}, {"s", 1e3}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return -1
			}
			return f * u.ms
		}
	}
	return -1
}
