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
}

// UnmarshalTOML accepts a Go duration string; nginx-style bare numbers are
// refused because their unit is ambiguous (seconds in nginx, ns in Go).
func (d *Duration) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("duration must be a string such as \"2s\" or \"500ms\", got %T", v)
	}
	parsed, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"2s\", \"500ms\", \"30m\")", s)
	}
	if parsed < 0 {
		return fmt.Errorf("duration %q must not be negative", s)
	}
	d.Duration, d.Set = parsed, true
	return nil
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
}

// UnmarshalTOML accepts integers and suffixed strings.
func (s *Size) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("size %d must not be negative", x)
		}
		s.Bytes, s.Set = x, true
		return nil
	case string:
		n, err := ParseSize(x)
		if err != nil {
			return err
		}
		s.Bytes, s.Set = n, true
		return nil
	}
	return fmt.Errorf("size must be an integer or a string such as \"64k\", got %T", v)
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
