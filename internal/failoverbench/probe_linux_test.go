package failoverbench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The prober runs as a second process (this test binary re-executed with
// "probe" as its first argument) inside the client's namespace: every
// probeInterval it starts one HTTP GET to the VIP on a new connection and
// prints one line per finished probe:
//
//	probe SEQ START_UNIX_MICROS OK|FAIL WHO
//
// WHO is the backend's body ("node-a"/"node-b") or the error.
const (
	probeInterval = 20 * time.Millisecond
	probeTimeout  = 500 * time.Millisecond
)

func probeMain(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: probe HOST:PORT MAX_DURATION")
		return 2
	}
	addr := args[0]
	maxDur, err := time.ParseDuration(args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, maxDur)
	defer cancel()

	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var inflight sync.WaitGroup
	if err := watchAdverts(ctx, func(src string, prio int) {
		mu.Lock()
		fmt.Fprintf(out, "advert %d %s %d\n", time.Now().UnixMicro(), src, prio)
		out.Flush()
		mu.Unlock()
	}); err != nil {
		fmt.Fprintln(os.Stderr, "probe: cannot watch VRRP adverts:", err)
	}
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		start := time.Now()
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			ok, who := probeOnce(addr, start)
			verdict := "FAIL"
			if ok {
				verdict = "OK"
			}
			mu.Lock()
			fmt.Fprintf(out, "probe %d %d %s %s\n", seq, start.UnixMicro(), verdict, who)
			out.Flush()
			mu.Unlock()
		}()
		select {
		case <-ctx.Done():
			inflight.Wait()
			return 0
		case <-tick.C:
		}
	}
}

// watchAdverts reports every VRRP packet (IP protocol 112) the client's
// interface sees, with its source and priority, from a packet socket, until
// ctx ends. The lab's bridge floods multicast to every port, so the client
// sees both nodes' adverts the moment they are on the wire.
func watchAdverts(ctx context.Context, seen func(src string, prio int)) error {
	const ethPIP = 0x0800
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, int(htons(ethPIP)))
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), "packet")
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			p := buf[:n]
			if n < 20 || p[0]>>4 != 4 || p[9] != 112 {
				continue
			}
			ihl := int(p[0]&0x0f) * 4
			if n < ihl+3 {
				continue
			}
			seen(fmt.Sprintf("%d.%d.%d.%d", p[12], p[13], p[14], p[15]), int(p[ihl+2]))
		}
	}()
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// hogMain opens up to N connections to ADDR and holds them, idle, for
// DURATION or until SIGTERM: they use up the descriptors of a proxy
// under a low RLIMIT_NOFILE.
func hogMain(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: hog HOST:PORT N DURATION")
		return 2
	}
	n, err1 := strconv.Atoi(args[1])
	d, err2 := time.ParseDuration(args[2])
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "hog: bad N or DURATION")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var held []net.Conn
	for i := 0; i < n && ctx.Err() == nil; i++ {
		c, err := net.DialTimeout("tcp", args[0], probeTimeout)
		if err == nil {
			held = append(held, c)
		}
	}
	fmt.Printf("hog: holding %d connections\n", len(held))
	<-ctx.Done()
	for _, c := range held {
		c.Close()
	}
	return 0
}

func probeOnce(addr string, start time.Time) (bool, string) {
	deadline := start.Add(probeTimeout)
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return false, errWord(err)
	}
	defer c.Close()
	c.SetDeadline(deadline)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n"); err != nil {
		return false, errWord(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false, errWord(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		return false, errWord(err)
	}
	if resp.StatusCode != http.StatusOK {
		return false, "status-" + strconv.Itoa(resp.StatusCode)
	}
	return true, strings.TrimSpace(string(body))
}

// errWord is a one-word summary of a probe error for the log line.
func errWord(err error) string {
	s := err.Error()
	switch {
	case strings.Contains(s, "refused"):
		return "refused"
	case strings.Contains(s, "timeout"):
		return "timeout"
	case strings.Contains(s, "reset"):
		return "reset"
	case strings.Contains(s, "unreachable"):
		return "unreachable"
	case strings.Contains(s, "EOF"):
		return "eof"
	}
	return strings.ReplaceAll(s, " ", "_")
}

// advert is one VRRP packet the client saw.
type advert struct {
	at   time.Time
	src  string
	prio int
}

// parseAdverts reads the prober's advert lines, in time order.
func parseAdverts(out string) []advert {
	var as []advert
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "advert" {
			continue
		}
		us, err1 := strconv.ParseInt(f[1], 10, 64)
		prio, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			continue
		}
		as = append(as, advert{at: time.UnixMicro(us), src: f[2], prio: prio})
	}
	sort.Slice(as, func(i, j int) bool { return as[i].at.Before(as[j].at) })
	return as
}

// probe is one parsed line of the prober's output.
type probe struct {
	seq   int
	start time.Time
	ok    bool
	who   string
}

// parseProbes reads the prober's lines (in any order) sorted by sequence.
func parseProbes(out string) []probe {
	var ps []probe
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 5 || f[0] != "probe" {
			continue
		}
		seq, err1 := strconv.Atoi(f[1])
		us, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		ps = append(ps, probe{seq: seq, start: time.UnixMicro(us), ok: f[3] == "OK", who: f[4]})
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].seq < ps[j].seq })
	return ps
}

// outcome is what the client saw after one event.
type outcome struct {
	gap    time.Duration // first failed probe to the first success after it; 0 if none failed
	failed int           // failed probes after the event
	moved  time.Duration // event to the first success answered by the backup's backend; -1 if never
	// afterLast is node-a's last advert (before the backup served) to
	// the first success answered by the backup: unlike moved, it does not
	// depend on where in the advert interval the event fell. -1: unknown.
	afterLast time.Duration
	ended     bool // the client was served by the backup at the end of the window
	errs      map[string]int
}

// analyze looks at the probes that started after event (minus a little, so
// a probe caught in flight by the event counts).
func analyze(ps []probe, as []advert, event time.Time, backup, masterAddr string) outcome {
	o := outcome{moved: -1, afterLast: -1, errs: map[string]int{}}
	var firstFail time.Time
	for _, p := range ps {
		if p.start.Before(event.Add(-probeInterval)) {
			continue
		}
		if !p.ok {
			o.failed++
			o.errs[p.who]++
			if firstFail.IsZero() {
				firstFail = p.start
			}
			continue
		}
		if !firstFail.IsZero() && o.gap == 0 {
			o.gap = p.start.Sub(firstFail)
		}
		if p.who == backup && o.moved < 0 {
			o.moved = max(0, p.start.Sub(event))
		}
	}
	if !firstFail.IsZero() && o.gap == 0 {
		o.gap = -1 // never recovered within the window
	}
	o.ended = len(ps) > 0 && ps[len(ps)-1].ok && ps[len(ps)-1].who == backup
	if o.moved >= 0 {
		served := event.Add(o.moved)
		var last time.Time
		for _, a := range as {
			if a.src == masterAddr && a.at.Before(served) {
				last = a.at
			}
		}
		if !last.IsZero() {
			o.afterLast = served.Sub(last)
		}
	}
	return o
}

// servedBy reports whether the last n probes after event all succeeded
// and were answered by who.
func servedBy(ps []probe, event time.Time, who string, n int) bool {
	count := 0
	for i := len(ps) - 1; i >= 0 && count < n; i-- {
		p := ps[i]
		if p.start.Before(event) || !p.ok || p.who != who {
			return false
		}
		count++
	}
	return count == n
}
