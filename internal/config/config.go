// Package config loads and validates abusemilter's YAML configuration. Every
// key has a default in code (Default), a file only overrides what it names,
// unknown keys are errors, and every problem is reported at once with its
// field path (and line, where the YAML parser gives one). No config file at
// all is a working configuration: enforce mode, the embedded in-memory
// store, and logins that are e-mail addresses sending as exactly that
// address.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration shared by the daemon, the scanner and
// the admin CLI.
type Config struct {
	// Mode is "enforce" (refuse mail) or "monitor" (decide and log, accept
	// and annotate with X-Abuse-* headers).
	Mode string `yaml:"mode"`
	// Listen is "inet:HOST:PORT" or "unix:/path".
	Listen string `yaml:"listen"`
	// AllowNonLoopback must be true to listen on a non-loopback address.
	AllowNonLoopback bool           `yaml:"allow_non_loopback"`
	Socket           SocketConfig   `yaml:"socket"`
	Log              LogConfig      `yaml:"log"`
	Session          SessionConfig  `yaml:"session"`
	Message          MessageConfig  `yaml:"message"`
	Identity         IdentityConfig `yaml:"identity"`
	Limits           LimitsConfig   `yaml:"limits"`
	Strikes          StrikesConfig  `yaml:"strikes"`
	// Redis selects the shared Redis store; without it the embedded
	// in-memory store is used.
	Redis *RedisConfig `yaml:"redis"`
	// RedisFailure is the fail mode when the rate store cannot answer in
	// time: "accept" (log and let mail through) or "defer".
	RedisFailure string        `yaml:"redis_failure"`
	Rules        RulesConfig   `yaml:"rules"`
	DNS          DNSConfig     `yaml:"dns"`
	Metrics      MetricsConfig `yaml:"metrics"`
	// Notify delivers lock, threshold and fail-mode events.
	Notify NotifyConfig `yaml:"notify"`
	// Console is the abuse desk console ("abusectl serve"; console.go).
	Console ConsoleConfig `yaml:"console"`
	// Trial is where abusescan --milter asks the running milter what it
	// would do with a message, without charging anything.
	Trial TrialConfig `yaml:"trial"`
	// Antivirus is the malware clause: clamd and the attachment limits.
	Antivirus AntivirusConfig `yaml:"antivirus"`
	// Instance names this MTA host in the abuse desk's records and in
	// release and purge requests; default the host name. Every milter of a
	// shared store needs a name of its own.
	Instance string `yaml:"instance"`
	// Desk configures held messages, records and complaints.
	Desk DeskConfig `yaml:"desk"`

	// Path is the file the config was loaded from ("" for the default).
	Path string `yaml:"-"`

	// lines maps the field paths the file names to their lines, so that
	// problems found after decoding still say where they are.
	lines map[string]int
}

// SocketConfig sets the permissions of a unix listening socket.
type SocketConfig struct {
	Mode  string `yaml:"mode"`  // octal, e.g. "0660"
	Group string `yaml:"group"` // e.g. "postfix"; empty keeps the process group
}

// LogConfig selects the log format and level.
type LogConfig struct {
	Format string `yaml:"format"` // auto (console on a terminal, else json), console, json
	Level  string `yaml:"level"`  // debug, info, warn, error
	// Redact is "none" or "addresses": the local part of every e-mail
	// address in the decision log is replaced by a keyed hash.
	Redact string `yaml:"redact"`
	// RedactKeyFile holds the key of that hash; empty: a random key per
	// start (hashes then match within one run only).
	RedactKeyFile string `yaml:"redact_key_file"`
}

// TrialConfig is the listener of trials (abusescan --milter): sessions
// accepted there that send the trial macro are decided as real mail would
// be, but charge no counter and no strike.
type TrialConfig struct {
	// Listen is "unix:/path" or "inet:HOST:PORT"; empty: no trials.
	Listen string `yaml:"listen"`
	// SocketMode is the octal mode of a unix trial socket (default 0600:
	// the daemon's user and root only).
	SocketMode string `yaml:"socket_mode"`
}

// SessionConfig bounds milter sessions.
type SessionConfig struct {
	IdleTimeout   Duration `yaml:"idle_timeout"`
	MaxSessions   int      `yaml:"max_sessions"`
	MaxPacket     ByteSize `yaml:"max_packet"`
	ShutdownGrace Duration `yaml:"shutdown_grace"`
}

// MessageConfig bounds what is kept of each message.
type MessageConfig struct {
	BodySample ByteSize `yaml:"body_sample"`
	MaxHeaders int      `yaml:"max_headers"`
}

// IdentityConfig says which account a submission belongs to.
type IdentityConfig struct {
	// LoginIsAddress lets an unconfigured login that is an e-mail address
	// send as exactly that address.
	LoginIsAddress bool `yaml:"login_is_address"`
	// SenderLoginMaps are Postfix-style smtpd_sender_login_maps text files.
	SenderLoginMaps []string `yaml:"sender_login_maps"`
	// UnknownLogin and UnknownClient: accept, defer or reject.
	UnknownLogin  string                   `yaml:"unknown_login"`
	UnknownClient string                   `yaml:"unknown_client"`
	Networks      []NetworkConfig          `yaml:"networks"`
	Accounts      map[string]AccountConfig `yaml:"accounts"`
}

// NetworkConfig maps client networks (customers' own relays) to an account.
type NetworkConfig struct {
	Network string `yaml:"network"`
	Account string `yaml:"account"`
}

// AccountConfig is one customer account.
type AccountConfig struct {
	Logins    []string `yaml:"logins"`
	SendAs    []string `yaml:"send_as"`
	Forwarder bool     `yaml:"forwarder"`
	WebApp    bool     `yaml:"web_app"`
	// Limits overrides the default rates of some dimensions for this account.
	Limits map[string][]string `yaml:"limits"`
}

// MetricsConfig configures the Prometheus/health HTTP listener.
type MetricsConfig struct {
	Listen string `yaml:"listen"` // host:port; empty turns it off
}

// Default returns the built-in configuration.
func Default() *Config {
	return &Config{
		Mode:   "enforce",
		Listen: "inet:127.0.0.1:7357",
		Socket: SocketConfig{Mode: "0660"},
		Log:    LogConfig{Format: "auto", Level: "info", Redact: "none"},
		Session: SessionConfig{
			IdleTimeout:   D(10 * time.Minute),
			MaxSessions:   1000,
			MaxPacket:     B(1 << 20),
			ShutdownGrace: D(30 * time.Second),
		},
		Message: MessageConfig{BodySample: B(256 << 10), MaxHeaders: 1000},
		Identity: IdentityConfig{
			LoginIsAddress: true,
			UnknownLogin:   "defer",
			UnknownClient:  "defer",
			Networks: []NetworkConfig{
				{Network: "127.0.0.1/32", Account: "local"},
				{Network: "::1/128", Account: "local"},
			},
			Accounts: map[string]AccountConfig{
				// The local account covers sendmail-command submissions and
				// the MTA's own resubmissions (.forward, Sieve redirects).
				"local": {SendAs: []string{"any"}, Forwarder: true},
			},
		},
		Limits:       DefaultLimits(),
		Strikes:      DefaultStrikes(),
		RedisFailure: "accept",
		Rules:        DefaultRules(),
		DNS:          DefaultDNS(),
		Metrics:      MetricsConfig{Listen: "127.0.0.1:9357"},
		Notify:       DefaultNotify(),
		Console:      DefaultConsole(),
		Trial:        TrialConfig{SocketMode: "0600"},
		Antivirus:    DefaultAntivirus(),
		Desk:         DefaultDesk(),
	}
}

// Error is every problem found in a config, one per line.
type Error struct {
	Path     string
	Problems []string
}

func (e *Error) Error() string {
	name := e.Path
	if name == "" {
		name = "config"
	}
	return fmt.Sprintf("%s: %d problem(s):\n  %s", name, len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// Load reads, merges over the defaults and validates a config file.
func Load(path string) (*Config, error) {
	c, err := LoadAll(path)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// LoadAll is Load that also returns the config when it has problems, as
// ParseAll does.
func LoadAll(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	c, err := ParseAll(data, path)
	if c != nil {
		c.Path = path
	}
	return c, err
}

// Parse merges YAML over the defaults and validates the result; name is
// used in error messages. Every problem is reported at once: unknown keys
// (with the nearest known one), values of the wrong kind (with the kind
// wanted), and what Validate finds, each with its field path and line.
func Parse(data []byte, name string) (*Config, error) {
	c, err := ParseAll(data, name)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ParseAll is Parse that also returns the config when it has problems
// (nil only when the file is not YAML at all), so that a check can look
// for more problems in what did parse: the fields with problems keep
// whatever value they got (or their default).
func ParseAll(data []byte, name string) (*Config, error) {
	c := Default()
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &Error{Path: name, Problems: []string{syntaxProblem(err)}}
	}
	var problems []string
	if len(root.Content) > 0 {
		doc := root.Content[0]
		var shape []string
		shape, c.lines = checkShape(doc, reflect.TypeOf(Config{}))
		problems = append(problems, shape...)
		if err := doc.Decode(c); err != nil {
			var te *yaml.TypeError
			switch {
			case !errors.As(err, &te):
				problems = append(problems, syntaxProblem(err))
			case len(shape) == 0:
				// The shape check saw nothing wrong but YAML did: say
				// what YAML says rather than nothing.
				problems = append(problems, te.Errors...)
			}
		}
	}
	if err := c.Validate(); err != nil {
		var ve *Error
		if errors.As(err, &ve) {
			problems = append(problems, ve.Problems...)
		}
	}
	if len(problems) > 0 {
		return c, &Error{Path: name, Problems: byLine(problems)}
	}
	return c, nil
}

// Merge adds to a config's problems (err, a *Error or nil) those of more
// (from a later check), leaving out a problem of a field that err already
// has one for, and returns the whole as one *Error (nil when there is none).
func Merge(name string, err error, more error) error {
	if more == nil {
		return err
	}
	var first, second *Error
	if !errors.As(more, &second) {
		if err == nil {
			return more
		}
		second = &Error{Problems: []string{more.Error()}}
	}
	var problems []string
	seen := make(map[string]bool)
	if err != nil {
		if !errors.As(err, &first) {
			return err
		}
		problems = append(problems, first.Problems...)
		for _, p := range first.Problems {
			seen[problemPath(p)] = true
		}
	}
	for _, p := range second.Problems {
		if !coveredBy(problemPath(p), seen) {
			problems = append(problems, p)
		}
	}
	return &Error{Path: name, Problems: byLine(problems)}
}

// coveredBy reports whether a problem of path says nothing new: one of the
// same path was reported, or one inside it ("identity" is covered by a
// problem of "identity.networks[0].account").
func coveredBy(path string, seen map[string]bool) bool {
	if seen[path] {
		return true
	}
	for p := range seen {
		if strings.HasPrefix(p, path+".") || strings.HasPrefix(p, path+"[") {
			return true
		}
	}
	return false
}

// problemPath is the field path of a "path (line N): message" problem.
func problemPath(p string) string {
	path, _, _ := strings.Cut(p, ": ")
	path, _, _ = strings.Cut(path, " (line ")
	return path
}

// byLine orders problems as the file does: by line, those without a line
// (defaults the file does not set) last, in the order found.
func byLine(problems []string) []string {
	line := func(p string) int {
		path, _, _ := strings.Cut(p, ": ")
		if _, rest, ok := strings.Cut(path, "(line "); ok {
			if n, err := strconv.Atoi(strings.TrimSuffix(rest, ")")); err == nil {
				return n
			}
		}
		return math.MaxInt
	}
	out := slices.Clone(problems)
	slices.SortStableFunc(out, func(a, b string) int { return cmp.Compare(line(a), line(b)) })
	return out
}

// syntaxProblem words a YAML syntax error as "line N: what".
func syntaxProblem(err error) string {
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

// Line returns the line of a field path in the file the config came from
// (or of the nearest enclosing path the file names); 0 when unknown.
func (c *Config) Line(path string) int {
	return lineOf(c.lines, path)
}

// Problem formats one problem of this config as "path (line N): message",
// the form every problem takes (the line when the file names the field).
func (c *Config) Problem(path, format string, args ...any) string {
	msg := fmt.Sprintf(format, args...)
	if line := c.Line(path); line > 0 {
		return fmt.Sprintf("%s (line %d): %s", path, line, msg)
	}
	return path + ": " + msg
}

// Validate checks every field and reports all problems at once.
func (c *Config) Validate() error {
	var e errorList
	e.oneOf("mode", c.Mode, "enforce", "monitor")
	if _, _, err := ParseListen(c.Listen); err != nil {
		e.add("listen", "%v", err)
	} else if network, addr, _ := ParseListen(c.Listen); network == "tcp" && !c.AllowNonLoopback && !loopbackHost(addr) {
		e.add("listen", "%q is not a loopback address; set allow_non_loopback: true to listen on it", c.Listen)
	}
	if c.Socket.Mode != "" {
		if _, err := ParseFileMode(c.Socket.Mode); err != nil {
			e.add("socket.mode", "%v", err)
		}
	}
	e.oneOf("log.format", c.Log.Format, "auto", "console", "json")
	e.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	e.oneOf("log.redact", c.Log.Redact, "none", "addresses")
	if c.Log.RedactKeyFile != "" && !strings.HasPrefix(c.Log.RedactKeyFile, "/") {
		e.add("log.redact_key_file", "%q: want an absolute path", c.Log.RedactKeyFile)
	}
	c.validateTrial(&e)
	e.duration("session.idle_timeout", c.Session.IdleTimeout)
	e.duration("session.shutdown_grace", c.Session.ShutdownGrace)
	e.size("session.max_packet", c.Session.MaxPacket)
	if c.Session.MaxPacket.Bytes != 0 && c.Session.MaxPacket.Bytes < 64<<10 {
		e.add("session.max_packet", "must be at least 64KiB (a milter body chunk), got %s", c.Session.MaxPacket)
	}
	if c.Session.MaxSessions < 1 {
		e.add("session.max_sessions", "must be at least 1, got %d", c.Session.MaxSessions)
	}
	e.size("message.body_sample", c.Message.BodySample)
	if c.Message.MaxHeaders < 1 {
		e.add("message.max_headers", "must be at least 1, got %d", c.Message.MaxHeaders)
	}
	c.validateIdentity(&e)
	c.validateLimits(&e)
	c.validateRedis(&e)
	e.oneOf("redis_failure", c.RedisFailure, "accept", "defer")
	c.validateRules(&e)
	c.validateDesk(&e)
	c.Notify.validate(&e)
	c.Console.validate(&e)
	c.validateAntivirus(&e)
	if c.Metrics.Listen != "" {
		if err := checkHostPort(c.Metrics.Listen); err != nil {
			e.add("metrics.listen", "%q: %v (want HOST:PORT, or empty to turn the listener off)", c.Metrics.Listen, err)
		} else if !c.AllowNonLoopback && !loopbackHost(c.Metrics.Listen) {
			e.add("metrics.listen", "%q is not a loopback address; set allow_non_loopback: true to listen on it", c.Metrics.Listen)
		}
	}
	if len(e) > 0 {
		return &Error{Path: c.Path, Problems: withLines(e, c.lines)}
	}
	return nil
}

func (c *Config) validateTrial(e *errorList) {
	if c.Trial.SocketMode != "" {
		if _, err := ParseFileMode(c.Trial.SocketMode); err != nil {
			e.add("trial.socket_mode", "%v", err)
		}
	}
	if c.Trial.Listen == "" {
		return
	}
	network, addr, err := ParseListen(c.Trial.Listen)
	switch {
	case err != nil:
		e.add("trial.listen", "%v", err)
	case c.Trial.Listen == c.Listen:
		e.add("trial.listen", "%q is also the milter's listen address: trials need a listener of their own", c.Trial.Listen)
	case network == "tcp" && !c.AllowNonLoopback && !loopbackHost(addr):
		e.add("trial.listen", "%q is not a loopback address; set allow_non_loopback: true to listen on it", c.Trial.Listen)
	}
}

func (c *Config) validateIdentity(e *errorList) {
	id := &c.Identity
	e.oneOf("identity.unknown_login", id.UnknownLogin, "accept", "defer", "reject")
	e.oneOf("identity.unknown_client", id.UnknownClient, "accept", "defer", "reject")
	for i, n := range id.Networks {
		path := fmt.Sprintf("identity.networks[%d]", i)
		if _, err := ParsePrefix(n.Network); err != nil {
			e.add(path+".network", "%v", err)
		}
		if _, ok := id.Accounts[n.Account]; !ok {
			e.add(path+".account", "unknown account %q (define it under identity.accounts)", n.Account)
		}
	}
	seen := make(map[string]string)
	for name, a := range id.Accounts {
		path := "identity.accounts." + name
		for _, l := range a.Logins {
			if other, dup := seen[strings.ToLower(l)]; dup {
				e.add(path+".logins", "login %q is also a login of account %q", l, other)
			}
			seen[strings.ToLower(l)] = name
		}
		for dim, rates := range a.Limits {
			validateRates(e, path+".limits."+dim, dim, rates)
		}
	}
}

// ParseListen splits "inet:HOST:PORT" or "unix:/path" into a Go network
// ("tcp" or "unix") and address.
func ParseListen(s string) (network, addr string, err error) {
	kind, rest, ok := strings.Cut(s, ":")
	switch {
	case !ok:
		return "", "", fmt.Errorf("%q: want inet:HOST:PORT or unix:/path", s)
	case kind == "inet" || kind == "inet6" || kind == "tcp":
		if !strings.Contains(rest, ":") {
			return "", "", fmt.Errorf("%q: want inet:HOST:PORT", s)
		}
		if err := checkHostPort(rest); err != nil {
			return "", "", fmt.Errorf("%q: %v", s, err)
		}
		return "tcp", rest, nil
	case kind == "unix" || kind == "local":
		if !strings.HasPrefix(rest, "/") {
			return "", "", fmt.Errorf("%q: unix socket path must be absolute", s)
		}
		return "unix", rest, nil
	}
	return "", "", fmt.Errorf("%q: unknown listener kind %q (want inet or unix)", s, kind)
}

// checkHostPort checks "HOST:PORT": a host (name or address, [v6] in
// brackets) and a port number up to 65535 (0 lets the system pick a free
// port, which tests use).
func checkHostPort(hostport string) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("want HOST:PORT")
	}
	_ = host // empty: every interface, which the loopback rule refuses unless allowed
	n, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("port %q is not a number", port)
	}
	if n < 0 || n > 65535 {
		return fmt.Errorf("port %d is out of range (1-65535)", n)
	}
	return nil
}

func loopbackHost(hostport string) bool {
	host := hostport
	if i := strings.LastIndex(hostport, ":"); i >= 0 {
		host = hostport[:i]
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// ParsePrefix parses a CIDR network or a single address (as a /32 or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid network %q", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid network %q", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParseFileMode parses an octal permission string such as "0660".
func ParseFileMode(s string) (os.FileMode, error) {
	var m uint32
	if _, err := fmt.Sscanf(s, "%o", &m); err != nil || m > 0o777 {
		return 0, fmt.Errorf("invalid file mode %q (want octal such as 0660)", s)
	}
	return os.FileMode(m), nil
}
