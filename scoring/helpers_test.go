package scoring_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/identity"
	"github.com/abusemilter/abusemilter/internal/dns"
	"github.com/abusemilter/abusemilter/scoring"
)

// testNow is the clock of the rule tests.
var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

const testDate = "Fri, 27 Nov 2026 11:58:00 +0000"

// testAccounts are the accounts the rule tests and the golden corpus send as.
func testAccounts(t testing.TB) map[string]*identity.Account {
	t.Helper()
	mk := func(name string, sendAs ...string) *identity.Account {
		a, err := identity.NewAccount(name, sendAs)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	accts := map[string]*identity.Account{
		"alice":    mk("alice", "example.com"),
		"smith":    mk("smith", "smith-law.com"),
		"idn":      mk("idn", "xn--bcher-kva.de"), // bücher.de
		"paypa1":   mk("paypa1", "paypa1.com"),
		"fwd":      mk("fwd", "any", "lists.example.com"),
		"shop":     mk("shop", "shop.example"),
		"hosting":  mk("hosting", "any", "hosting.example"),
		"webmail":  mk("webmail", "example.org"),
		"gardener": mk("gardener", "apple-orchard.example"),
	}
	accts["fwd"].Forwarder = true
	accts["shop"].WebApp = true
	return accts
}

// testSettings are the rule settings of the tests: the provider's MTAs,
// the default brands, and a few customer domains.
func testSettings() scoring.RuleSettings {
	return scoring.RuleSettings{
		OwnMTAs:         []string{"mx.provider.net", "smtp.provider.net"},
		CustomerDomains: []string{"example.com", "smith-law.com", "smithlaw.com", "bakery-berlin.de"},
	}
}

// testResolver holds the DNS the tests see: DMARC records, a DKIM key added
// by the DKIM tests, a failing and a hanging name.
func testResolver() *dns.Static {
	return &dns.Static{
		Records: map[string][]string{
			"_dmarc.yahoo.com":      {"v=DMARC1; p=reject; rua=mailto:d@yahoo.com"},
			"_dmarc.paypal.com":     {"v=DMARC1; p=reject"},
			"_dmarc.bigbank.com":    {"v=DMARC1; p=none; sp=reject"},
			"_dmarc.quarantine.org": {"v=DMARC1; p=quarantine"},
			"_dmarc.relaxed.org":    {"v=DMARC1; p=none"},
			"_dmarc.example.com":    {"v=DMARC1; p=reject"},
		},
		Fail: map[string]error{"_dmarc.broken.example": errors.New("server misbehaving")},
		Hang: map[string]bool{"_dmarc.slow.example": true},
	}
}

func testEngine(t testing.TB, res scoring.Resolver) *scoring.Engine {
	t.Helper()
	return scoring.NewEngine(nil, nil, scoring.Options{
		Now:      func() time.Time { return testNow },
		Settings: testSettings(),
		Resolver: res,
	})
}

// parse reads a raw test message (LF line ends are fine).
func parse(t testing.TB, raw string) *scoring.Message {
	t.Helper()
	m, err := scoring.ParseMessage(strings.NewReader(raw), 64<<10)
	if err != nil {
		t.Fatalf("parse test message: %v\n%s", err, raw)
	}
	return m
}

func decide(t testing.TB, e *scoring.Engine, env *scoring.Envelope, raw string, acct *identity.Account) scoring.Verdict {
	t.Helper()
	return e.Decide(context.Background(), env, parse(t, raw), acct)
}

func hasRule(v scoring.Verdict, id string) bool {
	for _, f := range v.Findings {
		if f.Rule == id {
			return true
		}
	}
	return false
}
