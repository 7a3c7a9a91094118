package scoring

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"github.com/abusemilter/abusemilter/identity"
)

var errMissingHeader = errors.New("header missing")

// addressView is the parsed form of one address header, cached per message.
type addressView struct {
	addrs []*mail.Address
	err   error
}

// domain returns a message domain prepared for lookalike checks, once per
// message.
func (c *Check) domain(d string) preparedDomain {
	if p, ok := c.domains[d]; ok {
		return p
	}
	p := prepareDomain(d)
	if c.domains == nil {
		c.domains = make(map[string]preparedDomain, 4)
	}
	c.domains[d] = p
	return p
}

// Addresses returns the addresses of every header with the given name,
// parsed tolerantly (see From) once per message.
func (c *Check) Addresses(name string) ([]*mail.Address, error) {
	key := strings.ToLower(name)
	if v, ok := c.views[key]; ok {
		return v.addrs, v.err
	}
	var v addressView
	for _, raw := range c.Msg.Values(name) {
		a, err := parseAddressesTolerant(raw)
		v.addrs = append(v.addrs, a...)
		if err != nil && v.err == nil {
			v.err = err
		}
	}
	if c.views == nil {
		c.views = make(map[string]addressView, 4)
	}
	c.views[key] = v
	return v.addrs, v.err
}

// Count returns how many headers have the name, from one pass over the
// headers per message.
func (c *Check) Count(name string) int {
	if c.counts == nil {
		c.counts = make(map[string]int, len(c.Msg.Headers))
		for _, h := range c.Msg.Headers {
			c.counts[h.key()]++
		}
	}
	return c.counts[strings.ToLower(trimWSP(name))]
}

// Author returns the first From address and its domain in the canonical
// form (identity.CanonicalDomain), or false.
func (c *Check) Author() (*mail.Address, string, bool) {
	from, _ := c.From()
	if len(from) == 0 {
		return nil, "", false
	}
	d := domainOf(from[0].Address)
	return from[0], d, d != ""
}

// Owns reports whether the account may use addr by its own send-as
// patterns, ignoring "send as anyone": what a forwarder really owns.
func (c *Check) Owns(addr string) bool {
	if c.Account == nil {
		return false
	}
	if !c.Account.AnySender {
		return mayUse(c.Account, addr)
	}
	own := *c.Account
	own.AnySender = false
	return mayUse(&own, addr)
}

// mayUse reports whether the account may send as addr, written with a
// Unicode (SMTPUTF8) or an ASCII (punycode) domain: identity compares
// addresses in their canonical form.
func mayUse(a *identity.Account, addr string) bool {
	return a.MaySendAs(addr)
}

// OwnsDomain reports whether the account owns domain d, in either IDNA
// spelling (ignoring "send as anyone").
func (c *Check) OwnsDomain(d string) bool {
	return c.Account != nil && c.Account.OwnsDomain(d)
}

// forwarder reports whether the account resubmits other people's mail.
func (c *Check) forwarder() bool { return c.Account != nil && c.Account.Forwarder }

// parseAddressesTolerant parses an address list strictly; when that fails
// it salvages every local@domain it can find (in angle brackets first,
// else as bare words), returning them with the strict error.
//
// At most MaxAddressesChecked addresses are returned, so that a header with
// thousands of addresses cannot make every per-address rule (lookalikes,
// brands) cost seconds; errTooManyAddresses then says some were left out.
func parseAddressesTolerant(v string) ([]*mail.Address, error) {
	addrs, err := ParseAddressList(v)
	if err != nil {
		addrs = salvageAddresses(unfold(v))
	}
	if len(addrs) > MaxAddressesChecked {
		return addrs[:MaxAddressesChecked], errTooManyAddresses
	}
	return addrs, err
}

// MaxAddressesChecked bounds the addresses of one header that rules examine.
const MaxAddressesChecked = 50

// errTooManyAddresses: a header had more than MaxAddressesChecked addresses.
var errTooManyAddresses = fmt.Errorf("more than %d addresses", MaxAddressesChecked)

// salvageAddresses finds addresses in a header value that net/mail cannot
// parse (obsolete syntax, unquoted specials in display names).
func salvageAddresses(v string) []*mail.Address {
	var out []*mail.Address
	rest := v
	for {
		lt := strings.IndexByte(rest, '<')
		if lt < 0 {
			break
		}
		gt := strings.IndexByte(rest[lt:], '>')
		if gt < 0 {
			break
		}
		if a := strings.TrimSpace(rest[lt+1 : lt+gt]); identity.IsAddress(a) && !strings.ContainsAny(a, " <>\"") {
			out = append(out, &mail.Address{Name: strings.Trim(strings.TrimSpace(rest[:lt]), `"`), Address: a})
		}
		rest = rest[lt+gt+1:]
	}
	if len(out) > 0 {
		return out
	}
	for _, w := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' || r == '(' || r == ')' || r == '"' }) {
		if identity.IsAddress(w) && strings.Count(w, "@") == 1 && !strings.ContainsAny(w, "<>") {
			out = append(out, &mail.Address{Address: w})
		}
	}
	return out
}
