package classifier

import (
	"slices"
	"testing"
)

// tokenSet tokenizes a message and reports which tokens it holds.
func tokenSet(t *testing.T, raw string) func(prefix byte, tok string) bool {
	s := newScratch(DefaultBuckets)
	features(parse(t, raw), s)
	set := slices.Clone(s.set)
	return func(prefix byte, tok string) bool {
		return slices.Contains(set, s.bucket(hash(prefix, tok)))
	}
}

func TestTokenizerSources(t *testing.T) {
	raw := "From: =?utf-8?q?Prize_Desk?= <promo@mail.winner.co.uk>\n" +
		"Subject: =?utf-8?b?WW91IHdvbg==?= BIG\n" +
		"Reply-To: other@elsewhere.example\n" +
		"X-Mailer: MassMailer 3.1\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=\"BOUND\"\n\n" +
		"preamble words\n" +
		"--BOUND\n" +
		"Content-Type: text/plain; charset=iso-8859-1\n" +
		"Content-Transfer-Encoding: quoted-printable\n\n" +
		"caf=E9 cr=\n" +
		"edit soft\n" +
		"--BOUND\n" +
		"Content-Type: text/html\n" +
		"Content-Transfer-Encoding: base64\n\n" +
		"PGZvbnQgY29sb3I9InJlZCI+Q2xpY2s8L2ZvbnQ+IDxhIGhyZWY9Imh0dHA6Ly8xLjIuMy40L2xv\n" +
		"Z2luIj5oZXJlPC9hPiBodHRwczovL3d3dy5zaG9wLmV4YW1wbGUuY29tOjgwODAvZGVhbHMvP3g9\n" +
		"MQ==\n" +
		"--BOUND\n" +
		"Content-Type: application/octet-stream\n" +
		"Content-Transfer-Encoding: base64\n\n" +
		"c2VjcmV0YXR0YWNobWVudHdvcmQ=\n" +
		"--BOUND--\n"
	has := tokenSet(t, raw)
	want := []struct {
		prefix byte
		tok    string
	}{
		{pSubject, "you"}, {pSubject, "won"}, {pSubject, "big"},
		{pFromName, "prize"}, {pFromName, "desk"},
		{pFromDomain, "mail.winner.co.uk"}, {pFromDomain, "winner.co.uk"},
		{pReplyTo, "elsewhere.example"},
		{pMailer, "massmailer"},
		{pContentType, "multipart/mixed"}, {pContentType, "text/plain"}, {pContentType, "application/octet-stream"},
		{pCharset, "iso-8859-1"},
		{pWord, "preamble"}, {pWord, "caf\xe9"}, {pWord, "credit"}, {pWord, "soft"},
		{pWord, "click"}, {pWord, "here"},
		{pTag, "font"}, {pTag, "/font"}, {pTag, "a"},
		{pURLKind, "ip"}, {pURLKind, "port"},
		{pURLHost, "www.shop.example.com"}, {pURLDomain, "example.com"},
		{pURLPath, "login"}, {pURLPath, "deals"},
	}
	for _, w := range want {
		if !has(w.prefix, w.tok) {
			t.Errorf("no token %c:%q", w.prefix, w.tok)
		}
	}
	absent := []struct {
		prefix byte
		tok    string
	}{
		{pWord, "color"},                       // an attribute, inside a tag
		{pWord, "red"},                         // an attribute value
		{pWord, "secretattachmentword"},        // a non-text part is skipped
		{pWord, "c2vjcmv0yxr0ywnobwvudhdvcmq"}, // and not read as words
		{pWord, "cr"}, {pWord, "edit"},         // the soft line break joins "cr=" and "edit"
		{pMailer, "-"}, // there is an X-Mailer
		{pShape, "no-mime-version"},
	}
	for _, a := range absent {
		if has(a.prefix, a.tok) {
			t.Errorf("unexpected token %c:%q", a.prefix, a.tok)
		}
	}
}

func TestTokenizerShapes(t *testing.T) {
	has := tokenSet(t, "From: bare@example.com\n\nplain text, no subject, a 123456 number\n")
	for _, w := range []struct {
		prefix byte
		tok    string
	}{{pShape, "no-subject"}, {pShape, "no-mime-version"}, {pMailer, "-"}, {pFromName, "-"}, {pFromDomain, "example.com"}, {pWord, "plain"}, {pWord, "no"}} {
		if !has(w.prefix, w.tok) {
			t.Errorf("no token %c:%q", w.prefix, w.tok)
		}
	}
	if has(pWord, "a") || has(pWord, "123456") {
		t.Error("a one-letter word or a long number became a token")
	}
}

// TestTokenizerNestedMultipart: a part's Content-Type folded over lines
// still declares its boundary, so the nested parts are followed (and an
// image in them skipped).
func TestTokenizerNestedMultipart(t *testing.T) {
	has := tokenSet(t, "From: a@example.com\nContent-Type: multipart/mixed; boundary=outer\n\n"+
		"--outer\nContent-Type: multipart/alternative;\n\tboundary=\"inner\"\n\n"+
		"--inner\nContent-Type: text/plain;\n charset=koi8-r\n\nalternative words\n"+
		"--inner\nContent-Type: image/gif\nContent-Transfer-Encoding: base64\n\nR0lGODlhAQABAAAAACw=\n"+
		"--inner--\n--outer--\n")
	for _, w := range []struct {
		prefix byte
		tok    string
	}{{pContentType, "multipart/alternative"}, {pContentType, "text/plain"}, {pCharset, "koi8-r"}, {pWord, "alternative"}, {pContentType, "image/gif"}} {
		if !has(w.prefix, w.tok) {
			t.Errorf("no token %c:%q", w.prefix, w.tok)
		}
	}
	if has(pWord, "r0lgodlhaqabaaaaacw") || has(pWord, "boundary") {
		t.Error("the image or a part header was read as text")
	}
}
