package scoring_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/identity"
	"github.com/abusemilter/abusemilter/ratelimit"
	"github.com/abusemilter/abusemilter/scoring"
)

// The four spellings of one IDN mailbox: Unicode and punycode, with and
// without odd case and a trailing dot.
var idnSpellings = []string{"mjl@hé.mox.example", "mjl@xn--h-bga.mox.example", "MJL@HÉ.Mox.Example.", "mjl@XN--H-BGA.mox.example."}

// idnDirectory holds an IDN customer whose send_as, login and network are
// written in the spelling given.
func idnDirectory(t *testing.T, sendAs, login string) *identity.Directory {
	t.Helper()
	a, err := identity.NewAccount("mjl", []string{sendAs})
	if err != nil {
		t.Fatal(err)
	}
	d, err := identity.NewDirectory([]*identity.Account{a}, map[string]string{login: "mjl"},
		[]identity.NetworkAccount{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Account: "mjl"}}, identity.DirectoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func idnMessage(from string) *scoring.Message {
	return &scoring.Message{Headers: []scoring.Header{
		{Name: "From", Value: "Mjl <" + from + ">"}, {Name: "Sender", Value: from}, {Name: "Reply-To", Value: from},
		{Name: "Resent-From", Value: from}, {Name: "Resent-Sender", Value: from},
		{Name: "To", Value: "bob@example.org"}, {Name: "Subject", Value: "hi"},
		{Name: "Date", Value: testDate}, {Name: "Message-ID", Value: "<1@xn--h-bga.mox.example>"},
		{Name: "DKIM-Signature", Value: "v=1; a=rsa-sha256; d=hé.mox.example; s=s; h=from; bh=x; b=y"},
	}}
}

// plainMessage is idnMessage without the DKIM signature.
func plainMessage(from string) *scoring.Message {
	m := idnMessage(from)
	m.Headers = m.Headers[:len(m.Headers)-1]
	return m
}

// TestIDNCustomer: every combination of spellings in send_as, login,
// envelope sender and header addresses (From, Sender, Reply-To,
// Resent-From, Resent-Sender, DKIM d=) is the customer's own mail, by
// login and by network; a foreign mailbox in either spelling is not.
func TestIDNCustomer(t *testing.T) {
	ctx := context.Background()
	patterns := []string{"hé.mox.example", "xn--h-bga.mox.example", "@HÉ.mox.example.", "mjl@xn--h-bga.mox.example"}
	for _, pattern := range patterns {
		for _, login := range idnSpellings {
			e := scoring.NewEngine(idnDirectory(t, pattern, login), nil, scoring.Options{Now: func() time.Time { return testNow }})
			for _, authLogin := range append(idnSpellings, "") {
				for _, envFrom := range idnSpellings {
					for _, from := range idnSpellings {
						env := &scoring.Envelope{AuthLogin: authLogin, MailFrom: envFrom, Rcpts: []string{"bob@example.org"}}
						if authLogin == "" {
							env.ClientAddr = netip.MustParseAddr("192.0.2.7")
						}
						id, v := e.CheckSender(env)
						if id.Name() != "mjl" || v.Action != scoring.Accept {
							t.Fatalf("send_as %q login %q: CheckSender(%q) = %q %v", pattern, login, authLogin, id.Name(), v.Action)
						}
						if v := e.CheckMessage(ctx, env, idnMessage(from), id); v.Action != scoring.Accept || len(v.Findings) != 0 {
							t.Errorf("send_as %q login %q/%q envelope %q From %q: %s %v", pattern, login, authLogin, envFrom, from, v.Reply(), v.RuleIDs())
						}
					}
				}
			}
			for _, foreign := range []string{"mjl@hè.mox.example", "mjl@xn--h-cga.mox.example"} {
				env := &scoring.Envelope{AuthLogin: login, MailFrom: idnSpellings[0], Rcpts: []string{"bob@example.org"}}
				id, _ := e.CheckSender(env)
				if v := e.CheckMessage(ctx, env, idnMessage(foreign), id); v.Action != scoring.Reject || v.Rule != scoring.RuleFromNotOwned {
					t.Errorf("send_as %q: foreign From %q: %s", pattern, foreign, v.Reply())
				}
				env.MailFrom = foreign
				if v := e.CheckMessage(ctx, env, idnMessage(idnSpellings[1]), id); v.Action != scoring.Reject || v.Rule != scoring.RuleFromNotOwned {
					t.Errorf("send_as %q: foreign envelope %q: %s", pattern, foreign, v.Reply())
				}
			}
		}
	}
}

// TestIDNAddressLogin: an unconfigured address login is one ad-hoc
// account (one rate-limit subject) in every spelling, and may send as its
// address in every spelling.
func TestIDNAddressLogin(t *testing.T) {
	d, err := identity.NewDirectory(nil, nil, nil, identity.DirectoryOptions{LoginIsAddress: true})
	if err != nil {
		t.Fatal(err)
	}
	lim := ratelimit.NewMemory(ratelimit.Policy{Limits: ratelimit.Limits{ratelimit.AccountMessages: {{Limit: 3, Window: 3600e9}}}}, func() time.Time { return testNow })
	e := scoring.NewEngine(d, lim, scoring.Options{Now: func() time.Time { return testNow }})
	var refused []string
	for i, login := range idnSpellings {
		env := &scoring.Envelope{AuthLogin: login, MailFrom: idnSpellings[(i+1)%4], Rcpts: []string{"bob@example.org"}}
		id, _ := e.CheckSender(env)
		if id.Name() != "mjl@xn--h-bga.mox.example" {
			t.Errorf("login %q: account %q, want the canonical address", login, id.Name())
		}
		v := e.CheckMessage(context.Background(), env, idnMessage(idnSpellings[(i+2)%4]), id)
		if v.Action != scoring.Accept {
			refused = append(refused, fmt.Sprintf("%s: %s", login, v.Reply()))
		}
	}
	// Three messages an hour: the fourth spelling is the same account.
	if len(refused) != 1 {
		t.Errorf("refused %q, want only the fourth message (one account over its rate)", refused)
	}
	e2 := scoring.NewEngine(d, nil, scoring.Options{UnknownLogin: scoring.Accept})
	names := map[string]bool{}
	for _, login := range []string{"Zoë", "zoë"} {
		names[e2.Identify(&scoring.Envelope{AuthLogin: login}).Name()] = true
	}
	if len(names) != 1 {
		t.Errorf("unknown-login accounts %v, want one", names)
	}
}

// TestIDNBrandsAndCustomers: protected brands and customer domains are
// compared in the canonical form, whichever spelling the config and the
// message use.
func TestIDNBrandsAndCustomers(t *testing.T) {
	ctx := context.Background()
	shop, _ := identity.NewAccount("shop", []string{"shop.example"})
	for _, brand := range []string{"bücher.de", "XN--BCHER-KVA.de.", "Bücher.DE"} {
		e := scoring.NewEngine(nil, nil, scoring.Options{Now: func() time.Time { return testNow }, Settings: scoring.RuleSettings{
			ProtectedBrands: []scoring.Brand{{Domain: brand}}, CustomerDomains: []string{"Bäckerei.example."},
		}})
		for _, tt := range []struct {
			from string
			want string
		}{
			{"x@bucher.de", scoring.RuleLookalikeBrand}, // the accent dropped
			{"x@xn--bcher-kva.de.evil.example", scoring.RuleLookalikeBrand},
			{"x@bücher.de.evil.example", scoring.RuleLookalikeBrand},
			{"x@backerei.example", scoring.RuleLookalikeCustomer},
			{"x@" + identity.CanonicalDomain("bäckerel.example"), scoring.RuleLookalikeCustomer}, // punycode, l for i
		} {
			env := &scoring.Envelope{AuthLogin: "shop", MailFrom: "orders@shop.example", Rcpts: []string{"bob@example.org"}}
			sendAny := *shop
			sendAny.AnySender = true
			v := e.CheckMessage(ctx, env, plainMessage(tt.from), scoring.Identity{Account: &sendAny, How: identity.ByLogin})
			if !slices.Contains(v.RuleIDs(), tt.want) {
				t.Errorf("brand %q: From %q fired %v, want %s", brand, tt.from, v.RuleIDs(), tt.want)
			}
		}
		// The brand's own mail in either spelling is no lookalike.
		owner, _ := identity.NewAccount("owner", []string{"bücher.de"})
		for _, from := range []string{"x@bücher.de", "x@xn--bcher-kva.de", "x@BÜCHER.DE."} {
			env := &scoring.Envelope{AuthLogin: "owner", MailFrom: from, Rcpts: []string{"bob@example.org"}}
			if v := e.CheckMessage(ctx, env, plainMessage(from), scoring.Identity{Account: owner, How: identity.ByLogin}); len(v.Findings) != 0 {
				t.Errorf("brand %q: its own From %q fired %v", brand, from, v.RuleIDs())
			}
		}
	}
}

// TestBrandRelatedDomains: a brand's own related domain (Yahoo's corporate
// yahoo-inc.com) is the brand's: its mail does not approach a rejection.
func TestBrandRelatedDomains(t *testing.T) {
	e := scoring.NewEngine(nil, nil, scoring.Options{Now: func() time.Time { return testNow }})
	for _, from := range []string{"Yahoo <news@yahoo-inc.com>", "Yahoo Inc. <legal@mail.yahoo-inc.com>", "Google <noreply@googlemail.com>", "Microsoft <no-reply@microsoftonline.com>"} {
		a, _ := identity.NewAccount("brand", []string{"yahoo-inc.com", "*.yahoo-inc.com", "googlemail.com", "microsoftonline.com"})
		m := idnMessage("x@y.example")
		m.Headers[0].Value = from
		m.Headers = m.Headers[:1]
		env := &scoring.Envelope{AuthLogin: "brand", Rcpts: []string{"bob@example.org"}}
		v := e.CheckMessage(context.Background(), env, m, scoring.Identity{Account: a, How: identity.ByLogin})
		for _, r := range v.RuleIDs() {
			if r == scoring.RuleBrandDisplayName || r == scoring.RuleBrandInDomain || r == scoring.RuleLookalikeBrand {
				t.Errorf("From %q fired %v (score %v)", from, v.RuleIDs(), v.Score)
			}
		}
	}
	// Another company's hyphenated Yahoo domain still carries the brand.
	a, _ := identity.NewAccount("other", []string{"yahoo-deals.example"})
	m := &scoring.Message{Headers: []scoring.Header{{Name: "From", Value: "Yahoo <x@yahoo-deals.example>"}}}
	v := e.CheckMessage(context.Background(), &scoring.Envelope{AuthLogin: "other", MailFrom: "x@yahoo-deals.example"}, m, scoring.Identity{Account: a, How: identity.ByLogin})
	if !slices.Contains(v.RuleIDs(), scoring.RuleBrandDisplayName) {
		t.Errorf("yahoo-deals.example fired %v, want BRAND_DISPLAY_NAME", v.RuleIDs())
	}
}
