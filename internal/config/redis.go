package config

import "time"

// RedisConfig selects and tunes the shared Redis store.
type RedisConfig struct {
	// URL is redis://[user@]host:port/db or rediss:// for TLS.
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
}

func (c *Config) validateRedis(e *errorList) {
	r := c.Redis
	if r == nil {
		return
	}
	if r.URL == "" && len(r.Addrs) == 0 {
		e.add("redis", "set url, or addrs (cluster seeds, or sentinels with master_name)")
	}
	if r.KeyPrefix == "" {
		r.KeyPrefix = "am:"
	}
	if r.Timeout.Duration == 0 && r.Timeout.err == nil {
		r.Timeout = D(200 * time.Millisecond)
	}
	e.duration("redis.timeout", r.Timeout)
}
