package scoring

import (
	"strings"
	"testing"

	"github.com/mtibben/confusables"
)

// TestConfusableBrandSpellings: brand names written with look-alike
// characters from other scripts, compatibility forms, digit and symbol
// swaps, invisible characters and spaced-out letters are found, naming
// the brand they imitate.
func TestConfusableBrandSpellings(t *testing.T) {
	lx := newLexicon(&RuleSettings{})
	for _, tc := range []struct{ text, brand string }{
		{"P\u0430yPal Service", "paypal.com"},                                          // Cyrillic а
		{"\u0420\u0430y\u0420\u0430l", "paypal.com"},                                   // Cyrillic Р and а
		{"\u03a1ay\u03a1al", "paypal.com"},                                             // Greek Ρ
		{"Micr\u03bfsoft account team", "microsoft.com"},                               // Greek ο
		{"Micr0soft", "microsoft.com"},                                                 // digit zero
		{"Micro$oft Support", "microsoft.com"},                                         // dollar for s
		{"\u0410pple ID", "apple.com"},                                                 // Cyrillic А
		{"\u13aapple Support", "apple.com"},                                            // Cherokee Ꭺ
		{"Goog1e Security", "google.com"},                                              // digit one
		{"\u0555utlook Web Access", "microsoft.com"},                                   // Armenian Օ
		{"\uff30\uff41\uff59\uff30\uff41\uff4c", "paypal.com"},                         // fullwidth ＰａｙＰａｌ
		{"\U0001d40f\U0001d41a\U0001d432\U0001d40f\U0001d41a\U0001d425", "paypal.com"}, // mathematical bold
		{"\u1d18\u1d00\u028f\u1d18\u1d00\u029f", "paypal.com"},                         // small capitals ᴘᴀʏᴘᴀʟ
		{"Pay\u200bPal", "paypal.com"},                                                 // zero width space
		{"Pay\u00adPal", "paypal.com"},                                                 // soft hyphen
		{"Net\u200dflix", "netflix.com"},                                               // zero width joiner
		{"\u202ePayPal", "paypal.com"},                                                 // bidi override
		{"P a y P a l", "paypal.com"},                                                  // spaced out
		{"P.a.y.P.a.l billing", "paypal.com"},                                          // dotted
		{"Arnazon Prime", "amazon.com"},                                                // rn for m
		{"Net fl1x", "netflix.com"},                                                    // split with a digit
		{"Bank of Arnerica Alerts", "bankofamerica.com"},                               // multi-word name, rn for m
		{"We11s Fargo", "wellsfargo.com"},                                              // digits in a two-word name
		{"D\u041dL Express", "dhl.com"},                                                // short name, Cyrillic Н
		{"\u041dSBC", "hsbc.com"},                                                      // short name, Cyrillic Н
		{"Re: your F\u0435dEx parcel", "fedex.com"},                                    // Cyrillic е in a subject
		{"Dоcu\u0405ign envelope", "docusign.com"},                                     // Cyrillic о and Ѕ
		{"\u24df\u24d0\u24e8\u24df\u24d0\u24db", "paypal.com"},                         // circled letters
		{"Payp\u00e1l", "paypal.com"},                                                  // accent
	} {
		m, ok := lx.confusableBrand(tc.text, nil)
		if !ok {
			t.Errorf("%+q: no brand found, want %s", tc.text, tc.brand)
			continue
		}
		if m.brand.Domain != tc.brand {
			t.Errorf("%+q: found %s (%q), want %s", tc.text, m.brand.Domain, m.written, tc.brand)
		}
	}
}

// TestConfusableBrandNearMisses: plain spellings in any case, names that
// merely contain a brand's letters, words one letter from a short brand
// name, and ordinary text are no hit.
func TestConfusableBrandNearMisses(t *testing.T) {
	lx := newLexicon(&RuleSettings{})
	for _, text := range []string{
		"PayPal",               // the plain spelling
		"PAYPAL Service",       // plain, upper case
		"paypal",               // plain, lower case
		"Bank of America",      // plain multi-word name
		"BANK  OF   AMERICA",   // plain, other spacing
		"Amazon.com order 123", // a name written with its suffix
		"Kapaypalooza Ltd",     // a customer containing the letters
		"Paypalmer Consulting", // a longer word
		"Ebayo Ristorante",     // a person's name
		"DHI Group",            // one letter from a short name, all Latin
		"U.P.S. Store",         // a short name spelled out
		"ups and downs",        // a short name, plain
		"Microsoft",            // plain
		"Chase Smith",          // a first name that is part of a brand name
		"Wells",                // half of a two-word name
		"Micro soft drinks",    // two plain Latin words
		"Apple orchard",        // plain
		"Pay Pal",              // two plain Latin words (not spaced-out letters)
		"Visa application",     // a brand without names
		"\u041c\u043e\u0441\u043a\u0432\u0430 news", // Cyrillic text
		"Outlook for 2027",                          // plain word
		"Re: Steam support ticket",                  // plain multi-word name
		"",                                          // nothing
	} {
		if m, ok := lx.confusableBrand(text, nil); ok {
			t.Errorf("%+q: found %s (%+q as %q), want no hit", text, m.brand.Domain, m.seen, m.written)
		}
	}
}

// TestConfusableBrandSkip: the sender's own brand is skipped.
func TestConfusableBrandSkip(t *testing.T) {
	lx := newLexicon(&RuleSettings{})
	own := func(b Brand) bool { return b.Domain == "paypal.com" }
	if _, ok := lx.confusableBrand("P\u0430yPal", own); ok {
		t.Error("the skipped brand was found")
	}
	if m, ok := lx.confusableBrand("P\u0430yPal and Micr0soft", own); !ok || m.brand.Domain != "microsoft.com" {
		t.Errorf("got %+v %v, want microsoft.com past the skipped brand", m, ok)
	}
}

// TestConfiguredBrandNames: a configured brand is matched by the names it
// is given (HSBC, three letters) and by its label when it has none.
func TestConfiguredBrandNames(t *testing.T) {
	lx := newLexicon(&RuleSettings{ProtectedBrands: []Brand{
		{Domain: "hsbc.com", Names: []string{"HSBC", "HSBC Bank"}},
		{Domain: "example-bank.com"},
	}})
	if m, ok := lx.confusableBrand("\u041dSBC Bank", nil); !ok || m.brand.Domain != "hsbc.com" {
		t.Errorf("HSBC with a Cyrillic Н: %+v %v", m, ok)
	}
	if m, ok := lx.confusableBrand("Example-Bank", nil); ok {
		t.Errorf("plain label matched: %+v", m)
	}
	if _, ok := lx.confusableBrand("Micr0soft", nil); ok {
		t.Error("a configured list must replace the built-in brands")
	}
	if b, ok := lx.brandNamed("Alerts from hsbc bank"); !ok || b.Domain != "hsbc.com" {
		t.Errorf("brandNamed with a configured name: %+v %v", b, ok)
	}
}

// BenchmarkConfusableBrand measures the per-message cost: a display name,
// a subject and the lead lines of a body, none of them a brand.
func BenchmarkConfusableBrand(b *testing.B) {
	lx := newLexicon(&RuleSettings{})
	texts := []string{"Maria Gonzalez-Weber", "Re: Quarterly figures for the board meeting on Thursday",
		strings.Repeat("Dear colleagues, please find attached the minutes of our last meeting.\n", 8)}
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range texts {
			if _, ok := lx.confusableBrand(s, nil); ok {
				b.Fatal("unexpected hit")
			}
		}
	}
}

// TestLatinSkeleton: the shortcut for words of plain Latin letters gives
// the skeleton the full mapping gives.
func TestLatinSkeleton(t *testing.T) {
	words := []string{"PayPal", "Microsoft", "rnicrosoft", "rrn", "rnn", "vvv", "vvvv", "rnrn", "Arnazon", "vvells", "IBM", "lIlI", "Mmm", "Wwvv", "Chase", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"}
	// and every pair of letters
	for a := 'a'; a <= 'z'; a++ {
		for b := 'A'; b <= 'Z'; b++ {
			words = append(words, string([]rune{a, b}), string([]rune{b, a}))
		}
	}
	for _, w := range words {
		if got, want := string(appendLatinSkeleton(nil, w)), skeletonOf(confusables.Skeleton(w)); got != want {
			t.Errorf("appendLatinSkeleton(%q) = %q, the full mapping gives %q", w, got, want)
		}
	}
}
