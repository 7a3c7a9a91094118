package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/daemon"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// env is what a command runs against: the store's admin API, the policy of
// the config (for thresholds and configured exemptions), the clock used for
// ages, the operator named in the audit log, and whether to colour output.
type env struct {
	admin  ratelimit.Admin
	policy ratelimit.Policy
	// cfg is the config the store was opened from (serve reads its console
	// section and directory).
	cfg *config.Config
	// accounts are the account names the config defines (identity.accounts
	// and the sender-login maps), for reading a bare address as an account.
	accounts map[string]bool
	// where names the store in errors ("redis 127.0.0.1:6380").
	where string
	now   func() time.Time
	user  string
	color bool

	closeStore func() error
	// open connects on first use (nil: admin is set already), so that a
	// bad command line is reported before any connection attempt.
	open func(ctx context.Context) error
	// storeOpts are the store's options (the complaint command's event
	// receiver); afterClose runs once the store is closed, in order.
	storeOpts  ratelimit.Options
	afterClose []func()
}

// store returns the admin API, connecting on first use.
func (e *env) store(ctx context.Context) (ratelimit.Admin, error) {
	if e.admin == nil && e.open != nil {
		open := e.open
		e.open = nil
		if err := open(ctx); err != nil {
			return nil, err
		}
	}
	if e.admin == nil {
		return nil, fmt.Errorf("no rate store")
	}
	return e.admin, nil
}

func (e *env) close() {
	if e.closeStore != nil {
		_ = e.closeStore()
	}
	for _, f := range e.afterClose {
		f()
	}
}

// connect loads the config, applies the command-line overrides (--redis,
// --password-file, --timeout) to its redis section, opens the store
// through the daemon's own assembly and checks with one PING that it
// answers and accepts the password.
func (e *env) connect(ctx context.Context, g globalOptions, lookup config.Lookup) error {
	cfg, src, err := loadConfig(g, lookup)
	if err != nil {
		return err
	}
	if cfg.Redis == nil && g.RedisURL == "" {
		return configError(fmt.Errorf("config %s uses the embedded rate store: the admin CLI needs the redis store "+
			"(a redis: section in the config, or --redis URL), because the embedded store lives inside the milter process", src))
	}
	if g.Timeout <= 0 {
		return cli.Usagef("--timeout must be positive")
	}
	rc := config.RedisConfig{}
	if cfg.Redis != nil {
		rc = *cfg.Redis
	}
	if g.RedisURL != "" {
		rc.URL, rc.Addrs, rc.MasterName = g.RedisURL, nil, ""
		if rc.KeyPrefix == "" {
			rc.KeyPrefix = "am:"
		}
	}
	if g.PasswordFile != "" {
		rc.PasswordFile, rc.PasswordEnv = g.PasswordFile, ""
	}
	// The mail path's per-call timeout (200ms) is too short for a SCAN of a
	// big keyspace; an admin call waits up to --timeout.
	rc.Timeout = config.Duration{Duration: g.Timeout}
	cfg.Redis = &rc
	e.where = redisWhere(rc)
	if g.RedisURL == "" {
		// Which config the store came from, in every message that names it.
		e.where += " of " + src.String()
	}
	opts := e.storeOpts
	opts.Monitor = cfg.Mode == "monitor"
	r, err := daemon.RedisStore(cfg, opts)
	if err != nil {
		return configError(err)
	}
	pctx, cancel := context.WithTimeout(ctx, g.Timeout)
	defer cancel()
	if err := r.Client().Ping(pctx).Err(); err != nil {
		r.Close()
		return redisError(e.where, err)
	}
	e.admin, e.policy, e.closeStore, e.cfg = r, daemon.Policy(cfg), r.Close, cfg
	e.accounts = configAccounts(cfg)
	return nil
}

// configAccounts lists the accounts a config defines: identity.accounts,
// and those of the sender-login maps when they can be read here.
func configAccounts(cfg *config.Config) map[string]bool {
	out := make(map[string]bool, len(cfg.Identity.Accounts))
	for name := range cfg.Identity.Accounts {
		out[name] = true
	}
	if len(cfg.Identity.SenderLoginMaps) > 0 {
		if dir, err := daemon.Directory(cfg); err == nil {
			for _, a := range dir.Accounts() {
				out[a.Name] = true
			}
		}
	}
	return out
}

// loadConfig reads the config as the daemon does (config.Resolve: --config,
// else $ABUSEMILTER_CONFIG, else the default path when it exists); with
// none of them, the built-in defaults serve only with --redis.
func loadConfig(g globalOptions, lookup config.Lookup) (*config.Config, config.Source, error) {
	src := config.Resolve(g.ConfigPath, lookup)
	if src.How == config.FromBuiltIn && g.RedisURL == "" {
		return nil, src, cli.Usagef("no config: give --config FILE (the daemon's config, with a redis: section) or --redis URL "+
			"(there is no $%s and no %s)", config.EnvVar, config.DefaultPath)
	}
	cfg, err := src.Load()
	if err != nil {
		return nil, src, configError(err)
	}
	return cfg, src, nil
}

// redisWhere names the server of a redis section for messages, without
// credentials.
func redisWhere(rc config.RedisConfig) string {
	switch {
	case rc.URL != "":
		if _, rest, ok := strings.Cut(rc.URL, "://"); ok {
			return "redis " + rest
		}
		return "redis " + rc.URL
	case rc.MasterName != "":
		return fmt.Sprintf("redis master %q via sentinels %s", rc.MasterName, strings.Join(rc.Addrs, ","))
	}
	return "redis " + strings.Join(rc.Addrs, ",")
}

// redisError turns a connection failure into one line that says what to
// check.
func redisError(where string, err error) error {
	msg := err.Error()
	var ne net.Error
	switch {
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "invalid password"),
		strings.Contains(msg, "invalid username-password"):
		return fmt.Errorf("%s refused the credentials (wrong password or user): %s", where, oneLine(msg))
	case strings.Contains(msg, "NOAUTH"):
		return fmt.Errorf("%s wants a password and none was given (set redis.password_file or password_env, or --password-file): %s", where, oneLine(msg))
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%s is unreachable: no answer within the timeout (%s)", where, oneLine(msg))
	}
	return fmt.Errorf("%s is unreachable: %s", where, oneLine(msg))
}

// storeError wraps an admin call's error in one line naming the store.
func (e *env) storeError(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %s", e.where, oneLine(err.Error()))
}

// currentUser is the operator recorded in the audit log: the OS user, and
// the user behind sudo when there is one.
func currentUser() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if su := os.Getenv("SUDO_USER"); su != "" && su != name {
		return su + " (sudo " + name + ")"
	}
	return name
}
