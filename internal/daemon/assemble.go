package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/classifier"
	"github.com/abusemilter/abusemilter/identity"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/dns"
	"github.com/abusemilter/abusemilter/internal/notify"
	"github.com/abusemilter/abusemilter/milter"
	"github.com/abusemilter/abusemilter/ratelimit"
	"github.com/abusemilter/abusemilter/scoring"
)

// Directory builds the account directory, reading sender login map files.
func Directory(cfg *config.Config) (*identity.Directory, error) {
	ic := cfg.Identity
	byName := make(map[string]*identity.Account, len(ic.Accounts))
	logins := make(map[string]string)
	names := make([]string, 0, len(ic.Accounts))
	for name := range ic.Accounts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ac := ic.Accounts[name]
		a, err := identity.NewAccount(name, ac.SendAs)
		if err != nil {
			return nil, err
		}
		a.Forwarder, a.WebApp = ac.Forwarder, ac.WebApp
		byName[name] = a
		for _, l := range ac.Logins {
			logins[identity.CanonicalLogin(l)] = name
		}
	}
	for _, path := range ic.SenderLoginMaps {
		entries, err := identity.ReadLoginMapFile(path)
		if err != nil {
			return nil, err
		}
		for _, en := range entries {
			for _, login := range en.Logins {
				name, ok := logins[identity.CanonicalLogin(login)]
				if !ok {
					// A login named only in the map is an account of its own,
					// named by the login's canonical form.
					name = identity.CanonicalLogin(login)
					if byName[name] == nil {
						byName[name] = &identity.Account{Name: name}
						names = append(names, name)
					}
					logins[name] = name
				}
				if err := byName[name].AddSendAs(en.Sender); err != nil {
					return nil, fmt.Errorf("%s:%d: %w", path, en.Line, err)
				}
			}
		}
	}
	accounts := make([]*identity.Account, 0, len(byName))
	for _, name := range names {
		accounts = append(accounts, byName[name])
	}
	var nets []identity.NetworkAccount
	for _, n := range ic.Networks {
		p, err := config.ParsePrefix(n.Network)
		if err != nil {
			return nil, err
		}
		nets = append(nets, identity.NetworkAccount{Prefix: p, Account: n.Account})
	}
	return identity.NewDirectory(accounts, logins, nets, identity.DirectoryOptions{LoginIsAddress: ic.LoginIsAddress})
}

// Limiter builds the rate-limit store the config selects: the shared Redis
// store when the config has a redis section, else the in-memory one. Both
// also implement ratelimit.Admin.
func Limiter(cfg *config.Config) (ratelimit.Limiter, error) {
	return LimiterWith(cfg, ratelimit.Options{})
}

// LimiterWith is Limiter with store options (event receiver, breaker
// tuning). The config's notify.threshold becomes the usage threshold when
// opts sets none.
func LimiterWith(cfg *config.Config, opts ratelimit.Options) (ratelimit.Limiter, error) {
	if len(opts.UsageThresholds) == 0 && cfg.Notify.Threshold > 0 {
		opts.UsageThresholds = []float64{cfg.Notify.Threshold}
	}
	if opts.Instance == "" {
		opts.Instance = cfg.InstanceName()
	}
	opts.Monitor = cfg.Mode == "monitor"
	if cfg.Redis != nil {
		return RedisStore(cfg, opts)
	}
	return ratelimit.NewMemoryOptions(Policy(cfg), nil, opts), nil
}

// RedisStore opens the Redis store of a config that has a redis section,
// as the daemon does; abusectl and the console connect through it too.
func RedisStore(cfg *config.Config, opts ratelimit.Options) (*ratelimit.Redis, error) {
	if cfg.Redis == nil {
		return nil, fmt.Errorf("config %q has no redis section", cfg.Path)
	}
	ro, err := StoreOptions(cfg.Redis)
	if err != nil {
		return nil, err
	}
	r, err := ratelimit.NewRedis(ro, Policy(cfg), opts)
	if err != nil {
		return nil, fmt.Errorf("redis store: %w", err)
	}
	return r, nil
}

// EngineOptions converts the config into engine options.
func EngineOptions(cfg *config.Config) scoring.Options {
	disabled := make(map[string]bool, len(cfg.Rules.Disable))
	for _, id := range cfg.Rules.Disable {
		disabled[id] = true
	}
	actions := make(map[string]scoring.Action, len(cfg.Rules.Actions))
	for name, a := range cfg.Rules.Actions {
		actions[name] = action(a)
	}
	if _, ok := actions[scoring.RuleContentClassifier]; !ok {
		// The classifier's natural action: the desk decides.
		actions[scoring.RuleContentClassifier] = scoring.Hold
	}
	return scoring.Options{
		Mode:            scoring.Mode(cfg.Mode),
		RejectThreshold: cfg.Rules.RejectThreshold,
		MaxRecipients:   maxRecipients(cfg.Limits.MaxRecipientsPerMessage),
		UnknownLogin:    action(cfg.Identity.UnknownLogin),
		UnknownClient:   action(cfg.Identity.UnknownClient),
		LimiterFailure:  action(cfg.RedisFailure),
		LockAction:      action(cfg.Strikes.LockAction),
		LockContact:     cfg.Strikes.Contact,
		HoldThreshold:   cfg.Rules.HoldThreshold,
		Actions:         actions,
		Records:         true,
		Disabled:        disabled,
		Scores:          cfg.Rules.Scores,
		Malware:         malwareOptions(cfg.Antivirus),
		Campaigns:       cfg.Rules.Campaigns.Options(),
		Settings: scoring.RuleSettings{
			OwnMTAs:         cfg.Rules.OwnMTAs,
			ProtectedBrands: cfg.Rules.ScoringBrands(),
			// The directory's domains (identity.Account.Domains) are to be
			// appended by the caller that holds the directory.
			CustomerDomains: append([]string(nil), cfg.Rules.CustomerDomains...),
			DNSBudget:       cfg.DNS.Budget.Duration,
		},
	}
}

// Engine builds the engine over a directory and limiter.
// The directory's own domains are added to the customer domains that
// lookalikes are compared against.
func Engine(cfg *config.Config, dir *identity.Directory, limiter ratelimit.Limiter, resolver scoring.Resolver, extra ...EngineOption) *scoring.Engine {
	opts := EngineOptions(cfg)
	opts.Resolver = resolver
	for _, a := range dir.Accounts() {
		opts.Settings.CustomerDomains = append(opts.Settings.CustomerDomains, a.Domains()...)
	}
	for _, o := range extra {
		o(&opts)
	}
	return scoring.NewEngine(dir, limiter, opts)
}

// EngineOption adds to the engine options the config gives.
type EngineOption func(*scoring.Options)

// WithClassifier gives the engine the content classifier that Classifier
// loaded.
func WithClassifier(cs scoring.ClassifierSettings) EngineOption {
	return func(o *scoring.Options) { o.Settings.Classifier = cs }
}

// Classifier loads the content classifier of rules.classifier (zero
// settings when none is configured): the model file, and the hold
// probability of the config or else the one the model suggests. The
// error names the field and the file: "rules.classifier.model: model
// /etc/m: bad magic: not a valid model".
func Classifier(cfg *config.Config) (scoring.ClassifierSettings, error) {
	cc := cfg.Rules.Classifier
	if cc == nil {
		return scoring.ClassifierSettings{}, nil
	}
	m, err := classifier.Load(cc.Model)
	if err != nil {
		return scoring.ClassifierSettings{}, fmt.Errorf("rules.classifier.model: %w", err)
	}
	p := cc.HoldProbability
	if p == 0 {
		p = m.HoldProbability()
	}
	return scoring.ClassifierSettings{Model: m, HoldProbability: p}, nil
}

// WithRulePanicHandler has f told of every rule that panics.
func WithRulePanicHandler(f func(rule string, value any)) EngineOption {
	return func(o *scoring.Options) { o.OnRulePanic = f }
}

// Resolver builds the caching DNS resolver the config asks for, or nil when
// dns.enabled is false (DNS rules then skip).
func Resolver(cfg *config.Config) scoring.Resolver {
	return ResolverWith(cfg, nil)
}

// ResolverWith is Resolver with every lookup reported to observe (the
// daemon's DNS metrics); observe may be nil.
func ResolverWith(cfg *config.Config, observe func(result string, queried bool, took time.Duration)) scoring.Resolver {
	if !cfg.DNS.Enabled {
		return nil
	}
	return dns.New(dns.Options{
		MaxEntries:  cfg.DNS.CacheSize,
		PositiveTTL: cfg.DNS.PositiveTTL.Duration,
		NegativeTTL: cfg.DNS.NegativeTTL.Duration,
		Observe:     observe,
	})
}

func maxRecipients(n int) int {
	if n == 0 {
		return -1 // 0 in config turns the cap off
	}
	return n
}

// action maps a validated config word to an action.
func action(s string) scoring.Action {
	if a, ok := scoring.ParseAction(s); ok {
		return a
	}
	return scoring.Accept
}

// parseLimits converts validated dimension -> rates strings.
func parseLimits(m map[string][]string) ratelimit.Limits {
	out := make(ratelimit.Limits)
	for name, rates := range m {
		dim, ok := config.LimitDimensions[name]
		if !ok {
			continue
		}
		out[dim] = []ratelimit.Rate{}
		for _, s := range rates {
			if r, err := ratelimit.ParseRate(s); err == nil {
				out[dim] = append(out[dim], r)
			}
		}
	}
	return out
}

// Policy builds the rate-limit policy of a validated config.
func Policy(c *config.Config) ratelimit.Policy {
	p := ratelimit.Policy{
		Limits:           parseLimits(c.Limits.Dimensions()),
		AccountOverrides: make(map[string]ratelimit.Limits),
		SenderOverrides:  make(map[string]ratelimit.Limits),
		ExemptAccounts:   make(map[string]bool),
		ExemptSenders:    make(map[string]bool),
		Strikes: ratelimit.StrikePolicy{
			Threshold: c.Strikes.Threshold,
			Window:    c.Strikes.Window.Duration,
			LockFor:   c.Strikes.LockFor.Duration,
		},
		Desk: ratelimit.DeskPolicy{
			Retention:             c.Desk.Retention.Duration,
			AttributionRetention:  c.Desk.AttributionRetention.Duration,
			ComplaintWindow:       c.Desk.Complaints.Window.Duration,
			ComplaintThreshold:    c.Desk.Complaints.Threshold,
			ComplaintStrikeWeight: c.Desk.Complaints.StrikeWeight,
		},
	}
	if p.Desk.AttributionRetention == 0 {
		p.Desk.AttributionRetention = -1 // 0 in the config turns the records off
	}
	for dim, rates := range p.Limits {
		if len(rates) == 0 {
			delete(p.Limits, dim)
		}
	}
	for name, a := range c.Identity.Accounts {
		if len(a.Limits) > 0 {
			p.AccountOverrides[name] = parseLimits(a.Limits)
		}
	}
	for sender, dims := range c.Limits.Senders {
		p.SenderOverrides[normalizeSender(sender)] = parseLimits(dims)
	}
	for _, a := range c.Limits.Exempt.Accounts {
		p.ExemptAccounts[a] = true
	}
	for _, s := range c.Limits.Exempt.Senders {
		p.ExemptSenders[normalizeSender(s)] = true
	}
	for _, n := range c.Limits.Exempt.Networks {
		if pr, err := config.ParsePrefix(n); err == nil {
			p.ExemptNetworks = append(p.ExemptNetworks, pr)
		}
	}
	return p
}

func normalizeSender(s string) string { return identity.NormalizeAddress(s) }

// redisPassword reads the Redis password from its file or environment variable.
// Errors name the file or variable, never the value.
func redisPassword(r *config.RedisConfig) (string, error) {
	switch {
	case r.PasswordFile != "":
		b, err := os.ReadFile(r.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("redis.password_file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case r.PasswordEnv != "":
		v, ok := os.LookupEnv(r.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("redis.password_env: environment variable %q is not set", r.PasswordEnv)
		}
		return v, nil
	}
	return "", nil
}

// StoreOptions turns a validated Redis section into store options, reading
// the password and the TLS files.
func StoreOptions(r *config.RedisConfig) (ratelimit.RedisOptions, error) {
	pw, err := redisPassword(r)
	if err != nil {
		return ratelimit.RedisOptions{}, err
	}
	ro := ratelimit.RedisOptions{
		URL: r.URL, Addrs: r.Addrs, MasterName: r.MasterName, Cluster: r.Cluster,
		Username: r.Username, Password: pw, KeyPrefix: r.KeyPrefix, Timeout: r.Timeout.Duration,
	}
	t := r.TLS
	if t.Enabled || t.CAFile != "" || t.InsecureSkipVerify || t.CertFile != "" || strings.HasPrefix(r.URL, "rediss://") {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return ro, fmt.Errorf("redis.tls.ca_file: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return ro, fmt.Errorf("redis.tls.ca_file: %q holds no PEM certificate", t.CAFile)
			}
		}
		if t.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				return ro, fmt.Errorf("redis.tls.cert_file: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		if cfg.ServerName == "" && r.URL != "" {
			if u, err := url.Parse(r.URL); err == nil {
				cfg.ServerName = u.Hostname()
			}
		}
		ro.TLS = cfg
	}
	if ro.URL == "" && len(ro.Addrs) == 0 {
		return ro, errors.New("redis: no url and no addrs")
	}
	return ro, nil
}

// NotifyOptions builds notify.Options from the config section, reading the
// webhook tokens. The caller adds Logger, Observer and Host.
func NotifyOptions(c config.NotifyConfig) (notify.Options, error) {
	o := notify.Options{
		QueueSize:          c.QueueSize,
		OnLockCommand:      c.OnLockCommand,
		CommandTimeout:     c.CommandTimeout.Duration,
		CommandConcurrency: c.CommandConcurrency,
		AuditLog:           c.AuditLog,
	}
	for i, w := range c.Webhooks {
		tok, err := w.Token()
		if err != nil {
			return notify.Options{}, fmt.Errorf("notify.webhooks[%d]: %w", i, err)
		}
		o.Webhooks = append(o.Webhooks, notify.Webhook{
			URL: w.URL, Token: notify.Secret(tok), TokenHeader: w.TokenHeader,
			Timeout: w.Timeout.Duration, Retries: w.RetryCount(),
		})
	}
	return o, nil
}

// ListenOptions maps the config to milter.ListenOptions.
func ListenOptions(cfg *config.Config) (milter.ListenOptions, error) {
	lo := milter.ListenOptions{AllowNonLoopback: cfg.AllowNonLoopback, SocketGroup: cfg.Socket.Group}
	if cfg.Socket.Mode != "" {
		m, err := config.ParseFileMode(cfg.Socket.Mode)
		if err != nil {
			return lo, err
		}
		lo.SocketMode = m
	}
	return lo, nil
}
