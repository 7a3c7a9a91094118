package scoring

import (
	"context"
	"net/mail"
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/attachment"
	"github.com/abusemilter/abusemilter/identity"
)

// Rule is one check with a stable ID. Simple rules are plain functions of
// the Check; a rule fires at most once per message.
type Rule struct {
	ID     string
	Clause Clause
	// Score is the default contribution; config may override it.
	Score float64
	// Decisive rules reject on their own, whatever the total.
	Decisive bool
	// Summary says what fires the rule (for the rule reference).
	Summary string
	// FalsePositives says when legitimate mail may fire it.
	FalsePositives string
	// Check returns a human reason (for logs and reports) when the rule fires.
	Check func(c *Check) (reason string, fired bool)
}

// Resolver is the DNS access rules may use. Implementations must honour the
// context deadline and should cache.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Check is what the rules see of one message. Parsed views of the headers
// are computed once, on first use, and shared by all rules.
type Check struct {
	Ctx      context.Context
	Env      *Envelope
	Msg      *Message
	Account  *identity.Account
	Now      time.Time
	Resolver Resolver // may be nil: DNS rules then skip
	Settings *RuleSettings

	lex *lexicon // reference domains, prepared by the engine

	fromParsed bool
	from       []*mail.Address
	fromErr    error
	views      map[string]addressView
	counts     map[string]int
	domains    map[string]preparedDomain
	senders    []senderDomain
	sendersSet bool
	dateParsed bool
	dateValue  time.Time
	dateOK     bool
	urls       []string
	urlsParsed bool
	attach     *attachment.Report // the attachments, inspected from the sample on first use
	campaign   *campaignCounts    // the store's counts of the fingerprints (campaign rules only)
	parts      []textPart         // the text parts of the sample, decoded on first use
	partsRead  bool
	phish      *phishSigns // the phishing link signs, found on first use
}

// From returns the addresses of the first From header. When the header
// does not parse strictly, the addresses that can be salvaged from it are
// returned with the parse error; nil and an error mean none could be.
func (c *Check) From() ([]*mail.Address, error) {
	if !c.fromParsed {
		c.fromParsed = true
		if c.Msg.Count("From") == 0 {
			c.fromErr = errMissingHeader
		} else {
			c.from, c.fromErr = parseAddressesTolerant(c.Msg.Get("From"))
		}
	}
	return c.from, c.fromErr
}

// RuleSettings carries the configuration that rules read.
type RuleSettings struct {
	// OwnMTAs are host names (or domain suffixes) of the provider's own mail
	// servers: a Received or Authentication-Results header naming them that
	// the client wrote is forged.
	OwnMTAs []string
	// ProtectedBrands are the brands whose lookalike domains and
	// display-name claims are decisive or scored: a domain (paypal.com)
	// and the names it is written as (PayPal). Empty means DefaultBrands.
	ProtectedBrands []Brand
	// CustomerDomains are the domains of the provider's customers (from the
	// account directory): lookalikes of them are scored, not decisive, since
	// two customers may own similar names.
	CustomerDomains []string
	// DNSBudget bounds the DNS time spent on one message.
	DNSBudget time.Duration
	// Classifier is the content classifier of rule CONTENT_CLASSIFIER.
	Classifier ClassifierSettings
}

// Brands returns the protected brands: the configured ones, or
// DefaultBrands when none are configured. A configured brand without names
// is known by its domain's name label when that has at least five letters
// (example-bank.com: "example-bank"); shorter labels (hsbc.com) need their
// names given.
func (s *RuleSettings) Brands() []Brand {
	if len(s.ProtectedBrands) == 0 {
		return DefaultBrands()
	}
	brands := make([]Brand, 0, len(s.ProtectedBrands))
	for _, pb := range s.ProtectedBrands {
		d := identity.CanonicalDomain(strings.Trim(pb.Domain, ". "))
		if d == "" {
			continue
		}
		b := Brand{Domain: d}
		for _, n := range pb.Names {
			if n = strings.Join(strings.Fields(n), " "); n != "" {
				b.Names = append(b.Names, n)
			}
		}
		if len(b.Names) == 0 {
			if label, _ := domainLabel(registrable(d)); len(label) >= 5 {
				b.Names = []string{label}
			}
		}
		for _, r := range pb.Related {
			if r = identity.CanonicalDomain(strings.Trim(r, ". ")); r != "" {
				b.Related = append(b.Related, r)
			}
		}
		brands = append(brands, b)
	}
	return brands
}

// ParseAddressList parses an address-list header value (RFC 5322 section
// 3.4), decoding RFC 2047 encoded words in display names.
func ParseAddressList(v string) ([]*mail.Address, error) {
	return addressParser.ParseList(strings.TrimSpace(v))
}

var addressParser = mail.AddressParser{WordDecoder: wordDecoder}
