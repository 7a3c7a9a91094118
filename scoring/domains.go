package scoring

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/abusemilter/abusemilter/identity"
	"github.com/mtibben/confusables"
	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// Brand is a protected brand: the domain it sends from, the names it is
// known by in display names, subjects and text, and other domains of its
// own that its mail comes from (the brand's corporate or mail domains),
// which are the brand's and no lookalike of it.
type Brand struct {
	Domain string
	// Names are written as the brand writes them ("PayPal", "HSBC",
	// "Bank of America"); they are compared without regard to case.
	Names   []string
	Related []string // canonical domains, e.g. "yahoo-inc.com" for Yahoo
}

// DefaultBrands is the built-in list of protected brands used when the
// config names none: the most impersonated senders in phishing reports,
// each with the names it is written as.
func DefaultBrands() []Brand {
	b := func(domain string, names ...string) Brand { return Brand{Domain: domain, Names: names} }
	related := func(br Brand, domains ...string) Brand { br.Related = domains; return br }
	yahoo := related(b("yahoo.com", "Yahoo"), "yahoo-inc.com")
	return []Brand{
		b("paypal.com", "PayPal"), b("apple.com", "Apple", "Apple Support", "iCloud"), b("icloud.com"),
		related(b("microsoft.com", "Microsoft", "Office 365", "Microsoft 365", "Outlook", "OneDrive", "SharePoint"), "microsoftonline.com"),
		b("outlook.com"), b("office.com"), b("live.com"), b("hotmail.com", "Hotmail"),
		related(b("google.com", "Google", "Gmail"), "googlemail.com"), b("gmail.com"), b("youtube.com", "YouTube"),
		b("amazon.com", "Amazon", "Amazon.com"), b("facebook.com", "Facebook"), b("instagram.com", "Instagram"),
		b("whatsapp.com", "WhatsApp"), b("netflix.com", "Netflix"), b("linkedin.com", "LinkedIn"),
		b("dhl.com", "DHL", "DHL Express"), b("fedex.com", "FedEx"), b("ups.com", "UPS"), b("usps.com", "USPS"),
		b("ebay.com", "eBay"), b("chase.com", "Chase Bank", "JPMorgan Chase"), b("wellsfargo.com", "Wells Fargo"),
		b("bankofamerica.com", "Bank of America"), b("citibank.com", "Citibank"), b("hsbc.com", "HSBC", "HSBC Bank"),
		b("americanexpress.com", "American Express", "Amex"), b("visa.com"), b("mastercard.com", "Mastercard"),
		b("dropbox.com", "Dropbox"), b("docusign.com", "DocuSign", "docusign.net"), b("docusign.net"),
		b("adobe.com", "Adobe", "Adobe Sign"), yahoo, b("aol.com"),
		b("twitter.com", "Twitter"), b("spotify.com", "Spotify"), b("steampowered.com", "Steam Support"),
		b("steamcommunity.com"), b("coinbase.com", "Coinbase"), b("binance.com", "Binance"),
		b("booking.com", "Booking.com"), b("airbnb.com", "Airbnb"), b("stripe.com", "Stripe"),
		b("intuit.com", "Intuit", "QuickBooks", "TurboTax"), b("github.com", "GitHub"), b("irs.gov", "Internal Revenue Service", "IRS"),
	}
}

// bigProviders are mailbox providers whose servers a customer's message
// cannot legitimately have passed through before submission here.
var bigProviders = []string{
	"google.com", "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com",
	"protection.outlook.com", "office365.com", "microsoft.com", "yahoo.com", "yahoodns.net", "icloud.com",
	"me.com", "apple.com", "aol.com", "mail.ru", "yandex.ru", "yandex.net", "gmx.net",
	"web.de", "zoho.com", "fastmail.com", "messagingengine.com", "protonmail.ch", "proton.me",
	"amazonses.com", "sendgrid.net", "mailgun.org",
}

// freemailDomains are free mailbox providers (a Reply-To there diverts the
// replies to whoever holds that mailbox).
var freemailDomains = map[string]bool{
	"gmail.com": true, "googlemail.com": true, "outlook.com": true, "hotmail.com": true, "live.com": true,
	"msn.com": true, "yahoo.com": true, "ymail.com": true, "aol.com": true, "icloud.com": true,
	"me.com": true, "mail.com": true, "gmx.com": true, "gmx.net": true, "gmx.de": true, "web.de": true,
	"mail.ru": true, "yandex.ru": true, "yandex.com": true, "protonmail.com": true, "proton.me": true,
	"zoho.com": true, "qq.com": true, "163.com": true, "126.com": true, "tutanota.com": true,
}

// urlShorteners are link-shortening services that hide a link's target.
var urlShorteners = map[string]bool{
	"bit.ly": true, "tinyurl.com": true, "t.co": true, "goo.gl": true, "ow.ly": true, "is.gd": true,
	"buff.ly": true, "cutt.ly": true, "rebrand.ly": true, "shorturl.at": true, "rb.gy": true,
	"tiny.cc": true, "bl.ink": true, "t.ly": true, "s.id": true, "v.gd": true, "lnkd.in": true,
	"qr.net": true, "x.co": true, "shorte.st": true, "adf.ly": true, "soo.gd": true,
}

// registrable returns the registrable domain (eTLD+1, lowercase ASCII) of
// a host name, or the name itself when it has none (a bare suffix or an
// unqualified name).
func registrable(host string) string {
	host = identity.CanonicalDomain(host)
	r, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil {
		return host
	}
	return r
}

// sameOrSubdomain reports whether d is parent or a subdomain of it.
func sameOrSubdomain(d, parent string) bool {
	return d == parent || strings.HasSuffix(d, "."+parent)
}

// domainLabel splits a registrable domain into its name label (as
// Unicode, lowercase) and its public suffix: "xn--pypal-4ve.com" gives
// "pаypal", "com".
func domainLabel(reg string) (label, suffix string) {
	dot := strings.IndexByte(reg, '.')
	if dot < 0 {
		return reg, ""
	}
	label, suffix = reg[:dot], reg[dot+1:]
	if strings.HasPrefix(label, "xn--") {
		if u, err := idna.Punycode.ToUnicode(label); err == nil {
			label = u
		}
	}
	return strings.ToLower(label), suffix
}

// digitSwaps maps digits and symbols used in place of letters.
var digitSwaps = strings.NewReplacer("0", "o", "1", "l", "3", "e", "4", "a", "5", "s", "7", "t", "8", "b", "$", "s", "@", "a", "vv", "w", "rn", "m")

// skeletonOf is the comparison form of a domain label: the Unicode TR39
// confusables skeleton, lowercased, digits read as the letters they stand
// for, i read as l, hyphens and combining marks dropped. "pаypa1" (Cyrillic a, digit one) and "paypal"
// share a skeleton.
func skeletonOf(label string) string {
	s := strings.ToLower(confusables.Skeleton(strings.ToLower(label)))
	s = digitSwaps.Replace(s)
	// Accents and other combining marks ("paypál") do not make a name
	// different to the eye, nor does i for l.
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '-' || unicode.Is(unicode.Mn, r):
			return -1
		case r == 'i':
			return 'l'
		}
		return r
	}, s)
	return s
}

// lexEntry is a reference domain prepared for lookalike comparison.
type lexEntry struct {
	domain   string // registrable ASCII domain
	label    string
	skeleton string
}

// lexicon holds the reference domains a message's domains are compared
// with, prepared once per engine.
type lexicon struct {
	brands []Brand
	// brandNames are the brands' names in lowercase, by brand.
	brandNames [][]string
	// spellings finds brand names by skeleton (confusable.go);
	// longestName is the longest skeleton's length in bytes.
	spellings    map[string][]brandSpelling
	namePrefixes map[string]bool
	longestName  int
	brandLex     []lexEntry
	// brandIndex finds lookalikes among brandLex without a scan (link
	// hosts: up to maxURLHosts per message).
	brandIndex *lexIndex
	customers  []lexEntry
	// customerIndex finds lookalikes among customers without a scan.
	customerIndex *lexIndex
	ownMTAs       []string
}

func newLexicon(s *RuleSettings) *lexicon {
	lx := &lexicon{brands: s.Brands()}
	for _, b := range lx.brands {
		lx.brandLex = append(lx.brandLex, newLexEntry(b.Domain))
		lower := make([]string, len(b.Names))
		for i, n := range b.Names {
			lower[i] = strings.ToLower(n)
		}
		lx.brandNames = append(lx.brandNames, lower)
	}
	lx.spellings, lx.namePrefixes, lx.longestName = prepareSpellings(lx.brands)
	lx.brandIndex = newLexIndex(lx.brandLex)
	for _, d := range s.CustomerDomains {
		lx.customers = append(lx.customers, newLexEntry(d))
	}
	lx.customerIndex = newLexIndex(lx.customers)
	for _, m := range s.OwnMTAs {
		lx.ownMTAs = append(lx.ownMTAs, strings.ToLower(strings.Trim(m, ". ")))
	}
	return lx
}

func newLexEntry(domain string) lexEntry {
	reg := registrable(domain)
	label, _ := domainLabel(reg)
	return lexEntry{domain: reg, label: label, skeleton: skeletonOf(label)}
}

// lookalikeOf returns the reference entry that domain d imitates, if any:
// same skeleton with a different spelling (homoglyphs, digit swaps,
// punycode), one typing slip away (typoOf) on a name of at least minEditLen
// characters, or the reference domain embedded in d ("paypal.com-login.net",
// "paypal.com.example.ru"). d itself and d's subdomains of the reference do
// not count, nor does the same name under another suffix. See typoOf for
// the slips counted.
func lookalikeOf(d string, refs []lexEntry) (lexEntry, string, bool) {
	return prepareDomain(d).lookalikeOf(refs)
}

// preparedDomain is a message domain in the forms lookalike checks compare.
type preparedDomain struct {
	ascii    string // lowercase IDNA ASCII form
	reg      string // registrable domain
	label    string // its name label, Unicode
	skeleton string
}

func prepareDomain(d string) preparedDomain {
	d = identity.CanonicalDomain(d)
	reg := registrable(d)
	label, _ := domainLabel(reg)
	return preparedDomain{ascii: d, reg: reg, label: label, skeleton: skeletonOf(label)}
}

func (p preparedDomain) lookalikeOf(refs []lexEntry) (lexEntry, string, bool) {
	if utf8.RuneCountInString(p.label) < 3 {
		return lexEntry{}, "", false
	}
	for _, ref := range refs {
		if p.reg == ref.domain || p.label == ref.label || utf8.RuneCountInString(ref.label) < 4 {
			continue
		}
		switch {
		case p.skeleton == ref.skeleton:
			return ref, "confusable spelling", true
		case typoOf(p.skeleton, ref.skeleton):
			return ref, "one typo away", true
		case embedsDomain(p.ascii, ref.domain):
			return ref, "embeds the domain", true
		}
	}
	return lexEntry{}, "", false
}

// minEditLen is the shortest name compared for typing slips: shorter names
// are too often one letter apart by chance (adobe/abode).
const minEditLen = 6

// embedsDomain reports whether ref appears in d as a run of whole labels
// followed by '.' or '-' ("paypal.com.evil.ru", "paypal.com-secure.net").
func embedsDomain(d, ref string) bool {
	for i := 0; ; {
		j := strings.Index(d[i:], ref)
		if j < 0 {
			return false
		}
		at := i + j
		end := at + len(ref)
		startOK := at == 0 || d[at-1] == '.'
		if startOK && end < len(d) && (d[end] == '.' || d[end] == '-') {
			return true
		}
		i = at + 1
	}
}

// typoOf reports whether cand is one typing slip from ref, of the kinds
// typosquatters use and ordinary words seldom are: a letter left out, one
// doubled or added (but not a plural "s" at the end), two neighbours
// swapped, or on names of at least minSubstLen letters one letter changed
// other than the first (cooking is not booking, finance is not binance).
// Both names must have at least minEditLen letters (adobe is not abode).
func typoOf(cand, ref string) bool {
	a, b := []rune(cand), []rune(ref)
	if len(a) < minEditLen || len(b) < minEditLen || string(a) == string(b) {
		return false
	}
	switch len(a) - len(b) {
	case 1: // added: a is b with one more letter
		if string(a[:len(b)]) == string(b) && a[len(a)-1] == 's' {
			return false // plural
		}
		return dropsOne(a, b)
	case -1: // left out
		return dropsOne(b, a)
	case 0:
		i := 0
		for i < len(a) && a[i] == b[i] {
			i++
		}
		if i+1 < len(a) && a[i] == b[i+1] && a[i+1] == b[i] && string(a[i+2:]) == string(b[i+2:]) {
			return true // swapped neighbours
		}
		return i > 0 && len(b) >= minSubstLen && string(a[i+1:]) == string(b[i+1:])
	}
	return false
}

// minSubstLen is the shortest brand name on which a changed letter counts.
const minSubstLen = 7

// dropsOne reports whether short is long with exactly one letter removed.
func dropsOne(long, short []rune) bool {
	i := 0
	for i < len(short) && long[i] == short[i] {
		i++
	}
	return string(long[i+1:]) == string(short[i:])
}

// brandNamed returns the protected brand whose name appears as a whole word
// or phrase in s (a decoded display name), if any.
func (lx *lexicon) brandNamed(s string) (Brand, bool) {
	s = strings.ToLower(s)
	if s == "" {
		return Brand{}, false
	}
	for i, b := range lx.brands {
		for _, n := range lx.brandNames[i] {
			if containsWord(s, n) {
				return b, true
			}
		}
	}
	return Brand{}, false
}

// containsWord reports whether phrase occurs in s bounded by non-letters.
func containsWord(s, phrase string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], phrase)
		if j < 0 {
			return false
		}
		at := i + j
		end := at + len(phrase)
		if (at == 0 || !isWordByte(s[at-1])) && (end == len(s) || !isWordByte(s[end])) {
			return true
		}
		i = at + 1
	}
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c >= 0x80
}

// isBrandDomain reports whether d, a domain in the canonical form
// (domainOf), belongs to brand b: the brand domain, one of its related
// domains, or a subdomain of either.
func isBrandDomain(d string, b Brand) bool {
	if sameOrSubdomain(d, b.Domain) {
		return true
	}
	for _, r := range b.Related {
		if sameOrSubdomain(d, r) {
			return true
		}
	}
	return false
}

// ownBrandDomain reports whether d belongs to one of the brands (see
// isBrandDomain): a brand's own mail imitates no brand.
func (lx *lexicon) ownBrandDomain(d string) bool {
	for _, b := range lx.brands {
		if isBrandDomain(d, b) {
			return true
		}
	}
	return false
}

// hostMatches reports whether host is one of the names or under one of the
// domain suffixes in list.
func hostMatches(host string, list []string) (string, bool) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, d := range list {
		if d != "" && sameOrSubdomain(host, d) {
			return d, true
		}
	}
	return "", false
}
