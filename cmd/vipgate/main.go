// Command vipgate is the node process: HTTP/WebSocket and TCP proxy with
// built-in VRRP. See spec/config.md for the command line contract.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	sdnotify "github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/vipgate/vipgate/config"
	"github.com/vipgate/vipgate/daemon"
	"github.com/vipgate/vipgate/internal/accesslog"
	"github.com/vipgate/vipgate/internal/caps"
	"github.com/vipgate/vipgate/internal/logging"
	"github.com/vipgate/vipgate/internal/pidfile"
	"github.com/vipgate/vipgate/internal/sysmon"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			printVersion(stdout)
			return 0
		case "status":
			return status(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("vipgate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", config.DefaultPath, "configuration `file`")
	test := fs.Bool("t", false, "check the configuration file and exit (0 valid, 1 invalid)")
	noHost := fs.Bool("no-host", false, "with -t: skip the checks against this host (interfaces, files)")
	sig := fs.String("s", "", "send a `signal` to the running instance: reload, stop, quit, handover")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: vipgate [-c FILE] | -t [--no-host] [-c FILE] | -s reload|stop|quit|handover|reopen [-c FILE] | status [-c FILE] | version\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vipgate: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	switch {
	case *test:
		return checkConfig(*path, !*noHost, stdout, stderr)
	case *sig != "":
		return signalRunning(*path, *sig, stdout, stderr)
	}
	return serve(*path, stderr)
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "vipgate %s\n", version)
	if bi, ok := debug.ReadBuildInfo(); ok {
		fmt.Fprintf(w, "go %s\n", bi.GoVersion)
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" || s.Key == "vcs.time" || s.Key == "vcs.modified" {
				fmt.Fprintf(w, "%s %s\n", s.Key, s.Value)
			}
		}
	}
}

func printProblems(w io.Writer, path string, err error) {
	var p *config.Problems
	if errors.As(err, &p) {
		fmt.Fprintf(w, "vipgate: %s: %d problem(s):\n", path, len(p.List))
		for _, e := range p.List {
			fmt.Fprintf(w, "  %s\n", e)
		}
		return
	}
	fmt.Fprintf(w, "vipgate: %s: %v\n", path, err)
}

func checkConfig(path string, host bool, stdout, stderr io.Writer) int {
	cfg, err := config.Load(path)
	if err == nil && host {
		err = config.CheckHost(cfg)
	}
	if err != nil {
		printProblems(stderr, path, err)
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "vipgate: warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "vipgate: %s: configuration ok\n", path)
	return 0
}

// reach is how the CLI finds the running instance: its pid file and its
// admin API.
type reach struct{ pidFile, adminListen string }

// reachOf reads reach from a file that may not validate: an edit under way
// must not cut the operator off the running instance (stop, quit, status).
// Defaults fill what the file does not set. A file that is not even TOML
// gives its pid_file by a line scan and, with it, the parse error.
func reachOf(path string) (reach, error) {
	cfg, err := config.Load(path)
	if err == nil {
		return reach{cfg.Global.PidFile, *cfg.Global.AdminListen}, nil
	}
	var partial struct {
		Global struct {
			PidFile     string  `toml:"pid_file"`
			AdminListen *string `toml:"admin_listen"`
		} `toml:"global"`
	}
	if _, derr := toml.DecodeFile(path, &partial); derr != nil {
		text, rerr := os.ReadFile(path)
		if rerr != nil {
			return reach{}, fmt.Errorf("read %s: %w", path, rerr)
		}
		return reach{pidFile: scanPidFile(string(text))}, err
	}
	r := reach{pidFile: partial.Global.PidFile, adminListen: config.DefaultAdminListen}
	if r.pidFile == "" {
		r.pidFile = config.DefaultPidFile
	}
	if partial.Global.AdminListen != nil {
		r.adminListen = *partial.Global.AdminListen
	}
	return r, nil
}

// pidFileOf finds global.pid_file even in a file that does not validate
// (stop and quit must still reach the running instance).
func pidFileOf(path string) (string, error) {
	r, err := reachOf(path)
	if r.pidFile == "" {
		return "", err
	}
	return r.pidFile, nil
}

// scanPidFile finds pid_file = "..." in the [global] table of a file that
// does not parse, line by line; the default when it is not there.
func scanPidFile(text string) string {
	table := ""
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			table = strings.Trim(line, "[] \t")
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || table != "global" || strings.TrimSpace(key) != "pid_file" {
			continue
		}
		value = strings.TrimSpace(value)
		if v, err := strconv.Unquote(strings.SplitN(value, " #", 2)[0]); err == nil && v != "" {
			return v
		}
	}
	return config.DefaultPidFile
}

var signalsByName = map[string]syscall.Signal{
	"reload":   syscall.SIGHUP,
	"stop":     syscall.SIGTERM,
	"quit":     syscall.SIGQUIT,
	"handover": syscall.SIGUSR2,
	"reopen":   syscall.SIGUSR1,
}

func signalRunning(path, name string, stdout, stderr io.Writer) int {
	sig, ok := signalsByName[name]
	if !ok {
		fmt.Fprintf(stderr, "vipgate: -s %s: unknown signal (want reload, stop, quit, handover or reopen)\n", name)
		return 2
	}
	if name == "reload" {
		cfg, err := config.Load(path)
		if err != nil {
			printProblems(stderr, path, err)
			fmt.Fprintf(stderr, "vipgate: reload refused: nothing was signalled (a running instance keeps its configuration)\n")
			return 1
		}
		for _, w := range cfg.Warnings {
			fmt.Fprintf(stderr, "vipgate: warning: %s\n", w)
		}
	}
	pidPath, err := pidFileOf(path)
	if err != nil {
		fmt.Fprintf(stderr, "vipgate: %v\n", err)
		return 1
	}
	// Only a pid a running vipgate holds: one left by a crash may name
	// an unrelated process by now.
	pid, err := pidfile.Running(pidPath)
	if err != nil {
		fmt.Fprintf(stderr, "vipgate: no running instance: %v; nothing signalled\n", err)
		return 1
	}
	if err := syscall.Kill(pid, sig); err != nil {
		fmt.Fprintf(stderr, "vipgate: signal pid %d (%s): %v\n", pid, pidPath, err)
		return 1
	}
	fmt.Fprintf(stdout, "vipgate: sent %s to pid %d\n", sig, pid)
	return 0
}

// raiseFileLimit lifts RLIMIT_NOFILE to its hard limit: a proxy holds two
// descriptors per connection.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	return lim.Cur, nil
}

func serve(path string, stderr io.Writer) int {
	// A reader of stdout or stderr that goes away (a log pipe restarting)
	// must not end the process as kill -9 would, VIPs and pid file left
	// behind: writes fail with EPIPE instead, as nginx and keepalived
	// have them.
	// Notify, not Ignore: an ignored signal stays ignored in the scripts
	// vipgate runs (a "yes | head" in a check would never end), a handled
	// one is reset for them. Nobody reads the channel: a signal that does
	// not fit is dropped, which is all that is wanted.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	cfg, err := config.Load(path)
	if err != nil {
		printProblems(stderr, path, err)
		return 1
	}
	g := cfg.Global
	logger, err := logging.New(logging.Options{Level: g.LogLevel, Format: g.LogFormat, Path: g.ErrorLog})
	if err != nil {
		fmt.Fprintf(stderr, "vipgate: %v\n", err)
		return 1
	}
	log := logger.Logger
	defer func() { _ = log.Sync() }()
	// cannotStart reports a failed start in the error log and, when that
	// is a file, on the terminal too: whoever ran the command sees why.
	cannotStart := func(err error) int {
		log.Error("cannot start", zap.Error(err))
		if g.ErrorLog != "" && g.ErrorLog != "stderr" {
			fmt.Fprintf(stderr, "vipgate: cannot start: %v\n", err)
		}
		return 1
	}
	for _, w := range cfg.Warnings {
		log.Warn("configuration warning", zap.String("problem", w))
	}
	if n, err := raiseFileLimit(); err != nil {
		log.Warn("cannot raise the open files limit", zap.Error(err))
	} else {
		log.Debug("open files limit", zap.Uint64("nofile", n))
	}
	if tid, err := sysmon.SetBatch(); err != nil {
		log.Info("Go runtime monitor thread keeps its scheduling policy: it may preempt the serving threads", zap.Error(err))
	} else {
		log.Debug("Go runtime monitor thread runs SCHED_BATCH: it no longer preempts the serving threads", zap.Int("tid", tid))
	}
	access, err := accesslog.Open(accessLogSettings(&g))
	if err != nil {
		return cannotStart(fmt.Errorf("access log: %w", err))
	}
	access.ReportErrors(func(target string, err error) {
		if err != nil {
			log.Error("access log: lines are being lost", zap.String("access_log", target), zap.Error(err))
		} else {
			log.Info("access log: writing again", zap.String("access_log", target))
		}
	})
	defer func() { _ = access.Close() }()
	// Subscribe before the pid file exists: `vipgate -s reload` signals
	// the pid it finds there, and SIGHUP's default action ends the
	// process. A signal sent during start-up is handled once started.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	pf, err := pidfile.Claim(g.PidFile)
	if err != nil {
		return cannotStart(err)
	}
	defer pf.Release()

	if err := caps.Check(cfg); err != nil {
		return cannotStart(err)
	}
	d, err := daemon.Start(cfg, daemon.Options{Log: log, AccessLog: access, Version: version})
	if err != nil {
		return cannotStart(err)
	}
	log.Info("vipgate started", zap.String("version", version), zap.String("node", g.NodeName), zap.Int("pid", os.Getpid()), zap.String("config", path))
	notify(log, sdnotify.SdNotifyReady)
	stopWatchdog := startWatchdog(d, log)
	defer stopWatchdog()
	var next []os.Signal // signals that came while a handover ran
	for {
		var s os.Signal
		if len(next) > 0 {
			s, next = next[0], next[1:]
		} else {
			s = <-sigs
		}
		switch s {
		case syscall.SIGHUP:
			notify(log, sdnotify.SdNotifyReloading)
			reload(d, access, logger, &g, path, log)
			notify(log, sdnotify.SdNotifyReady)
		case syscall.SIGUSR1:
			errLogErr := logger.Reopen()
			if errLogErr != nil {
				log.Error("reopen error log: lines still go to the old file", zap.Error(errLogErr))
			}
			accessErr := access.Reopen()
			if accessErr != nil {
				log.Error("reopen access log: lines still go to the old file", zap.Error(accessErr))
			}
			if errLogErr == nil && accessErr == nil {
				log.Info("log files reopened")
			}
		case syscall.SIGUSR2:
			// Signals still queued (behind this SIGUSR2) stay first.
			for _, p := range handover(d, sigs, log) {
				if !slices.Contains(next, p) {
					next = append(next, p)
				}
			}
		case syscall.SIGQUIT:
			notify(log, sdnotify.SdNotifyStopping)
			log.Info("SIGQUIT: stopping at once")
			d.Quit()
			return 0
		case syscall.SIGTERM, syscall.SIGINT:
			notify(log, sdnotify.SdNotifyStopping)
			log.Info("stopping gracefully", zap.String("signal", s.String()))
			stopped := make(chan error, 1)
			go func() { stopped <- d.Stop(d.Config().Global.ShutdownTimeout.Duration) }()
			// The drain may take shutdown_timeout: a second SIGTERM or
			// SIGINT, or a SIGQUIT, cuts it short (not kill -9, which
			// would leave the VIPs behind).
			for {
				select {
				case s := <-sigs:
					switch s {
					case syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT:
						log.Warn("stopping now: the graceful stop is cut short", zap.String("signal", s.String()))
						d.Hurry()
					default:
						log.Info("stopping: signal ignored", zap.String("signal", s.String()))
					}
					continue
				case err := <-stopped:
					if err != nil {
						log.Warn("stopped", zap.Error(err))
					} else {
						log.Info("stopped")
					}
				}
				return 0
			}
		}
	}
}

// handover runs d.Handover (SIGUSR2), which may wait shutdown_timeout for
// requests in flight, and answers the signals that come meanwhile: they
// are returned, to be served once the handover ended (a reload, a log
// reopen, a stop, each once, in the order they came); SIGQUIT, or a
// second stop, cuts the handover short first.
func handover(d *daemon.Daemon, sigs <-chan os.Signal, log *zap.Logger) (pending []os.Signal) {
	done := make(chan error, 1)
	go func() { done <- d.Handover() }()
	stop := false
	for {
		select {
		case err := <-done:
			if err != nil {
				log.Error("handover", zap.Error(err))
			}
			return pending
		case s := <-sigs:
			switch s {
			case syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGINT:
				if s == syscall.SIGQUIT || stop {
					log.Warn("handover cut short to stop", zap.String("signal", s.String()))
					d.Hurry()
				} else {
					log.Info("stop asked during a handover: stopping once it ended", zap.String("signal", s.String()))
				}
				stop = true
			default:
				log.Info("handover under way: signal served once it ended", zap.String("signal", s.String()))
			}
			if !slices.Contains(pending, s) {
				pending = append(pending, s)
			}
		}
	}
}

// settleWait bounds how long a reload waits for a file being written.
const (
	settleAge  = 250 * time.Millisecond
	settleWait = 3 * time.Second
)

// loadSettled reads the configuration once the file stopped changing: a
// SIGHUP that lands while a deploy tool or an editor is still writing it
// would otherwise apply the part written so far, which may be valid TOML
// and a valid configuration with a listener or server less. A file
// modified within settleAge is read again after that quiet time.
func loadSettled(path string) (*config.Config, error) {
	deadline := time.Now().Add(settleWait)
	for {
		before, err := os.Stat(path)
		// An mtime in the future (copied with its time from a host whose
		// clock is ahead, or the clock stepped back) says nothing: settled.
		if err == nil {
			if age := time.Since(before.ModTime()); age >= 0 && age < settleAge && time.Now().Before(deadline) {
				time.Sleep(settleAge - age)
				continue
			}
		}
		cfg, err := config.Load(path)
		after, serr := os.Stat(path)
		changed := serr == nil && before != nil && (!after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size())
		if changed && time.Now().Before(deadline) {
			continue // written to while it was read: valid or not, read it again
		}
		return cfg, err
	}
}

// reload applies the file at path (SIGHUP). started holds the global
// settings the process started with, for those a reload cannot change.
func reload(d *daemon.Daemon, access *accesslog.Writer, logger *logging.Logger, started *config.Global, path string, log *zap.Logger) {
	cfg, err := loadSettled(path)
	if err != nil {
		var p *config.Problems
		var list []string
		if errors.As(err, &p) {
			for _, e := range p.List {
				list = append(list, e.Error())
			}
		} else {
			list = []string{err.Error()}
		}
		d.RefusedReload()
		log.Error("reload refused: invalid configuration, the running one stays in force",
			zap.String("file", path), zap.Uint64("generation", d.Generation()), zap.Strings("problems", list))
		return
	}
	for _, w := range cfg.Warnings {
		log.Warn("configuration warning", zap.String("problem", w))
	}
	if err := d.Reload(cfg); err != nil {
		log.Error("reload failed: the running configuration stays in force", zap.Uint64("generation", d.Generation()), zap.Error(err))
		return
	}
	// As nginx on reload: the access log follows the new file (another
	// path, buffer or flush); lines already buffered go to the old target.
	if err := access.Apply(accessLogSettings(&cfg.Global)); err != nil {
		log.Error("reload: access log unchanged", zap.String("access_log", access.Target()), zap.Error(err))
	}
	// log_level follows, as nginx's error_log level does on reload.
	if lvl, err := zapcore.ParseLevel(cfg.Global.LogLevel); err == nil && lvl != logger.Level.Level() {
		logger.Level.SetLevel(lvl)
		log.Info("reload: log level changed", zap.String("log_level", cfg.Global.LogLevel))
	}
	if restart := needRestart(started, &cfg.Global); len(restart) > 0 {
		log.Warn("reload: these settings take effect at the next start; the running ones stay", zap.Strings("settings", restart))
	}
	log.Info("reloaded", zap.Uint64("generation", d.Generation()))
}

// needRestart lists the global settings of next that differ from those the
// process started with and that a reload does not apply: the error log's
// file and format are opened once, the pid file is claimed once (and
// -s stop/reload find the process through it).
func needRestart(started, next *config.Global) []string {
	var keys []string
	if next.ErrorLog != started.ErrorLog {
		keys = append(keys, "error_log")
	}
	if next.LogFormat != started.LogFormat {
		keys = append(keys, "log_format")
	}
	if next.PidFile != started.PidFile {
		keys = append(keys, "pid_file")
	}
	return keys
}

func accessLogSettings(g *config.Global) accesslog.Settings {
	return accesslog.Settings{Target: g.AccessLog, Buffer: int(g.AccessLogBuffer.Bytes), Flush: g.AccessLogFlush.Duration}
}

// notify tells systemd (Type=notify) about a state change; a no-op when not
// started by systemd.
func notify(log *zap.Logger, state string) {
	if _, err := sdnotify.SdNotify(false, state); err != nil {
		log.Warn("sd_notify", zap.String("state", state), zap.Error(err))
	}
}

// startWatchdog feeds systemd's watchdog (WatchdogSec=) at half its period,
// but only while the node's self-check passes: a vipgate whose proxy cannot
// serve, or that hangs, is restarted by systemd and its VIPs expire.
func startWatchdog(d *daemon.Daemon, log *zap.Logger) (stop func()) {
	period, err := sdnotify.SdWatchdogEnabled(false)
	if err != nil || period <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		tick := time.NewTicker(period / 2)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if ok, problems := d.SelfCheck(); !ok {
				log.Error("self-check failed: not feeding the systemd watchdog", zap.Strings("problems", problems))
				continue
			}
			notify(log, sdnotify.SdNotifyWatchdog)
		}
	}()
	return func() { close(done); <-ended }
}
