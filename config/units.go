package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a TOML duration string ("500ms", "2s", "30m"). Set tells
// whether the file gave it, so defaults apply only to keys left out.
type Duration struct {
	time.Duration
	Set bool

	// bad keeps a parse error for the validator, which reports it with the
	// key path next to every other problem (the decoder would stop at it).
	bad error
}

// UnmarshalTOML accepts a Go duration string; nginx-style bare numbers are
// refused because their unit is ambiguous (seconds in nginx, ns in Go). A bad
// value is not returned as an error here but reported by Parse with its key.
func (d *Duration) UnmarshalTOML(v any) error {
	parsed, err := ParseDuration(v)
	if err != nil {
		d.bad = err
		return nil
	}
	d.Duration, d.Set, d.bad = parsed, true, nil
	return nil
}

// ParseDuration parses a duration value as written in the file.
func ParseDuration(v any) (time.Duration, error) {
	s, ok := v.(string)
	if !ok {
		if n, isInt := v.(int64); isInt {
			return 0, fmt.Errorf("duration must be a string with a unit, such as \"%ds\" (a bare number is ambiguous)", n)
		}
		return 0, fmt.Errorf("duration must be a string such as \"2s\" or \"500ms\", got %s", tomlTypeName(v))
	}
	parsed, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want e.g. \"2s\", \"500ms\", \"30m\")", s)
	}
	if parsed < 0 {
		return 0, fmt.Errorf("duration %q must not be negative", s)
	}
	return parsed, nil
}

func tomlTypeName(v any) string {
	switch v.(type) {
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	case []map[string]any:
		return "an array of tables ([[...]])"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date or time"
	}
	return fmt.Sprintf("%T", v)
}

func (d *Duration) orDefault(def time.Duration) {
	if !d.Set {
		d.Duration = def
	}
}

// Size is a byte count given as an integer or a string with a k/m/g suffix
// ("64k", "10MB", "1m"), powers of 1024 as in nginx.
type Size struct {
	Bytes int64
	Set   bool

	bad error // reported by Parse with the key path, as Duration's
}

// UnmarshalTOML accepts integers and suffixed strings.
func (s *Size) UnmarshalTOML(v any) error {
	var n int64
	var err error
	switch x := v.(type) {
	case int64:
		n = x
		if x < 0 {
			err = fmt.Errorf("size %d must not be negative", x)
		}
	case string:
		n, err = ParseSize(x)
	default:
		err = fmt.Errorf("size must be an integer or a string such as \"64k\", got %s", tomlTypeName(v))
	}
	if err != nil {
		s.bad = err
		return nil
	}
	s.Bytes, s.Set, s.bad = n, true, nil
	return nil
}

func (s *Size) orDefault(def int64) {
	if !s.Set {
		s.Bytes = def
	}
}

// ParseSize parses "123", "64k", "64K", "64KB", "10m", "10MB", "1g".
func ParseSize(text string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(text))
	t = strings.TrimSuffix(t, "b")
	mult := int64(1)
	switch {
	case strings.HasSuffix(t, "k"):
		mult, t = 1<<10, strings.TrimSuffix(t, "k")
	case strings.HasSuffix(t, "m"):
		mult, t = 1<<20, strings.TrimSuffix(t, "m")
	case strings.HasSuffix(t, "g"):
		mult, t = 1<<30, strings.TrimSuffix(t, "g")
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q (want e.g. 1048576, \"64k\", \"10MB\")", text)
	}
	return n * mult, nil
}
