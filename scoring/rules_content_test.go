package scoring_test

import (
	"encoding/base64"
	"mime/quotedprintable"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/scoring"
)

// htmlMessage is alice's message with an HTML body.
func htmlMessage(subject, html string) string {
	m := message(aliceFrom, "", html)
	m = strings.Replace(m, "Subject: Quarterly figures", "Subject: "+subject, 1)
	return strings.Replace(m, "Content-Type: text/plain; charset=utf-8", "Content-Type: text/html; charset=utf-8", 1)
}

// alternative is alice's message with a plain and an HTML part, the HTML
// quoted-printable as mail clients write it.
func alternative(subject, plain, html string) string {
	var qp strings.Builder
	w := quotedprintable.NewWriter(&qp)
	w.Write([]byte(html))
	w.Close()
	m := message(aliceFrom, "", "--alt\nContent-Type: text/plain; charset=utf-8\n\n"+plain+"\n--alt\n"+
		"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"+qp.String()+"\n--alt--\n")
	m = strings.Replace(m, "Subject: Quarterly figures", "Subject: "+subject, 1)
	return strings.Replace(m, "Content-Type: text/plain; charset=utf-8", "Content-Type: multipart/alternative; boundary=\"alt\"", 1)
}

// withHTMLAttachment is alice's message with an attached HTML file.
func withHTMLAttachment(name, html string) string {
	m := message(aliceFrom, "", "--b1\nContent-Type: text/plain\n\nPlease see the attached statement.\n--b1\n"+
		"Content-Type: application/octet-stream; name=\""+name+"\"\nContent-Disposition: attachment; filename=\""+name+"\"\nContent-Transfer-Encoding: base64\n\n"+
		wrap76(encodeB64(html))+"--b1--\n")
	return strings.Replace(m, "Content-Type: text/plain; charset=utf-8", "Content-Type: multipart/mixed; boundary=\"b1\"", 1)
}

func brandConfusableNameCases() []ruleCase {
	withFrom := func(from, subject, body string) string {
		return strings.Replace(message(from, "", body), "Subject: Quarterly figures", "Subject: "+subject, 1)
	}
	return withRule(scoring.RuleBrandConfusable, []ruleCase{
		{name: "display name Cyrillic", raw: withFrom("\"P\u0430yPal Service\" <alice@example.com>", "Notice", "Hello\n"), fire: true, reason: `"P\u0430yPal"`},
		{name: "display name encoded word", raw: withFrom("=?utf-8?b?"+encodeB64("Micr0soft Team")+"?= <alice@example.com>", "Notice", "Hello\n"), fire: true, reason: "Microsoft"},
		{name: "subject spaced", raw: withFrom(aliceFrom, "P a y P a l: your account", "Hello\n"), fire: true, reason: "Subject"},
		{name: "subject zero width", raw: withFrom(aliceFrom, "=?utf-8?q?Net=E2=80=8Bflix_billing?=", "Hello\n"), fire: true, reason: "Netflix"},
		{name: "first lines", raw: withFrom(aliceFrom, "Notice", "\n\nDear customer,\nthis is \u0410pple Support.\n"), fire: true, reason: "body text"},
		{name: "HTML first lines", raw: htmlMessage("Notice", "<html><body><p>Welcome to <b>\uff30\uff41\uff59\uff30\uff41\uff4c</b></p></body></html>"), fire: true, reason: "PayPal"},
		// near misses
		{name: "plain brand in subject", raw: withFrom(aliceFrom, "Your PayPal receipt", "Paid with PayPal.\n"), fire: false, reason: ""},
		{name: "customer name with the letters", raw: withFrom("\"Kapaypalooza Ltd\" <alice@example.com>", "Festival", "Tickets on sale.\n"), fire: false, reason: ""},
		{name: "person named Ebayo", raw: withFrom("\"Ebayo Adeyemi\" <alice@example.com>", "Hello", "Hi Bob\n"), fire: false, reason: ""},
		{name: "look-alike deep in the body", raw: withFrom(aliceFrom, "Notes", strings.Repeat("A line of ordinary text.\n", 12)+"Micr0soft\n"), fire: false, reason: ""},
		{name: "quoted line", raw: withFrom(aliceFrom, "Re: notes", "> Micr0soft wrote\nThanks\n"), fire: false, reason: ""},
	})
}

// TestBrandConfusableOwnDomain: the brand's own mail writing its name in
// small capitals is the brand's.
func TestBrandConfusableOwnDomain(t *testing.T) {
	accts := testAccounts(t)
	e := testEngine(t, nil)
	raw := message("\"\u1d18\u1d00\u028f\u1d18\u1d00\u029f\" <service@paypal.com>", "", "Hello\n")
	env := &scoring.Envelope{AuthLogin: "hosting", MailFrom: "service@paypal.com", Rcpts: []string{"bob@example.net"}}
	if v := decide(t, e, env, raw, accts["hosting"]); hasRule(v, scoring.RuleBrandConfusable) {
		t.Errorf("fired on the brand's own domain: %v", v.Findings)
	}
}

func linkTextMismatchCases() []ruleCase {
	return withRule(scoring.RuleLinkTextMismatch, []ruleCase{
		{name: "www text, other target", raw: htmlMessage("Notice", `<p><a href="http://login.evil-host.ru/pp">www.paypal.com</a></p>`), fire: true, reason: `"www.paypal.com" leads to "login.evil-host.ru"`},
		{name: "url text, other target", raw: htmlMessage("Notice", `<a href='https://203.0.113.9/x'>https://secure.examplebank.com/login</a>`), fire: true, reason: "203.0.113.9"},
		{name: "address text, web target", raw: htmlMessage("Notice", `<a href="https://collect.evil-host.net/">support@example.org</a>`), fire: true, reason: "example.org"},
		{name: "folded Content-Type header", fire: true, reason: "evil-host.net", raw: strings.Replace(htmlMessage("Notice", `<a href="http://evil-host.net/a">www.example.org</a>`), "Content-Type: text/html; charset=utf-8", "Content-Type: text/html;\n\tcharset=\"utf-8\"", 1)},
		{name: "in quoted-printable alternative", raw: alternative("Notice", "see link", `<a href="http://evil-host.net/a">https://www.example.org/account</a>`), fire: true, reason: "evil-host.net"},
		// near misses
		{name: "same registrable domain", raw: htmlMessage("Notice", `<a href="https://click.example.org/t/1">www.example.org</a>`), fire: false, reason: ""},
		{name: "same name other suffix", raw: htmlMessage("Notice", `<a href="https://www.example.de/">www.example.com</a>`), fire: false, reason: ""},
		{name: "text is not a domain", raw: htmlMessage("Notice", `<a href="https://evil.example.net/">Click here to view</a>`), fire: false, reason: ""},
		{name: "ESP redirector", raw: htmlMessage("News", `<a href="https://example.us1.list-manage.com/track/click?u=1">www.example.org</a>`), fire: false, reason: ""},
		{name: "mailto target", raw: htmlMessage("Notice", `<a href="mailto:someone@example.net">someone@example.org</a>`), fire: false, reason: ""},
		{name: "plain text only", raw: message(aliceFrom, "", "Visit www.example.org or http://evil.example.net/\n"), fire: false, reason: ""},
		{name: "address in the shown link's query", raw: htmlMessage("News", `<a href="http://opt-out.example.org/?e=bob@example.net">http://opt-out.example.org/?e=bob@example.net</a>`)},
		{name: "target host with a stray character", raw: htmlMessage("News", "<a href=\"http://www.example.org\u00a0uk/\">http://www.example.org</a>")},
		{name: "file name text", raw: htmlMessage("Notice", `<a href="https://files.example.net/r.pdf">report.pdf</a>`), fire: false, reason: ""},
	})
}

func linkLookalikeCases() []ruleCase {
	return withRule(scoring.RuleLinkLookalike, []ruleCase{
		{name: "brand confusable", raw: message(aliceFrom, "", "Log in at https://paypa1.com/signin now.\n"), fire: true, reason: `"paypa1.com" imitates "paypal.com"`},
		{name: "brand embedded", raw: htmlMessage("Notice", `<a href="https://paypal.com.secure-login.example.ru/">Log in</a>`), fire: true, reason: "embeds"},
		{name: "customer typo", raw: message(aliceFrom, "", "Invoice: https://bakery-berlln.de/pay\n"), fire: true, reason: `customer domain "bakery-berlin.de"`},
		// near misses
		{name: "brand's own domain", raw: message(aliceFrom, "", "Receipt at https://www.paypal.com/activity\n"), fire: false, reason: ""},
		{name: "brand related domain", raw: message(aliceFrom, "", "Sign in at https://login.microsoftonline.com/\n"), fire: false, reason: ""},
		{name: "customer's real domain", raw: message(aliceFrom, "", "See https://smithlaw.com/ and https://smith-law.com/\n"), fire: false, reason: ""},
		{name: "unrelated domain", raw: message(aliceFrom, "", "See https://www.wikipedia.org/\n"), fire: false, reason: ""},
	})
}

func passwordFormCases() []ruleCase {
	return withRule(scoring.RulePasswordForm, []ruleCase{
		{name: "form in HTML body", raw: htmlMessage("Notice", `<form action="https://collect.example.net/p" method=post><input name=u><input type="password" name=p></form>`), fire: true, reason: `password field in a form posting to collect.example.net, in the HTML body`},
		{name: "uppercase, unquoted", raw: htmlMessage("Notice", `<FORM><INPUT TYPE=PASSWORD NAME=pw></FORM>`), fire: true, reason: "password field in a form"},
		{name: "attached HTML file", raw: withHTMLAttachment("statement.html", `<html><body><form action="http://x.example.net/"><input type='password'></form></body></html>`), fire: true, reason: `attached HTML file "statement.html"`},
		// near misses
		{name: "form without password", raw: htmlMessage("Survey", `<form action="https://survey.example.org/"><input type=text name=answer><input type=submit></form>`), fire: false, reason: ""},
		{name: "the word password", raw: message(aliceFrom, "", "Your password is never sent by mail. Use <input type=password> in your page.\n"), fire: false, reason: ""},
		{name: "password in a comment", raw: htmlMessage("Notice", `<!-- <input type=password> --><p>Hello</p>`), fire: false, reason: ""},
	})
}

func dangerousLinkCases() []ruleCase {
	return withRule(scoring.RuleDangerousLink, []ruleCase{
		{name: "javascript href", raw: htmlMessage("Notice", `<a href="javascript:document.location='http://x.example'">Open</a>`), fire: true, reason: `<a href="javascript:`},
		{name: "obfuscated scheme", raw: htmlMessage("Notice", "<a href=\"java\tscript:alert(1)\">Open</a>"), fire: true, reason: "java script:alert"},
		{name: "data html href", raw: htmlMessage("Notice", `<a href="data:text/html;base64,PHNjcmlwdD4=">Open document</a>`), fire: true, reason: "data:text/html"},
		{name: "data form action", raw: htmlMessage("Notice", `<form action="data:text/html,hi"><input type=submit></form>`), fire: true, reason: "<form action="},
		{name: "data iframe", raw: htmlMessage("Notice", `<iframe src="data:text/html,hi"></iframe>`), fire: true, reason: "<iframe src="},
		// near misses
		{name: "inline image", raw: htmlMessage("Logo", `<img src="data:image/png;base64,iVBORw0KGgo=" alt=logo>`), fire: false, reason: ""},
		{name: "void link", raw: htmlMessage("Menu", `<a href="javascript:void(0)">Menu</a>`), fire: false, reason: ""},
		{name: "https link", raw: htmlMessage("News", `<a href="https://www.example.org/data:x">Read</a>`), fire: false, reason: ""},
		{name: "word in text", raw: message(aliceFrom, "", "Type javascript:alert(1) in the console to test.\n"), fire: false, reason: ""},
	})
}

func credentialRequestCases() []ruleCase {
	lure := `<p>Please verify your account within 24 hours.</p><a href="http://login.evil-host.ru/">www.paypal.com</a>`
	return withRule(scoring.RuleCredentialRequest, []ruleCase{
		{name: "phrase and mismatch", raw: htmlMessage("Notice", lure), fire: true, reason: `asks "verify your account", with CONTENT_LINK_TEXT_MISMATCH`},
		{name: "subject phrase and password form", raw: htmlMessage("Confirm your password", `<form><input type=password></form>`), fire: true, reason: "CONTENT_PASSWORD_FORM"},
		{name: "suspended and lookalike link", raw: message(aliceFrom, "", "Your account has been suspended. Restore access: https://paypa1.com/restore\n"), fire: true, reason: "account has been suspended"},
		{name: "phrase deep in a long plain part", fire: true, reason: "update your billing", raw: alternative("Notice",
			strings.Repeat("An ordinary line of text about the weather.\n", 150)+"Please update your billing details.\n",
			`<p>See below.</p><a href="http://login.evil-host.ru/">www.paypal.com</a>`)},
		{name: "German", raw: htmlMessage("Hinweis", `<p>Bitte bestätigen Sie Ihr Konto.</p><a href="data:text/html,x">Weiter</a>`), fire: true, reason: "bestätigen sie ihr konto"},
		// near misses
		{name: "phrase alone", raw: htmlMessage("Notice", `<p>Please verify your account on our website.</p><a href="https://www.example.org/">www.example.org</a>`), fire: false, reason: ""},
		{name: "link sign alone", raw: htmlMessage("Notice", `<p>Our new shop is open.</p><a href="http://shop.example.net/">www.example.org</a>`), fire: false, reason: ""},
		{name: "plain reminder", raw: message(aliceFrom, "", "Remember to update your password regularly.\n"), fire: false, reason: ""},
	})
}

func encodeB64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// withRule sets the rule of each case.
func withRule(rule string, cases []ruleCase) []ruleCase {
	for i := range cases {
		cases[i].rule = rule
	}
	return cases
}

// phishingRuleCases are the firing cases and near misses of
// BRAND_CONFUSABLE_NAME and the phishing rules, run by TestRules.
func phishingRuleCases() []ruleCase {
	var out []ruleCase
	for _, cases := range [][]ruleCase{brandConfusableNameCases(), linkTextMismatchCases(), linkLookalikeCases(),
		passwordFormCases(), dangerousLinkCases(), credentialRequestCases()} {
		out = append(out, cases...)
	}
	return out
}

// TestPhishingClauseHolds: rules.actions {phishing: hold} holds a message
// whose only finding is a phishing sign, naming the clause and the rule;
// without it the message is accepted (the sign alone rejects nothing).
func TestPhishingClauseHolds(t *testing.T) {
	accts := testAccounts(t)
	raw := htmlMessage("Notice", `<p><a href="http://login.evil-host.ru/pp">www.paypal.com</a></p>`)
	env := func() *scoring.Envelope {
		return &scoring.Envelope{AuthLogin: "alice", MailFrom: "alice@example.com", Rcpts: []string{"bob@example.net"}}
	}
	plain := decide(t, testEngine(t, nil), env(), raw, accts["alice"])
	if plain.Action != scoring.Accept || !hasRule(plain, scoring.RuleLinkTextMismatch) {
		t.Fatalf("without an action: %s, findings %v", plain.Reply(), plain.Findings)
	}
	e := scoring.NewEngine(nil, nil, scoring.Options{
		Now: func() time.Time { return testNow }, Settings: testSettings(),
		Actions: map[string]scoring.Action{string(scoring.Phishing): scoring.Hold},
	})
	v := decide(t, e, env(), raw, accts["alice"])
	if v.Action != scoring.Hold || v.Clause != scoring.Phishing || v.Rule != scoring.RuleLinkTextMismatch {
		t.Errorf("with phishing: hold: %v %s %s (%s)", v.Action, v.Clause, v.Rule, v.Reply())
	}
}
