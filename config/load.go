package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
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
	pos := scanPositions(data)
	// The decoder stops at the first value of a wrong type. A first pass
	// over the generic document finds all of them; the values in question
	// are dropped so the rest decodes and is validated too.
	var typeProblems []*Problem
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		p := decodeProblem(err, path)
		p.Message += quoteHint(data, p.Line, p.Key)
		return nil, &Problems{List: []error{p}}
	}
	checkTypes(raw, reflect.TypeOf(cfg).Elem(), "", func(key, msg string) {
		typeProblems = append(typeProblems, &Problem{File: path, Line: pos.line(key), Key: key, Message: msg})
	})
	source := string(data)
	if len(typeProblems) > 0 {
		var buf strings.Builder
		if err := toml.NewEncoder(&buf).Encode(raw); err == nil {
			source = buf.String()
		}
	}
	md, err := toml.Decode(source, cfg)
	if err != nil {
		p := decodeProblem(err, path)
		// The decoder names keys without array indices; the scanner knows
		// which element sits on that line.
		for _, o := range pos.occurrences[p.Key] {
			if o.line == p.Line {
				p.Key = o.path
			}
		}
		return nil, &Problems{List: []error{p}}
	}
	var errs *multierror.Error
	for _, p := range typeProblems {
		errs = multierror.Append(errs, p)
	}
	seen := map[string]int{}
	undecoded := md.Undecoded()
	unknownTables := map[string]bool{}
	for _, key := range undecoded {
		unknownTables[strings.Join(key, ".")] = true
	}
	for _, key := range undecoded {
		bare := strings.Join(key, ".")
		if underUnknown(key, unknownTables) {
			continue // the unknown table itself is reported, not each of its keys
		}
		k := seen[bare]
		seen[bare]++
		p := &Problem{File: path, Key: key.String(), Message: unknownKeyMessage(key, hasUnder(bare, unknownTables))}
		if occ := pos.occurrences[bare]; k < len(occ) {
			p.Key, p.Line = occ[k].path, occ[k].line
		}
		errs = multierror.Append(errs, p)
	}
	walkUnits(reflect.ValueOf(cfg).Elem(), "", func(key string, err error) {
		errs = multierror.Append(errs, &Problem{File: path, Line: pos.line(key), Key: key, Message: err.Error()})
	})
	cfg.applyDefaults()
	cfg.pos = pos
	v := &validator{cfg: cfg, errs: errs, pos: pos, typeProblems: typeProblems}
	v.validate()
	if err := v.errs.ErrorOrNil(); err != nil {
		return nil, problems(err)
	}
	return cfg, nil
}

// hasUnder reports whether an unknown key lies under the key bare: bare
// is then a table.
func hasUnder(bare string, unknown map[string]bool) bool {
	for k := range unknown {
		if strings.HasPrefix(k, bare+".") {
			return true
		}
	}
	return false
}

func underUnknown(key toml.Key, unknown map[string]bool) bool {
	for i := 1; i < len(key); i++ {
		if unknown[strings.Join(key[:i], ".")] {
			return true
		}
	}
	return false
}

// Problem is one mistake in a file: where it is and what is wrong.
type Problem struct {
	File    string // the file's path as given to Load or Parse; may be ""
	Line    int    // 1-based; 0 when unknown
	Key     string // key path such as "upstream.myapp.server[2].weight"; "" for syntax errors
	Message string

	// decoder is set on the one problem the TOML decoder stops at (syntax
	// or type); with several such mistakes, which one comes first can vary
	// between runs because the decoder walks maps in random order.
	decoder bool
}

// Error reads "FILE:LINE: KEY: MESSAGE", leaving out what is unknown.
func (p *Problem) Error() string {
	var b strings.Builder
	switch {
	case p.File != "" && p.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", p.File, p.Line)
	case p.File != "":
		b.WriteString(p.File + ": ")
	case p.Line > 0:
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// decodeTypeError matches the decoder's type mismatch message, which has
// the line and the key but is not a toml.ParseError.
var decodeTypeError = regexp.MustCompile(`^toml: line (\d+) \(last key "(.*?)"\): (.*)$`)

// decodeProblem turns a decoder error (syntax or type mismatch; decoding
// stops at the first) into a Problem with its line.
func decodeProblem(err error, path string) *Problem {
	var perr toml.ParseError
	if errors.As(err, &perr) {
		return &Problem{File: path, Line: perr.Position.Line, Key: perr.LastKey, Message: perr.Message, decoder: true}
	}
	if m := decodeTypeError.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Problem{File: path, Line: line, Key: m[2], Message: humanTypeError(m[3]), decoder: true}
	}
	return &Problem{File: path, Message: err.Error(), decoder: true}
}

var (
	badTypeMessage  = regexp.MustCompile(`^incompatible types: TOML value has type (.+); destination has type (.+)$`)
	notTableMessage = regexp.MustCompile(`^type mismatch for .+: expected table but found (.+)$`)
)

// humanTypeError rewords the decoder's type mismatch, which names Go types,
// in the file's terms.
func humanTypeError(msg string) string {
	if m := badTypeMessage.FindStringSubmatch(msg); m != nil {
		want := m[2]
		switch want {
		case "slice":
			want = "array"
		case "map":
			want = "table"
		}
		return fmt.Sprintf("must be %s, not %s", article(want), tomlTypeWord(m[1]))
	}
	if m := notTableMessage.FindStringSubmatch(msg); m != nil {
		return "must be a table, not " + tomlTypeWord(m[1])
	}
	return msg
}

func article(word string) string {
	if strings.ContainsAny(word[:1], "aeiou") {
		return "an " + word
	}
	return "a " + word
}

func tomlTypeWord(goType string) string {
	switch goType {
	case "string":
		return "a string"
	case "int64":
		return "an integer"
	case "float64":
		return "a float"
	case "bool":
		return "a boolean"
	case "map[string]any":
		return "a table"
	case "[]map[string]any":
		return "an array of tables ([[...]])"
	case "[]any":
		return "an array"
	case "time.Time", "toml.LocalDate", "toml.LocalTime", "toml.LocalDatetime":
		return "a date or time"
	}
	return goType
}

var (
	durationType = reflect.TypeOf(Duration{})
	sizeType     = reflect.TypeOf(Size{})
)

// walkUnits reports every Duration and Size the file gave a bad value, with
// its key path, so a unit mistake does not hide the other problems.
func walkUnits(v reflect.Value, path string, report func(key string, err error)) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			walkUnits(v.Elem(), path, report)
		}
	case reflect.Struct:
		switch v.Type() {
		case durationType:
			if bad := v.Interface().(Duration).bad; bad != nil {
				report(path, bad)
			}
			return
		case sizeType:
			if bad := v.Interface().(Size).bad; bad != nil {
				report(path, bad)
			}
			return
		}
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			name := strings.Split(f.Tag.Get("toml"), ",")[0]
			if !f.IsExported() || name == "-" || name == "" {
				continue
			}
			walkUnits(v.Field(i), joinPath(path, name), report)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			walkUnits(v.Index(i), fmt.Sprintf("%s[%d]", path, i), report)
		}
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return
		}
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			walkUnits(v.MapIndex(k), joinPath(path, k.String()), report)
		}
	}
}

func lineOf(err error) int {
	var p *Problem
	if errors.As(err, &p) && p.Line > 0 {
		return p.Line
	}
	return math.MaxInt
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
		list := merr.Errors
		// File order reads best; problems without a line go last.
		sort.SliceStable(list, func(i, j int) bool {
			return lineOf(list[i]) < lineOf(list[j])
		})
		return &Problems{List: list}
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

// usedByHTTP reports whether an [[http]] location proxies to upstream name,
// or no [[stream]] does either (then it is meant for HTTP).
// DefaultAdminListen and DefaultPidFile are global.admin_listen and
// global.pid_file when the file does not set them.
const (
	DefaultAdminListen = "127.0.0.1:9900"
	DefaultPidFile     = "/run/vipgate.pid"
)

func (c *Config) usedByHTTP(name string) bool {
	for _, h := range c.HTTP {
		if h == nil {
			continue
		}
		for _, l := range h.Location {
			if l == nil {
				continue
			}
			rest := strings.TrimPrefix(strings.TrimPrefix(l.ProxyPass, "http://"), "https://")
			if host, _, _ := strings.Cut(rest, "/"); host == name {
				return true
			}
		}
	}
	for _, s := range c.Stream {
		if s != nil && s.ProxyPass == name {
			return false
		}
	}
	return true
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
	g.AccessLogFlush.orDefault(time.Second)
	strOr(&g.PidFile, DefaultPidFile)
	if g.AdminListen == nil {
		v := DefaultAdminListen
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
			// An upstream only [[stream]] uses (MQTT brokers) speaks no
			// HTTP: a GET would fail on every broker and fault the node.
			if hc.Type == "" && !c.usedByHTTP(name) {
				hc.Type = "tcp"
			}
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
		h.SendTimeout.orDefault(60 * time.Second)
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
		if s.Interval.Duration > 0 {
			s.Timeout.orDefault(s.Interval.Duration)
		} else {
			s.Timeout.orDefault(time.Second) // interval itself is reported
		}
		if s.Fall == 0 {
			s.Fall = 1
		}
		if s.Rise == 0 {
			s.Rise = 1
		}
	}
}
