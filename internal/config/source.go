package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// DefaultPath is where the packages install the configuration, and where
// every product command looks when neither --config nor
// $ABUSEMILTER_CONFIG names a file.
const DefaultPath = "/etc/abusemilter/abusemilter.yaml"

// EnvVar names a config file when --config is not given.
const EnvVar = "ABUSEMILTER_CONFIG"

// How a Source was chosen.
const (
	FromFlag        = "--config"
	FromEnv         = "$" + EnvVar
	FromDefaultPath = "default path"
	FromBuiltIn     = "built-in defaults"
)

// Source is the configuration a command uses: a file, or the built-in
// defaults, and how it was chosen. abusemilter, abusescan and abusectl all
// resolve it with Resolve, so the three read the same file.
type Source struct {
	// Path is the file; "" for the built-in defaults.
	Path string
	// How is FromFlag, FromEnv, FromDefaultPath or FromBuiltIn.
	How string
}

// String says which configuration is used and why, for the first log line
// and the --check-config output: "/etc/x.yaml (from --config)" or
// "built-in defaults (no --config, no $ABUSEMILTER_CONFIG, no
// /etc/abusemilter/abusemilter.yaml)".
func (s Source) String() string {
	switch s.How {
	case FromBuiltIn:
		return FromBuiltIn + " (no --config, no $" + EnvVar + ", no " + DefaultPath + ")"
	case FromDefaultPath:
		return s.Path + " (the default path)"
	}
	return s.Path + " (from " + s.How + ")"
}

// Lookup is what Resolve needs from the process; tests supply their own.
type Lookup struct {
	// Getenv reads an environment variable (os.Getenv).
	Getenv func(string) string
	// DefaultPath is the file looked for last (DefaultPath).
	DefaultPath string
}

// SystemLookup is the process environment and the real default path.
func SystemLookup() Lookup {
	return Lookup{Getenv: os.Getenv, DefaultPath: DefaultPath}
}

// Resolve picks the configuration: the --config flag's file, else
// $ABUSEMILTER_CONFIG's, else the default path when that file exists, else
// the built-in defaults. A file named by the flag or the variable must
// exist (Load says so); the default path is only used when it does.
func Resolve(flag string, l Lookup) Source {
	if flag != "" {
		return Source{Path: flag, How: FromFlag}
	}
	if l.Getenv != nil {
		if p := l.Getenv(EnvVar); p != "" {
			return Source{Path: p, How: FromEnv}
		}
	}
	if l.DefaultPath != "" {
		if _, err := os.Stat(l.DefaultPath); err == nil || !errors.Is(err, fs.ErrNotExist) {
			// A file that exists but cannot be read is still the one meant:
			// Load reports why it cannot be read.
			return Source{Path: l.DefaultPath, How: FromDefaultPath}
		}
	}
	return Source{How: FromBuiltIn}
}

// Load reads the source's file, or returns the built-in defaults.
func (s Source) Load() (*Config, error) {
	c, err := s.LoadAll()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// LoadAll is Load that also returns the config when it has problems (see
// ParseAll); nil when the file cannot be read or is not YAML.
func (s Source) LoadAll() (*Config, error) {
	if s.Path == "" {
		c := Default()
		return c, c.Validate()
	}
	c, err := LoadAll(s.Path)
	var pe *fs.PathError
	if c == nil && errors.As(err, &pe) {
		return nil, &Error{Path: s.Path, Problems: []string{fmt.Sprintf("cannot read the config file (%s): %v", s.How, pe.Err)}}
	}
	return c, err
}
