package scoring

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/internal/testutil/campaigntest"
)

// fingerprintsOf parses a message with the given Content-Type and body
// and returns its fingerprints, extra exempting link domains.
func fingerprintsOf(t testing.TB, ctype, body string, extra ...string) Fingerprints {
	t.Helper()
	raw := "From: shop@example.com\r\nTo: someone@example.net\r\nSubject: offer\r\nMIME-Version: 1.0\r\n"
	if ctype != "" {
		raw += "Content-Type: " + ctype + "\r\n"
	}
	msg, err := ParseMessage(strings.NewReader(raw+"\r\n"+body), 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	return messageFingerprints(msg, newDomainSet(append(DefaultCampaignExemptDomains(), extra...)))
}

func sharedBands(a, b Fingerprints) int {
	n := 0
	for _, x := range a.Bands {
		if slices.Contains(b.Bands, x) {
			n++
		}
	}
	return n
}

// recipients are the personalisations of the campaign tests.
var recipients = []struct{ name, token, rcpt string }{
	{"Maria", "a8f3k2x9q1", "maria@dest.example"},
	{"John Smith", "Zq81mm02lp", "john.smith@other.example"},
	{"Dr. Ngozi Okonjo", "00x1y2z3w4", "ngozi@univ.example"},
	{"Kim", "kk22ll33mm", "kim@dest.example"},
	{"Aleksandra Wiśniewska", "p0o9i8u7y6", "ola@poczta.example"},
	{"Bob", "b0b0b0b0b0", "bob@dest.example"},
}

// TestFingerprintPersonalisedCampaign: greetings, names, tracking tokens
// and the recipient's address in the footer leave the body bands alone,
// so every copy of the campaign shares a band with every other.
func TestFingerprintPersonalisedCampaign(t *testing.T) {
	var all []Fingerprints
	for _, r := range recipients {
		fp := fingerprintsOf(t, campaigntest.ContentType, campaigntest.Campaign(r.name, r.token, r.rcpt))
		if len(fp.Bands) != fingerprintBands {
			t.Fatalf("%s: %d bands, want %d", r.name, len(fp.Bands), fingerprintBands)
		}
		all = append(all, fp)
	}
	common := slices.Clone(all[0].Bands)
	for i, fp := range all[1:] {
		if sharedBands(all[0], fp) == 0 {
			t.Fatalf("the copy for %s shares no band with the copy for %s", recipients[i+1].name, recipients[0].name)
		}
		common = slices.DeleteFunc(common, func(b string) bool { return !slices.Contains(fp.Bands, b) })
	}
	if len(common) == 0 {
		t.Fatal("no band is common to all six copies")
	}
	// The links: one domain and one normalised URL per link kind, the
	// same for every copy (tokens in paths starred, queries dropped).
	wantDomains := []string{FingerprintDomain + "spring-deals.example"}
	for i, fp := range all {
		if !slices.Equal(fp.Domains, wantDomains) {
			t.Fatalf("copy %d: domains %q, want %q", i, fp.Domains, wantDomains)
		}
		var urls []string
		for _, u := range fp.URLs {
			urls = append(urls, fp.URLText[u])
		}
		want := []string{"https://" + campaigntest.LinkHost + "/c/*/offer", "https://" + campaigntest.LinkHost + "/c/*/unsubscribe"}
		if !slices.Equal(urls, want) {
			t.Fatalf("copy %d: URLs %q, want %q", i, urls, want)
		}
		if !slices.Equal(fp.URLs, all[0].URLs) {
			t.Fatalf("copy %d: URL fingerprints %q differ from %q", i, fp.URLs, all[0].URLs)
		}
	}
}

// TestFingerprintNamesInText: a name repeated inside the text (not only in
// the greeting) changes a few shingles; copies still share a band.
func TestFingerprintNamesInText(t *testing.T) {
	text := func(name string) string {
		return fmt.Sprintf(`Hello %[1]s,

We are glad to tell you, %[1]s, that your account has been selected for
our annual loyalty reward. To receive the reward you only need to confirm
your shipping details on our website within the next three days, after
which the offer expires and the reward goes to the next customer on our
waiting list. Thank you for being a loyal customer of our store for so
many years, and we hope you enjoy the gift we have prepared for you.
`, name)
	}
	names := []string{"Maria", "John", "Ngozi", "Kim", "Aleksandra", "Bob", "Priya", "Lars", "Chen", "Fatima", "Olga"}
	base := fingerprintsOf(t, "text/plain", text(names[0]))
	shared := 0
	for _, n := range names[1:] {
		if sharedBands(base, fingerprintsOf(t, "text/plain", text(n))) > 0 {
			shared++
		}
	}
	if shared < len(names)-2 {
		t.Fatalf("only %d of %d renamed copies share a band", shared, len(names)-1)
	}
}

// TestFingerprintDifferentBodies: unrelated bodies share no band, with each
// other or with the campaign.
func TestFingerprintDifferentBodies(t *testing.T) {
	campaign := fingerprintsOf(t, campaigntest.ContentType, campaigntest.Campaign("Maria", "a8f3k2x9q1", "maria@dest.example"))
	var bodies []Fingerprints
	for i := range 8 {
		fp := fingerprintsOf(t, "text/plain", campaigntest.Distinct(i))
		if len(fp.Bands) != fingerprintBands {
			t.Fatalf("body %d: %d bands", i, len(fp.Bands))
		}
		if n := sharedBands(fp, campaign); n > 0 {
			t.Fatalf("body %d shares %d bands with the campaign", i, n)
		}
		for j, other := range bodies {
			if n := sharedBands(fp, other); n > 0 {
				t.Fatalf("bodies %d and %d share %d bands", i, j, n)
			}
		}
		bodies = append(bodies, fp)
	}
	if fp := fingerprintsOf(t, "text/plain", "Thanks, see you tomorrow!\r\n"); len(fp.Bands) != 0 {
		t.Fatalf("a short body has bands %q, want none", fp.Bands)
	}
}

// TestFingerprintHTMLAndEncodings: the same text as plain, as HTML (tags,
// style and entities) and base64-encoded gives the same bands.
func TestFingerprintHTMLAndEncodings(t *testing.T) {
	plain := "Our spring clearance has started and every garden tool in the shop is marked down until the end of the month.\r\n"
	html := "<html><head><title>x</title><style>body { font: 12px Arial }</style></head><body><p>Our <b>spring</b> clearance has started &amp; every garden tool in the shop is marked&nbsp;down until the end of the month.</p></body></html>\r\n"
	want := fingerprintsOf(t, "text/plain", strings.Replace(plain, " and ", " & ", 1)).Bands
	if len(want) == 0 {
		t.Fatal("no bands for the plain text")
	}
	if got := fingerprintsOf(t, "text/html; charset=utf-8", html).Bands; !slices.Equal(got, want) {
		t.Errorf("HTML bands %q, want %q", got, want)
	}
	b64 := "--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		"T3VyIHNwcmluZyBjbGVhcmFuY2UgaGFzIHN0YXJ0ZWQgJiBldmVyeSBnYXJkZW4gdG9vbCBpbiB0\r\naGUgc2hvcCBpcyBtYXJrZWQgZG93biB1bnRpbCB0aGUgZW5kIG9mIHRoZSBtb250aC4=\r\n" +
		"--b1\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b1--\r\n"
	if got := fingerprintsOf(t, `multipart/mixed; boundary="b1"`, b64).Bands; !slices.Equal(got, want) {
		t.Errorf("base64 bands %q, want %q", got, want)
	}
}

func TestNormalizeURL(t *testing.T) {
	for _, tc := range []struct {
		scheme, host, path string
		shortener          bool
		want               string
	}{
		{"https", "shop.example", "", false, "https://shop.example"},
		{"https", "shop.example", "/", false, "https://shop.example"},
		{"http", "shop.example", "/Sale/Spring?utm_source=x#top", false, "http://shop.example/sale/spring"},
		{"https", "t.example", "/c/a8f3k2x9q1/offer", false, "https://t.example/c/*/offer"},
		{"https", "t.example", "/c/2024/offer", false, "https://t.example/c/2024/offer"},
		{"https", "t.example", "/r/aVeryLongOpaqueTrackingSegmentWithoutDigits", false, "https://t.example/r/*"},
		{"https", "bit.ly", "/3xYz12a?x=1", true, "https://bit.ly/3xYz12a"},
	} {
		if got := normalizeURL(tc.scheme, tc.host, []byte(tc.path), tc.shortener); got != tc.want {
			t.Errorf("normalizeURL(%q, %q, %q, %v) = %q, want %q", tc.scheme, tc.host, tc.path, tc.shortener, got, tc.want)
		}
	}
}

// TestFingerprintLinksExempt: domains every newsletter links to are not
// fingerprinted, configured ones neither; a shortener counts by its URL
// only.
func TestFingerprintLinksExempt(t *testing.T) {
	body := `<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><body>
<a href="https://www.facebook.com/springdeals">Facebook</a> <a href="https://fonts.googleapis.com/css?family=Roboto">x</a>
<a href="https://cdn.mailchimp.example.list-manage.com/track/click?u=1">y</a>
<a href="https://bit.ly/3xYz12a">short</a> <a href="https://News.Partner.example:8443/Spring/?id=7">partner</a>
<a href="http://evil.example/login">login</a>
</body></html>
`
	fp := fingerprintsOf(t, "text/html", body)
	if want := []string{"dom:partner.example", "dom:evil.example"}; !slices.Equal(fp.Domains, want) {
		t.Errorf("domains %q, want %q", fp.Domains, want)
	}
	var urls []string
	for _, u := range fp.URLs {
		urls = append(urls, fp.URLText[u])
	}
	if want := []string{"https://bit.ly/3xYz12a", "https://news.partner.example/spring", "http://evil.example/login"}; !slices.Equal(urls, want) {
		t.Errorf("URLs %q, want %q", urls, want)
	}
	fp = fingerprintsOf(t, "text/html", body, "partner.example")
	if want := []string{"dom:evil.example"}; !slices.Equal(fp.Domains, want) {
		t.Errorf("with partner.example exempt: domains %q, want %q", fp.Domains, want)
	}
}

// MessageFingerprints returns a message's campaign fingerprints with the
// built-in exempt domains (benchmarks in package scoring_test).
func MessageFingerprints(msg *Message) Fingerprints {
	return messageFingerprints(msg, newDomainSet(DefaultCampaignExemptDomains()))
}

// FuzzFingerprints: any body, under any Content-Type, gives fingerprints
// without panicking, the same twice, within the bounds, and leaves the
// message as it was (the rules read it meanwhile).
func FuzzFingerprints(f *testing.F) {
	f.Add(campaigntest.ContentType, campaigntest.Campaign("Maria", "a8f3k2x9q1", "maria@dest.example"))
	f.Add("text/plain", campaigntest.Distinct(1))
	f.Add("text/html", "<p>Hi <b>there</b>,</p><style>x{}</style><a href='http://[::1]:80/x'>y</a> &amp; https://evil.example/a/b?c#d")
	f.Add(`multipart/mixed; boundary="a"`, "--a\r\nContent-Type: multipart/alternative;\r\n boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVsbG8=\r\n--b--\r\n--a--\r\n")
	f.Fuzz(func(t *testing.T, ctype, body string) {
		msg := &Message{Headers: []Header{{Name: "Content-Type", Value: ctype}, {Name: "Content-Transfer-Encoding", Value: "quoted-printable"}}, Body: []byte(body)}
		exempt := newDomainSet(DefaultCampaignExemptDomains())
		a, b := messageFingerprints(msg, exempt), messageFingerprints(msg, exempt)
		if !slices.Equal(a.Bands, b.Bands) || !slices.Equal(a.Domains, b.Domains) || !slices.Equal(a.URLs, b.URLs) {
			t.Fatalf("not deterministic: %+v and %+v", a, b)
		}
		if string(msg.Body) != body {
			t.Fatal("the body was changed")
		}
		if len(a.Bands) != 0 && len(a.Bands) != fingerprintBands || len(a.Domains) > maxLinkFingerprints || len(a.URLs) > maxLinkFingerprints {
			t.Fatalf("out of bounds: %+v", a)
		}
		for _, k := range append(append(a.Bands, a.Domains...), a.URLs...) {
			if strings.ContainsAny(k, "{} \r\n") {
				t.Fatalf("fingerprint %q cannot be a Redis hash tag", k)
			}
		}
	})
}
