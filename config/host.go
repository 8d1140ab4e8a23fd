package config

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"time"
)

// CheckHost checks a valid configuration against this machine, as
// `vipgate -t` does unless --no-host is given: named interfaces exist, TLS
// certificate and key files are readable and form a pair, track and notify
// scripts exist and are executable, root directories and error pages are
// there, script_user exists, mcast_src_ip is one of this host's addresses
// (or, without it, the VRRP interface has an address to send adverts
// from), the directories of the pid and log files exist, and host names in
// upstream servers and proxy_pass resolve. It reads files and asks the
// resolver; it opens no listening socket and changes nothing. The error,
// when not nil, is a *Problems listing every finding.
func CheckHost(cfg *Config) error {
	return checkHost(cfg, func(ctx context.Context, host string) error {
		_, err := net.DefaultResolver.LookupHost(ctx, host)
		return err
	})
}

// resolveTimeout bounds each host name lookup of CheckHost.
const resolveTimeout = 3 * time.Second

func checkHost(cfg *Config, resolve func(ctx context.Context, host string) error) error {
	h := &hostChecker{cfg: cfg, addrs: map[netip.Addr]bool{}, resolve: resolve, resolved: map[string]error{}}
	h.run()
	if len(h.problems) == 0 {
		return nil
	}
	return &Problems{List: h.problems}
}

type hostChecker struct {
	cfg      *Config
	problems []error
	addrs    map[netip.Addr]bool // every address of every local interface
	resolve  func(ctx context.Context, host string) error
	resolved map[string]error // each name is looked up once
}

func (h *hostChecker) fail(key, format string, args ...any) {
	h.problems = append(h.problems, &Problem{
		File: h.cfg.Path, Line: h.cfg.pos.line(key), Key: key, Message: fmt.Sprintf(format, args...),
	})
}

func (h *hostChecker) run() {
	if ifaddrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifaddrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				h.addrs[p.Addr().Unmap()] = true
			}
		}
	}
	g := h.cfg.Global
	if _, err := user.Lookup(g.ScriptUser); err != nil {
		h.fail("global.script_user", "user %q does not exist on this host", g.ScriptUser)
	}
	h.parentDir("global.pid_file", g.PidFile)
	if g.ErrorLog != "stderr" {
		h.parentDir("global.error_log", g.ErrorLog)
	}
	if g.AccessLog != "stdout" && g.AccessLog != "off" {
		h.parentDir("global.access_log", g.AccessLog)
	}
	for _, name := range sortedKeys(h.cfg.Upstream) {
		if u := h.cfg.Upstream[name]; u != nil {
			for i, s := range u.Server {
				if s != nil {
					h.hostName(fmt.Sprintf("upstream.%s.server[%d].address", name, i), s.Address)
				}
			}
		}
	}
	for i, s := range h.cfg.HTTP {
		if s != nil {
			h.httpServer(fmt.Sprintf("http[%d]", i), s)
		}
	}
	for i, s := range h.cfg.Stream {
		if s != nil && s.Address != "" {
			h.hostName(fmt.Sprintf("stream[%d].proxy_pass", i), s.Address)
		}
	}
	for _, name := range sortedKeys(h.cfg.VRRPScript) {
		if s := h.cfg.VRRPScript[name]; s != nil {
			h.script("vrrp_script."+name+".script", s.Script)
		}
	}
	for i, r := range h.cfg.VRRP {
		if r != nil {
			h.vrrp(fmt.Sprintf("vrrp[%d]", i), r)
		}
	}
}

func (h *hostChecker) httpServer(path string, s *HTTPServer) {
	if s.TLSCertificate != "" && s.TLSCertificateKey != "" {
		certOK := h.readable(path+".tls_certificate", s.TLSCertificate)
		keyOK := h.readable(path+".tls_certificate_key", s.TLSCertificateKey)
		if certOK && keyOK {
			if _, err := tls.LoadX509KeyPair(s.TLSCertificate, s.TLSCertificateKey); err != nil {
				h.fail(path+".tls_certificate", "%s and %s are not a usable certificate and key pair: %v", s.TLSCertificate, s.TLSCertificateKey, err)
			}
		}
	}
	for _, codes := range sortedKeys(s.ErrorPage) {
		h.readable(fmt.Sprintf("%s.error_page.%q", path, codes), s.ErrorPage[codes])
	}
	for i, l := range s.Location {
		if l != nil && l.Target != nil && l.Target.Address != "" {
			h.hostName(fmt.Sprintf("%s.location[%d].proxy_pass", path, i), l.Target.Address)
		}
		if l == nil || l.Root == "" {
			continue
		}
		key := fmt.Sprintf("%s.location[%d].root", path, i)
		switch st, err := os.Stat(l.Root); {
		case err != nil:
			h.fail(key, "%v", describe(err, l.Root))
		case !st.IsDir():
			h.fail(key, "%s is not a directory", l.Root)
		}
	}
}

func (h *hostChecker) vrrp(path string, r *VRRP) {
	h.iface(path+".interface", r.Interface)
	for j, vip := range r.VIPs {
		if vip.Device != "" {
			h.iface(fmt.Sprintf("%s.virtual_ipaddress[%d]", path, j), vip.Device)
		}
	}
	for j, name := range r.TrackInterface {
		h.iface(fmt.Sprintf("%s.track_interface[%d]", path, j), name)
	}
	if r.SourceIP.IsValid() && len(h.addrs) > 0 && !h.addrs[r.SourceIP] {
		h.fail(path+".mcast_src_ip", "%s is not an address of this host", r.SourceIP)
	}
	if !r.SourceIP.IsValid() && r.Family != 0 {
		h.sourceAddress(path, r)
	}
	for _, n := range []struct{ key, script string }{
		{"notify_master", r.NotifyMaster}, {"notify_backup", r.NotifyBackup},
		{"notify_fault", r.NotifyFault}, {"notify", r.Notify},
	} {
		if n.script != "" {
			h.script(path+"."+n.key, n.script)
		}
	}
}

// sourceAddress checks that, without mcast_src_ip, the interface has an
// address adverts can come from: IPv4 for VRRP over IPv4, link-local for
// IPv6 (RFC 5798 section 5.1.2.1).
func (h *hostChecker) sourceAddress(path string, r *VRRP) {
	ifi, err := net.InterfaceByName(r.Interface)
	if err != nil {
		return // reported by iface
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		h.fail(path+".interface", "addresses of %s: %v", r.Interface, err)
		return
	}
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := p.Addr().Unmap()
		if r.Family == 4 && ip.Is4() || r.Family == 6 && ip.Is6() && ip.IsLinkLocalUnicast() {
			return
		}
	}
	want := "IPv4 address"
	if r.Family == 6 {
		want = "IPv6 link-local address"
	}
	h.fail(path+".interface", "%s has no %s to send adverts from; add one or set mcast_src_ip", r.Interface, want)
}

// hostName resolves the host of a host:port that is not an IP address.
func (h *hostChecker) hostName(key, hostPort string) {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		return // validation reported it
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return
	}
	err, done := h.resolved[host]
	if !done {
		ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
		err = h.resolve(ctx, host)
		cancel()
		h.resolved[host] = err
	}
	if err != nil {
		h.fail(key, "host name %q does not resolve: %v", host, err)
	}
}

func (h *hostChecker) iface(key, name string) {
	if _, err := net.InterfaceByName(name); err != nil {
		h.fail(key, "interface %q does not exist on this host", name)
	}
}

// readable reports whether path can be opened for reading.
func (h *hostChecker) readable(key, path string) bool {
	f, err := os.Open(path)
	if err != nil {
		h.fail(key, "%v", describe(err, path))
		return false
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		h.fail(key, "%s is a directory, not a file", path)
		return false
	}
	return true
}

// script checks the program of a script command line (its first word, as
// keepalived splits it): it exists, is a regular executable file, and is not
// writable by every user (it runs with script_user's rights, or root's when
// script_user is root).
func (h *hostChecker) script(key, command string) {
	fields := strings.Fields(command)
	if len(fields) == 0 {
		return
	}
	prog := fields[0]
	if !strings.Contains(prog, "/") {
		found, err := exec.LookPath(prog)
		if err != nil {
			h.fail(key, "%q is not found in PATH; give an absolute path", prog)
			return
		}
		prog = found
	}
	st, err := os.Stat(prog)
	switch {
	case err != nil:
		h.fail(key, "%v", describe(err, prog))
	case !st.Mode().IsRegular():
		h.fail(key, "%s is not a regular file", prog)
	case st.Mode().Perm()&0o111 == 0:
		h.fail(key, "%s is not executable (chmod 755 %s)", prog, prog)
	case st.Mode().Perm()&0o002 != 0:
		h.fail(key, "%s is writable by every user, who could then run commands through it; chmod o-w %s", prog, prog)
	}
}

// parentDir checks that the directory a file will be created in exists.
func (h *hostChecker) parentDir(key, path string) {
	if path == "" {
		return
	}
	dir := filepath.Dir(path)
	switch st, err := os.Stat(dir); {
	case err != nil:
		h.fail(key, "directory of %s: %v", path, describe(err, dir))
	case !st.IsDir():
		h.fail(key, "%s is not a directory", dir)
	}
}

// describe words a file error for an operator, without Go's "open" prefix.
func describe(err error, path string) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s does not exist", path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s is not readable by this user", path)
	}
	return err
}
