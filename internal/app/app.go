// Package app assembles the decision engine from a validated config: the
// account directory (accounts, logins, networks, sender login maps), the
// rate-limit store and the engine options. The daemon, the offline scanner
// and the admin CLI all build through it, so they agree on what the config
// means.
package app

import (
	"fmt"
	"sort"
	"strings"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/dns"
	"github.com/abusemilter/abusemilter/internal/identity"
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
			logins[strings.ToLower(l)] = name
		}
	}
	for _, path := range ic.SenderLoginMaps {
		entries, err := identity.ReadLoginMapFile(path)
		if err != nil {
			return nil, err
		}
		for _, en := range entries {
			for _, login := range en.Logins {
				name, ok := logins[strings.ToLower(login)]
				if !ok {
					// A login named only in the map is an account of its own.
					name = strings.ToLower(login)
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
	if cfg.Redis != nil {
		ro, err := cfg.Redis.StoreOptions()
		if err != nil {
			return nil, err
		}
		r, err := ratelimit.NewRedis(ro, cfg.Policy(), opts)
		if err != nil {
			return nil, fmt.Errorf("redis store: %w", err)
		}
		return r, nil
	}
	return ratelimit.NewMemoryOptions(cfg.Policy(), nil, opts), nil
}

// EngineOptions converts the config into engine options.
func EngineOptions(cfg *config.Config) scoring.Options {
	disabled := make(map[string]bool, len(cfg.Rules.Disable))
	for _, id := range cfg.Rules.Disable {
		disabled[id] = true
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
		Disabled:        disabled,
		Scores:          cfg.Rules.Scores,
		Settings: scoring.RuleSettings{
			OwnMTAs:         cfg.Rules.OwnMTAs,
			ProtectedBrands: cfg.Rules.ProtectedBrands,
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
func Engine(cfg *config.Config, dir *identity.Directory, limiter ratelimit.Limiter, resolver scoring.Resolver) *scoring.Engine {
	opts := EngineOptions(cfg)
	opts.Resolver = resolver
	for _, a := range dir.Accounts() {
		opts.Settings.CustomerDomains = append(opts.Settings.CustomerDomains, a.Domains()...)
	}
	return scoring.NewEngine(dir, limiter, opts)
}

// Resolver builds the caching DNS resolver the config asks for, or nil when
// dns.enabled is false (DNS rules then skip).
func Resolver(cfg *config.Config) scoring.Resolver {
	if !cfg.DNS.Enabled {
		return nil
	}
	return dns.New(dns.Options{
		MaxEntries:  cfg.DNS.CacheSize,
		PositiveTTL: cfg.DNS.PositiveTTL.Duration,
		NegativeTTL: cfg.DNS.NegativeTTL.Duration,
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
	switch s {
	case "reject":
		return scoring.Reject
	case "defer":
		return scoring.Defer
	}
	return scoring.Accept
}
