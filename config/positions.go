package config

import (
	"strconv"
	"strings"
)

// positions maps key paths as the validator writes them
// ("upstream.myapp.server[2].weight", "http[0].location[1]") to the line
// that defines them, so every problem can say where it is. The TOML decoder
// keeps positions private and forgets array indices, so this is a small
// line scanner of its own: it only needs to find table headers and the start
// of each "key = value", skipping values that span lines.
type positions struct {
	lines map[string]int
	// occurrences lists, per key path without indices, where each
	// occurrence sits (indexed path and line), in file order: the decoder's
	// undecoded keys carry no index, so the k-th unknown "a.b.c" is the k-th
	// occurrence here.
	occurrences map[string][]occurrence
}

type occurrence struct {
	path string
	line int
}

func scanPositions(data []byte) *positions {
	p := &positions{lines: map[string]int{}, occurrences: map[string][]occurrence{}}
	arrays := map[string]int{} // indexed path of an array of tables -> elements so far
	current := ""
	var cont valueScanner // state of a value that continues on later lines
	for i, line := range strings.Split(string(data), "\n") {
		lineNo := i + 1
		if cont.open() {
			cont.scan(line)
			continue
		}
		t := strings.TrimSpace(line)
		switch {
		case t == "" || t[0] == '#':
			continue
		case strings.HasPrefix(t, "[["):
			segs, _, ok := parseKey(t[2:], "]]")
			if !ok {
				continue
			}
			path := resolveTable(segs[:len(segs)-1], arrays)
			path = joinPath(path, segs[len(segs)-1])
			n := arrays[path]
			arrays[path] = n + 1
			current = path + "[" + strconv.Itoa(n) + "]"
			p.add(current, lineNo)
		case t[0] == '[':
			segs, _, ok := parseKey(t[1:], "]")
			if !ok {
				continue
			}
			current = resolveTable(segs, arrays)
			p.add(current, lineNo)
		default:
			segs, rest, ok := parseKey(t, "=")
			if !ok {
				continue
			}
			path := current
			for _, s := range segs {
				path = joinPath(path, s)
			}
			p.add(path, lineNo)
			cont = valueScanner{}
			cont.scan(rest)
		}
	}
	return p
}

func joinPath(parent, seg string) string {
	if parent == "" {
		return seg
	}
	return parent + "." + seg
}

// resolveTable turns header segments into an indexed path: a segment that
// names an array of tables means its last element, as TOML says.
func resolveTable(segs []string, arrays map[string]int) string {
	path := ""
	for _, s := range segs {
		path = joinPath(path, s)
		if n := arrays[path]; n > 0 {
			path += "[" + strconv.Itoa(n-1) + "]"
		}
	}
	return path
}

func (p *positions) add(path string, line int) {
	if _, ok := p.lines[path]; !ok {
		p.lines[path] = line
	}
	bare := stripIndices(path)
	p.occurrences[bare] = append(p.occurrences[bare], occurrence{path: path, line: line})
}

// line returns the line of path or of its closest enclosing key; 0 if unknown.
func (p *positions) line(path string) int {
	if p == nil {
		return 0
	}
	for path != "" {
		if l, ok := p.lines[path]; ok {
			return l
		}
		if occ := p.occurrences[path]; len(occ) > 0 {
			return occ[0].line // "a.b" written as [[a.b]]: its first element
		}
		switch {
		case strings.HasSuffix(path, "]") && strings.Contains(path, "["):
			path = path[:strings.LastIndex(path, "[")]
		case strings.HasSuffix(path, `"`):
			// A quoted last segment (error_page."502 503"): drop it whole.
			open := strings.LastIndex(path[:len(path)-1], `"`)
			if open <= 0 {
				return 0
			}
			path = strings.TrimSuffix(path[:open], ".")
		case strings.Contains(path, "."):
			path = path[:strings.LastIndex(path, ".")]
		default:
			return 0
		}
	}
	return 0
}

func stripIndices(path string) string {
	if !strings.Contains(path, "[") {
		return path
	}
	var b strings.Builder
	depth := 0
	for _, r := range path {
		switch {
		case r == '[':
			depth++
		case r == ']' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// parseKey reads a dotted key (bare or quoted segments) up to end and
// returns its segments and the text after end.
func parseKey(s, end string) (segs []string, rest string, ok bool) {
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i >= len(s) {
			return nil, "", false
		}
		var seg string
		switch s[i] {
		case '"', '\'':
			q := s[i]
			j := i + 1
			var b strings.Builder
			for j < len(s) && s[j] != q {
				if q == '"' && s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
				j++
			}
			if j >= len(s) {
				return nil, "", false
			}
			seg, i = b.String(), j+1
		default:
			j := i
			for j < len(s) && isBareKeyChar(s[j]) {
				j++
			}
			if j == i {
				return nil, "", false
			}
			seg, i = s[i:j], j
		}
		segs = append(segs, seg)
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		switch {
		case i < len(s) && s[i] == '.':
			i++
		case strings.HasPrefix(s[i:], end):
			return segs, s[i+len(end):], true
		default:
			return nil, "", false
		}
	}
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// valueScanner follows a value across lines: open multi-line strings and
// unclosed arrays or inline tables.
type valueScanner struct {
	multi string // `"""` or `'''` while inside a multi-line string
	depth int    // open [ and {
}

func (v *valueScanner) open() bool { return v.multi != "" || v.depth > 0 }

func (v *valueScanner) scan(s string) {
	for i := 0; i < len(s); i++ {
		if v.multi != "" {
			if v.multi == `"""` && s[i] == '\\' {
				i++
				continue
			}
			if strings.HasPrefix(s[i:], v.multi) {
				i += len(v.multi) - 1
				v.multi = ""
			}
			continue
		}
		switch c := s[i]; c {
		case '#':
			return
		case '[', '{':
			v.depth++
		case ']', '}':
			if v.depth > 0 {
				v.depth--
			}
		case '"', '\'':
			delim := strings.Repeat(string(c), 3)
			if strings.HasPrefix(s[i:], delim) {
				v.multi = delim
				i += 2
				continue
			}
			// A one-line string: skip to its closing quote.
			for i++; i < len(s) && s[i] != c; i++ {
				if c == '"' && s[i] == '\\' {
					i++
				}
			}
		}
	}
}
