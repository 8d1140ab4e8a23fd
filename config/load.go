package config

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/hashicorp/go-multierror"
)

// DefaultPath is where vipgate looks for its file when -c is not given.
const DefaultPath = "/etc/vipgate/vipgate.toml"

// Load reads, defaults and validates the file at path. The error, when not
// nil, lists every problem found (see Problems).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// Parse is Load on bytes already read; path is used in messages only.
func Parse(data []byte, path string) (*Config, error) {
	cfg := &Config{Path: path}
	md, err := toml.Decode(string(data), cfg)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, problems(fmt.Errorf("%s:%d: %s", path, perr.Position.Line, perr.Message))
		}
		return nil, problems(fmt.Errorf("%s: %w", path, err))
	}
	var errs *multierror.Error
	for _, key := range md.Undecoded() {
		errs = multierror.Append(errs, fmt.Errorf("%s: unknown key", key.String()))
	}
	cfg.applyDefaults()
	v := &validator{cfg: cfg, errs: errs}
	v.validate()
	if err := v.errs.ErrorOrNil(); err != nil {
		return nil, problems(err)
	}
	return cfg, nil
}

// Problems is every problem found in one file; Error prints one per line.
type Problems struct{ List []error }

func (p *Problems) Error() string {
	lines := make([]string, len(p.List))
	for i, e := range p.List {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is/As look at each problem.
func (p *Problems) Unwrap() []error { return p.List }

func problems(err error) error {
	var merr *multierror.Error
	if errors.As(err, &merr) {
		return &Problems{List: merr.Errors}
	}
	return &Problems{List: []error{err}}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func intOr(p **int, def int) {
	if *p == nil {
		v := def
		*p = &v
	}
}

func boolOr(p **bool, def bool) {
	if *p == nil {
		v := def
		*p = &v
	}
}

func strOr(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

func (c *Config) applyDefaults() {
	g := &c.Global
	if g.NodeName == "" {
		g.NodeName, _ = os.Hostname()
	}
	strOr(&g.LogLevel, "info")
	strOr(&g.LogFormat, "console")
	strOr(&g.ErrorLog, "stderr")
	strOr(&g.AccessLog, "stdout")
	strOr(&g.PidFile, "/run/vipgate.pid")
	if g.AdminListen == nil {
		v := "127.0.0.1:9900"
		g.AdminListen = &v
	}
	g.ShutdownTimeout.orDefault(30 * time.Second)
	strOr(&g.ScriptUser, "nobody")

	for name, u := range c.Upstream {
		if u == nil {
			continue
		}
		u.Name = name
		strOr(&u.Balance, "round_robin")
		intOr(&u.Keepalive, 32)
		intOr(&u.MaxFails, 1)
		u.FailTimeout.orDefault(10 * time.Second)
		for _, s := range u.Server {
			if s == nil {
				continue
			}
			intOr(&s.Weight, 1)
			intOr(&s.MaxFails, *u.MaxFails)
			s.FailTimeout.orDefault(u.FailTimeout.Duration)
		}
		if hc := u.HealthCheck; hc != nil {
			strOr(&hc.Type, "http")
			if hc.Type == "http" {
				strOr(&hc.Path, "/")
				strOr(&hc.ExpectStatus, "200-399")
			}
			hc.Interval.orDefault(2 * time.Second)
			hc.Timeout.orDefault(time.Second)
			if hc.Rise == 0 {
				hc.Rise = 2
			}
			if hc.Fall == 0 {
				hc.Fall = 3
			}
		}
	}
	for _, h := range c.HTTP {
		if h == nil {
			continue
		}
		h.ClientMaxBodySize.orDefault(1 << 20)
		h.ClientHeaderTimeout.orDefault(60 * time.Second)
		h.ClientBodyTimeout.orDefault(60 * time.Second)
		h.KeepaliveTimeout.orDefault(75 * time.Second)
		h.ClientHeaderMaxSize.orDefault(32 << 10)
		for _, l := range h.Location {
			if l == nil {
				continue
			}
			if l.ProxyNextUpstream == nil {
				l.ProxyNextUpstream = []string{"error", "timeout"}
			}
			l.ProxyConnectTimeout.orDefault(5 * time.Second)
			l.ProxyReadTimeout.orDefault(60 * time.Second)
			l.ProxySendTimeout.orDefault(60 * time.Second)
			boolOr(&l.ProxyBuffering, true)
			if l.ProxyRedirect == nil {
				v := "default"
				l.ProxyRedirect = &v
			}
		}
	}
	for _, s := range c.Stream {
		if s == nil {
			continue
		}
		s.ProxyProtocolTimeout.orDefault(5 * time.Second)
		s.ProxyConnectTimeout.orDefault(10 * time.Second)
		s.ProxyTimeout.orDefault(10 * time.Minute)
		boolOr(&s.TCPNoDelay, true)
		boolOr(&s.SOKeepalive, true)
	}
	for _, v := range c.VRRP {
		if v == nil {
			continue
		}
		intOr(&v.Priority, 100)
		strOr(&v.State, "BACKUP")
		if v.Version == 0 {
			v.Version = 2
		}
		v.AdvertInt.orDefault(time.Second)
		boolOr(&v.Preempt, true)
		v.GARPMasterDelay.orDefault(5 * time.Second)
		intOr(&v.GARPMasterRepeat, 5)
		strOr(&v.VIPLifetime, "auto")
	}
	for name, s := range c.VRRPScript {
		if s == nil {
			continue
		}
		s.Name = name
		s.Interval.orDefault(time.Second)
		s.Timeout.orDefault(s.Interval.Duration)
		if s.Fall == 0 {
			s.Fall = 1
		}
		if s.Rise == 0 {
			s.Rise = 1
		}
	}
}
