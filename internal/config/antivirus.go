package config

import (
	"time"

	"github.com/abusemilter/abusemilter/internal/clamd"
)

// AntivirusConfig sets up the malware clause: the antivirus scanner
// (clamd) and the limits of the milter's own attachment inspection, which
// runs whether clamd is configured or not.
type AntivirusConfig struct {
	// Clamd is "unix:/run/clamav/clamd.ctl" or "tcp:HOST:PORT"; "" scans
	// with no antivirus.
	Clamd string `yaml:"clamd"`
	// Timeout bounds each step of a scan (connecting, each write, the
	// verdict after the last byte).
	Timeout Duration `yaml:"timeout"`
	// MaxSize is how much of a message is streamed to clamd; the rest is
	// not scanned (ANTIVIRUS_PARTIAL). Keep it at or below clamd's
	// StreamMaxLength.
	MaxSize ByteSize `yaml:"max_size"`
	// Action is what a message with a virus gets: reject, hold or defer.
	Action string `yaml:"action"`
	// OnError decides a message clamd gave no verdict on: accept or defer.
	OnError string `yaml:"on_error"`
	// Inspect bounds the attachment inspection.
	Inspect InspectConfig `yaml:"inspect"`
}

// InspectConfig bounds the work spent on one message's attachments.
type InspectConfig struct {
	// MaxDepth is how deep archives in archives are opened.
	MaxDepth int `yaml:"max_depth"`
	// MaxEntries caps the archive entries looked at per message.
	MaxEntries int `yaml:"max_entries"`
	// MaxExpanded caps the bytes decompressed per message.
	MaxExpanded ByteSize `yaml:"max_expanded"`
	// MaxTime caps the time spent per message.
	MaxTime Duration `yaml:"max_time"`
}

// DefaultAntivirus returns the built-in antivirus settings: no clamd.
func DefaultAntivirus() AntivirusConfig {
	return AntivirusConfig{
		Timeout: D(10 * time.Second), MaxSize: B(25 << 20), Action: "reject", OnError: "accept",
		Inspect: InspectConfig{MaxDepth: 5, MaxEntries: 1000, MaxExpanded: B(100 << 20), MaxTime: D(2 * time.Second)},
	}
}

func (c *Config) validateAntivirus(e *errorList) {
	a := &c.Antivirus
	if a.Clamd != "" {
		if _, _, err := clamd.ParseAddress(a.Clamd); err != nil {
			e.add("antivirus.clamd", "%v", err)
		}
	}
	e.duration("antivirus.timeout", a.Timeout)
	if a.Timeout.err == nil && (a.Timeout.Duration < 100*time.Millisecond || a.Timeout.Duration > 5*time.Minute) {
		e.add("antivirus.timeout", "%s is out of range (100ms to 5m)", a.Timeout.Duration)
	}
	e.size("antivirus.max_size", a.MaxSize)
	if a.MaxSize.err == nil && (a.MaxSize.Bytes < 1<<10 || a.MaxSize.Bytes > 4<<30-1) {
		e.add("antivirus.max_size", "%s is out of range (1KiB to 4GiB)", a.MaxSize)
	}
	// hold is the abuse desk's quarantine; until it exists in this build
	// the daemon's assembly applies the refusal it stands for (see
	// internal/daemon).
	e.oneOf("antivirus.action", a.Action, "reject", "hold", "defer")
	e.oneOf("antivirus.on_error", a.OnError, "accept", "defer")
	in := &a.Inspect
	if in.MaxDepth < 1 || in.MaxDepth > 20 {
		e.add("antivirus.inspect.max_depth", "must be between 1 and 20, got %d", in.MaxDepth)
	}
	if in.MaxEntries < 1 {
		e.add("antivirus.inspect.max_entries", "must be at least 1, got %d", in.MaxEntries)
	}
	e.size("antivirus.inspect.max_expanded", in.MaxExpanded)
	if in.MaxExpanded.err == nil && in.MaxExpanded.Bytes < 1<<20 {
		e.add("antivirus.inspect.max_expanded", "must be at least 1MiB, got %s", in.MaxExpanded)
	}
	e.duration("antivirus.inspect.max_time", in.MaxTime)
	if in.MaxTime.err == nil && in.MaxTime.Duration < 10*time.Millisecond {
		e.add("antivirus.inspect.max_time", "must be at least 10ms, got %s", in.MaxTime.Duration)
	}
}
