package httpproxy

import (
	"fmt"
	"net/textproto"
	"strings"
)

// reqVars is what variables are evaluated from: one client request.
type reqVars struct {
	req    *clientRequest
	conn   *clientConn
	remote string // client address without port
	port   string // client port
	scheme string
	uri    string // normalised, decoded ($uri)
	host   string // $host
	server *vhost
	local  string // local port of the accepted connection
	lcAddr string // local address
	proxy  string // $proxy_host
}

// varFunc appends a variable's value to b.
type varFunc func(v *reqVars, b []byte) []byte

// template is a compiled value with $variables ("$host:$server_port").
type template struct {
	parts []tmplPart
	// literal is set when the template has no variables.
	literal   string
	isLiteral bool
}

type tmplPart struct {
	lit string
	fn  varFunc
}

// compileTemplate parses "$name" and "${name}" references. An unknown
// variable is an error, as in nginx.
func compileTemplate(s string) (*template, error) {
	t := &template{}
	lit := strings.Builder{}
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			lit.WriteByte(s[i])
			continue
		}
		j := i + 1
		braced := j < len(s) && s[j] == '{'
		if braced {
			j++
		}
		k := j
		for k < len(s) && (s[k] == '_' || '0' <= s[k] && s[k] <= '9' || 'a' <= s[k] && s[k] <= 'z' || 'A' <= s[k] && s[k] <= 'Z') {
			k++
		}
		name := s[j:k]
		if braced {
			if k >= len(s) || s[k] != '}' {
				return nil, fmt.Errorf("unclosed ${ in %q", s)
			}
			k++
		}
		if name == "" {
			return nil, fmt.Errorf("$ without a variable name in %q (nginx has no escape for $)", s)
		}
		fn, err := lookupVar(name)
		if err != nil {
			return nil, err
		}
		if lit.Len() > 0 {
			t.parts = append(t.parts, tmplPart{lit: lit.String()})
			lit.Reset()
		}
		t.parts = append(t.parts, tmplPart{fn: fn})
		i = k - 1
	}
	if lit.Len() > 0 {
		t.parts = append(t.parts, tmplPart{lit: lit.String()})
	}
	if len(t.parts) == 0 || len(t.parts) == 1 && t.parts[0].fn == nil {
		t.isLiteral = true
		if len(t.parts) == 1 {
			t.literal = t.parts[0].lit
		}
	}
	return t, nil
}

func (t *template) eval(v *reqVars) string {
	if t.isLiteral {
		return t.literal
	}
	var buf [128]byte
	return string(t.appendTo(buf[:0], v))
}

// appendTo appends the template's value for v to b.
func (t *template) appendTo(b []byte, v *reqVars) []byte {
	for _, p := range t.parts {
		if p.fn != nil {
			b = p.fn(v, b)
		} else {
			b = append(b, p.lit...)
		}
	}
	return b
}

// lookupVar returns the function of a variable name (without "$").
func lookupVar(name string) (varFunc, error) {
	switch name {
	case "remote_addr":
		return func(v *reqVars, b []byte) []byte { return append(b, v.remote...) }, nil
	case "remote_port":
		return func(v *reqVars, b []byte) []byte { return append(b, v.port...) }, nil
	case "host":
		return func(v *reqVars, b []byte) []byte { return append(b, v.host...) }, nil
	case "http_host":
		return func(v *reqVars, b []byte) []byte { return append(b, v.req.host...) }, nil
	case "server_port":
		return func(v *reqVars, b []byte) []byte { return append(b, v.local...) }, nil
	case "server_addr":
		return func(v *reqVars, b []byte) []byte { return append(b, v.lcAddr...) }, nil
	case "server_name":
		return func(v *reqVars, b []byte) []byte {
			if v.server != nil && len(v.server.cfg.ServerName) > 0 {
				return append(b, v.server.cfg.ServerName[0]...)
			}
			return b
		}, nil
	case "scheme":
		return func(v *reqVars, b []byte) []byte { return append(b, v.scheme...) }, nil
	case "request_uri":
		return func(v *reqVars, b []byte) []byte { return append(b, v.req.target...) }, nil
	case "uri", "document_uri":
		return func(v *reqVars, b []byte) []byte { return append(b, v.uri...) }, nil
	case "args", "query_string":
		return func(v *reqVars, b []byte) []byte { return append(b, v.req.query...) }, nil
	case "is_args":
		return func(v *reqVars, b []byte) []byte {
			if v.req.query != "" {
				return append(b, '?')
			}
			return b
		}, nil
	case "request_method":
		return func(v *reqVars, b []byte) []byte { return append(b, v.req.method...) }, nil
	case "proxy_host":
		return func(v *reqVars, b []byte) []byte { return append(b, v.proxy...) }, nil
	case "proxy_add_x_forwarded_for":
		return func(v *reqVars, b []byte) []byte {
			b, found := v.req.hdr.appendJoined(b, "X-Forwarded-For", ", ")
			if found {
				b = append(b, ", "...)
			}
			return append(b, v.remote...)
		}, nil
	}
	if h, ok := strings.CutPrefix(name, "http_"); ok && h != "" {
		key := textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(h, "_", "-"))
		sep := ", "
		if key == "Cookie" {
			sep = "; "
		}
		return func(v *reqVars, b []byte) []byte {
			b, _ = v.req.hdr.appendJoined(b, key, sep)
			return b
		}, nil
	}
	if c, ok := strings.CutPrefix(name, "cookie_"); ok && c != "" {
		return func(v *reqVars, b []byte) []byte {
			return append(b, v.req.hdr.cookie(c)...)
		}, nil
	}
	if a, ok := strings.CutPrefix(name, "arg_"); ok && a != "" {
		return func(v *reqVars, b []byte) []byte { return append(b, queryArg(v.req.query, a)...) }, nil
	}
	return nil, fmt.Errorf("unknown variable \"$%s\"", name)
}
