package scoring

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// customerDomains returns n customer domains shaped like a hoster's: two per
// customer, a name and a "-shop" name, plus a few real-looking names.
func customerDomains(n int) []string {
	out := []string{"smith-law.com", "paypal-shop.example", "booking.example", "coffee.example", "münchen-bau.de", "ab.example"}
	for i := 1; len(out) < n; i++ {
		out = append(out, fmt.Sprintf("customer%d.example", i), fmt.Sprintf("customer%d-shop.example", i))
	}
	return out[:n]
}

// slips returns s with one random typing slip (or unchanged).
func slips(rng *rand.Rand, s string) string {
	r := []rune(s)
	if len(r) < 2 {
		return s
	}
	i := rng.IntN(len(r) - 1)
	switch rng.IntN(5) {
	case 0:
		return string(append(r[:i:i], r[i+1:]...))
	case 1:
		return string(r[:i]) + "x" + string(r[i:])
	case 2:
		r[i], r[i+1] = r[i+1], r[i]
	case 3:
		r[i] = 'q'
	}
	return string(r)
}

// TestLexIndexMatchesScan checks that the index gives exactly what the
// linear scan gives, for lookalikes, embedded domains and unrelated names.
func TestLexIndexMatchesScan(t *testing.T) {
	refs := customerDomains(2000)
	lx := newLexicon(&RuleSettings{CustomerDomains: refs})
	rng := rand.New(rand.NewPCG(1, 2))
	probes := []string{"smithlaw.com", "smith-law.com.evil.ru", "customer12.example-login.net", "cust0mer7.example",
		"bo0king.example", "cofee.example", "coffee.example", "xn--mnchen-bau-vlb.de", "unrelated.org", "a.b", "",
		"customer1999-shop.example", "shop.customer3.example", "ab.example", "abc.example"}
	for range 3000 {
		d := refs[rng.IntN(len(refs))]
		label, suffix := domainLabel(d)
		switch rng.IntN(4) {
		case 0:
			probes = append(probes, slips(rng, label)+"."+suffix)
		case 1:
			probes = append(probes, slips(rng, slips(rng, label))+".net")
		case 2:
			probes = append(probes, "www."+d+"-secure.example")
		default:
			probes = append(probes, fmt.Sprintf("other%d.example", rng.IntN(5000)))
		}
	}
	matched := 0
	for _, d := range probes {
		p := prepareDomain(d)
		wantRef, wantHow, wantOK := p.lookalikeOf(lx.customers)
		gotRef, gotHow, gotOK := p.lookalikeIn(lx.customerIndex)
		if gotRef != wantRef || gotHow != wantHow || gotOK != wantOK {
			t.Errorf("%q: index gives %q %q %v, scan gives %q %q %v", d, gotRef.domain, gotHow, gotOK, wantRef.domain, wantHow, wantOK)
		}
		if wantOK {
			matched++
		}
	}
	if matched < len(probes)/3 {
		t.Errorf("only %d of %d probes are lookalikes; the test no longer exercises the index", matched, len(probes))
	}
}

// BenchmarkLookalikeCustomer compares the index with the linear scan over
// 20,000 customer domains, for a domain that imitates none of them (the
// common case: every entry must be ruled out).
func BenchmarkLookalikeCustomer(b *testing.B) {
	lx := newLexicon(&RuleSettings{CustomerDomains: customerDomains(20000)})
	p := prepareDomain("secure-payments-update.example")
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.lookalikeOf(lx.customers)
		}
	})
	b.Run("index", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.lookalikeIn(lx.customerIndex)
		}
	})
}
