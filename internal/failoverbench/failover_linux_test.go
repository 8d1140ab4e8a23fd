package failoverbench

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/netlab"
	"github.com/vipgate/vipgate/internal/testutil"
)

var vip = netip.MustParseAddr("192.0.2.100")

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		os.Exit(probeMain(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "hog" {
		os.Exit(hogMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// timers is one VRRP timer setting, used by both pairs.
type timers struct {
	name    string
	version int
	advert  time.Duration
	only    []string // scenario keys to run with these timers; nil: all
}

var timerCases = []timers{
	{"v2 1s", 2, time.Second, nil},
	{"v3 100ms", 3, 100 * time.Millisecond, nil},
	// keepalived's default interval with v3, where a resigning vipgate
	// announces a 10 ms interval before priority 0: only the planned
	// switchovers differ from v2 1s.
	{"v3 1s", 3, time.Second, []string{"stop", "handover"}},
}

// scenario is one way the master fails; impls lists who it applies to.
type scenario struct {
	key, name string
	impls     []string
}

var scenarios = []scenario{
	{"kill", "(a) SIGKILL master daemon", []string{"keepalived", "vipgate"}},
	{"killall", "(a2) SIGKILL keepalived+nginx", []string{"keepalived"}},
	{"stop", "(b) graceful stop (TERM)", []string{"keepalived", "vipgate"}},
	{"handover", "(b2) handover (USR2)", []string{"vipgate"}},
	{"proxy", "(c) master's proxy dies", []string{"keepalived", "vipgate"}},
	{"backend", "(d) master's backend dies", []string{"keepalived", "vipgate"}},
}

// node is one running HA node: its VRRP daemon and, for keepalived, the
// separate nginx proxy it tracks with a script.
type node struct {
	daemon *netlab.Process
	proxy  *netlab.Process // keepalived pair only
}

type fixture struct {
	b         *testing.B
	dir       string
	bin       string
	lab       *netlab.Lab
	nodes     [2]*netlab.Host
	client    *netlab.Host
	names     [2]string
	backends  [2]*netlab.Process
	hog       *netlab.Process // holds the descriptors of a vipgate under prlimit
	proxyNote string
}

// BenchmarkFailover prints the failover table of make bench. It does its
// whole work once, whatever b.N is: run it with -benchtime 1x.
func BenchmarkFailover(b *testing.B) {
	testutil.RequireRoot(b)
	for _, cmd := range []string{"keepalived", "nginx", "prlimit", "ip"} {
		testutil.RequireCommand(b, cmd)
	}
	f := &fixture{b: b, dir: b.TempDir(), bin: testutil.Binary(b), names: [2]string{"node-a", "node-b"}}
	os.Chmod(f.dir, 0o755) // nginx workers (nobody) read their files here
	f.lab = netlab.New(b, netlab.Options{Hosts: 3})
	f.nodes = [2]*netlab.Host{f.lab.Hosts[0], f.lab.Hosts[1]}
	f.client = f.lab.Hosts[2]
	for i := range f.nodes {
		f.startBackend(i)
	}
	reps := 2
	if os.Getenv("VIPGATE_BENCH_QUICK") == "1" {
		reps = 1
	}
	if s := os.Getenv("VIPGATE_BENCH_FAILOVER_REPS"); s != "" {
		reps, _ = strconv.Atoi(s)
	}
	// VIPGATE_BENCH_FAILOVER_ONLY="kill proxy" runs only those scenarios
	// (development).
	only := strings.Fields(os.Getenv("VIPGATE_BENCH_FAILOVER_ONLY"))
	results := map[string][]outcome{}
	began := time.Now()
	for rep := 0; rep < reps; rep++ {
		for _, tc := range timerCases {
			for _, sc := range scenarios {
				if len(only) > 0 && !slices.Contains(only, sc.key) || tc.only != nil && !slices.Contains(tc.only, sc.key) {
					continue
				}
				for _, impl := range sc.impls {
					o := f.run(impl, tc, sc)
					k := impl + "|" + tc.name + "|" + sc.key
					results[k] = append(results[k], o)
					fmt.Fprintf(os.Stderr, "  failover %-10s %-8s %-9s gap %6s  failed %3d  node-b serves after %6s (%6s after node-a's last advert)  %v\n",
						impl, tc.name, sc.key, ms(o.gap), o.failed, ms(o.moved), ms(o.afterLast), o.errs)
				}
			}
		}
	}
	table := f.table(results, reps, time.Since(began))
	fmt.Print(table)
	if path := os.Getenv("VIPGATE_BENCH_OUT"); path != "" {
		os.WriteFile(path, []byte(table), 0o644)
	}
}

func ms(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

func (f *fixture) write(name, content string, mode os.FileMode) string {
	path := filepath.Join(f.dir, name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		f.b.Fatal(err)
	}
	return path
}

// startBackend runs the node's application server (nginx answering its
// node name) on 127.0.0.1:8080; it lives for the whole benchmark.
func (f *fixture) startBackend(i int) {
	h, name := f.nodes[i], f.names[i]
	conf := f.write(name+"-backend.conf", fmt.Sprintf(`worker_processes 1; daemon off;
pid %[1]s/%[2]s-backend.pid; error_log %[1]s/%[2]s-backend.err;
events { worker_connections 1024; }
http { access_log off;
  server { listen 127.0.0.1:8080; location / { default_type text/plain; return 200 "%[2]s\n"; } } }
`, f.dir, name), 0o644)
	p := h.Start(f.b, "nginx", "-c", conf, "-p", f.dir)
	f.b.Cleanup(func() { killTree(p) })
	f.backends[i] = p
	if !waitFor(5*time.Second, func() bool {
		_, err := h.Run("curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:8080/")
		return err == nil
	}) {
		f.b.Fatalf("backend nginx on %s does not answer", name)
	}
}

// startNode starts node i (0: node-a, the master, priority 100; 1: node-b,
// priority 90) of the impl's pair with timers tc.
func (f *fixture) startNode(impl string, i int, tc timers) *node {
	name, h := f.names[i], f.nodes[i]
	prio, state := 100-10*i, "MASTER"
	if i == 1 {
		state = "BACKUP"
	}
	switch impl {
	case "keepalived":
		proxyConf := f.write(name+"-proxy.conf", fmt.Sprintf(`worker_processes 1; daemon off;
pid %[1]s/%[2]s-proxy.pid; error_log %[1]s/%[2]s-proxy.err;
events { worker_connections 1024; }
http { access_log off; upstream be { server 127.0.0.1:8080; }
  server { listen 80; location / { proxy_pass http://be; } } }
`, f.dir, name), 0o644)
		os.Remove(filepath.Join(f.dir, name+"-proxy.pid"))
		proxy := h.Start(f.b, "nginx", "-c", proxyConf, "-p", f.dir)
		// The classic check of the tutorials (killall -0 nginx), aimed at
		// the proxy's master: the backend on this node is an nginx too.
		check := f.write(name+"-chk.sh", fmt.Sprintf("#!/bin/sh\nkill -0 \"$(cat %s/%s-proxy.pid)\" 2>/dev/null\n", f.dir, name), 0o755)
		checkBackend := f.write(name+"-chk-backend.sh", "#!/bin/sh\ncurl -sf -o /dev/null --max-time 1 http://127.0.0.1:8080/\n", 0o755)
		var auth string
		if tc.version == 2 {
			auth = "  authentication {\n    auth_type PASS\n    auth_pass bench\n  }\n"
		}
		conf := f.write(name+"-keepalived.conf", fmt.Sprintf(`global_defs {
  router_id %s
  script_user root
}
vrrp_script chk_nginx {
  script "%s"
  interval 1
  fall 3
  rise 2
  weight -20
}
vrrp_script chk_backend {
  script "%s"
  interval 1
  fall 3
  rise 2
  weight -20
}
vrrp_instance VI_1 {
  state %s
  interface eth0
  virtual_router_id 51
  priority %d
  version %d
  advert_int %g
%s  virtual_ipaddress {
    %v/24 dev eth0
  }
  track_script {
    chk_nginx
    chk_backend
  }
}
`, name, check, checkBackend, state, prio, tc.version, tc.advert.Seconds(), auth, vip), 0o644)
		// A killed keepalived leaves its pid files; one naming a PID that
		// was reused since makes the next start exit "already running".
		for _, suffix := range []string{"-ka.pid", "-ka-vrrp.pid", "-ka-checkers.pid"} {
			os.Remove(filepath.Join(f.dir, name+suffix))
		}
		d := h.Start(f.b, "keepalived", "-n", "-l", "-P", "-f", conf,
			"-p", filepath.Join(f.dir, name+"-ka.pid"), "-r", filepath.Join(f.dir, name+"-ka-vrrp.pid"),
			"-c", filepath.Join(f.dir, name+"-ka-checkers.pid"))
		return &node{daemon: d, proxy: proxy}
	case "vipgate":
		var auth string
		if tc.version == 2 {
			auth = `auth_pass = "bench"` + "\n"
		}
		conf := f.write(name+"-vipgate.toml", fmt.Sprintf(`[global]
node_name = %[1]q
pid_file = "%[2]s/%[1]s-vipgate.pid"
admin_listen = ""
access_log = "off"
shutdown_timeout = "3s"

[upstream.app]
[[upstream.app.server]]
address = "127.0.0.1:8080"
[upstream.app.health_check]
type = "http"
path = "/"
interval = "1s"
timeout = "1s"
fall = 3
rise = 2

[[http]]
listen = ["%[3]v:80"]
[[http.location]]
path = "/"
proxy_pass = "http://app"

[[vrrp]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = %[4]d
state = %[5]q
version = %[6]d
advert_int = "%[7]v"
%[8]svirtual_ipaddress = ["%[3]v/24"]
track_upstream = ["app"]
`, name, f.dir, vip, prio, state, tc.version, tc.advert, auth), 0o644)
		os.Remove(filepath.Join(f.dir, name+"-vipgate.pid"))
		return &node{daemon: h.Start(f.b, f.bin, "-c", conf)}
	}
	f.b.Fatalf("unknown pair %s", impl)
	return nil
}

func (n *node) stop() {
	killTree(n.daemon)
	if n.proxy != nil {
		killTree(n.proxy)
	}
}

// reset leaves no VIP and no stale neighbour entry behind a run: a killed
// keepalived does not remove its VIP.
func (f *fixture) reset() {
	for _, h := range f.nodes {
		h.Run("ip", "addr", "del", vip.String()+"/24", "dev", "eth0")
	}
	f.client.Run("ip", "neigh", "flush", "dev", "eth0")
}

// run starts a pair, lets the client see node-a serve, fails node-a the
// way sc says and watches until node-b has served for a while (or the
// window ends).
func (f *fixture) run(impl string, tc timers, sc scenario) outcome {
	f.reset()
	defer f.reset()
	if sc.key == "backend" {
		defer f.startBackend(0)
	}
	defer func() {
		if f.hog != nil {
			f.hog.Kill()
			f.hog = nil
		}
	}()
	a := f.startNode(impl, 0, tc)
	defer a.stop()
	started := time.Now()
	bnode := f.startNode(impl, 1, tc)
	defer bnode.stop()
	if !waitFor(10*time.Second, func() bool { return f.nodes[0].HasAddr(vip) }) {
		f.b.Logf("%s %s %s: node-a never took the VIP:\n%s", impl, tc.name, sc.key, a.daemon.Output())
		return outcome{gap: -1, moved: -1}
	}
	prober := f.client.Start(f.b, os.Args[0], "probe", netip.AddrPortFrom(vip, 80).String(), "60s")
	defer prober.Kill()
	if !waitFor(10*time.Second, func() bool { return servedBy(parseProbes(prober.Output()), started, "node-a", 10) }) {
		f.b.Logf("%s %s %s: the client is not served by node-a:\n%s", impl, tc.name, sc.key, tail(prober.Output(), 10))
		return outcome{gap: -1, moved: -1}
	}
	// node-b has heard node-a and is a settled BACKUP; the client has
	// seen node-a's adverts (so the last one before the event is known).
	time.Sleep(max(0, time.Until(started.Add(4*tc.advert+300*time.Millisecond))))
	probing := time.Now()
	if !waitFor(4*tc.advert+time.Second, func() bool {
		n := 0
		for _, a := range parseAdverts(prober.Output()) {
			if a.src == f.nodes[0].Addr4.Addr().String() && a.prio > 0 && a.at.After(probing) {
				n++
			}
		}
		return n >= 2
	}) {
		f.b.Logf("%s %s %s: the client sees no adverts from node-a", impl, tc.name, sc.key)
	}
	// A random phase within the advert interval, so that "B serves"
	// medians are not biased by the pair's start-up timing.
	time.Sleep(time.Duration(rand.Int64N(int64(tc.advert))))

	event := time.Now()
	f.fail(impl, sc, a)
	window := 12 * time.Second
	if tc.version == 3 {
		window = 8 * time.Second
	}
	waitFor(window, func() bool { return servedBy(parseProbes(prober.Output()), event, "node-b", 15) })
	prober.Signal(syscall.SIGTERM)
	prober.Wait(2 * time.Second)
	out := prober.Output()
	o := analyze(parseProbes(out), parseAdverts(out), event, "node-b", f.nodes[0].Addr4.Addr().String())
	if os.Getenv("VIPGATE_BENCH_FAILOVER_DEBUG") == "1" {
		path := filepath.Join(os.TempDir(), strings.ReplaceAll(fmt.Sprintf("failoverbench-%s-%s-%s.log", impl, tc.name, sc.key), " ", "_"))
		os.WriteFile(path, []byte(fmt.Sprintf("event at %s\nnode-a:\n%s\nnode-b:\n%s\nprober:\n%s", event.Format("15:04:05.000"),
			a.daemon.Output(), bnode.daemon.Output(), prober.Output())), 0o644)
	}
	return o
}

// fail makes node-a fail as the scenario says.
func (f *fixture) fail(impl string, sc scenario, a *node) {
	switch sc.key {
	case "kill":
		killTree(a.daemon) // keepalived: its VRRP child too, before it could clean up
	case "killall":
		killTree(a.daemon)
		killTree(a.proxy)
	case "stop":
		a.daemon.Signal(syscall.SIGTERM)
	case "handover":
		a.daemon.Signal(syscall.SIGUSR2)
	case "backend":
		killTree(f.backends[0])
	case "proxy":
		if impl == "keepalived" {
			killTree(a.proxy)
			return
		}
		// Descriptor exhaustion: the limit becomes what it has open now,
		// so the next accept fails with EMFILE.
		pid := a.daemon.Cmd.Process.Pid
		n := countFDs(pid) + hogSlack
		if out, err := exec("prlimit", "--pid", strconv.Itoa(pid), fmt.Sprintf("--nofile=%d:%d", n, n)); err != nil {
			f.b.Logf("prlimit: %v %s", err, out)
		}
		f.hog = f.client.Start(f.b, os.Args[0], "hog", netip.AddrPortFrom(vip, 80).String(), strconv.Itoa(hogConns), "30s")
		f.proxyNote = fmt.Sprintf("(c) vipgate: prlimit --nofile=N:N, N = its open descriptors + %d (%d here), then %d idle\n"+
			"  connections from the client use them up: every further accept fails with EMFILE.", hogSlack, n, hogConns)
	}
}

// hogSlack descriptors are left to vipgate under prlimit, and hogConns
// idle connections take them (and more wait in the listen backlog).
const (
	hogSlack = 4
	hogConns = 32
)

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// table formats the medians (min-max) of every scenario, keepalived and
// vipgate side by side, with vipgate's gap over keepalived's.
func (f *fixture) table(results map[string][]outcome, reps int, took time.Duration) string {
	var b strings.Builder
	header := []string{"scenario", "timers",
		"keepalived gap", "failed", "B serves",
		"vipgate gap", "failed", "B serves", "gap vg/ka", "B serves vg/ka"}
	grid := [][]string{header}
	for _, sc := range scenarios {
		for _, tc := range timerCases {
			if !ran(results, tc, sc) {
				continue
			}
			row := []string{sc.name, tc.name}
			var gaps, moves [2]float64
			for i, impl := range []string{"keepalived", "vipgate"} {
				key := sc.key
				if impl == "vipgate" && key == "killall" {
					key = "kill" // its proxy is the same process: (a) is (a2)
				}
				outs := results[impl+"|"+tc.name+"|"+key]
				if len(outs) == 0 {
					row = append(row, "-", "-", "-")
					gaps[i], moves[i] = -1, -1
					continue
				}
				var gap, failed, moved []float64
				for _, o := range outs {
					gap = append(gap, msOrNever(o.gap))
					failed = append(failed, float64(o.failed))
					moved = append(moved, msOrNever(o.moved))
				}
				row = append(row, summary(gap), summary(failed), summary(moved))
				gaps[i], moves[i] = median(gap), median(moved)
			}
			ratio := "-"
			switch {
			case gaps[0] >= 100 && gaps[1] >= 0: // below, one lost probe is the whole figure
				ratio = fmt.Sprintf("%.2fx", gaps[1]/gaps[0])
			case gaps[0] == 0 && gaps[1] == 0:
				ratio = "both 0"
			}
			moveRatio := "-"
			if moves[0] > 0 && moves[1] >= 0 {
				moveRatio = fmt.Sprintf("%.2fx", moves[1]/moves[0])
			}
			row = append(row, ratio, moveRatio)
			grid = append(grid, row)
		}
	}
	widths := make([]int, len(header))
	for _, r := range grid {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	fmt.Fprintf(&b, "\nVRRP failover: client probing the VIP every %v (new connection, %v timeout); median (min-max) of %d run(s)\n",
		probeInterval, probeTimeout, reps)
	for ri, r := range grid {
		var line strings.Builder
		for i, c := range r {
			if i < 2 {
				fmt.Fprintf(&line, "  %-*s", widths[i], c)
			} else {
				fmt.Fprintf(&line, "  %*s", widths[i], c)
			}
		}
		fmt.Fprintln(&b, strings.TrimRight(line.String(), " "))
		if ri == 0 {
			fmt.Fprintln(&b, "  "+strings.Repeat("-", len(strings.TrimRight(line.String(), " "))-2))
		}
	}
	fmt.Fprintf(&b, `  All times in ms. gap: first failed probe to the first success after it (-1: never within the window);
  failed: probes that failed after the event; B serves: event to the first answer from node-b's backend
  (-1: never).
  Pairs: priorities 100 (node-a, state MASTER) / 90, preempt on, VIP %v/24. keepalived pair: keepalived %s
  VRRP only + nginx proxy, track_script "kill -0 <nginx master pid>" (the classic killall -0 nginx, aimed at
  the proxy because the backend is an nginx too) interval 1 fall 3 rise 2 weight -20. (a) kills keepalived
  (parent and VRRP child) only: its nginx keeps serving on the VIP it leaves behind; (a2) kills both;
  vipgate's (a2) are the runs of (a): its proxy is the same process.
  A second script checks the backend (curl -sf http://127.0.0.1:8080/, interval 1 fall 3 rise 2 weight -20);
  vipgate: http health_check interval 1s fall 3 rise 2 on its upstream and track_upstream (FAULT when down).
  (c) keepalived: SIGKILL of the proxy nginx (master and worker).
  %s
  (d) SIGKILL of node-a's backend nginx.
  (a), (a2), (c), (d) wait for node-a's adverts to stop: the event falls at a random point of the advert
  interval, which moves "B serves" by up to one interval; the SIGKILL table below takes that out.
  Took %v.
`, vip, "2.2", f.proxyNote, took.Round(time.Second))
	b.WriteString(afterLastAdvertTable(results))
	b.WriteString(failoverGoals(results))
	return b.String()
}

// afterLastAdvertTable shows, for the SIGKILL scenarios, the time from
// node-a's last advert on the wire to node-b serving: the part of the gap
// that is the backup's doing, without the phase of the kill.
func afterLastAdvertTable(results map[string][]outcome) string {
	var b strings.Builder
	b.WriteString("\nSIGKILL: node-a's last advert on the wire to the first answer from node-b (ms; the phase of the kill taken out)\n")
	fmt.Fprintf(&b, "  %-30s  %-8s  %14s  %14s  %7s\n", "scenario", "timers", "keepalived", "vipgate", "vg/ka")
	for _, sc := range scenarios {
		if sc.key != "kill" && sc.key != "killall" {
			continue
		}
		for _, tc := range timerCases {
			var cells [2]string
			var meds [2]float64
			seen := false
			for i, impl := range []string{"keepalived", "vipgate"} {
				key := sc.key
				if impl == "vipgate" {
					key = "kill"
				}
				outs := results[impl+"|"+tc.name+"|"+key]
				cells[i], meds[i] = "-", -1
				if len(outs) == 0 {
					continue
				}
				seen = true
				var v []float64
				for _, o := range outs {
					v = append(v, msOrNever(o.afterLast))
				}
				cells[i], meds[i] = summary(v), median(v)
			}
			if !seen {
				continue
			}
			ratio := "-"
			if meds[0] > 0 && meds[1] >= 0 {
				ratio = fmt.Sprintf("%.2fx", meds[1]/meds[0])
			}
			fmt.Fprintf(&b, "  %-30s  %-8s  %14s  %14s  %7s\n", sc.name, tc.name, cells[0], cells[1], ratio)
		}
	}
	return b.String()
}

// failoverGoals checks the medians against the goals of issues 5 and 7,
// with Skew_Time of the backup (priority 90) for each timer setting.
func failoverGoals(results map[string][]outcome) string {
	// gap false: node-a's last advert to node-b serving.
	med := func(impl, tc, sc string, gap bool) (float64, bool) {
		outs := results[impl+"|"+tc+"|"+sc]
		if len(outs) == 0 {
			return 0, false
		}
		var v []float64
		for _, o := range outs {
			if gap {
				v = append(v, msOrNever(o.gap))
			} else {
				v = append(v, msOrNever(o.afterLast))
			}
		}
		return median(v), true
	}
	var b strings.Builder
	b.WriteString("\nGoals for failover (issues 5 and 7; vipgate medians; Skew_Time of the priority-90 backup)\n")
	line := func(issue, what string, value float64, limit float64, ok bool) {
		if !ok {
			return
		}
		verdict := "no"
		if value >= 0 && value <= limit {
			verdict = "yes"
		}
		fmt.Fprintf(&b, "  %-3s %-68s %6.0f ms <= %6.0f ms  %s\n", issue, what, value, limit, verdict)
	}
	for _, tc := range timerCases {
		skew := float64((256-90)*tc.advert.Milliseconds()) / 256
		adv := float64(tc.advert.Milliseconds())
		vg, ok1 := med("vipgate", tc.name, "kill", false)
		ka, ok2 := med("keepalived", tc.name, "kill", false)
		// The probes' period is the resolution of "serving".
		line("#5", tc.name+" (a) SIGKILL: last advert to B serving <= keepalived's + 20ms", vg, ka+float64(probeInterval.Milliseconds()), ok1 && ok2)
		g, ok := med("vipgate", tc.name, "stop", true)
		line("#5", tc.name+" (b) graceful stop: gap <= Skew_Time + 100 ms", g, skew+100, ok)
		g, ok = med("vipgate", tc.name, "handover", true)
		line("#7", tc.name+" (b2) handover: no gap", g, 0, ok)
		g, ok = med("vipgate", tc.name, "proxy", true)
		line("#5", tc.name+" (c) proxy dies: gap <= Skew_Time + one advert", g, skew+adv, ok)
		g, ok = med("vipgate", tc.name, "backend", true)
		line("#7", tc.name+" (d) backend dies: gap <= fall x interval + Skew_Time + advert", g, 3*1000+skew+adv, ok)
	}
	return b.String()
}

// msOrNever is d in milliseconds, or -1 for never (a negative d).
func msOrNever(d time.Duration) float64 {
	if d < 0 {
		return -1
	}
	return float64(d.Milliseconds())
}

func ran(results map[string][]outcome, tc timers, sc scenario) bool {
	for _, impl := range sc.impls {
		if len(results[impl+"|"+tc.name+"|"+sc.key]) > 0 {
			return true
		}
	}
	return false
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func summary(v []float64) string {
	s := slices.Clone(v)
	slices.Sort(s)
	m := strconv.FormatFloat(median(s), 'f', 0, 64)
	if len(s) == 1 || s[0] == s[len(s)-1] {
		return m
	}
	return fmt.Sprintf("%s (%.0f-%.0f)", m, s[0], s[len(s)-1])
}
