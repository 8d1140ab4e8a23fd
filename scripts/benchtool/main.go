// Command benchtool holds the small load and measurement programs that
// scripts/bench.sh needs and that no Debian package provides: an echo
// server that understands PROXY headers, a holder of many idle
// connections, a short-connection loop, a bulk source and sink that copy
// nothing, a minimal HTTP responder on Go's net (the floor any Go proxy
// starts from), a parser of wrk's output and the report that prints the
// results as aligned tables.
//
// Every load it generates is bounded in time (and, for the short
// connections, in count); it only dials the address it is given, which
// bench.sh keeps on loopback.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const usage = `usage: benchtool COMMAND [flags]

commands:
  echo     TCP echo server (strips an inbound PROXY v1/v2 header)
  hold     open N connections, one exchange each, then hold them idle
  short    connect, send, read the echo, close; as often as possible
  sink     accept connections and splice what they send into /dev/null
  source   sendfile memory to an address for a while: "gbit_per_s bytes"
  respond  answer HTTP/1.1 requests with a fixed response, as cheaply as Go's net allows
  wrk      parse wrk --latency output from stdin: "rps p50_ms p99_ms requests"
  iperf    parse iperf3 -J output from stdin: "gbit_per_s bytes"
  report   print result records (table, row, column, value) as tables
  goals    check vipgate's medians against the issues' goals
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"echo":    runEcho,
		"hold":    runHold,
		"short":   runShort,
		"sink":    runSink,
		"source":  runSource,
		"respond": runRespond,
		"wrk":     runWrk,
		"iperf":   runIperf,
		"report":  runReport,
		"goals":   runGoals,
	}
	run, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err := run(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "benchtool %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// untilStopped is the life of a server or load command: done when d has
// passed or SIGTERM/SIGINT came (bench.sh stops its processes with TERM).
func untilStopped(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, func() { cancel(); stop() }
}
