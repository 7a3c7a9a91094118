package scoring_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/scoring"
)

// message builds a plain message from alice's usual client, with extra
// header lines (each ending in "\n") and a body.
func message(from, extra, body string) string {
	return "From: " + from + "\n" +
		"To: Bob <bob@example.net>\n" +
		"Subject: Quarterly figures\n" +
		"Date: " + testDate + "\n" +
		"Message-ID: <20261127115800.4821@example.com>\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: text/plain; charset=utf-8\n" +
		extra + "\n" + body
}

const aliceFrom = "Alice Example <alice@example.com>"

// multipartBase64 is a two-part message whose second part, of the given
// type, carries text base64-encoded, as mass-mail kits write it.
func multipartBase64(partType, text string) string {
	m := message(aliceFrom, "", "--b1\nContent-Type: text/plain\n\nSee the attachment.\n--b1\n"+
		"Content-Type: "+partType+"\nContent-Transfer-Encoding: base64\n\n"+
		wrap76(base64.StdEncoding.EncodeToString([]byte(text)))+"--b1--\n")
	return strings.Replace(m, "Content-Type: text/plain; charset=utf-8", "Content-Type: multipart/mixed; boundary=\"b1\"", 1)
}

// wrap76 folds base64 into lines of 76 characters, each ending in a newline.
func wrap76(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\n")
		s = s[76:]
	}
	return b.String() + s + "\n"
}

// Legitimate message shapes that must fire no rule at all.
var (
	forwardedByForwarder = "Received: from mail-yw1-f172.google.com (mail-yw1-f172.google.com [209.85.128.172])\n" +
		"\tby mx.provider.net (Postfix) with ESMTPS id 4Xk2;\n\tFri, 27 Nov 2026 11:57:10 +0000 (UTC)\n" +
		"Received: by mail-yw1-f172.google.com with SMTP id 0;\n\tFri, 27 Nov 2026 03:57:09 -0800 (PST)\n" +
		"ARC-Seal: i=1; a=rsa-sha256; t=1764244629; cv=none; d=google.com; s=arc-20240605; b=abc\n" +
		"ARC-Authentication-Results: i=1; mx.google.com; dkim=pass header.d=yahoo.com\n" +
		"Authentication-Results: mx.google.com; dkim=pass header.i=@yahoo.com; dmarc=pass header.from=yahoo.com\n" +
		"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=yahoo.com; s=s2048; h=from:to:subject:date; bh=abc=; b=def=\n" +
		"From: Dora Sender <dora@yahoo.com>\n" +
		"To: info@lists.example.com\n" +
		"Subject: Question about the club meeting\n" +
		"Date: Fri, 27 Nov 2026 11:57:00 +0000\n" +
		"Message-ID: <1234.5678@mail.yahoo.com>\n" +
		"Content-Type: text/plain; charset=utf-8\n\nHi, is the meeting still on?\n"

	listPost = "From: Carol Member <carol@other.org>\n" +
		"Sender: \"club\" <club-bounces@lists.example.com>\n" +
		"To: club@lists.example.com\n" +
		"Subject: [club] Minutes of November\n" +
		"Date: " + testDate + "\n" +
		"Message-ID: <f00d.1@other.org>\n" +
		"List-Id: Club members <club.lists.example.com>\n" +
		"List-Unsubscribe: <mailto:club-leave@lists.example.com>, <https://lists.example.com/club/unsub>\n" +
		"List-Post: <mailto:club@lists.example.com>\n" +
		"Precedence: list\n" +
		"X-BeenThere: club@lists.example.com\n\n" +
		"Minutes attached. See https://lists.example.com/archives/club/2026-November/000123.html\n"

	reply = message(aliceFrom,
		"In-Reply-To: <CAF=abc123@mail.gmail.com>\nReferences: <CAF=abc123@mail.gmail.com>\nUser-Agent: Mozilla Thunderbird\n",
		"Thanks, confirmed.\n\nOn 26/11/2026 18:02, PayPal <service@paypal.com> wrote:\n> Your receipt from Example Ltd\n> https://www.paypal.com/activity\n")

	calendarInvite = "From: Alice Example <alice@example.com>\n" +
		"To: bob@example.net, carol@example.org, dan@example.co.uk\n" +
		"Subject: Invitation: Planning @ Mon 30 Nov 2026 10:00 - 11:00 (UTC)\n" +
		"Date: " + testDate + "\n" +
		"Message-ID: <calendar-0a1b2c3d@example.com>\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\n\n" +
		"--b1\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\n\n" +
		"BEGIN:VCALENDAR\nMETHOD:REQUEST\nBEGIN:VEVENT\nORGANIZER;CN=Alice:mailto:alice@example.com\n" +
		"ATTENDEE;CN=Bob:mailto:bob@example.net\nURL:https://meet.example.com/planning\nEND:VEVENT\nEND:VCALENDAR\n--b1--\n"

	idnOwned = "From: =?utf-8?q?B=C3=BCcher_Shop?= <info@bücher.de>\n" +
		"To: kunde@example.net\n" +
		"Subject: =?utf-8?q?Ihre_Bestellung_ist_unterwegs?=\n" +
		"Date: " + testDate + "\n" +
		"Message-ID: <order-4711@xn--bcher-kva.de>\n" +
		"Content-Type: text/plain; charset=utf-8\n\nIhre Bestellung ist unterwegs.\n"

	webmailMessage = "Received: from 203.0.113.9 (SquirrelMail authenticated user carla)\n" +
		"\tby webmail.example.org with HTTP; Fri, 27 Nov 2026 11:58:00 -0000\n" +
		"Message-ID: <61234.203.0.113.9.1764244680.squirrel@webmail.example.org>\n" +
		"Date: " + testDate + "\n" +
		"Subject: Invoice 2026-113\n" +
		"From: \"Carla\" <carla@example.org>\n" +
		"To: client@example.net\n" +
		"User-Agent: SquirrelMail/1.4.23\n" +
		"X-Originating-IP: [203.0.113.9]\n" +
		"MIME-Version: 1.0\nContent-Type: text/plain;charset=iso-8859-1\n\nPlease find the invoice attached.\n"
)

type legitShape struct {
	name, account, mailFrom, raw string
	rcpts                        []string
}

func legitShapes() []legitShape {
	many := []string{}
	for _, d := range []string{"a.example", "b.example", "c.example", "d.example", "e.example", "f.example", "g.example", "h.example", "i.example", "j.example", "k.example", "l.example"} {
		many = append(many, "member1@"+d, "member2@"+d)
	}
	return []legitShape{
		{"forwarded message", "fwd", "SRS0=Ab1=CD=yahoo.com=dora@lists.example.com", forwardedByForwarder, []string{"member@example.net"}},
		{"mailing-list post", "fwd", "club-bounces@lists.example.com", listPost, many},
		{"reply", "alice", "alice@example.com", reply, []string{"bob@example.net"}},
		{"calendar invite", "alice", "alice@example.com", calendarInvite, []string{"bob@example.net", "carol@example.org", "dan@example.co.uk"}},
		{"IDN domain the account owns", "idn", "info@xn--bcher-kva.de", idnOwned, []string{"kunde@example.net"}},
		{"webmail with X-Originating-IP", "webmail", "carla@example.org", webmailMessage, []string{"client@example.net"}},
	}
}

// TestLegitimateShapesFireNothing: the six shapes of everyday legitimate
// mail are the near-miss of every rule.
func TestLegitimateShapesFireNothing(t *testing.T) {
	accts := testAccounts(t)
	e := testEngine(t, testResolver())
	for _, s := range legitShapes() {
		env := &scoring.Envelope{AuthLogin: s.account, MailFrom: s.mailFrom, Rcpts: s.rcpts}
		v := decide(t, e, env, s.raw, accts[s.account])
		if len(v.Findings) > 0 || v.Action != scoring.Accept {
			t.Errorf("%s: %s, findings %v", s.name, v.Reply(), findingReasons(v))
		}
	}
}

type ruleCase struct {
	rule, name string
	fire       bool
	account    string // default alice
	mailFrom   string // default alice@example.com; "<>" for the null sender
	rcpts      []string
	raw        string
	reason     string // when set, the finding's reason must contain it
}

func rcptList(n int, domains int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "user" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "@d" + string(rune('a'+i%domains)) + ".example"
	}
	return out
}

func ruleCases() []ruleCase {
	long := strings.Repeat("x", 1000)
	return append([]ruleCase{
		// Impersonation.
		{rule: scoring.RuleFromNotOwned, name: "foreign From", fire: true, raw: message("PayPal <service@paypal.com>", "", "hi\n")},
		{rule: scoring.RuleFromNotOwned, name: "own Resent-From does not excuse foreign From", fire: true, raw: message("Bank <info@bigbank.com>", "Resent-From: alice@example.com\n", "hi\n")},
		{rule: scoring.RuleFromNotOwned, name: "unparseable From still checked", fire: true, raw: message("Service Dept. <service@paypal.com>", "", "hi\n")},
		{rule: scoring.RuleFromNotOwned, name: "own address with tag", raw: message("Alice <alice+news@example.com>", "", "hi\n")},
		{rule: scoring.RuleFromNotOwned, name: "UTF-8 IDN address of own domain", account: "idn", mailFrom: "info@bücher.de", raw: idnOwned},
		{rule: scoring.RuleDisplayNameAddress, name: "address in display name", fire: true, raw: message(`"support@paypal.com" <alice@example.com>`, "", "hi\n")},
		{rule: scoring.RuleDisplayNameAddress, name: "encoded address in display name", fire: true, raw: message("=?utf-8?B?c2VjdXJpdHlAYmFuay1leGFtcGxlLmNvbQ==?= <alice@example.com>", "", "hi\n")},
		{rule: scoring.RuleDisplayNameAddress, name: "domain in display name", fire: true, raw: message(`"Amazon.com Orders" <alice@example.com>`, "", "hi\n")},
		{rule: scoring.RuleDisplayNameAddress, name: "display name is own address", raw: message(`"alice@example.com" <alice@example.com>`, "", "hi\n")},
		{rule: scoring.RuleDisplayNameAddress, name: "initial and surname", raw: message(`"Craig R.Hughes" <alice@example.com>`, "", "hi\n")},
		{rule: scoring.RuleLookalikeBrand, name: "digit swap", fire: true, account: "paypa1", mailFrom: "service@paypa1.com", raw: message("PayPal <service@paypa1.com>", "", "hi\n")},
		{rule: scoring.RuleLookalikeBrand, name: "Cyrillic homoglyph in punycode", fire: true, account: "hosting", mailFrom: "x@hosting.example", raw: message("Apple <id@xn--pple-43d.com>", "", "hi\n")},
		{rule: scoring.RuleLookalikeBrand, name: "digit for i in a short name", fire: true, account: "hosting", mailFrom: "x@hosting.example", raw: message("Visa <alerts@v1sa.com>", "", "hi\n")},
		{rule: scoring.RuleLookalikeBrand, name: "accent in punycode", fire: true, account: "hosting", mailFrom: "x@hosting.example", raw: message("Service <a@xn--paypl-0qa.com>", "", "hi\n")},
		{rule: scoring.RuleLookalikeBrand, name: "letter doubled", fire: true, account: "hosting", mailFrom: "x@hosting.example", raw: message("Hotmail <a@hotmaill.com>", "", "hi\n")},
		{rule: scoring.RuleLookalikeBrand, name: "neighbours swapped", fire: true, account: "hosting", mailFrom: "x@hosting.example", raw: message("Support <a@micorsoft.com>", "", "hi\n")},
		{rule: scoring.RuleLookalikeBrand, name: "letter changed inside a long name", fire: true, account: "hosting", mailFrom: "x@hosting.example", raw: message("Films <a@netflex.com>", "", "hi\n")},
		{rule: scoring.RuleLookalikeBrand, name: "first letter changed is another word (finance, binance)", account: "hosting", mailFrom: "x@hosting.example", raw: message("News <a@finance.com>", "", "hi\n")},
		{rule: scoring.RuleLookalikeBrand, name: "cooking is not booking", account: "hosting", mailFrom: "x@hosting.example", raw: message("Recipes <a@cooking.com>", "", "hi\n")},
		{rule: scoring.RuleLookalikeBrand, name: "plural is not a slip", account: "hosting", mailFrom: "x@hosting.example", raw: message("Rent <a@offices.com>", "", "hi\n")},
		{rule: scoring.RuleLookalikeBrand, name: "letter changed in a six-letter name", account: "hosting", mailFrom: "x@hosting.example", raw: message("Eyewear <a@goggle.com>", "", "hi\n")},
		{rule: scoring.RuleLookalikeBrand, name: "letter left out", fire: true, account: "hosting", mailFrom: "x@hosting.example", raw: message("Support <help@micosoft.com>", "", "hi\n")},
		{rule: scoring.RuleLookalikeBrand, name: "brand domain embedded", fire: true, account: "hosting", mailFrom: "x@hosting.example", raw: message("Service <a@paypal.com-login.net>", "", "hi\n")},
		{rule: scoring.RuleLookalikeBrand, name: "lookalike only in Reply-To", fire: true, raw: message(aliceFrom, "Reply-To: billing@arnazon.com\n", "hi\n")},
		{rule: scoring.RuleLookalikeBrand, name: "short names are not compared by edit distance", account: "hosting", mailFrom: "x@hosting.example", raw: message("Home <a@abode.com>", "", "hi\n")},
		{rule: scoring.RuleLookalikeBrand, name: "brand name under another suffix", account: "hosting", mailFrom: "x@hosting.example", raw: message("PayPal <a@paypal.de>", "", "hi\n")},
		{rule: scoring.RuleLookalikeCustomer, name: "lookalike of another customer", fire: true, account: "hosting", mailFrom: "x@hosting.example", raw: message("Smith Law <office@smith1aw.com>", "", "hi\n")},
		{rule: scoring.RuleLookalikeCustomer, name: "similar customer domain the account owns", account: "smith", mailFrom: "office@smith-law.com", raw: message("Smith Law <office@smith-law.com>", "", "hi\n")},
		{rule: scoring.RuleBrandInDomain, name: "brand word with hyphen", fire: true, account: "hosting", mailFrom: "x@hosting.example", raw: message("Account team <a@paypal-secure.com>", "", "hi\n")},
		{rule: scoring.RuleBrandInDomain, name: "brand word inside a longer word", account: "hosting", mailFrom: "x@hosting.example", raw: message("Orders <a@applebees.com>", "", "hi\n")},
		{rule: scoring.RuleBrandDisplayName, name: "brand in display name", fire: true, raw: message("PayPal Service <alice@example.com>", "", "hi\n")},
		{rule: scoring.RuleBrandDisplayName, name: "brand name with its own domain", account: "hosting", mailFrom: "x@hosting.example", raw: message("PayPal <service@mail.paypal.de>", "", "hi\n")},
		{rule: scoring.RuleBrandDisplayName, name: "brand word inside a name", raw: message("Applebee Jones <alice@example.com>", "", "hi\n")},
		{rule: scoring.RuleReplyToDiverts, name: "brand display name, freemail Reply-To", fire: true, raw: message("Microsoft Account Team <alice@example.com>", "Reply-To: ms.help.desk@gmail.com\n", "hi\n")},
		{rule: scoring.RuleReplyToDiverts, name: "Reply-To elsewhere without brand claim", raw: message(aliceFrom, "Reply-To: alice.private@gmail.com\n", "hi\n")},
		{rule: scoring.RuleReplyToDiverts, name: "freemail user with list Reply-To", account: "hosting", mailFrom: "x@hosting.example", raw: message("Joe <joe@hotmail.com>", "Reply-To: group@yahoogroups.com\n", "hi\n")},
		{rule: scoring.RuleDMARCForeign, name: "p=reject domain from send-as-any account", fire: true, account: "hosting", mailFrom: "x@hosting.example", raw: message("Y <someone@yahoo.com>", "", "hi\n")},
		{rule: scoring.RuleDMARCForeign, name: "organisational sp=reject", fire: true, account: "hosting", mailFrom: "x@hosting.example", raw: message("News <news@mail.bigbank.com>", "", "hi\n")},
		{rule: scoring.RuleDMARCForeign, name: "p=quarantine", fire: true, account: "hosting", mailFrom: "x@hosting.example", raw: message("Q <q@quarantine.org>", "", "hi\n")},
		{rule: scoring.RuleDMARCForeign, name: "forwarder resubmitting p=reject mail without its signature", fire: true, account: "fwd", mailFrom: "bounces@lists.example.com", raw: message("Y <someone@yahoo.com>", "", "hi\n")},
		{rule: scoring.RuleDMARCForeign, name: "p=none", account: "hosting", mailFrom: "x@hosting.example", raw: message("R <r@relaxed.org>", "", "hi\n")},
		{rule: scoring.RuleDMARCForeign, name: "own domain with p=reject", raw: message(aliceFrom, "", "hi\n")},
		{rule: scoring.RuleDMARCForeign, name: "DNS failure skips", account: "hosting", mailFrom: "x@hosting.example", raw: message("B <b@broken.example>", "", "hi\n")},
		{rule: scoring.RuleDMARCForeign, name: "DNS timeout skips", account: "hosting", mailFrom: "x@hosting.example", raw: message("S <s@slow.example>", "", "hi\n")},

		// Forged headers.
		{rule: scoring.RuleFromMultiple, name: "two From headers", fire: true, raw: message(aliceFrom, "From: PayPal <service@paypal.com>\n", "hi\n")},
		{rule: scoring.RuleFromMultiple, name: "From and Sender", raw: message(aliceFrom, "Sender: alice@example.com\n", "hi\n")},
		{rule: scoring.RuleFromMultiNoSender, name: "two authors, no Sender", fire: true, raw: message("alice@example.com, boss@example.com", "", "hi\n")},
		{rule: scoring.RuleFromMultiNoSender, name: "two authors with Sender", raw: message("alice@example.com, boss@example.com", "Sender: alice@example.com\n", "hi\n")},
		{rule: scoring.RuleFromNoAddress, name: "display name only", fire: true, raw: message("PayPal Security", "", "hi\n")},
		{rule: scoring.RuleFromNoAddress, name: "encoded word only", fire: true, raw: message("=?utf-8?q?Apple_Support?=", "", "hi\n")},
		{rule: scoring.RuleFromNoAddress, name: "no From", fire: true, raw: "To: bob@example.net\nSubject: x\nDate: " + testDate + "\nMessage-ID: <a@example.com>\n\nhi\n"},
		{rule: scoring.RuleFromNoAddress, name: "bare address", raw: message("alice@example.com", "", "hi\n")},
		{rule: scoring.RuleDuplicateHeader, name: "two Subjects", fire: true, raw: message(aliceFrom, "Subject: Urgent\n", "hi\n")},
		{rule: scoring.RuleDuplicateHeader, name: "two Received are normal", raw: message(aliceFrom, "Received: from pc1.internal by gw.internal; "+testDate+"\nReceived: from laptop by pc1.internal; "+testDate+"\n", "hi\n")},
		{rule: scoring.RuleTraceOwnMTA, name: "Received by own MTA", fire: true, raw: "Received: from unknown by mx.provider.net (Postfix) with ESMTPS id 1; " + testDate + "\n" + message(aliceFrom, "", "hi\n")},
		{rule: scoring.RuleTraceOwnMTA, name: "Authentication-Results by own MTA", fire: true, raw: message(aliceFrom, "Authentication-Results: smtp.provider.net; dkim=pass; spf=pass\n", "hi\n")},
		{rule: scoring.RuleTraceOwnMTA, name: "customer's own relay", raw: "Received: from laptop.lan by relay.example.com (Postfix) with ESMTP id 1; " + testDate + "\n" + message(aliceFrom, "", "hi\n")},
		{rule: scoring.RuleTraceProvider, name: "Authentication-Results by Google", fire: true, raw: message(aliceFrom, "Authentication-Results: mx.google.com; spf=pass smtp.mailfrom=alice@example.com\n", "hi\n")},
		{rule: scoring.RuleTraceProvider, name: "ARC seal from Microsoft", fire: true, raw: message(aliceFrom, "ARC-Seal: i=1; a=rsa-sha256; s=arcselector; d=microsoft.com; cv=none; b=abc\n", "hi\n")},
		{rule: scoring.RuleTraceProvider, name: "Received by unqualified host", raw: "Received: from [192.168.1.20] by mailhost; " + testDate + "\n" + message(aliceFrom, "", "hi\n")},
		{rule: scoring.RuleMessageIDInvalid, name: "no brackets", fire: true, raw: strings.Replace(message(aliceFrom, "", "hi\n"), "<20261127115800.4821@example.com>", "20261127115800.4821", 1)},
		{rule: scoring.RuleMessageIDInvalid, name: "foreign right-hand side is no evidence", raw: strings.Replace(message(aliceFrom, "", "hi\n"), "@example.com>", "@mail.gmail.com>", 1)},
		{rule: scoring.RuleDateMissing, name: "no Date", fire: true, raw: strings.Replace(message(aliceFrom, "", "hi\n"), "Date: "+testDate+"\n", "", 1)},
		{rule: scoring.RuleDateMissing, name: "Date present", raw: message(aliceFrom, "", "hi\n")},
		{rule: scoring.RuleDateInvalid, name: "unparseable Date", fire: true, raw: strings.Replace(message(aliceFrom, "", "hi\n"), testDate, "yesterday at noon", 1)},
		{rule: scoring.RuleDateInvalid, name: "obsolete zone name", raw: strings.Replace(message(aliceFrom, "", "hi\n"), testDate, "Fri, 27 Nov 2026 06:58:00 EST", 1)},
		{rule: scoring.RuleDateFuture, name: "two days ahead", fire: true, raw: strings.Replace(message(aliceFrom, "", "hi\n"), testDate, "Sun, 29 Nov 2026 13:00:00 +0000", 1)},
		{rule: scoring.RuleDateFuture, name: "clock an hour fast", raw: strings.Replace(message(aliceFrom, "", "hi\n"), testDate, "Fri, 27 Nov 2026 13:00:00 +0000", 1)},
		{rule: scoring.RuleDateOld, name: "a month old", fire: true, raw: strings.Replace(message(aliceFrom, "", "hi\n"), testDate, "Mon, 26 Oct 2026 09:00:00 +0000", 1)},
		{rule: scoring.RuleDateOld, name: "draft from yesterday", raw: strings.Replace(message(aliceFrom, "", "hi\n"), testDate, "Thu, 26 Nov 2026 09:00:00 +0000", 1)},
		{rule: scoring.RuleDKIMForeign, name: "signature of gmail.com", fire: true, raw: message(aliceFrom, "DKIM-Signature: v=1; a=rsa-sha256; d=gmail.com; s=20230601; h=from; bh=x; b=y\n", "hi\n")},
		{rule: scoring.RuleDKIMForeign, name: "signature of own subdomain", raw: message(aliceFrom, "DKIM-Signature: v=1; a=rsa-sha256; d=mail.example.com; s=s1; h=from; bh=x; b=y\n", "hi\n")},
		{rule: scoring.RuleDKIMForeign, name: "own signature", raw: message(aliceFrom, "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s1; h=from; bh=x; b=y\n", "hi\n")},
		{rule: scoring.RuleEncodedAddress, name: "encoded word inside angle address", fire: true, raw: message("Alice <=?utf-8?q?alice=40example=2Ecom?=>", "", "hi\n")},
		{rule: scoring.RuleEncodedAddress, name: "encoded angle brackets", fire: true, raw: message("=?utf-8?B?UGF5UGFsIDxzZXJ2aWNlQHBheXBhbC5jb20+?= <alice@example.com>", "", "hi\n")},
		{rule: scoring.RuleEncodedAddress, name: "ordinary encoded name", raw: message("=?iso-8859-1?q?J=F6rg_M=FCller?= <alice@example.com>", "", "hi\n")},
		{rule: scoring.RuleHeaderControlChars, name: "bare CR", fire: true, raw: message(aliceFrom, "X-Note: a\rFrom: PayPal <service@paypal.com>\n", "hi\n")},
		{rule: scoring.RuleHeaderControlChars, name: "NUL", fire: true, raw: message(aliceFrom, "X-Note: a\x00b\n", "hi\n")},
		{rule: scoring.RuleHeaderControlChars, name: "CRLF folding", raw: strings.ReplaceAll(message(aliceFrom, "X-Note: a\n b\n", "hi\n"), "\n", "\r\n")},
		{rule: scoring.RuleHeaderLineTooLong, name: "1000-character line", fire: true, raw: message(aliceFrom, "X-Long: "+long+"\n", "hi\n")},
		{rule: scoring.RuleHeaderLineTooLong, name: "long but folded", raw: message(aliceFrom, "X-Long: "+long[:500]+"\n "+long[:500]+"\n", "hi\n")},
		{rule: scoring.RuleNullSenderAuth, name: "null sender", fire: true, mailFrom: "<>", raw: message(aliceFrom, "", "hi\n")},
		{rule: scoring.RuleNullSenderAuth, name: "ordinary sender", raw: message(aliceFrom, "", "hi\n")},
		{rule: scoring.RulePHPScript, name: "X-PHP-Originating-Script", fire: true, raw: message(aliceFrom, "X-PHP-Originating-Script: 33:wp-mail.php(3): eval()'d code\n", "hi\n")},
		{rule: scoring.RulePHPScript, name: "PHPMailer", fire: true, raw: message(aliceFrom, "X-Mailer: PHPMailer 6.8.0 (https://github.com/PHPMailer/PHPMailer)\n", "hi\n")},
		{rule: scoring.RulePHPScript, name: "declared web app", account: "shop", mailFrom: "orders@shop.example", raw: message("Shop <orders@shop.example>", "X-Mailer: PHPMailer 6.8.0\n", "hi\n")},

		// Spam volume.
		{rule: scoring.RuleBCCBlast, name: "40 recipients, one in To", fire: true, rcpts: rcptList(40, 3), raw: message(aliceFrom, "", "hi\n")},
		{rule: scoring.RuleBCCBlast, name: "12 recipients all in To", rcpts: rcptList(12, 2), raw: strings.Replace(message(aliceFrom, "", "hi\n"), "To: Bob <bob@example.net>", "To: "+strings.Join(rcptList(12, 2), ", "), 1)},
		{rule: scoring.RuleRcptManyDomains, name: "recipients in 12 domains", fire: true, rcpts: rcptList(12, 12), raw: strings.Replace(message(aliceFrom, "", "hi\n"), "To: Bob <bob@example.net>", "To: "+strings.Join(rcptList(12, 12), ", "), 1)},
		{rule: scoring.RuleRcptManyDomains, name: "recipients in 3 domains", rcpts: rcptList(30, 3), raw: message(aliceFrom, "", "hi\n")},
		{rule: scoring.RuleURLShortener, name: "bit.ly link", fire: true, raw: message(aliceFrom, "", "Look: https://bit.ly/3xYz\n")},
		{rule: scoring.RuleURLShortener, name: "ordinary link", raw: message(aliceFrom, "", "Look: https://www.example.com/bit.ly\n")},
		{rule: scoring.RuleURLRawIP, name: "link to public IP", fire: true, raw: message(aliceFrom, "", "<a href=\"http://45.77.12.9/login.php\">Verify</a>\n")},
		{rule: scoring.RuleURLRawIP, name: "link to router on private IP", raw: message(aliceFrom, "", "Open http://192.168.1.1/ to configure\n")},
		{rule: scoring.RuleURLRawIP, name: "link in a base64 text part", fire: true, raw: multipartBase64("text/html; charset=utf-8", "<a href=\"http://45.77.12.9/login.php\">Verify your account</a>")},
		{rule: scoring.RuleURLRawIP, name: "same bytes in a base64 image part", raw: multipartBase64("image/png", "<a href=\"http://45.77.12.9/login.php\">Verify your account</a>")},
		{rule: scoring.RuleURLRawIP, name: "base64 body of the message itself", fire: true, raw: message(aliceFrom, "Content-Transfer-Encoding: base64\n", wrap76(base64.StdEncoding.EncodeToString([]byte("Please log in at http://45.77.12.9/bank now.\n"))))},
		{rule: scoring.RuleBulkNoUnsubscribe, name: "Precedence bulk without unsubscribe", fire: true, raw: message(aliceFrom, "Precedence: bulk\n", "hi\n")},
		{rule: scoring.RuleBulkNoUnsubscribe, name: "newsletter with List-Unsubscribe", rcpts: rcptList(25, 2), raw: message(aliceFrom, "Precedence: bulk\nList-Unsubscribe: <https://example.com/u/1>\n", "hi\n")},
	}, append(malwareRuleCases(), phishingRuleCases()...)...)
}

// TestRules runs every rule's firing case and near-misses through the
// whole rule set.
func TestRules(t *testing.T) {
	accts := testAccounts(t)
	e := testEngine(t, testResolver())
	for _, tc := range ruleCases() {
		t.Run(tc.rule+"/"+tc.name, func(t *testing.T) {
			acct := tc.account
			if acct == "" {
				acct = "alice"
			}
			env := &scoring.Envelope{AuthLogin: acct, MailFrom: tc.mailFrom, Rcpts: tc.rcpts}
			switch tc.mailFrom {
			case "":
				env.MailFrom = "alice@example.com"
			case "<>":
				env.MailFrom = ""
			}
			if env.Rcpts == nil {
				env.Rcpts = []string{"bob@example.net"}
			}
			v := decide(t, e, env, tc.raw, accts[acct])
			if got := hasRule(v, tc.rule); got != tc.fire {
				t.Fatalf("%s fired = %v, want %v; findings %v", tc.rule, got, tc.fire, findingReasons(v))
			}
			for _, f := range v.Findings {
				if f.Rule == tc.rule && f.Reason == "" {
					t.Errorf("%s fired without a reason", tc.rule)
				}
				if f.Rule == tc.rule && !strings.Contains(f.Reason, tc.reason) {
					t.Errorf("%s reason %q lacks %q", tc.rule, f.Reason, tc.reason)
				}
			}
		})
	}
}

// TestEveryRuleHasCases keeps the table honest: each built-in rule has a
// case where it fires and one where it must not.
func TestEveryRuleHasCases(t *testing.T) {
	fires, misses := map[string]bool{}, map[string]bool{}
	for _, tc := range ruleCases() {
		if tc.fire {
			fires[tc.rule] = true
		} else {
			misses[tc.rule] = true
		}
	}
	for _, r := range scoring.DefaultRules() {
		if (!fires[r.ID] || !misses[r.ID]) && !streamedRules[r.ID] && !storeCountedRules[r.ID] && !modelRules[r.ID] {
			t.Errorf("rule %s: firing case %v, near-miss %v; want both", r.ID, fires[r.ID], misses[r.ID])
		}
	}
}

// TestScoresAndDisableFromConfig: a score override can make a scored rule
// reject, and a disabled rule does not run.
func TestScoresAndDisableFromConfig(t *testing.T) {
	accts := testAccounts(t)
	env := &scoring.Envelope{AuthLogin: "alice", MailFrom: "alice@example.com", Rcpts: []string{"bob@example.net"}}
	raw := message("PayPal Service <alice@example.com>", "", "hi\n")

	base := testEngine(t, nil)
	if v := decide(t, base, env, raw, accts["alice"]); v.Action != scoring.Accept || !hasRule(v, scoring.RuleBrandDisplayName) {
		t.Fatalf("default: %s %v, want accept with BRAND_DISPLAY_NAME", v.Reply(), findingReasons(v))
	}
	strict := scoring.NewEngine(nil, nil, scoring.Options{Now: func() time.Time { return testNow }, Settings: testSettings(),
		Scores: map[string]float64{scoring.RuleBrandDisplayName: 10}})
	if v := decide(t, strict, env, raw, accts["alice"]); v.Action != scoring.Reject || v.Rule != scoring.RuleBrandDisplayName {
		t.Fatalf("score 10: %s, want reject naming BRAND_DISPLAY_NAME", v.Reply())
	}
	off := scoring.NewEngine(nil, nil, scoring.Options{Now: func() time.Time { return testNow }, Settings: testSettings(),
		Disabled: map[string]bool{scoring.RuleBrandDisplayName: true}})
	if v := decide(t, off, env, raw, accts["alice"]); len(v.Findings) != 0 {
		t.Fatalf("disabled: findings %v, want none", findingReasons(v))
	}
}

// TestConfiguredBrandsReplaceDefaults: protected_brands replaces the
// built-in list, and its names count in display names.
func TestConfiguredBrandsReplaceDefaults(t *testing.T) {
	accts := testAccounts(t)
	settings := testSettings()
	settings.ProtectedBrands = []scoring.Brand{{Domain: "bigbank.com"}}
	e := scoring.NewEngine(nil, nil, scoring.Options{Now: func() time.Time { return testNow }, Settings: settings})
	env := &scoring.Envelope{AuthLogin: "hosting", MailFrom: "x@hosting.example", Rcpts: []string{"b@example.net"}}
	if v := decide(t, e, env, message("Alerts <a@bigbamk.com>", "", "hi\n"), accts["hosting"]); !hasRule(v, scoring.RuleLookalikeBrand) {
		t.Errorf("bigbamk.com: findings %v, want LOOKALIKE_BRAND of the configured brand", findingReasons(v))
	}
	if v := decide(t, e, env, message("Bigbank Alerts <a@hosting.example>", "", "hi\n"), accts["hosting"]); !hasRule(v, scoring.RuleBrandDisplayName) {
		t.Errorf("display name: findings %v, want BRAND_DISPLAY_NAME", findingReasons(v))
	}
	if v := decide(t, e, env, message("PayPal <a@paypa1.com>", "", "hi\n"), accts["hosting"]); hasRule(v, scoring.RuleLookalikeBrand) {
		t.Errorf("paypa1.com: findings %v; paypal.com is not protected once the list is configured", findingReasons(v))
	}
}
