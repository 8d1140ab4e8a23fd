package vrrp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// notifyTimeout bounds one notify script, so a hung one cannot hold the
// queue (and shutdown) forever.
const notifyTimeout = 10 * time.Second

// scriptRunner runs a command line as a user; a test may replace it.
type scriptRunner func(ctx context.Context, cmdline string, args []string, user string) error

// runScript runs cmdline (a path and optional arguments) plus args as user,
// after refusing a file others could have changed (scripts do not run as
// root here, but whoever may write the file decides what runs).
func runScript(ctx context.Context, cmdline string, args []string, userName string) error {
	fields := strings.Fields(cmdline)
	if len(fields) == 0 {
		return errors.New("empty command")
	}
	path := fields[0]
	if !strings.Contains(path, "/") {
		// A bare name ("pidof nginx"), as -t accepts it: found in the PATH
		// the script runs with.
		found, err := lookPath(path)
		if err != nil {
			return err
		}
		path = found
	}
	if err := checkScriptFile(path); err != nil {
		return err
	}
	if runsAsRoot(userName) {
		// The path as written runs (a multi-call program such as
		// /usr/bin/pidof -> killall5 needs its name); every link on it was
		// checked to be root's, so nobody else can repoint it.
		if err := checkRootScript(path); err != nil {
			return err
		}
	}
	argv := append(fields[1:], args...)
	var attr *syscall.SysProcAttr
	switch {
	case os.Geteuid() == 0:
		// Root: the switch to script_user drops every capability.
		if userName != "" {
			cred, err := lookupCredential(userName)
			if err != nil {
				return err
			}
			attr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
		}
	default:
		// Not root, with capabilities (systemd's AmbientCapabilities):
		// ambient capabilities pass to every program it runs, so a
		// script would get NET_ADMIN, NET_RAW and SETUID, and could make
		// itself root. setpriv (util-linux) clears them, and switches to
		// script_user with the CAP_SETUID/CAP_SETGID vipgate holds for it.
		wrapped, err := dropPrivileges(userName, path, argv)
		if err != nil {
			return err
		}
		path, argv = wrapped[0], wrapped[1:]
		attr = &syscall.SysProcAttr{Setpgid: true}
	}
	cmd := exec.CommandContext(ctx, path, argv...)
	cmd.Env = []string{"PATH=" + scriptPATH}
	cmd.WaitDelay = time.Second
	cmd.SysProcAttr = attr
	return cmd.Run()
}

// dropPrivileges returns the command line that runs path with argv as
// userName (when it is not this process's user) and without capabilities.
func dropPrivileges(userName, path string, argv []string) ([]string, error) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		return nil, fmt.Errorf("scripts run without vipgate's capabilities through setpriv (util-linux): %w", err)
	}
	line := []string{setpriv, "--inh-caps=-all", "--ambient-caps=-all"}
	if userName != "" {
		cred, err := lookupCredential(userName)
		if err != nil {
			return nil, err
		}
		if int(cred.Uid) != os.Geteuid() || int(cred.Gid) != os.Getegid() {
			line = append(line, fmt.Sprintf("--reuid=%d", cred.Uid), fmt.Sprintf("--regid=%d", cred.Gid), "--clear-groups")
		}
	}
	return append(append(line, "--", path), argv...), nil
}

// scriptPATH is the PATH scripts run with, and where a bare name is found.
const scriptPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPath finds name in scriptPATH, then in vipgate's own PATH (where
// -t looked for it).
func lookPath(name string) (string, error) {
	for _, dir := range filepath.SplitList(scriptPATH) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	return "", fmt.Errorf("%s: not found in %s nor in vipgate's PATH", name, scriptPATH)
}

// errScriptRefused marks a script not run because others may change it.
var errScriptRefused = errors.New("script refused")

type refusedError struct{ msg string }

func (e *refusedError) Error() string        { return e.msg }
func (e *refusedError) Is(target error) bool { return target == errScriptRefused }

func checkScriptFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	mode := st.Mode().Perm()
	sys, _ := st.Sys().(*syscall.Stat_t)
	if mode&0o002 != 0 {
		return &refusedError{fmt.Sprintf("refusing %s: writable by everyone (mode %v); only root or the owner may write it", path, mode)}
	}
	if mode&0o020 != 0 && sys != nil && sys.Gid != 0 {
		return &refusedError{fmt.Sprintf("refusing %s: writable by group %d (mode %v); only root or the owner may write it", path, sys.Gid, mode)}
	}
	return nil
}

// runsAsRoot tells whether a script run for userName runs as root.
func runsAsRoot(userName string) bool {
	if userName == "" {
		return os.Geteuid() == 0
	}
	cred, err := lookupCredential(userName)
	return err == nil && cred.Uid == 0
}

// checkRootScript refuses a script that runs as root when a user other
// than root could change it: the file must be root's, and so must every
// directory on its path, none writable by others (one that is, with the
// sticky bit, as /tmp, lets nobody replace root's file); the same for the
// path as written when it goes through symbolic links, and for the links.
// Otherwise that user could make root run anything (keepalived's
// enable_script_security).
func checkRootScript(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	for _, walk := range []struct {
		p    string
		stat func(string) (os.FileInfo, error)
	}{{resolved, os.Stat}, {abs, os.Lstat}} {
		for p := walk.p; ; p = filepath.Dir(p) {
			if err := rootOnly(path, p, walk.stat); err != nil {
				return err
			}
			if p == filepath.Dir(p) {
				break
			}
		}
	}
	return nil
}

// rootOnly refuses p (a part of script's path) when a user other than root
// could change it.
func rootOnly(script, p string, stat func(string) (os.FileInfo, error)) error {
	st, err := stat(p)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	mode := st.Mode()
	sticky := mode.IsDir() && mode&os.ModeSticky != 0
	link := mode&os.ModeSymlink != 0 // a link's own mode bits mean nothing
	switch {
	case sys.Uid != 0:
		return &refusedError{fmt.Sprintf("refusing %s: it runs as root, but %s belongs to uid %d, who could change what root runs", script, p, sys.Uid)}
	case !link && mode.Perm()&0o002 != 0 && !sticky:
		return &refusedError{fmt.Sprintf("refusing %s: it runs as root, but %s is writable by everyone", script, p)}
	case !link && mode.Perm()&0o020 != 0 && sys.Gid != 0 && !sticky:
		return &refusedError{fmt.Sprintf("refusing %s: it runs as root, but %s is writable by group %d", script, p, sys.Gid)}
	}
	return nil
}

func lookupCredential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("script_user: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// notifier runs an instance's notify scripts one after the other, in the
// order of the transitions.
type notifier struct {
	run  scriptRunner
	jobs chan func()
	wg   sync.WaitGroup
	once sync.Once
}

func newNotifier(run scriptRunner) *notifier {
	n := &notifier{run: run, jobs: make(chan func(), 32)}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for job := range n.jobs {
			job()
		}
	}()
	return n
}

// queue runs the notify scripts of a transition; log is the instance's
// logger of the moment (a reload may rename the instance).
func (n *notifier) queue(log *zap.Logger, cfg Config, to State, prio uint8) {
	var scripts [][2]string // cmdline, state
	state := to.String()
	switch to {
	case StateMaster:
		scripts = append(scripts, [2]string{cfg.NotifyMaster})
	case StateBackup:
		scripts = append(scripts, [2]string{cfg.NotifyBackup})
	case StateFault:
		scripts = append(scripts, [2]string{cfg.NotifyFault})
	case StateInit:
		state = "STOP"
	}
	scripts = append(scripts, [2]string{cfg.Notify, state})
	for _, s := range scripts {
		if s[0] == "" {
			continue
		}
		var args []string
		if s[1] != "" {
			args = []string{"INSTANCE", cfg.Name, s[1], strconv.Itoa(int(prio))}
		}
		cmdline, user := s[0], cfg.ScriptUser
		job := func() {
			ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
			defer cancel()
			if err := n.run(ctx, cmdline, args, user); err != nil {
				log.Warn("notify script failed", zap.String("script", cmdline), zap.String("state", to.String()), zap.Error(err))
			}
		}
		select {
		case n.jobs <- job:
		default:
			log.Warn("notify queue full: script skipped", zap.String("script", cmdline), zap.String("state", to.String()))
		}
	}
}

func (n *notifier) close() {
	n.once.Do(func() { close(n.jobs) })
	n.wg.Wait()
}

// scriptSet runs an instance's vrrp_scripts, each in a goroutine owned by
// the instance, and feeds their results to the state machine.
type scriptSet struct {
	in      *instance
	running map[string]*trackedScript
}

type trackedScript struct {
	cfg    ScriptConfig
	user   string
	cancel context.CancelFunc
	done   chan struct{}
	// healthy is the loop's verdict, carried over to the loop that
	// replaces it when a reload changes the script's settings.
	healthy atomic.Bool
	// log is the instance's logger, which a reload replaces while the
	// loop runs.
	log atomic.Pointer[zap.Logger]
}

func newScriptSet(in *instance) *scriptSet {
	return &scriptSet{in: in, running: map[string]*trackedScript{}}
}

// apply starts new or changed scripts and stops removed ones; called on
// the instance goroutine. A script whose settings (or script_user)
// changed keeps its verdict: one failing before the reload still fails
// after it until rise runs pass (keepalived: "considered unsuccessful on
// reload"); starting it healthy would take the VIP to a node whose check
// fails.
func (s *scriptSet) apply(cfgs []ScriptConfig) {
	user := s.in.cfg.ScriptUser
	want := map[string]ScriptConfig{}
	for _, c := range cfgs {
		want[c.Name] = c
	}
	carried := map[string]bool{}
	for name, ts := range s.running {
		c, ok := want[name]
		if ok && c == ts.cfg && user == ts.user {
			ts.log.Store(s.in.log)
			continue
		}
		ts.cancel()
		<-ts.done
		delete(s.running, name)
		if ok {
			carried[name] = ts.healthy.Load()
			continue
		}
		s.in.exec(s.in.fsm.setTrack(s.in.m.now(), "script:"+name, false, 0))
	}
	for name, c := range want {
		if _, ok := s.running[name]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		ts := &trackedScript{cfg: c, user: user, cancel: cancel, done: make(chan struct{})}
		healthy, ok := carried[name]
		ts.healthy.Store(healthy || !ok)
		ts.log.Store(s.in.log)
		s.running[name] = ts
		s.in.wg.Add(1)
		go func() {
			defer s.in.wg.Done()
			defer close(ts.done)
			s.loop(ctx, ts)
		}()
	}
}

func (s *scriptSet) stop() {
	for name, ts := range s.running {
		ts.cancel()
		<-ts.done
		delete(s.running, name)
	}
}

// loop runs one script every interval: fall failures in a row make it
// failing, rise successes in a row healthy again. It starts with the
// verdict in ts.healthy.
func (s *scriptSet) loop(ctx context.Context, ts *trackedScript) {
	in := s.in
	c, user := ts.cfg, ts.user
	fall, rise := max(c.Fall, 1), max(c.Rise, 1)
	healthy := ts.healthy.Load()
	report := func() {
		ts.healthy.Store(healthy)
		fault, weight := false, 0
		switch {
		case healthy && c.Weight > 0:
			weight = c.Weight
		case !healthy && c.Weight < 0:
			weight = c.Weight
		case !healthy && c.Weight == 0:
			fault = true
		}
		// The instance runs it later: by then a reload may have stopped
		// this loop (and cleared or handed on its track).
		track := func() {
			if s.running[c.Name] == ts {
				in.exec(in.fsm.setTrack(in.m.now(), "script:"+c.Name, fault, weight))
			}
		}
		select {
		case in.cmds <- track:
		case <-in.done:
		case <-ctx.Done(): // apply or stop is waiting for us on the loop goroutine
		}
	}
	report()
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = c.Interval
	}
	fails, oks := 0, 0
	refused := "" // logged once per new refusal, not at every run
	ticker := time.NewTicker(c.Interval)
	defer ticker.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		err := in.m.runScript(rctx, c.Path, nil, user)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errScriptRefused) {
			if err.Error() != refused {
				refused = err.Error()
				ts.log.Load().Error("vrrp_script not run: counted as failing until its file is fixed", zap.String("script", c.Name), zap.Error(err))
			}
		} else {
			refused = ""
		}
		if err != nil {
			fails, oks = fails+1, 0
			ts.log.Load().Debug("vrrp_script failed", zap.String("script", c.Name), zap.Error(err))
			if healthy && fails >= fall {
				healthy = false
				ts.log.Load().Warn("vrrp_script now failing", zap.String("script", c.Name), zap.Int("fall", fall), zap.Error(err))
				report()
			}
		} else {
			oks, fails = oks+1, 0
			if !healthy && oks >= rise {
				healthy = true
				ts.log.Load().Info("vrrp_script healthy again", zap.String("script", c.Name), zap.Int("rise", rise))
				report()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
