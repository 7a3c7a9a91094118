package config

import (
	"time"
)

// RulesConfig tunes the scoring rules.
type RulesConfig struct {
	// RejectThreshold: a message whose findings add up to it is rejected.
	RejectThreshold float64 `yaml:"reject_threshold"`
	// Disable lists rule IDs that are switched off.
	Disable []string `yaml:"disable"`
	// Scores overrides the default score of rules by ID.
	Scores map[string]float64 `yaml:"scores"`
	// OwnMTAs are the provider's own mail server names (or domain suffixes).
	OwnMTAs []string `yaml:"own_mtas"`
	// ProtectedBrands are domains whose lookalikes are always refused.
	ProtectedBrands []string `yaml:"protected_brands"`
}

// DNSConfig tunes the resolver rules use.
type DNSConfig struct {
	Enabled bool `yaml:"enabled"`
	// Budget bounds the DNS time spent on one message.
	Budget Duration `yaml:"budget"`
}

// DefaultRules returns the built-in rule settings.
func DefaultRules() RulesConfig {
	return RulesConfig{RejectThreshold: 10}
}

// DefaultDNS returns the built-in DNS settings.
func DefaultDNS() DNSConfig {
	return DNSConfig{Enabled: true, Budget: D(100 * time.Millisecond)}
}

func (c *Config) validateRules(e *errorList) {
	if c.Rules.RejectThreshold <= 0 {
		e.add("rules.reject_threshold", "must be positive, got %v", c.Rules.RejectThreshold)
	}
	e.duration("dns.budget", c.DNS.Budget)
}
