package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a YAML duration ("10m", "1h30m", "200ms", "7d"). Parse errors
// are kept and reported by Validate with the field path and line.
type Duration struct {
	time.Duration
	raw  string
	line int
	err  error
}

// D returns a Duration holding d (for defaults in code).
func D(d time.Duration) Duration { return Duration{Duration: d} }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	d.raw, d.line = n.Value, n.Line
	d.Duration, d.err = ParseDuration(n.Value)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String formats the duration as it would be written in the config.
func (d Duration) String() string {
	if d.Duration == 0 {
		return "0s"
	}
	if d.Duration%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d.Duration/(24*time.Hour)), 10) + "d"
	}
	s := d.Duration.String() // e.g. "1h30m0s", "10m0s", "30s", "200ms"
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// ParseDuration is time.ParseDuration that also accepts a "d" (24h) suffix
// and a bare "0".
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use e.g. 200ms, 10m, 1h, 7d)", s)
	}
	return d, nil
}

// ByteSize is a YAML size: a number of bytes or "256KiB", "1MiB", "64KB".
type ByteSize struct {
	Bytes int64
	raw   string
	line  int
	err   error
}

// B returns a ByteSize holding n bytes (for defaults in code).
func B(n int64) ByteSize { return ByteSize{Bytes: n} }

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	b.raw, b.line = n.Value, n.Line
	b.Bytes, b.err = ParseByteSize(n.Value)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// String formats the size with the largest exact binary unit.
func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b.Bytes >= u.n && b.Bytes%u.n == 0 {
			return strconv.FormatInt(b.Bytes/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(b.Bytes, 10)
}

// ParseByteSize parses "1048576", "256KiB", "1MiB", "2GiB", "64KB", "10MB".
func ParseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(v), u.n
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q (use e.g. 262144, 256KiB, 1MiB)", s)
	}
	return n * mult, nil
}

// errorList collects validation errors with their field paths.
type errorList []string

func (e *errorList) add(path, format string, args ...any) {
	*e = append(*e, path+": "+fmt.Sprintf(format, args...))
}

func (e *errorList) addAt(path string, line int, err error) {
	if line > 0 {
		*e = append(*e, fmt.Sprintf("%s (line %d): %v", path, line, err))
		return
	}
	*e = append(*e, fmt.Sprintf("%s: %v", path, err))
}

func (e *errorList) duration(path string, d Duration) {
	if d.err != nil {
		e.addAt(path, d.line, d.err)
	} else if d.Duration < 0 {
		e.addAt(path, d.line, fmt.Errorf("must not be negative, got %q", d.raw))
	}
}

func (e *errorList) size(path string, b ByteSize) {
	if b.err != nil {
		e.addAt(path, b.line, b.err)
	}
}

func (e *errorList) oneOf(path, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	e.add(path, "%q is not one of %s", value, strings.Join(allowed, ", "))
}
