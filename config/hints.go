package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// This file turns "unknown key" into where the directive went: operators
// write what they know from nginx.conf and keepalived.conf, put a key one
// table up or down (TOML's table scope), or mistype it.

// table is one kind of table of the file: the key path that leads to it
// ("*" for a name the operator chooses) and the struct that holds its keys.
type table struct {
	path  []string
	title string // as written in a file
	typ   reflect.Type
}

var tables = []table{
	{[]string{"global"}, "[global]", reflect.TypeFor[Global]()},
	{[]string{"upstream", "*"}, "[upstream.NAME]", reflect.TypeFor[Upstream]()},
	{[]string{"upstream", "*", "server"}, "[[upstream.NAME.server]]", reflect.TypeFor[UpstreamServer]()},
	{[]string{"upstream", "*", "health_check"}, "[upstream.NAME.health_check]", reflect.TypeFor[HealthCheck]()},
	{[]string{"http"}, "[[http]]", reflect.TypeFor[HTTPServer]()},
	{[]string{"http", "location"}, "[[http.location]]", reflect.TypeFor[Location]()},
	{[]string{"stream"}, "[[stream]]", reflect.TypeFor[Stream]()},
	{[]string{"vrrp"}, "[[vrrp]]", reflect.TypeFor[VRRP]()},
	{[]string{"vrrp_script", "*"}, "[vrrp_script.NAME]", reflect.TypeFor[VRRPScript]()},
}

// keysOf lists the keys a table's struct decodes.
func keysOf(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	return keys
}

// nginxKeepalived names the directives of nginx and keepalived whose home
// here has another name, and says what to write.
var nginxKeepalived = map[string]string{
	"nopreempt":                   "keepalived's nopreempt is preempt = false here",
	"auth_type":                   "there is only PASS: auth_pass = \"...\" alone turns it on (keepalived's auth_type PASS)",
	"authentication":              "write auth_pass = \"...\" in the [[vrrp]] table (keepalived's authentication block)",
	"unicast_src_ip":              "write mcast_src_ip: the source of the adverts, multicast or unicast (keepalived's unicast_src_ip)",
	"router_id":                   "keepalived's router_id is node_name in [global]",
	"vrrp_instance":               "each keepalived vrrp_instance is a [[vrrp]] table, with name = \"VI_1\"",
	"global_defs":                 "keepalived's global_defs are keys of [global]",
	"vrrp_version":                "write version = 3 in every [[vrrp]] table (keepalived's vrrp_version / version); the default is 2, as keepalived's, and peers speaking another version are not heard",
	"vrrp_garp_master_delay":      "write garp_master_delay in each [[vrrp]] table (keepalived's vrrp_garp_master_delay)",
	"vrrp_garp_master_repeat":     "write garp_master_repeat in each [[vrrp]] table (keepalived's vrrp_garp_master_repeat)",
	"vrrp_garp_master_refresh":    "write garp_master_refresh in each [[vrrp]] table (keepalived's vrrp_garp_master_refresh)",
	"ip_hash":                     "write balance = \"ip_hash\" in the [upstream.NAME] table",
	"least_conn":                  "write balance = \"least_conn\" in the [upstream.NAME] table",
	"random":                      "write balance = \"random\" in the [upstream.NAME] table",
	"ssl_certificate":             "nginx's ssl_certificate is tls_certificate here",
	"ssl_certificate_key":         "nginx's ssl_certificate_key is tls_certificate_key here",
	"large_client_header_buffers": "write client_header_max_size = \"32k\": the largest request head (nginx's large_client_header_buffers)",
	"server":                      "a server of an upstream is a [[upstream.NAME.server]] table with address = \"host:port\"",
}

// unknownKeyMessage is the problem's text for key, which no table has
// (isTable: it is a table): "unknown key" and, when it can tell, what to
// write instead.
func unknownKeyMessage(key []string, isTable bool) string {
	if len(key) == 0 {
		return "unknown key"
	}
	name := key[len(key)-1]
	if hint := unknownKeyHint(key, name, isTable); hint != "" {
		return "unknown key: " + hint
	}
	return "unknown key"
}

func unknownKeyHint(key []string, name string, isTable bool) string {
	if hint, ok := nginxKeepalived[key[0]]; ok {
		// An unknown table named after a directive ([vrrp_instance.VI_1]).
		return hint
	}
	if len(key) == 3 && key[0] == "upstream" && len(key[2]) > 3 {
		// [[upstream.app.servers]]: a mistyped table of the upstream.
		for _, k := range keysOf(reflect.TypeFor[Upstream]()) {
			if editDistance(key[2], k) <= 2 {
				return fmt.Sprintf("did you mean %s?", k)
			}
		}
	}
	if len(key) == 3 && key[0] == "upstream" && isTable {
		// [upstream.tomcat.local]: TOML reads the dot as a nested table.
		return fmt.Sprintf("if %q is the upstream's name, quote it: [upstream.%q] and [[upstream.%q.server]] (a dot in a bare table name nests tables)",
			key[1]+"."+key[2], key[1]+"."+key[2], key[1]+"."+key[2])
	}
	var here *table
	for i := range tables {
		if matchPath(tables[i].path, key[:len(key)-1]) {
			here = &tables[i]
		}
	}
	if here != nil {
		if hint, ok := nginxKeepalived[name]; ok && !slices.Contains(keysOf(here.typ), name) {
			return hint
		}
		// Mistyped: one key of this table is within two edits.
		for _, k := range keysOf(here.typ) {
			if editDistance(name, k) <= 2 && len(name) > 3 {
				return fmt.Sprintf("did you mean %s?", k)
			}
		}
	}
	// A key of another table: written in the wrong scope (in TOML a key
	// belongs to the last table header above it).
	var homes []string
	for _, t := range tables {
		if slices.Contains(keysOf(t.typ), name) {
			homes = append(homes, t.title)
		}
	}
	if len(homes) > 0 {
		where := "this table"
		if here != nil {
			where = here.title
		}
		return fmt.Sprintf("%s is a key of %s, not of %s (a key belongs to the last [table] header above it)", name, strings.Join(homes, " or "), where)
	}
	if hint, ok := nginxKeepalived[name]; ok {
		return hint
	}
	return ""
}

// matchPath reports whether a key path (table names and keys, no array
// indices) leads to a table of the pattern ("*" matches a name).
func matchPath(pattern, path []string) bool {
	if len(pattern) != len(path) {
		return false
	}
	for i := range pattern {
		if pattern[i] != "*" && pattern[i] != path[i] {
			return false
		}
	}
	return true
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// nginxParameters says what to write for an address followed by nginx's
// parameters ("127.0.0.1:8081 weight=3 max_fails=3", "0.0.0.0:80
// default_server"): each is a key of its own here. ok is false when value
// has no space.
func nginxParameters(value string) (msg string, ok bool) {
	fields := strings.Fields(value)
	if len(fields) < 2 {
		return "", false
	}
	var keys []string
	for _, f := range fields[1:] {
		name, val, hasValue := strings.Cut(f, "=")
		switch {
		case hasValue && (name == "weight" || name == "max_fails" || name == "max_conns"):
			keys = append(keys, fmt.Sprintf("%s = %s", name, val))
		case hasValue && name == "fail_timeout":
			keys = append(keys, fmt.Sprintf("%s = %q", name, val))
		case f == "backup" || f == "down":
			keys = append(keys, f+" = true")
		case f == "default_server":
			keys = append(keys, "(default_server: the first [[http]] on an address is its default server)")
		case f == "proxy_protocol":
			keys = append(keys, "accept_proxy_protocol = true")
		case f == "ssl" || f == "http2":
			keys = append(keys, "(ssl, http2: tls_certificate and tls_certificate_key make a listener TLS, with HTTP/2)")
		default:
			keys = append(keys, fmt.Sprintf("(%s: no counterpart)", f))
		}
	}
	return fmt.Sprintf("%q: nginx's parameters after the address are keys of their own here: %q, then %s", value, fields[0], strings.Join(keys, ", ")), true
}

// quoteHint is added to a syntax error on a line whose value is written
// bare, as in nginx.conf ("address = 127.0.0.1:8080", "timeout = 30s"):
// the decoder's words ("Invalid float value") do not say it wants quotes.
func quoteHint(data []byte, line int, key string) string {
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) {
		return ""
	}
	k, value, ok := strings.Cut(lines[line-1], "=")
	if !ok {
		return ""
	}
	value, _, _ = strings.Cut(value, "#")
	value = strings.TrimSpace(value)
	if value == "" || strings.ContainsAny(value[:1], "\"'[{") || value == "true" || value == "false" {
		return ""
	}
	if _, err := strconv.ParseFloat(strings.ReplaceAll(value, "_", ""), 64); err == nil {
		return ""
	}
	name := strings.TrimSpace(k)
	switch kindOf(strings.Split(key, ".")) {
	case reflect.Bool:
		switch strings.ToLower(value) {
		case "on", "yes":
			return fmt.Sprintf(" (write %s = true: booleans are true or false, without quotes)", name)
		case "off", "no":
			return fmt.Sprintf(" (write %s = false: booleans are true or false, without quotes)", name)
		}
		return " (booleans are true or false, without quotes)"
	case reflect.Slice:
		return fmt.Sprintf(" (a list is written in brackets, its text items in quotes: %s = [%q])", name, value)
	}
	return fmt.Sprintf(" (a text value is written in quotes: %s = %q)", name, value)
}

// kindOf is the kind of the field a key path (table names and key, no
// array indices) decodes into; Invalid when unknown.
func kindOf(key []string) reflect.Kind {
	if len(key) < 2 {
		return reflect.Invalid
	}
	for _, t := range tables {
		if !matchPath(t.path, key[:len(key)-1]) {
			continue
		}
		for i := range t.typ.NumField() {
			f := t.typ.Field(i)
			if tag, _, _ := strings.Cut(f.Tag.Get("toml"), ","); tag == key[len(key)-1] {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				return ft.Kind()
			}
		}
	}
	return reflect.Invalid
}
