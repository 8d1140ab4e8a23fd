package config

import (
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
)

// CheckHost checks a valid configuration against this machine, as
// `vipgate -t` does unless --no-host is given: named interfaces exist, TLS
// certificate and key files are readable and form a pair, track and notify
// scripts exist and are executable, root directories and error pages are
// there, script_user exists, mcast_src_ip is one of this host's addresses,
// and the directories of the pid and log files exist. It only reads: it
// opens no socket and changes nothing. The error, when not nil, is a
// *Problems listing every finding.
func CheckHost(cfg *Config) error {
	h := &hostChecker{cfg: cfg, addrs: map[netip.Addr]bool{}}
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
	for i, s := range h.cfg.HTTP {
		if s != nil {
			h.httpServer(fmt.Sprintf("http[%d]", i), s)
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
	for _, n := range []struct{ key, script string }{
		{"notify_master", r.NotifyMaster}, {"notify_backup", r.NotifyBackup},
		{"notify_fault", r.NotifyFault}, {"notify", r.Notify},
	} {
		if n.script != "" {
			h.script(path+"."+n.key, n.script)
		}
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
