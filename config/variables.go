package config

import (
	"fmt"
	"strings"
)

// Variables are the $names proxy_set_header values and hash keys may use
// (the contract's list); $http_NAME and $cookie_NAME take any NAME.
var Variables = []string{
	"remote_addr", "remote_port", "host", "server_port", "scheme",
	"request_uri", "uri", "proxy_add_x_forwarded_for",
	// Also expanded by the HTTP proxy, as in nginx.
	"args", "is_args", "request_method", "server_addr", "server_name", "proxy_host",
}

// VariablePrefixes are the variable families named by a request header or
// cookie: $http_user_agent, $cookie_session.
var VariablePrefixes = []string{"http_", "cookie_", "arg_"}

// KnownVariable tells whether $name is expanded by vipgate.
func KnownVariable(name string) bool {
	if oneOf(name, Variables...) {
		return true
	}
	for _, p := range VariablePrefixes {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return true
		}
	}
	return false
}

// templateVariables returns the variable names in a template ("$host:$server_port",
// "${host}x"), or an error for a "$" not followed by a name.
func templateVariables(s string) ([]string, error) {
	var names []string
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			continue
		}
		rest := s[i+1:]
		if strings.HasPrefix(rest, "{") {
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				return nil, fmt.Errorf("unclosed ${ in %q", s)
			}
			name := rest[1:end]
			if name == "" || strings.IndexFunc(name, func(r rune) bool { return !isVarChar(r) }) >= 0 {
				return nil, fmt.Errorf("invalid variable ${%s} in %q", name, s)
			}
			names = append(names, name)
			i += end + 1
			continue
		}
		n := strings.IndexFunc(rest, func(r rune) bool { return !isVarChar(r) })
		if n < 0 {
			n = len(rest)
		}
		if n == 0 {
			return nil, fmt.Errorf("a \"$\" must start a variable name in %q", s)
		}
		names = append(names, rest[:n])
		i += n
	}
	return names, nil
}

func isVarChar(r rune) bool {
	return r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// StreamVariables are the variables a [[stream]] has for a hash key: no
// request, so none of the HTTP ones (nginx's stream module alike).
var StreamVariables = []string{"remote_addr", "remote_port", "server_addr", "server_port"}

// checkStreamHashKey reports a hash key of an upstream a [[stream]] uses
// that names a variable streams do not have: it would be the same for
// every connection, and every stream would go to one server.
func (v *validator) checkStreamHashKey(path, upstream, key string) {
	names, err := templateVariables(key)
	if err != nil {
		return // reported on the upstream
	}
	for _, n := range names {
		if !oneOf(n, StreamVariables...) {
			v.fail(path, "upstream %s hashes on $%s, which a stream does not have (streams know $%s)", upstream, n, strings.Join(StreamVariables, ", $"))
		}
	}
}

// ExpandTemplate replaces each variable of a valid template ($name or
// ${name}) with value(name).
func ExpandTemplate(s string, value func(name string) string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			b.WriteByte(s[i])
			continue
		}
		rest := s[i+1:]
		if strings.HasPrefix(rest, "{") {
			if end := strings.IndexByte(rest, '}'); end > 0 {
				b.WriteString(value(rest[1:end]))
				i += end + 1
				continue
			}
		}
		n := strings.IndexFunc(rest, func(r rune) bool { return !isVarChar(r) })
		if n < 0 {
			n = len(rest)
		}
		if n == 0 {
			b.WriteByte('$')
			continue
		}
		b.WriteString(value(rest[:n]))
		i += n
	}
	return b.String()
}

// checkTemplate reports unknown or malformed variables in a template.
func (v *validator) checkTemplate(path, what, s string) {
	names, err := templateVariables(s)
	if err != nil {
		v.fail(path, "%s: %v", what, err)
		return
	}
	for _, n := range names {
		if !KnownVariable(n) {
			v.fail(path, "%s: unknown variable $%s (known: $%s, $http_NAME, $cookie_NAME)", what, n, strings.Join(Variables, ", $"))
		}
	}
}
