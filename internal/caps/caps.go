// Package caps checks at start that the process holds the Linux
// capabilities its configuration needs, so a unit file missing one fails
// with a message naming it instead of a raw EPERM deep in VRRP.
package caps

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"

	"github.com/vipgate/vipgate/config"
)

// Capability numbers from linux/capability.h.
const (
	SetGID         = 6
	SetUID         = 7
	NetBindService = 10
	NetAdmin       = 12
	NetRaw         = 13
)

var names = map[int]string{SetGID: "CAP_SETGID", SetUID: "CAP_SETUID", NetBindService: "CAP_NET_BIND_SERVICE", NetAdmin: "CAP_NET_ADMIN", NetRaw: "CAP_NET_RAW"}

// Need is one capability the configuration needs and why.
type Need struct {
	Cap int
	Why string
}

// Name is the capability's name (CAP_NET_RAW).
func (n Need) Name() string { return names[n.Cap] }

// Needs lists what cfg requires of a process running as uid.
func Needs(cfg *config.Config, uid int, unprivilegedPortStart int) []Need {
	var out []Need
	if len(cfg.VRRP) > 0 {
		out = append(out,
			Need{NetRaw, fmt.Sprintf("[[vrrp]] %s sends and receives VRRP on a raw socket", cfg.VRRP[0].Name)},
			Need{NetAdmin, fmt.Sprintf("[[vrrp]] %s adds and removes VIPs", cfg.VRRP[0].Name)})
	}
	low := func(addr string) bool {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return false
		}
		p, _ := strconv.Atoi(port)
		return p < unprivilegedPortStart
	}
	var lowAddrs []string
	for _, h := range cfg.HTTP {
		for _, a := range h.Listen {
			if low(a) {
				lowAddrs = append(lowAddrs, a)
			}
		}
	}
	for _, s := range cfg.Stream {
		for _, a := range s.Listen {
			if low(a) {
				lowAddrs = append(lowAddrs, a)
			}
		}
	}
	if len(lowAddrs) > 0 {
		out = append(out, Need{NetBindService, "listen on privileged port(s) " + strings.Join(lowAddrs, ", ")})
	}
	if hasScripts(cfg) {
		if u, err := user.Lookup(cfg.Global.ScriptUser); err == nil && u.Uid != strconv.Itoa(uid) {
			out = append(out,
				Need{SetUID, fmt.Sprintf("scripts run as global.script_user %q", cfg.Global.ScriptUser)},
				Need{SetGID, fmt.Sprintf("scripts run as global.script_user %q", cfg.Global.ScriptUser)})
		}
	}
	return out
}

func hasScripts(cfg *config.Config) bool {
	if len(cfg.VRRPScript) > 0 {
		return true
	}
	for _, v := range cfg.VRRP {
		if v.Notify != "" || v.NotifyMaster != "" || v.NotifyBackup != "" || v.NotifyFault != "" {
			return true
		}
	}
	return false
}

// Effective reads the process's effective capability set.
func Effective() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseCapEff(f)
}

func parseCapEff(f *os.File) (uint64, error) {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapEff line in /proc/self/status")
}

// Missing returns what of needs the effective set eff lacks.
func Missing(needs []Need, eff uint64) []Need {
	var out []Need
	for _, n := range needs {
		if eff&(1<<uint(n.Cap)) == 0 {
			out = append(out, n)
		}
	}
	return out
}

// UnprivilegedPortStart is net.ipv4.ip_unprivileged_port_start (1024 when unreadable).
func UnprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 1024
	}
	return n
}

// Check returns an error naming every missing capability and why it is needed.
func Check(cfg *config.Config) error {
	if os.Geteuid() != 0 && hasScripts(cfg) {
		// Not root: scripts run through setpriv, which drops vipgate's
		// capabilities for them (see vrrp's runScript).
		if _, err := exec.LookPath("setpriv"); err != nil {
			return fmt.Errorf("track and notify scripts of a non-root vipgate run through setpriv (util-linux), which drops its capabilities for them: %w", err)
		}
	}
	eff, err := Effective()
	if err != nil {
		return nil // not Linux /proc: nothing to check
	}
	missing := Missing(Needs(cfg, os.Getuid(), UnprivilegedPortStart()), eff)
	if len(missing) == 0 {
		return nil
	}
	var parts []string
	for _, m := range missing {
		parts = append(parts, fmt.Sprintf("%s (%s)", m.Name(), m.Why))
	}
	return fmt.Errorf("missing capabilities: %s; grant them with AmbientCapabilities= in the systemd unit or run as root", strings.Join(parts, "; "))
}
