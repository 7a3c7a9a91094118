package app

import (
	"fmt"
	"os"
	"strings"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// RedisOptions turns the redis section of a validated config into the
// options of ratelimit.NewRedis, reading the password from its file or
// environment variable. The daemon and the admin CLI both connect through
// it, so they agree on the server, the credentials and the key prefix.
func RedisOptions(rc *config.RedisConfig) (ratelimit.RedisOptions, error) {
	if rc == nil {
		return ratelimit.RedisOptions{}, fmt.Errorf("redis: the config has no redis section (it uses the embedded store)")
	}
	ro := ratelimit.RedisOptions{
		URL:        rc.URL,
		Addrs:      rc.Addrs,
		MasterName: rc.MasterName,
		Cluster:    rc.Cluster,
		Username:   rc.Username,
		KeyPrefix:  rc.KeyPrefix,
		Timeout:    rc.Timeout.Duration,
	}
	switch {
	case rc.PasswordFile != "":
		b, err := os.ReadFile(rc.PasswordFile)
		if err != nil {
			return ro, fmt.Errorf("redis.password_file: %w", err)
		}
		ro.Password = strings.TrimRight(string(b), "\r\n")
	case rc.PasswordEnv != "":
		v, ok := os.LookupEnv(rc.PasswordEnv)
		if !ok {
			return ro, fmt.Errorf("redis.password_env: environment variable %q is not set", rc.PasswordEnv)
		}
		ro.Password = v
	}
	return ro, nil
}
