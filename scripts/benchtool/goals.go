package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// A goal is one target from the issues, checked against the medians of a
// run: either vipgate's figure over nginx's (ratio) or vipgate's figure
// itself (absolute).
type goal struct {
	issue   string
	what    string
	table   string // prefix of the table name
	column  string
	ratio   bool // compare vipgate / nginx instead of vipgate's value
	atLeast bool // the figure must be >= limit (else <=)
	limit   float64
}

var goals = []goal{
	{"#8", "small keep-alive GET req/s >= 1.0x nginx (resolved at >= 0.8x)", "HTTP small GET, keep-alive", "req/s", true, true, 1.0},
	{"#4", "small keep-alive GET req/s >= net/http ReverseProxy (0.27x nginx)", "HTTP small GET, keep-alive", "req/s", true, true, 0.27},
	{"#8", "new connection per request req/s >= 0.8x nginx", "HTTP small GET, new connection", "req/s", true, true, 0.8},
	{"#8", "64 KiB responses req/s >= 1.0x nginx", "HTTP 64 KiB", "req/s", true, true, 1.0},
	{"#8", "p99 <= 1.5x nginx, small keep-alive", "HTTP small GET, keep-alive", "p99 ms", true, false, 1.5},
	{"#8", "p99 <= 1.5x nginx, new connection per request", "HTTP small GET, new connection", "p99 ms", true, false, 1.5},
	{"#8", "p99 <= 1.5x nginx, 64 KiB", "HTTP 64 KiB", "p99 ms", true, false, 1.5},
	{"#8", "CPU per request <= nginx's, small keep-alive", "HTTP small GET, keep-alive", "CPU us/req", true, false, 1.0},
	{"#8", "CPU per request <= nginx's, new connection per request", "HTTP small GET, new connection", "CPU us/req", true, false, 1.0},
	{"#8", "CPU per request <= nginx's, 64 KiB", "HTTP 64 KiB", "CPU us/req", true, false, 1.0},
	{"#8", "RSS per idle keep-alive connection <= 16 KiB", "HTTP idle", "KiB/conn", false, false, 16},
	{"#4", "RSS per idle keep-alive connection <= 32 KiB", "HTTP idle", "KiB/conn", false, false, 32},
	{"#6", "bulk throughput >= 1.5x nginx stream (iperf3)", "Stream bulk throughput", "Gbit/s", true, true, 1.5},
	{"#6", "bulk throughput >= 1.5x nginx stream (from memory)", "Stream bulk from memory", "Gbit/s", true, true, 1.5},
	{"#6", "short connections/s >= 1.0x nginx stream", "Stream short", "conns/s", true, true, 1.0},
	{"#6", "RSS per idle stream <= 12 KiB", "Stream idle", "KiB/stream", false, false, 12},
	{"#6", "descriptors per idle stream = 2", "Stream idle", "fds/stream", false, false, 2.05},
}

// runGoals prints each goal with vipgate's figure and whether it is met.
func runGoals(args []string) error {
	fs := flag.NewFlagSet("goals", flag.ExitOnError)
	in := fs.String("in", "", "records file")
	fs.Parse(args)
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	tables, err := readTables(f)
	if err != nil {
		return err
	}
	find := func(prefix string) *table {
		for _, t := range tables {
			if strings.HasPrefix(t.name, prefix) {
				return t
			}
		}
		return nil
	}
	grid := [][]string{{"issue", "goal", "vipgate", "met"}}
	for _, g := range goals {
		t := find(g.table)
		if t == nil {
			continue
		}
		v := summarize(t.cells[[2]string{"vipgate", g.column}])
		if !v.ok {
			grid = append(grid, []string{g.issue, g.what, "-", "?"})
			continue
		}
		figure, shown := v.med, num(v.med)
		if g.ratio {
			n := summarize(t.cells[[2]string{"nginx", g.column}])
			if !n.ok || n.med == 0 {
				grid = append(grid, []string{g.issue, g.what, "-", "?"})
				continue
			}
			figure = v.med / n.med
			shown = fmt.Sprintf("%.2fx", figure)
		}
		met := figure <= g.limit
		if g.atLeast {
			met = figure >= g.limit
		}
		verdict := "no"
		if met {
			verdict = "yes"
		}
		grid = append(grid, []string{g.issue, g.what, shown, verdict})
	}
	fmt.Println("\nGoals from the issues (vipgate's medians in this run)")
	widths := make([]int, 4)
	for _, r := range grid {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	for ri, r := range grid {
		fmt.Printf("  %-*s  %-*s  %*s  %s\n", widths[0], r[0], widths[1], r[1], widths[2], r[2], r[3])
		if ri == 0 {
			fmt.Println("  " + strings.Repeat("-", widths[0]+widths[1]+widths[2]+widths[3]+6))
		}
	}
	return nil
}
