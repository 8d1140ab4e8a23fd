// Package daemon wires the pieces of one vipgate node together: it builds a
// runtime generation from a Config (upstream pools, HTTP and stream servers,
// health checks, VRRP instances), swaps it in atomically on reload, and runs
// the stop and handover sequences of the contract.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"github.com/vipgate/vipgate/admin"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/vipgate/vipgate/balancer"
	"github.com/vipgate/vipgate/config"
	"github.com/vipgate/vipgate/health"
	"github.com/vipgate/vipgate/internal/accesslog"
	"github.com/vipgate/vipgate/proxy"
	"github.com/vipgate/vipgate/proxy/httpproxy"
	"github.com/vipgate/vipgate/proxy/stream"
	"github.com/vipgate/vipgate/vrrp"
)

// Daemon is one running node.
type Daemon struct {
	log       *zap.Logger
	accessLog *accesslog.Writer

	table     *balancer.Table
	listeners *proxy.Listeners
	checks    *health.Manager
	vrrp      *vrrp.Manager

	// reloadMu serialises reloads, stop and handover.
	reloadMu   sync.Mutex
	current    atomic.Pointer[generation]
	retired    []*generation
	generation atomic.Uint64
	reloadsOK  atomic.Uint64
	reloadsBad atomic.Uint64

	stopTrack chan struct{}
	trackDone chan struct{}
	// hurry is closed by Hurry: a stop under way stops waiting.
	hurry     chan struct{}
	hurryOnce sync.Once
	probes    *prober
	// httpResponses count responses to clients across generations.
	httpResponses *httpproxy.ResponseCounts

	version   string
	startedAt time.Time
	transMu   sync.Mutex
	trans     transitions

	// gensMu guards retired for readers that must not wait for a reload
	// or a stop in progress (the admin API).
	gensMu sync.Mutex

	admin     *admin.Server
	adminAddr string

	// reapers are the goroutines that free retired generations once their
	// last connection is gone; stopTrack ends them.
	reapers sync.WaitGroup

	// streamStats are shared by every generation so counters survive reloads.
	streamStats *stream.Stats
	// streamEngine runs the streams of every generation; started with the
	// first [[stream]], stopped after the last generation at stop.
	streamEngine *stream.Engine
}

// generation is everything built from one config file.
type generation struct {
	id        uint64
	cfg       *config.Config
	upstreams map[string]*balancer.Upstream
	http      *httpproxy.Server
	stream    *stream.Server
	handlers  map[string]proxy.Handler
}

// Options are what the command line adds to the config.
type Options struct {
	Log       *zap.Logger
	AccessLog *accesslog.Writer
	Version   string
}

// Start builds the first generation from cfg and starts serving. On error
// nothing is left running.
func Start(cfg *config.Config, o Options) (*Daemon, error) {
	d := &Daemon{
		log:           o.Log,
		accessLog:     o.AccessLog,
		table:         balancer.NewTable(time.Now),
		listeners:     proxy.NewListeners(o.Log),
		checks:        health.NewManager(o.Log),
		vrrp:          vrrp.NewManager(o.Log),
		stopTrack:     make(chan struct{}),
		hurry:         make(chan struct{}),
		probes:        newProber(),
		httpResponses: &httpproxy.ResponseCounts{},
		trackDone:     make(chan struct{}),
		version:       o.Version,
		streamStats:   stream.NewStats(),
		startedAt:     time.Now(),
		trans:         transitions{last: map[string]vrrp.Transition{}, count: map[string]uint64{}},
	}
	d.vrrp.OnTransition(d.recordTransition)
	d.table.OnChange(func(upstream, address string, st balancer.ServerStatus) {
		level := zap.InfoLevel
		if st.State != balancer.StateUp && st.State != balancer.StateBackup {
			level = zap.WarnLevel
		}
		d.log.Log(level, "upstream server state changed", zap.String("upstream", upstream), zap.String("server", address),
			zap.String("state", st.State), zap.String("reason", st.Reason))
	})
	if err := d.apply(cfg); err != nil {
		d.listeners.Close()
		d.checks.Stop()
		d.vrrp.Stop()
		d.closeStreamEngine()
		return nil, err
	}
	go d.trackLoop()
	return d, nil
}

// Generation is the number of the configuration in force (1 = the first).
func (d *Daemon) Generation() uint64 { return d.generation.Load() }

// Config is the configuration in force.
func (d *Daemon) Config() *config.Config { return d.current.Load().cfg }

// Reload applies cfg in place. On error the running configuration is left
// exactly as it was.
func (d *Daemon) Reload(cfg *config.Config) error {
	if err := d.apply(cfg); err != nil {
		d.reloadsBad.Add(1)
		return err
	}
	d.reloadsOK.Add(1)
	return nil
}

// RefusedReload counts a reload whose file did not even load (invalid
// configuration): the most common failed reload, a bad edit, is as
// visible in the status and metrics as one that failed to apply.
func (d *Daemon) RefusedReload() { d.reloadsBad.Add(1) }

func (d *Daemon) apply(cfg *config.Config) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	return d.applyLocked(cfg)
}

func (d *Daemon) applyLocked(cfg *config.Config) error {
	id := d.generation.Load() + 1
	gen, err := d.build(id, cfg)
	if err != nil {
		return fmt.Errorf("generation %d: %w", id, err)
	}
	newAdmin, err := d.startAdmin(*cfg.Global.AdminListen)
	freedAdmin := "" // the running API's address, when it was closed to make room
	restoreAdmin := func() {
		if freedAdmin == "" {
			return
		}
		if back, berr := d.startAdmin(freedAdmin); berr == nil {
			d.swapAdmin(back, freedAdmin)
		} else {
			d.log.Error("admin API lost: its address cannot be bound again", zap.String("admin_listen", freedAdmin), zap.Error(berr))
		}
	}
	if err != nil && errors.Is(err, syscall.EADDRINUSE) && d.admin != nil && samePort(d.adminAddr, *cfg.Global.AdminListen) {
		// The same port on another address (0.0.0.0:9900 narrowed to
		// 127.0.0.1:9900) overlaps the running API: free it first, and
		// put it back if the reload fails.
		freedAdmin = d.adminAddr
		d.swapAdmin(nil, "")
		newAdmin, err = d.startAdmin(*cfg.Global.AdminListen)
	}
	adminAddr := *cfg.Global.AdminListen
	if err != nil && d.admin == nil && freedAdmin == "" {
		// No API runs (at start, or it could not listen before): a port
		// a local user took first must not keep the proxy and VRRP down.
		// Served without it; the next reload tries again.
		d.log.Error("admin API cannot listen: serving without it until a reload can bind it",
			zap.String("admin_listen", adminAddr), zap.Error(err))
		newAdmin, adminAddr, err = nil, "", nil
	}
	if err != nil {
		restoreAdmin()
		gen.shutdownNow()
		return fmt.Errorf("generation %d: %w", id, err)
	}
	closeNewAdmin := func() {
		if newAdmin != nil {
			newAdmin.Close()
		}
		restoreAdmin()
	}
	if err := d.listeners.Apply(gen.handlers); err != nil {
		closeNewAdmin()
		gen.shutdownNow()
		return fmt.Errorf("generation %d: %w", id, err)
	}
	vcfgs := vrrpConfigs(cfg)
	if err := d.vrrp.Apply(vcfgs); err != nil {
		if old := d.current.Load(); old != nil {
			// Give the kept listeners back to the old handlers and close
			// the ones this generation opened.
			if rerr := d.listeners.Apply(old.handlers); rerr != nil {
				d.log.Error("roll back listeners after failed VRRP reload", zap.Error(rerr))
			}
		}
		closeNewAdmin()
		gen.shutdownNow()
		return fmt.Errorf("generation %d: vrrp: %w", id, err)
	}
	d.checks.Apply(healthChecks(cfg, gen.upstreams))
	for _, u := range gen.upstreams {
		d.table.Commit(u)
	}
	d.table.Forget(upstreamSpecs(gen))
	d.gensMu.Lock()
	if old := d.current.Swap(gen); old != nil {
		d.retired = append(d.retired, old)
		old.retire()
		d.reapers.Add(1)
		go d.reapWhenIdle(old)
	}
	d.gensMu.Unlock()
	d.generation.Store(id)
	d.swapAdmin(newAdmin, adminAddr)
	d.log.Info("configuration applied", zap.Uint64("generation", id), zap.String("file", cfg.Path),
		zap.Int("listeners", len(gen.handlers)), zap.Int("upstreams", len(gen.upstreams)), zap.Int("vrrp_instances", len(vcfgs)))
	return nil
}

func (d *Daemon) build(id uint64, cfg *config.Config) (_ *generation, err error) {
	gen := &generation{id: id, cfg: cfg, upstreams: map[string]*balancer.Upstream{}, handlers: map[string]proxy.Handler{}}
	defer func() {
		if err != nil {
			// The HTTP side serves (on no listener yet) once built: a
			// stream side that fails after it must not leave it running.
			gen.shutdownNow()
		}
	}()
	for _, name := range sortedNames(cfg.Upstream) {
		spec, err := upstreamSpec(name, cfg.Upstream[name])
		if err != nil {
			return nil, err
		}
		u, err := d.table.Prepare(spec) // committed once the generation runs
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", name, err)
		}
		gen.upstreams[name] = u
	}
	if len(cfg.HTTP) > 0 {
		s, err := httpproxy.New(cfg.HTTP, httpproxy.Deps{Log: d.log, AccessLog: d.accessLog, Upstreams: gen.upstreams, UpstreamConfig: cfg.Upstream, Responses: d.httpResponses})
		if err != nil {
			return nil, fmt.Errorf("http: %w", err)
		}
		gen.http = s
		for _, h := range cfg.HTTP {
			for _, addr := range h.Listen {
				canon, _ := config.ParseListen(addr)
				gen.handlers[canon] = s.Handler(canon)
			}
		}
	}
	if len(cfg.Stream) > 0 {
		if d.streamEngine == nil {
			e, err := stream.NewEngine(0)
			if err != nil {
				return nil, fmt.Errorf("stream: %w", err)
			}
			d.streamEngine = e
		}
		s, err := stream.New(cfg.Stream, stream.Deps{Log: d.log, AccessLog: d.accessLog, Upstreams: gen.upstreams, UpstreamConfig: cfg.Upstream,
			Stats: d.streamStats, Engine: d.streamEngine})
		if err != nil {
			return nil, fmt.Errorf("stream: %w", err)
		}
		gen.stream = s
		for _, st := range cfg.Stream {
			for _, addr := range st.Listen {
				canon, _ := config.ParseListen(addr)
				gen.handlers[canon] = s.Handler(canon)
			}
		}
	}
	return gen, nil
}

// upstreamSpec resolves host names (at load and reload, as nginx does: a
// name with several addresses becomes several servers).
func upstreamSpec(name string, u *config.Upstream) (balancer.UpstreamSpec, error) {
	spec := balancer.UpstreamSpec{Name: name, Balance: u.Balance}
	for _, s := range u.Server {
		host, port, _ := net.SplitHostPort(s.Address)
		addrs := []string{s.Address}
		if _, err := netip.ParseAddr(host); err != nil {
			ips, err := net.LookupHost(host)
			if err != nil {
				return spec, fmt.Errorf("upstream %s: resolve %s: %w", name, host, err)
			}
			addrs = addrs[:0]
			for _, ip := range ips {
				addrs = append(addrs, net.JoinHostPort(ip, port))
			}
		}
		for _, a := range addrs {
			spec.Servers = append(spec.Servers, balancer.ServerSpec{
				Name: s.Address, Address: a, Weight: *s.Weight, MaxFails: *s.MaxFails, FailTimeout: s.FailTimeout.Duration,
				Backup: s.Backup, Down: s.Down, MaxConns: s.MaxConns,
			})
		}
	}
	return spec, nil
}

func upstreamSpecs(gen *generation) []balancer.UpstreamSpec {
	var specs []balancer.UpstreamSpec
	for _, u := range gen.upstreams {
		spec := balancer.UpstreamSpec{Name: u.Name()}
		for _, s := range u.Servers() {
			spec.Servers = append(spec.Servers, balancer.ServerSpec{Address: s.Address()})
		}
		specs = append(specs, spec)
	}
	return specs
}

func healthChecks(cfg *config.Config, ups map[string]*balancer.Upstream) map[string]health.UpstreamChecks {
	out := map[string]health.UpstreamChecks{}
	for name, u := range cfg.Upstream {
		hc := u.HealthCheck
		if ups[name] == nil {
			continue
		}
		if hc == nil {
			out[name] = health.UpstreamChecks{} // configured, not checked
			continue
		}
		spec := health.CheckSpec{
			Type: hc.Type, Path: hc.Path, Host: hc.Host, ExpectStatus: hc.StatusRanges,
			Interval: hc.Interval.Duration, Timeout: hc.Timeout.Duration, Rise: hc.Rise, Fall: hc.Fall,
		}
		for _, st := range cfg.Stream {
			if st.Upstream == name && st.ProxyProtocol != "" {
				spec.ProxyProtocol = st.ProxyProtocol
			}
		}
		out[name] = health.UpstreamChecks{Spec: spec, Servers: ups[name].Servers()}
	}
	return out
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// shutdownNow closes a generation that never served (a failed reload).
func (g *generation) shutdownNow() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g.shutdown(ctx)
}

// shutdown lets the generation's connections end until ctx is done, then
// closes them; cut reports whether any was still busy then.
func (g *generation) shutdown(ctx context.Context) (cut bool) {
	if g.http != nil && g.http.Shutdown(ctx) != nil {
		cut = true
	}
	if g.stream != nil && g.stream.Shutdown(ctx) != nil {
		cut = true
	}
	return cut
}

// generations returns the current and retired generations.
func (d *Daemon) generations() []*generation {
	d.gensMu.Lock()
	defer d.gensMu.Unlock()
	gens := append([]*generation(nil), d.retired...)
	if cur := d.current.Load(); cur != nil {
		gens = append(gens, cur)
	}
	return gens
}

// trackLoop feeds what the proxy knows into VRRP: the node's own listeners
// (always tracked) and each instance's track_upstream.
func (d *Daemon) trackLoop() {
	defer close(d.trackDone)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	defer d.probes.wait()
	var lastListeners string
	var lastProbe time.Time
	var tracked map[string]string // upstream track sources of the last round
	for {
		select {
		case <-d.stopTrack:
			return
		case <-tick.C:
		}
		if now := time.Now(); now.Sub(lastProbe) >= probeInterval {
			var target probeTarget
			if gen := d.current.Load(); gen != nil && gen.http != nil {
				target = gen.http
			}
			d.probes.round(target, now)
			lastProbe = now
		}
		_, broken := d.SelfCheck()
		d.vrrp.SetTrack("listeners", nil, len(broken) > 0, 0)
		if msg := fmt.Sprint(broken); msg != lastListeners {
			if len(broken) > 0 {
				d.log.Error("the proxy cannot serve: VRRP instances go to FAULT", zap.Strings("problems", broken))
			} else if lastListeners != "" {
				d.log.Info("listeners serve again")
			}
			lastListeners = msg
		}
		tracked = trackUpstreams(d.current.Load(), tracked, d.vrrp.SetTrack)
	}
}

// trackUpstreams feeds each VRRP instance's track_upstream to set (the
// manager's SetTrack, where a call replaces the last one of its source)
// and returns the sources it set, for the next round. Each instance has a
// source of its own per upstream: two instances tracking one upstream (the
// IPv4 and IPv6 instances of a service) replaced each other's track, so
// one never saw the upstream down. A source of the last round that the
// configuration no longer has (a track_upstream removed by a reload) is
// cleared, or its fault would stay until a restart.
func trackUpstreams(gen *generation, last map[string]string, set func(source string, instances []string, fault bool, weight int)) map[string]string {
	now := make(map[string]string, len(last))
	for _, v := range gen.cfg.VRRP {
		for _, name := range v.TrackUpstream {
			u := gen.upstreams[name]
			down := u == nil || !u.Available()
			weight := 0
			if down {
				weight = v.TrackUpstreamWeight
			}
			source := "upstream:" + name + "@" + v.Name
			set(source, []string{v.Name}, down && v.TrackUpstreamWeight == 0, weight)
			now[source] = v.Name
		}
	}
	for source, instance := range last {
		if _, ok := now[source]; !ok {
			set(source, []string{instance}, false, 0)
		}
	}
	return now
}

// Stop runs the contract's stop sequence: soft drain; resign as VRRP
// master (hold new connections to the VIPs, then priority 0, keeping the
// VIPs until the new master is heard, see resign); close long-lived
// connections and the listeners; let in-flight work finish until timeout;
// only then release the VIPs.
//
// The VIPs are released last, not right after the new master is heard,
// because once an address is gone the kernel can no longer send from it:
// a FIN closing a WebSocket or TCP stream would never reach its client
// (which would sit on a dead connection until a keep-alive or TCP timeout
// instead of reconnecting to the new master at once), and the answer to a
// request still in flight could not leave (the client would time out).
// Holding the VIPs a little longer is harmless: the new master's
// gratuitous ARP already sends the clients' new packets there.
func (d *Daemon) Stop(timeout time.Duration) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.log.Info("stopping", zap.Duration("shutdown_timeout", timeout))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-d.hurry:
			cancel()
		case <-ctx.Done():
		}
	}()
	close(d.stopTrack)
	<-d.trackDone
	d.reapers.Wait()
	gens := d.generations()
	for _, g := range gens {
		if g.http != nil {
			g.http.Drain()
		}
	}
	_, endForwarding, _ := d.resign(ctx)
	if len(d.current.Load().cfg.VRRP) > 0 {
		// A MASTER's VIPs went to the new master, or away with this node:
		// closing the long-lived connections at once sends their clients
		// to reconnect there (spec step 3); a BACKUP or FAULT node just
		// stops. Without VRRP (vipgate as a plain nginx replacement) they
		// run on, as in nginx's graceful stop, until shutdown_timeout.
		for _, g := range gens {
			g.closeLongLived(true)
		}
	}
	d.listeners.Close()
	endForwarding()
	var wg sync.WaitGroup
	var cut atomic.Bool
	for _, g := range gens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if g.shutdown(ctx) {
				cut.Store(true)
			}
		}()
	}
	wg.Wait()
	d.closeStreamEngine()
	d.vrrp.Release()
	d.vrrp.Stop()
	d.checks.Stop()
	d.swapAdmin(nil, "")
	// Only connections cut count: the time may also have gone waiting for
	// a new master (a MASTER alone waits up to Master_Down_Interval).
	if cut.Load() {
		return fmt.Errorf("shutdown_timeout %s reached: remaining connections closed", timeout)
	}
	return nil
}

// resign hands the VIPs over without failing a client: if this node is a
// MASTER it first holds new connections to its VIPs (their SYNs are
// dropped, so clients retry about a second later and reach the new
// master), lets the connections already on their way in arrive and the
// requests in flight finish, then advertises priority 0, keeping the VIPs
// until the new master is heard, and keeps the listeners open a moment
// longer. With VRRP v3 the new master is heard within about 10 ms, so the
// hold lasts little more than the requests in flight.
//
// Holding new connections before resigning costs clients that connect
// during the switchover about a second (TCP's SYN retransmission), but it
// is the only way not to fail any: once the new master's gratuitous ARP
// has moved the clients' packets, every connection this node still has is
// one-way, and a client that completed its handshake here just before,
// and sends its request just after, is reset by the new master, which does
// not know the connection (measured under load in cmd/vipgate's netns
// tests: about one failed request in seven switchovers when the hold
// started only once the new master was heard). The listeners stay open
// after the new master is heard because its first advert comes just before
// its gratuitous ARP: closing them at once would refuse clients that have
// not switched yet. The connection requests held meanwhile are handed to
// the new master as soon as it announces the VIPs (synForwarder), so
// their clients connect there at once instead of a second later. The
// returned resume undoes the hold (handover); endForwarding stops the
// handing on (it ends by itself shortly after the new master is known).
// takenOver is false when no new master was heard within
// Master_Down_Interval (see Manager.Resign), and on a node that was not
// MASTER, which had nothing to hand over.
func (d *Daemon) resign(ctx context.Context) (resume, endForwarding func(), takenOver bool) {
	var advert time.Duration
	var vips []netip.Addr
	for _, st := range d.vrrp.Status() {
		if st.State != "MASTER" {
			continue
		}
		for _, v := range d.current.Load().cfg.VRRP {
			if v.Name == st.Name {
				advert = max(advert, v.AdvertInt.Duration)
			}
		}
		for _, s := range st.VIPsHeld {
			if p, err := netip.ParsePrefix(s); err == nil {
				vips = append(vips, p.Addr())
			}
		}
	}
	if advert == 0 { // not a MASTER: nothing to hand over
		d.vrrp.Resign(ctx)
		return func() {}, func() {}, false
	}
	wait := func(d time.Duration) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	// Half an advert interval, at most 50 ms, each: the longest wait for a
	// handshake already under way to complete here, and short enough that
	// the whole hold stays well under TCP's first SYN retransmission (1 s)
	// even with v2's 1 s adverts (Skew_Time is then up to about 0.8 s), so
	// a held client waits one retransmission, not two (3 s). With v3 the
	// backup takes over within 10 ms of the resign (HandoverAdvertInterval).
	moment := min(advert/2, 50*time.Millisecond)
	var fwd *synForwarder
	held, resume, err := prepareHold(vips).holdNewConnections()
	if err != nil {
		// Not held everywhere: a SYN handed on could be answered here too.
		d.log.Warn("cannot hold new connections to the VIPs while they move: a client connecting now may be reset", zap.Error(err))
	} else {
		d.log.Debug("new connections to the VIPs held while they move", zap.Int("listeners", held))
		if fwd, err = startSYNForwarder(vips, d.log); err != nil {
			d.log.Warn("cannot hand held connection requests to the new master: their clients retry in about a second", zap.Error(err))
		}
	}
	endForwarding = func() {
		if n := fwd.Stop(); n > 0 {
			d.log.Info("held connection requests handed to the new master", zap.Int("syns", n))
		}
	}
	d.waitArriving(ctx, vips, moment)
	d.waitClientsGone(ctx, drainWaitMax)
	takenOver = d.vrrp.Resign(ctx)
	if takenOver {
		wait(moment)
	}
	return resume, endForwarding, takenOver
}

// waitArriving waits, at most max, until no connection to vips is on its
// way to the proxies (a handshake under way or one not yet accepted):
// those must be served here before the VIPs move. Usually that is a
// client round trip, far less than max.
func (d *Daemon) waitArriving(ctx context.Context, vips []netip.Addr, max time.Duration) {
	deadline := time.Now().Add(max)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		n, err := connectionsArriving(vips)
		if err != nil {
			d.log.Warn("cannot see connections arriving: waiting the whole moment", zap.Duration("moment", max), zap.Error(err))
			time.Sleep(time.Until(deadline))
			return
		}
		if n == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// Quit stops at once (SIGQUIT): no drain, VIPs removed, connections closed.
// Hurry cuts a graceful stop under way short (an operator's second SIGTERM
// or a SIGQUIT during it): what it still waits for (in-flight requests,
// streams, the resign) is given up as at shutdown_timeout, and it
// finishes at once, VIPs released last as always. It may be called at any
// time, before or during Stop.
func (d *Daemon) Hurry() {
	d.hurryOnce.Do(func() { close(d.hurry) })
}

func (d *Daemon) Quit() {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	close(d.stopTrack)
	<-d.trackDone
	d.reapers.Wait()
	// Everything is closed while the VIPs are still here, so the FINs
	// reach the clients (see Stop); it takes no time.
	d.listeners.Close()
	for _, g := range d.generations() {
		g.closeLongLived(true)
		g.shutdownNow()
	}
	d.vrrp.Stop()
	d.closeStreamEngine()
	d.checks.Stop()
	d.swapAdmin(nil, "")
}

// closeStreamEngine stops the stream engine, once every generation has
// shut down.
func (d *Daemon) closeStreamEngine() {
	if d.streamEngine != nil {
		d.streamEngine.Close()
	}
}

// closeLongLived closes the WebSockets and streams; stopping says why in
// the streams' access lines (the node stops, or hands its VIPs over).
func (g *generation) closeLongLived(stopping bool) {
	if g.http != nil {
		g.http.CloseLongLived()
	}
	if g.stream != nil {
		if stopping {
			g.stream.CloseForStop()
		} else {
			g.stream.CloseLongLived()
		}
	}
}

// Listeners exposes the listener set (admin API, tests).
func (d *Daemon) Listeners() *proxy.Listeners { return d.listeners }

// VRRP exposes the VRRP manager (admin API).
func (d *Daemon) VRRP() *vrrp.Manager { return d.vrrp }

// Handover (SIGUSR2) moves the VIPs of a MASTER to the best backup without
// losing a request and keeps this node up as BACKUP: soft drain, resign
// (see resign), close long-lived connections so their clients reconnect to
// the new master at once, let in-flight requests finish, release, rejoin
// as BACKUP. A fresh generation of the same configuration takes over the
// listeners, so the node serves with keep-alive again (the drained one
// would answer every request with Connection: close for good).
func (d *Daemon) Handover() error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if !d.isMaster() {
		// A drain, closed WebSockets and streams and a resign for nothing
		// (and a BACKUP that resigns comes back without preempting).
		return errNotMaster
	}
	gens := d.generations()
	for _, g := range gens {
		if g.http != nil {
			g.http.Drain()
		}
	}
	cfg := d.current.Load().cfg
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Global.ShutdownTimeout.Duration)
	defer cancel()
	go func() { // Hurry (a stop signal) cuts the handover's waits short
		select {
		case <-d.hurry:
			cancel()
		case <-ctx.Done():
		}
	}()
	resume, endForwarding, takenOver := d.resign(ctx)
	defer endForwarding()
	if !takenOver {
		// No backup answered (down, in FAULT, none configured): keep the
		// VIPs and the long-lived connections rather than leave the
		// address to nobody for another Master_Down_Interval.
		resume()
		d.vrrp.Rejoin()
		if err := d.applyLocked(cfg); err != nil {
			d.log.Error("handover: cannot start a fresh generation; responses carry Connection: close until the next reload", zap.Error(err))
		}
		return errNoSuccessor
	}
	// Closed while the VIPs are still here, so the FIN reaches the
	// clients (see Stop).
	for _, g := range gens {
		g.closeLongLived(false)
	}
	if err := d.applyLocked(cfg); err != nil {
		d.log.Error("handover: cannot start a fresh generation; responses carry Connection: close until the next reload", zap.Error(err))
	} else {
		// The drained generations are retired now: their answers still
		// need the VIPs as source address, so release when they are done.
		for _, g := range gens {
			if g.http == nil {
				continue
			}
			select {
			case <-g.http.Idle():
			case <-ctx.Done():
			}
		}
	}
	d.vrrp.Release()
	resume()
	// Take part again as BACKUP, without preempting the new master.
	d.vrrp.Rejoin()
	d.log.Info("handover done: this node is BACKUP")
	return nil
}

// samePort tells whether two host:port addresses have the same port.
func samePort(a, b string) bool {
	_, pa, errA := net.SplitHostPort(a)
	_, pb, errB := net.SplitHostPort(b)
	return errA == nil && errB == nil && pa == pb
}

// errNoSuccessor ends a handover that no backup took.
var errNoSuccessor = errors.New("no backup took over within Master_Down_Interval: this node stays MASTER")

// errNotMaster refuses a handover on a node that holds no VIP.
var errNotMaster = errors.New("no VRRP instance is MASTER here: nothing to hand over")

// isMaster reports whether a VRRP instance of this node is MASTER.
func (d *Daemon) isMaster() bool {
	for _, st := range d.vrrp.Status() {
		if st.State == "MASTER" {
			return true
		}
	}
	return false
}

// startAdmin starts an admin server on addr when addr differs from the
// running one's; nil when nothing changes or the API is off.
func (d *Daemon) startAdmin(addr string) (*admin.Server, error) {
	if addr == d.adminAddr || addr == "" {
		return nil, nil
	}
	return admin.Start(addr, admin.SourceFunc(d.Status), d.log)
}

// swapAdmin puts s (started for addr) in place of the running admin server.
func (d *Daemon) swapAdmin(s *admin.Server, addr string) {
	if addr == d.adminAddr {
		return
	}
	if d.admin != nil {
		d.admin.Close()
	}
	d.admin, d.adminAddr = s, addr
}

// retire tells an old generation it gets no new connections: it closes
// idle keep-alive connections as they go idle and ends when its last
// connection does.
func (g *generation) retire() {
	if g.http != nil {
		g.http.Retire()
	}
}

func (g *generation) addCounters(st *admin.Status) {
	if g.stream != nil {
		st.ActiveStreams += g.stream.Active()
	}
}

// reapGrace is how long a retired generation stays after going idle.
const reapGrace = time.Second

// reapWhenIdle frees a retired generation, so that reloads do not
// accumulate goroutines, pools and descriptors: its HTTP side when its last
// client connection has closed, its stream side when its last stream has
// (long-lived streams keep their generation's settings until then, and do
// not hold the HTTP side meanwhile).
func (d *Daemon) reapWhenIdle(g *generation) {
	defer d.reapers.Done()
	if g.http != nil {
		select {
		case <-g.http.Idle():
		case <-d.stopTrack:
			return
		}
		// The accept loop may have picked this generation's handler just
		// before the swap and not yet handed it the connection: give such
		// stragglers a moment, and free the generation only once it has no
		// client left (freeing it under one reset that connection: seen in
		// the reload test).
		if !d.waitReap(func() bool { return g.http.ClientConns() == 0 }) {
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = g.http.Shutdown(ctx)
	}
	if g.stream != nil {
		if !d.waitReap(func() bool { return g.stream.Active() == 0 }) {
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = g.stream.Shutdown(ctx)
	}
	d.gensMu.Lock()
	for i, r := range d.retired {
		if r == g {
			d.retired = append(d.retired[:i], d.retired[i+1:]...)
			break
		}
	}
	d.gensMu.Unlock()
	d.log.Debug("retired generation freed", zap.Uint64("generation", g.id))
}

// waitReap checks idle every reapGrace until it holds; false when the
// daemon stops first (Stop then shuts the generation down).
func (d *Daemon) waitReap(idle func() bool) bool {
	for {
		select {
		case <-time.After(reapGrace):
		case <-d.stopTrack:
			return false
		}
		if idle() {
			return true
		}
	}
}

// SelfCheck reports whether the node's own proxy can serve: every listener's
// accept loop runs and is not failing. It feeds VRRP (trackLoop) and the
// systemd watchdog, so a node whose proxy cannot serve gives up its VIPs
// and, if hung, is restarted.
func (d *Daemon) SelfCheck() (ok bool, problems []string) {
	for _, st := range d.listeners.Status() {
		if !st.Serving {
			problems = append(problems, fmt.Sprintf("listener %s cannot serve: %s", st.Address, st.LastError))
		}
	}
	problems = append(problems, d.probes.problems()...)
	return len(problems) == 0, problems
}

// drainWaitMax bounds how long a stop waits, after the soft drain, for the
// HTTP client connections to close before the VIPs move: the hold on new
// connections must stay well under TCP's first SYN retransmission (1 s).
const drainWaitMax = 250 * time.Millisecond

// waitClientsGone waits until no HTTP client connection is open (each
// drained one closes after its response or a short grace), at most max: a
// keep-alive connection still open when the new master's gratuitous ARP
// moves the client's packets would be reset by the new master.
func (d *Daemon) waitClientsGone(ctx context.Context, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		open := 0
		for _, g := range d.generations() {
			if g.http != nil {
				open += g.http.KeptConns()
			}
		}
		if open == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
