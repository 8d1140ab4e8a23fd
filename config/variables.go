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
