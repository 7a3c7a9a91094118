package config

import (
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// ConsoleConfig configures the abuse desk console, the web interface that
// "abusectl serve" runs on the same store as abusectl. The daemon itself
// never reads it.
type ConsoleConfig struct {
	// Listen is the console's HOST:PORT (default 127.0.0.1:8357). A
	// non-loopback address needs TLS (tls_cert and tls_key), or
	// allow_insecure_non_loopback: true.
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey are PEM files; with both set the console speaks
	// HTTPS only, and its cookies are Secure.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// AllowInsecureNonLoopback lets the console listen on a non-loopback
	// address without TLS (behind a TLS-terminating proxy on the same
	// network segment, say). Off by default.
	AllowInsecureNonLoopback bool `yaml:"allow_insecure_non_loopback"`
	// UsersFile holds the console's users, one "name:role:bcrypt-hash"
	// line each, written by "abusectl user add|passwd|remove".
	UsersFile string `yaml:"users_file"`
	// IdleTimeout ends a session that made no request for this long.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// SessionLifetime ends any session this long after its login.
	SessionLifetime Duration `yaml:"session_lifetime"`
	// Refresh is how often the overview fetches itself again when scripts
	// run (0: never).
	Refresh Duration `yaml:"refresh"`
	// Login throttling: at most login_failures_per_user failed logins for
	// one user name and login_failures_per_address for one client address
	// within login_failure_window; further attempts are refused unchecked
	// until the window has passed.
	LoginFailuresPerUser    int      `yaml:"login_failures_per_user"`
	LoginFailuresPerAddress int      `yaml:"login_failures_per_address"`
	LoginFailureWindow      Duration `yaml:"login_failure_window"`
	// Proxy, when its header is set, trusts a reverse proxy's
	// authentication instead of the users file.
	Proxy ConsoleProxyConfig `yaml:"proxy"`
}

// ConsoleProxyConfig is authentication by a trusted reverse proxy.
type ConsoleProxyConfig struct {
	// Header names the request header that carries the authenticated user
	// name (e.g. X-Remote-User). Empty: proxy authentication is off.
	Header string `yaml:"header"`
	// Trusted lists the proxies' addresses or networks (192.0.2.10,
	// 10.1.0.0/24); a request from any other address is refused.
	Trusted []string `yaml:"trusted"`
	// Operators lists the user names that get the operator role; every
	// other authenticated user is a viewer.
	Operators []string `yaml:"operators"`
}

// Console defaults.
const (
	DefaultConsoleListen          = "127.0.0.1:8357"
	DefaultConsoleUsersFile       = "/etc/abusemilter/console-users"
	DefaultConsoleIdleTimeout     = 30 * time.Minute
	DefaultConsoleSessionLifetime = 12 * time.Hour
	DefaultConsoleRefresh         = 15 * time.Second
	DefaultConsoleFailuresUser    = 5
	DefaultConsoleFailuresAddress = 20
	DefaultConsoleFailureWindow   = 15 * time.Minute
)

// DefaultConsole returns the console's built-in settings: loopback, no
// TLS, the users file, 30 minutes idle.
func DefaultConsole() ConsoleConfig {
	return ConsoleConfig{
		Listen:                  DefaultConsoleListen,
		UsersFile:               DefaultConsoleUsersFile,
		IdleTimeout:             D(DefaultConsoleIdleTimeout),
		SessionLifetime:         D(DefaultConsoleSessionLifetime),
		Refresh:                 D(DefaultConsoleRefresh),
		LoginFailuresPerUser:    DefaultConsoleFailuresUser,
		LoginFailuresPerAddress: DefaultConsoleFailuresAddress,
		LoginFailureWindow:      D(DefaultConsoleFailureWindow),
	}
}

// TLS reports whether the console serves HTTPS.
func (c ConsoleConfig) TLS() bool { return c.TLSCert != "" && c.TLSKey != "" }

// TrustedProxies parses proxy.trusted (validated by Validate).
func (c ConsoleConfig) TrustedProxies() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.Proxy.Trusted {
		if p, ok := parsePrefixOrAddr(s); ok {
			out = append(out, p)
		}
	}
	return out
}

func parsePrefixOrAddr(s string) (netip.Prefix, bool) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err == nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}

// headerName is an HTTP header field name (RFC 9110 token).
var headerName = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+.^_|~-]{1,64}$`)

// validate checks the console section (paths under "console.").
func (c *ConsoleConfig) validate(e *errorList) {
	if c.Listen == "" || !strings.Contains(c.Listen, ":") {
		e.add("console.listen", "%q: want HOST:PORT", c.Listen)
	} else if !loopbackHost(c.Listen) && !c.TLS() && !c.AllowInsecureNonLoopback {
		e.add("console.listen", "%q is not a loopback address: set tls_cert and tls_key, or allow_insecure_non_loopback: true", c.Listen)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		e.add("console.tls_cert", "tls_cert and tls_key go together: set both or neither")
	}
	if c.UsersFile != "" && !filepath.IsAbs(c.UsersFile) {
		e.add("console.users_file", "path %q must be absolute", c.UsersFile)
	}
	e.duration("console.idle_timeout", c.IdleTimeout)
	e.duration("console.session_lifetime", c.SessionLifetime)
	e.duration("console.refresh", c.Refresh)
	e.duration("console.login_failure_window", c.LoginFailureWindow)
	if c.IdleTimeout.Duration < time.Minute && c.IdleTimeout.err == nil {
		e.add("console.idle_timeout", "must be at least 1m, got %s", c.IdleTimeout)
	}
	if c.SessionLifetime.Duration < c.IdleTimeout.Duration && c.SessionLifetime.err == nil {
		e.add("console.session_lifetime", "must be at least idle_timeout (%s), got %s", c.IdleTimeout, c.SessionLifetime)
	}
	if c.Refresh.Duration != 0 && c.Refresh.Duration < 2*time.Second && c.Refresh.err == nil {
		e.add("console.refresh", "must be 0 (off) or at least 2s, got %s", c.Refresh)
	}
	if c.LoginFailuresPerUser < 1 {
		e.add("console.login_failures_per_user", "must be at least 1, got %d", c.LoginFailuresPerUser)
	}
	if c.LoginFailuresPerAddress < 1 {
		e.add("console.login_failures_per_address", "must be at least 1, got %d", c.LoginFailuresPerAddress)
	}
	if c.LoginFailureWindow.Duration <= 0 && c.LoginFailureWindow.err == nil {
		e.add("console.login_failure_window", "must be more than 0")
	}
	if c.Proxy.Header != "" {
		if !headerName.MatchString(c.Proxy.Header) {
			e.add("console.proxy.header", "%q is not a header name", c.Proxy.Header)
		}
		if len(c.Proxy.Trusted) == 0 {
			e.add("console.proxy.trusted", "must list the proxies' addresses when proxy.header is set")
		}
	} else if len(c.Proxy.Trusted) > 0 || len(c.Proxy.Operators) > 0 {
		e.add("console.proxy.header", "must be set when proxy.trusted or proxy.operators is")
	}
	for i, s := range c.Proxy.Trusted {
		if _, ok := parsePrefixOrAddr(s); !ok {
			e.add("console.proxy.trusted", "[%d] %q: want an IP address or a network (192.0.2.0/24)", i, s)
		}
	}
}

// ValidateConsole checks a console section on its own (abusectl serve
// validates the section again after its flags replaced some fields).
func ValidateConsole(c ConsoleConfig) error {
	var e errorList
	c.validate(&e)
	if len(e) > 0 {
		return &Error{Path: "console settings", Problems: e}
	}
	return nil
}
