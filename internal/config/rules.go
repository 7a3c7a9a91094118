package config

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/scoring"
	"go.yaml.in/yaml/v3"
)

// RulesConfig tunes the scoring rules.
type RulesConfig struct {
	// RejectThreshold: a message whose findings add up to it is rejected.
	RejectThreshold float64 `yaml:"reject_threshold"`
	// HoldThreshold: a message whose findings add up to it (and stay below
	// reject_threshold) is held for review; 0 turns it off.
	HoldThreshold float64 `yaml:"hold_threshold"`
	// Actions gives rules (by ID) or clauses (by name) an action of their
	// own when they fire: hold, reject, or accept (count the score only).
	Actions map[string]string `yaml:"actions"`
	// Disable lists rule IDs that are switched off.
	Disable []string `yaml:"disable"`
	// Scores overrides the default score of rules by ID.
	Scores map[string]float64 `yaml:"scores"`
	// OwnMTAs are the provider's own mail server names (or domain suffixes).
	OwnMTAs []string `yaml:"own_mtas"`
	// ProtectedBrands are the brands whose lookalike domains are always
	// refused and whose names in display names, subjects and text are
	// checked; empty means the built-in list of big brands
	// (scoring.DefaultBrands). Each entry is a domain or a mapping with the
	// names the brand is written as.
	ProtectedBrands []ProtectedBrand `yaml:"protected_brands"`
	// CustomerDomains are customer domains beyond those of the account
	// directory (the application adds the directory's own): lookalikes of
	// them are scored.
	CustomerDomains []string `yaml:"customer_domains"`
	// Campaigns sets campaign detection across accounts (campaigns.go).
	Campaigns CampaignsConfig `yaml:"campaigns"`
	// Classifier is the provider's own content classifier (rule
	// CONTENT_CLASSIFIER); nil: none.
	Classifier *ClassifierConfig `yaml:"classifier"`
}

// ProtectedBrand is one entry of rules.protected_brands, written either as
// a domain alone (paypal.com: known by its name label when that has five
// letters or more) or as a mapping that says how the brand is written:
//
//	{domain: hsbc.com, names: [HSBC, "HSBC Bank"]}
type ProtectedBrand struct {
	Domain string   `yaml:"domain"`
	Names  []string `yaml:"names"`
}

// UnmarshalYAML reads either form. A node of another kind is left to the
// shape check, which reports it with its line.
func (b *ProtectedBrand) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*b = ProtectedBrand{Domain: n.Value}
	case yaml.MappingNode:
		type long ProtectedBrand // without this method
		var l long
		if err := n.Decode(&l); err != nil {
			return err
		}
		*b = ProtectedBrand(l)
	}
	return nil
}

// MarshalYAML writes the short form when the brand has no names.
func (b ProtectedBrand) MarshalYAML() (any, error) {
	if len(b.Names) == 0 {
		return b.Domain, nil
	}
	type long ProtectedBrand
	return long(b), nil
}

// takesMapping tells the shape check that a ProtectedBrand may also be
// written as a mapping of its fields.
func (ProtectedBrand) takesMapping() {}

// ScoringBrands returns rules.protected_brands as the rules take them
// (nil when none are configured: the built-in list).
func (r RulesConfig) ScoringBrands() []scoring.Brand {
	var out []scoring.Brand
	for _, b := range r.ProtectedBrands {
		out = append(out, scoring.Brand{Domain: b.Domain, Names: b.Names})
	}
	return out
}

// ClassifierConfig loads a model trained with `abusescan learn`.
type ClassifierConfig struct {
	// Model is the model file; a model that does not load is a config
	// error. A reload (SIGHUP) reads it again.
	Model string `yaml:"model"`
	// HoldProbability is the spam probability at or above which
	// CONTENT_CLASSIFIER fires; 0 means the one the model suggests
	// (0.9 unless trained with another --hold-probability).
	HoldProbability float64 `yaml:"hold_probability"`
}

// DNSConfig tunes the resolver rules use.
type DNSConfig struct {
	Enabled bool `yaml:"enabled"`
	// Budget bounds the DNS time spent on one message.
	Budget Duration `yaml:"budget"`
	// CacheSize caps the number of cached names.
	CacheSize int `yaml:"cache_size"`
	// PositiveTTL is how long an answer is cached.
	PositiveTTL Duration `yaml:"positive_ttl"`
	// NegativeTTL is how long "no such name" is cached.
	NegativeTTL Duration `yaml:"negative_ttl"`
}

// DefaultRules returns the built-in rule settings.
func DefaultRules() RulesConfig {
	return RulesConfig{RejectThreshold: 10, Campaigns: DefaultCampaigns()}
}

// DefaultDNS returns the built-in DNS settings.
func DefaultDNS() DNSConfig {
	return DNSConfig{
		Enabled: true, Budget: D(100 * time.Millisecond),
		CacheSize: 10000, PositiveTTL: D(5 * time.Minute), NegativeTTL: D(time.Minute),
	}
}

func (c *Config) validateRules(e *errorList) {
	if c.Rules.RejectThreshold <= 0 {
		e.add("rules.reject_threshold", "must be positive, got %v", c.Rules.RejectThreshold)
	}
	known := make(map[string]bool)
	var ids []string
	for _, r := range scoring.DefaultRules() {
		known[r.ID] = true
		ids = append(ids, r.ID)
	}
	sort.Strings(ids)
	for i, id := range c.Rules.Disable {
		if !known[id] {
			e.add(fmt.Sprintf("rules.disable[%d]", i), "unknown rule %q (known: %s)", id, strings.Join(ids, ", "))
		}
	}
	scored := make([]string, 0, len(c.Rules.Scores))
	for id := range c.Rules.Scores {
		scored = append(scored, id)
	}
	sort.Strings(scored)
	for _, id := range scored {
		if !known[id] {
			e.add("rules.scores."+id, "unknown rule %q", id)
		} else if s := c.Rules.Scores[id]; s < 0 {
			e.add("rules.scores."+id, "must not be negative, got %v", s)
		}
	}
	for _, names := range []struct {
		field string
		list  []string
	}{{"rules.own_mtas", c.Rules.OwnMTAs}, {"rules.customer_domains", c.Rules.CustomerDomains}} {
		for i, d := range names.list {
			if d = strings.Trim(strings.TrimSpace(d), "."); d == "" || strings.ContainsAny(d, " @/*") {
				e.add(fmt.Sprintf("%s[%d]", names.field, i), "%q is not a host or domain name", names.list[i])
			}
		}
	}
	c.validateBrands(e)
	c.validateActions(e, known)
	c.validateCampaigns(e)
	if cl := c.Rules.Classifier; cl != nil {
		if strings.TrimSpace(cl.Model) == "" {
			e.add("rules.classifier.model", "must name the model file (abusescan learn -o FILE)")
		}
		if p := cl.HoldProbability; p != 0 && !(p > 0 && p < 1) {
			e.add("rules.classifier.hold_probability", "must be between 0 and 1 (exclusive), got %v", p)
		}
	}
	e.duration("dns.budget", c.DNS.Budget)
	e.duration("dns.positive_ttl", c.DNS.PositiveTTL)
	e.duration("dns.negative_ttl", c.DNS.NegativeTTL)
	if c.DNS.CacheSize < 0 {
		e.add("dns.cache_size", "must not be negative, got %d", c.DNS.CacheSize)
	}
}

// validateBrands checks rules.protected_brands: every entry names a domain,
// and its names, when given, are not empty.
func (c *Config) validateBrands(e *errorList) {
	for i, b := range c.Rules.ProtectedBrands {
		path := fmt.Sprintf("rules.protected_brands[%d]", i)
		if len(b.Names) > 0 || b.Domain == "" {
			path += ".domain" // the long form, or a mapping without it
		}
		if d := strings.Trim(strings.TrimSpace(b.Domain), "."); d == "" || strings.ContainsAny(d, " @/*") {
			if b.Domain == "" {
				e.add(path, "missing: each brand needs its domain (hsbc.com, or {domain: hsbc.com, names: [HSBC]})")
			} else {
				e.add(path, "%q is not a domain name", b.Domain)
			}
		}
		for j, n := range b.Names {
			if strings.TrimSpace(n) == "" {
				e.add(fmt.Sprintf("rules.protected_brands[%d].names[%d]", i, j), "empty name")
			}
		}
	}
}
