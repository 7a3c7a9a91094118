package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// RedisConfig selects and tunes the shared Redis store. Exactly one of url
// (a single node), addrs with master_name (Sentinel) or addrs with cluster
// (Cluster seeds) says where it is.
type RedisConfig struct {
	// URL is redis://[user@]host:port[/db] or rediss:// for TLS. It must not
	// contain a password.
	URL string `yaml:"url"`
	// Addrs are cluster seed nodes (host:port), or sentinel addresses when
	// MasterName is set.
	Addrs      []string `yaml:"addrs"`
	MasterName string   `yaml:"master_name"`
	Cluster    bool     `yaml:"cluster"`
	Username   string   `yaml:"username"`
	// The password comes from a file or an environment variable, never from
	// the config file itself.
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// KeyPrefix starts every key (default "am:").
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds each message's Redis call (default 200ms).
	Timeout Duration `yaml:"timeout"`
	// TLS turns TLS on for addrs (rediss:// turns it on for url).
	TLS RedisTLSConfig `yaml:"tls"`
}

// RedisTLSConfig tunes TLS to Redis.
type RedisTLSConfig struct {
	Enabled bool `yaml:"enabled"`
	// CAFile holds the PEM certificates that sign the server's; empty means
	// the system roots.
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify turns certificate checks off (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// CertFile and KeyFile are a client certificate, when the server asks.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

func (c *Config) validateRedis(e *errorList) {
	r := c.Redis
	if r == nil {
		return
	}
	switch {
	case r.URL == "" && len(r.Addrs) == 0:
		e.add("redis", "set url, or addrs (cluster seeds with cluster: true, or sentinels with master_name)")
	case r.URL != "" && len(r.Addrs) > 0:
		e.add("redis", "set url or addrs, not both")
	case len(r.Addrs) > 0 && r.MasterName == "" && !r.Cluster:
		e.add("redis.addrs", "say what the addresses are: master_name (Sentinel) or cluster: true")
	case r.MasterName != "" && r.Cluster:
		e.add("redis.master_name", "Sentinel and cluster exclude each other")
	}
	if r.URL != "" {
		u, err := url.Parse(r.URL)
		switch {
		case err != nil:
			e.add("redis.url", "not a URL (want redis://host:port or rediss://host:port)")
		case u.Scheme != "redis" && u.Scheme != "rediss":
			e.add("redis.url", "scheme %q: want redis or rediss", u.Scheme)
		case u.User != nil && hasPassword(u.User):
			e.add("redis.url", "must not contain a password: use password_file or password_env")
		case u.Host == "":
			e.add("redis.url", "no host")
		}
	}
	for i, a := range r.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			e.add(fmt.Sprintf("redis.addrs[%d]", i), "%q is not host:port", a)
		}
	}
	if r.PasswordFile != "" && r.PasswordEnv != "" {
		e.add("redis.password_file", "set password_file or password_env, not both")
	}
	if r.PasswordFile != "" {
		if _, err := os.Stat(r.PasswordFile); err != nil {
			e.add("redis.password_file", "%s", FileProblem(r.PasswordFile, err))
		}
	}
	if r.PasswordEnv != "" {
		if _, ok := os.LookupEnv(r.PasswordEnv); !ok {
			e.add("redis.password_env", "environment variable %q is not set", r.PasswordEnv)
		}
	}
	if r.KeyPrefix == "" {
		r.KeyPrefix = "am:"
	}
	if strings.ContainsAny(r.KeyPrefix, "{} \t\r\n") {
		e.add("redis.key_prefix", "%q must not contain braces or white space", r.KeyPrefix)
	}
	if r.Timeout.Duration == 0 && r.Timeout.err == nil {
		r.Timeout = D(200 * time.Millisecond)
	}
	e.duration("redis.timeout", r.Timeout)
	if r.Timeout.err == nil && r.Timeout.Duration > 0 && (r.Timeout.Duration < 10*time.Millisecond || r.Timeout.Duration > 10*time.Second) {
		e.add("redis.timeout", "%s is out of range (10ms to 10s)", r.Timeout.Duration)
	}
	t := r.TLS
	if t.CAFile != "" {
		if _, err := os.Stat(t.CAFile); err != nil {
			e.add("redis.tls.ca_file", "%s", FileProblem(t.CAFile, err))
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		e.add("redis.tls.cert_file", "cert_file and key_file go together")
	}
}

func hasPassword(u *url.Userinfo) bool {
	_, ok := u.Password()
	return ok
}

// FileProblem says what is wrong with a file in words that name it once:
// "/etc/x does not exist", "/etc/x cannot be read (permission denied)".
// The config check and the daemon's check (daemon.Check) word file
// problems through it.
func FileProblem(path string, err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("%s does not exist", path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Sprintf("%s cannot be read (permission denied)", path)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s: %v", path, pe.Err)
	}
	return err.Error()
}
