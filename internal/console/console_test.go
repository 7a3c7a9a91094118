package console

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// pages are every GET page of the console (with a subject where one is
// needed).
var pages = []string{"/", "/live", "/search?q=alice", "/account?s=alice", "/held", "/held/message?id=q1.mx1",
	"/complaints", "/complaints?view=unattributed", "/audit", "/audit?s=alice"}

// actions are every state-changing request with a valid form.
var actions = []struct {
	path string
	form url.Values
}{
	{"/account/lock", url.Values{"s": {"alice"}, "reason": {"test"}}},
	{"/account/unlock", url.Values{"s": {"alice"}}},
	{"/account/reset", url.Values{"s": {"alice"}}},
	{"/account/override", url.Values{"s": {"alice"}, "limit": {"messages"}, "rate": {"5/1h"}}},
	{"/account/exempt", url.Values{"s": {"alice"}, "reason": {"test"}}},
	{"/account/unexempt", url.Values{"s": {"alice"}}},
	{"/held/release", url.Values{"id": {"q1.mx1"}, "confirm": {"yes"}}},
	{"/held/purge", url.Values{"id": {"q1.mx1"}, "confirm": {"yes"}}},
}

func (f *fixture) holdOne(id, account, subject string) {
	f.desk.mu.Lock()
	defer f.desk.mu.Unlock()
	f.desk.held = append(f.desk.held, HeldMessage{ID: id, QueueID: strings.Split(id, ".")[0], Instance: "mx1", Account: account,
		Login: account, Client: "192.0.2.10", Sender: account + "@example.com", Recipients: 3, From: account + "@example.com",
		Subject: subject, MessageID: "<" + id + "@example.com>", At: f.clock().Add(-10 * time.Minute),
		Findings: []Finding{{Rule: "ACCOUNT_LOCKED", Reason: "held for review"}},
		Headers:  []Header{{"From", account + "@example.com"}, {"Subject", subject}, {"X-Test", "yes"}}})
}

func TestAnonymousGetsTheLoginPage(t *testing.T) {
	f := newFixture(t)
	b := f.browser("192.0.2.1:1234")
	for _, p := range pages {
		w := b.get(p)
		if p == "/live" {
			if w.Code != http.StatusUnauthorized {
				t.Errorf("GET %s anonymous: %d, want 401 (the refresh script reloads to the login page)", p, w.Code)
			}
			continue
		}
		loc := w.Header().Get("Location")
		if w.Code != http.StatusSeeOther || !strings.HasPrefix(loc, "/login?next=") {
			t.Errorf("GET %s anonymous: %d %q, want 303 to the login page", p, w.Code, loc)
			continue
		}
		lp := b.get(loc)
		if lp.Code != http.StatusOK || !strings.Contains(lp.Body.String(), `action="/login"`) || !strings.Contains(lp.Body.String(), `type="password"`) {
			t.Errorf("GET %s: not the login page: %d\n%s", loc, lp.Code, lp.Body.String())
		}
		if strings.Contains(lp.Body.String(), "Locked accounts") {
			t.Errorf("the login page shows data")
		}
	}
	for _, a := range actions {
		w := b.do(http.MethodPost, a.path, a.form)
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login" {
			t.Errorf("POST %s anonymous: %d %q, want 303 to /login", a.path, w.Code, w.Header().Get("Location"))
		}
	}
	if st := f.status(ratelimit.Account("alice")); st.Lock != nil || st.Exemption != nil || len(st.Overrides) > 0 {
		t.Errorf("an anonymous request changed the store: %+v", st)
	}
	// A login page after the login goes where it was asked to, on this
	// site only.
	b.mustLogin("op", opPassword)
	for next, want := range map[string]string{"/held": "/held", "//evil.example/": "/", "https://evil.example/": "/", "/\\evil": "/"} {
		w := b.get("/login?next=" + url.QueryEscape(next))
		if w.Header().Get("Location") != want {
			t.Errorf("logged in, /login?next=%s: %q, want %q", next, w.Header().Get("Location"), want)
		}
	}
}

func TestEveryPageRenders(t *testing.T) {
	f := newFixture(t)
	f.holdOne("q1.mx1", "alice", "hello")
	b := f.browser("192.0.2.1:1234")
	b.mustLogin("view", viewerPassword)
	for _, p := range pages {
		w := b.get(p)
		if w.Code != http.StatusOK {
			t.Errorf("GET %s: %d\n%s", p, w.Code, w.Body.String())
			continue
		}
		checkPage(t, p, w.Body.String())
		if w.Header().Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", p, w.Header().Get("Content-Type"))
		}
	}
	if w := b.get("/nope"); w.Code != http.StatusNotFound {
		t.Errorf("GET /nope: %d", w.Code)
	}
	for _, p := range []string{"/static/style.css", "/static/app.js"} {
		w := b.get(p)
		if w.Code != http.StatusOK || w.Body.Len() < 100 {
			t.Errorf("GET %s: %d, %d bytes", p, w.Code, w.Body.Len())
		}
	}
}

var (
	inlineScript = regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`)
	eventHandler = regexp.MustCompile(`(?i)<[a-z][^>]*\son[a-z]+\s*=`)
	styleAttr    = regexp.MustCompile(`(?i)<[a-z][^>]*\sstyle\s*=`)
)

// checkPage fails on what the CSP would block or what would break it:
// inline scripts, event handler attributes, style attributes.
func checkPage(t *testing.T, name, body string) {
	t.Helper()
	for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(body, -1) {
		if !strings.Contains(m, `src="/static/`) {
			t.Errorf("%s: script without a same-origin src: %s", name, m)
		}
	}
	body = regexp.MustCompile(`="[^"]*"`).ReplaceAllString(body, `=""`)
	if inlineScript.MatchString(body) {
		t.Errorf("%s: inline script", name)
	}
	if eventHandler.MatchString(body) {
		t.Errorf("%s: inline event handler: %s", name, eventHandler.FindString(body))
	}
	if styleAttr.MatchString(body) {
		t.Errorf("%s: style attribute (blocked by the CSP)", name)
	}
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t)
	b := f.browser("192.0.2.1:1234")
	for _, p := range []string{"/login", "/", "/static/style.css"} {
		w := b.get(p)
		h := w.Header()
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", p, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP allows inline code: %q", p, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", p, h)
		}
		if h.Get("Strict-Transport-Security") != "" {
			t.Errorf("%s: HSTS without TLS", p)
		}
	}
	if w := newFixture(t, withTLS()).browser("192.0.2.1:1").get("/login"); w.Header().Get("Strict-Transport-Security") == "" {
		t.Errorf("no HSTS under TLS")
	}
	// A cross-site POST is refused before anything else.
	b.mustLogin("op", opPassword)
	tok := b.token()
	b.headers["Sec-Fetch-Site"] = "cross-site"
	w := b.do(http.MethodPost, "/account/lock", url.Values{"csrf": {tok}, "s": {"alice"}, "reason": {"x"}})
	if w.Code != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", w.Code)
	}
	delete(b.headers, "Sec-Fetch-Site")
	b.headers["Origin"] = "https://evil.example"
	w = b.do(http.MethodPost, "/account/lock", url.Values{"csrf": {tok}, "s": {"alice"}, "reason": {"x"}})
	if w.Code != http.StatusForbidden {
		t.Errorf("POST from a foreign Origin: %d, want 403", w.Code)
	}
	if st := f.status(ratelimit.Account("alice")); st.Lock != nil {
		t.Errorf("a cross-site request locked alice")
	}
}

func TestViewerCannotAct(t *testing.T) {
	f := newFixture(t)
	f.holdOne("q1.mx1", "alice", "hello")
	b := f.browser("192.0.2.1:1234")
	b.mustLogin("view", viewerPassword)
	acct := b.get("/account?s=alice").Body.String()
	if strings.Contains(acct, `action="/account/lock"`) {
		t.Errorf("a viewer's account page offers the lock form")
	}
	for _, a := range actions {
		form := url.Values{}
		for k, v := range a.form {
			form[k] = v
		}
		w := b.post(a.path, form)
		if w.Code != http.StatusForbidden {
			t.Errorf("viewer POST %s: %d, want 403", a.path, w.Code)
		}
		if !strings.Contains(w.Body.String(), "may look but not act") {
			t.Errorf("viewer POST %s: the page does not say why", a.path)
		}
	}
	if st := f.status(ratelimit.Account("alice")); st.Lock != nil || st.Exemption != nil || len(st.Overrides) > 0 || len(st.Audit) > 0 {
		t.Errorf("a viewer changed the store: %+v", st)
	}
	if len(f.desk.released)+len(f.desk.purged) > 0 {
		t.Errorf("a viewer released or purged: %v %v", f.desk.released, f.desk.purged)
	}
}

func TestCSRF(t *testing.T) {
	f := newFixture(t)
	f.holdOne("q1.mx1", "alice", "hello")
	b := f.browser("192.0.2.1:1234")
	b.mustLogin("op", opPassword)
	other := f.browser("192.0.2.2:1234")
	other.mustLogin("op", opPassword)
	otherTok := other.token()
	for _, a := range append(actions, struct {
		path string
		form url.Values
	}{"/logout", url.Values{}}) {
		for name, tok := range map[string]string{"missing": "", "wrong": "AAAA" + b.token()[4:], "another session's": otherTok} {
			form := url.Values{}
			for k, v := range a.form {
				form[k] = v
			}
			if tok != "" {
				form.Set("csrf", tok)
			}
			w := b.do(http.MethodPost, a.path, form)
			if w.Code != http.StatusForbidden {
				t.Errorf("POST %s with a %s token: %d, want 403", a.path, name, w.Code)
			}
		}
	}
	if st := f.status(ratelimit.Account("alice")); st.Lock != nil || st.Exemption != nil || len(st.Overrides) > 0 {
		t.Errorf("a request without a valid token changed the store: %+v", st)
	}
	// The token in a header works as in the form (for scripts).
	tok := b.token()
	b.headers["X-CSRF-Token"] = tok
	if w := b.do(http.MethodPost, "/account/lock", url.Values{"s": {"alice"}, "reason": {"hdr"}}); w.Code != http.StatusSeeOther {
		t.Errorf("POST with the token in X-CSRF-Token: %d", w.Code)
	}
	delete(b.headers, "X-CSRF-Token")
	// The login form has its own token, bound to a cookie.
	anon := f.browser("192.0.2.3:1234")
	anon.get("/login")
	for name, form := range map[string]url.Values{
		"missing": {"user": {"op"}, "password": {opPassword}},
		"wrong":   {"user": {"op"}, "password": {opPassword}, "csrf": {"nope"}},
	} {
		if w := anon.do(http.MethodPost, "/login", form); w.Code != http.StatusForbidden {
			t.Errorf("login with a %s token: %d, want 403", name, w.Code)
		}
	}
	fresh := f.browser("192.0.2.4:1234") // no login cookie at all
	if w := fresh.do(http.MethodPost, "/login", url.Values{"user": {"op"}, "password": {opPassword}, "csrf": {"x"}}); w.Code != http.StatusForbidden {
		t.Errorf("login without the form's cookie: %d, want 403", w.Code)
	}
}

func TestOperatorActions(t *testing.T) {
	f := newFixture(t)
	b := f.browser("192.0.2.1:1234")
	b.mustLogin("op", opPassword)
	ctx := context.Background()
	alice := ratelimit.Account("alice")

	flash := func(w interface{ Result() *http.Response }, want string) {
		t.Helper()
		resp := w.Result()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account?s=acct%3Aalice" {
			t.Fatalf("action: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		page := b.get("/account?s=acct%3Aalice").Body.String()
		if !strings.Contains(page, html.EscapeString(want)) {
			t.Errorf("the page after the action does not say %q:\n%s", want, page)
		}
	}

	flash(b.post("/account/lock", url.Values{"s": {"alice"}, "reason": {"phishing, ticket 4711"}, "for": {"2h"}}), "Locked alice for 2h.")
	st := f.status(alice)
	if st.Lock == nil || st.Lock.By != "op (console)" || st.Lock.Reason != "phishing, ticket 4711" || !st.Lock.Until.Equal(f.clock().Add(2*time.Hour)) {
		t.Fatalf("lock: %+v", st.Lock)
	}
	if len(st.Audit) == 0 || st.Audit[0].By != "op (console)" || st.Audit[0].Action != "lock" {
		t.Errorf("audit: %+v", st.Audit)
	}
	page := b.get("/account?s=alice").Body.String()
	for _, want := range []string{"Locked by <strong>op (console)</strong>", "phishing, ticket 4711", `action="/account/unlock"`} {
		if !strings.Contains(page, want) {
			t.Errorf("account page lacks %q", want)
		}
	}
	if ov := b.get("/").Body.String(); !strings.Contains(ov, `href="/account?s=acct%3Aalice"`) || !strings.Contains(ov, "phishing, ticket 4711") {
		t.Errorf("the overview does not list the lock:\n%s", ov)
	}

	flash(b.post("/account/unlock", url.Values{"s": {"alice"}}), "Unlocked alice (was locked by op (console)); strikes cleared.")
	if st := f.status(alice); st.Lock != nil || st.Audit[0].Action != "unlock" || st.Audit[0].By != "op (console)" {
		t.Errorf("unlock: %+v", st)
	}
	flash(b.post("/account/unlock", url.Values{"s": {"alice"}}), "alice is not locked")

	f.charge("alice", 4)
	flash(b.post("/account/reset", url.Values{"s": {"alice"}, "limit": {"account_messages"}}), "Reset the account_messages counter of acct:alice.")
	for _, l := range f.status(alice).Limits {
		if l.Dimension == ratelimit.AccountMessages && l.Used != 0 {
			t.Errorf("reset left %d used", l.Used)
		}
		if l.Dimension == ratelimit.AccountRecipients && l.Used != 4 {
			t.Errorf("reset of one limit cleared another: %+v", l)
		}
	}
	flash(b.post("/account/reset", url.Values{"s": {"alice"}, "limit": {"all"}}), "Reset every counter and the strikes of acct:alice.")

	flash(b.post("/account/override", url.Values{"s": {"alice"}, "limit": {"messages"}, "rate": {"500/1h,2000/24h"}, "for": {"1d"}}),
		"account_messages of acct:alice is now 500/1h,2000/24h for 1d.")
	st = f.status(alice)
	if len(st.Overrides) != 1 || len(st.Overrides[0].Rates) != 2 || st.Audit[0].By != "op (console)" {
		t.Errorf("override: %+v", st.Overrides)
	}
	flash(b.post("/account/override", url.Values{"s": {"alice"}, "limit": {"account_messages"}, "remove": {"1"}}), "Removed the override of account_messages")
	if st := f.status(alice); len(st.Overrides) != 0 {
		t.Errorf("override remove: %+v", st.Overrides)
	}

	flash(b.post("/account/exempt", url.Values{"s": {"alice"}, "reason": {"newsletter"}}), "Exempted acct:alice from every limit until removed.")
	if st := f.status(alice); st.Exemption == nil || st.Exemption.By != "op (console)" || st.Exemption.Reason != "newsletter" {
		t.Errorf("exempt: %+v", st.Exemption)
	}
	flash(b.post("/account/unexempt", url.Values{"s": {"alice"}}), "Removed the exemption of acct:alice")
	if ex, _ := f.store.Exemptions(ctx); len(ex) != 0 {
		t.Errorf("unexempt: %+v", ex)
	}
	// Senders and clients have pages and actions too.
	w := b.post("/account/exempt", url.Values{"s": {"sender:news@shop.example"}, "reason": {"shop"}})
	if w.Code != http.StatusSeeOther {
		t.Errorf("exempt a sender: %d", w.Code)
	}
	if st := f.status(ratelimit.Sender("news@shop.example")); st.Exemption == nil {
		t.Errorf("sender not exempt")
	}
	// The console's own log names the user of every action.
	if n := f.logs.FilterMessage("console: lock").FilterField(zapUser("op")).Len(); n != 1 {
		t.Errorf("%d log lines for the lock by op", n)
	}
	// The audit page shows the actions.
	audit := b.get("/audit?s=alice").Body.String()
	for _, a := range []string{"lock", "unlock", "reset", "override", "exempt", "unexempt"} {
		if !strings.Contains(audit, "<td>"+a+"</td>") {
			t.Errorf("audit page lacks %s", a)
		}
	}
	if all := b.get("/audit").Body.String(); !strings.Contains(all, "sender:news@shop.example") {
		t.Errorf("the audit page does not show the exempt sender's entries")
	}
}

func TestInputValidation(t *testing.T) {
	f := newFixture(t)
	b := f.browser("192.0.2.1:1234")
	b.mustLogin("op", opPassword)
	long := strings.Repeat("a", 600)
	bad := []struct {
		path string
		form url.Values
	}{
		{"/account/lock", url.Values{"s": {""}, "reason": {"x"}}},
		{"/account/lock", url.Values{"s": {"ali\x00ce"}, "reason": {"x"}}},
		{"/account/lock", url.Values{"s": {"alice"}, "reason": {""}}},
		{"/account/lock", url.Values{"s": {"alice"}, "reason": {long}}},
		{"/account/lock", url.Values{"s": {"alice"}, "reason": {"a\nb"}}},
		{"/account/lock", url.Values{"s": {"alice"}, "reason": {"x"}, "for": {"soon"}}},
		{"/account/lock", url.Values{"s": {"alice"}, "reason": {"x"}, "for": {"-1h"}}},
		{"/account/lock", url.Values{"s": {"sender:a@b.example"}, "reason": {"x"}}},
		{"/account/lock", url.Values{"s": {"client:not-an-ip"}, "reason": {"x"}}},
		{"/account/reset", url.Values{"s": {"alice"}, "limit": {"client_messages"}}},
		{"/account/override", url.Values{"s": {"alice"}, "limit": {"nope"}, "rate": {"5/1h"}}},
		{"/account/override", url.Values{"s": {"alice"}, "limit": {"messages"}, "rate": {"five"}}},
		{"/account/override", url.Values{"s": {"alice"}, "limit": {"messages"}, "rate": {""}}},
		{"/account/exempt", url.Values{"s": {"alice"}, "reason": {" "}}},
		{"/held/release", url.Values{"id": {"../etc/passwd"}}},
		{"/held/release", url.Values{}},
		{"/held/purge", url.Values{"id": {"<x>"}}},
	}
	for _, c := range bad {
		w := b.post(c.path, c.form)
		if w.Code != http.StatusBadRequest {
			t.Errorf("POST %s %v: %d, want 400", c.path, c.form, w.Code)
		}
	}
	if st := f.status(ratelimit.Account("alice")); st.Lock != nil || len(st.Overrides) > 0 || st.Exemption != nil {
		t.Errorf("invalid input changed the store: %+v", st)
	}
	for _, p := range []string{"/account?s=", "/account?s=" + url.QueryEscape(long), "/account?s=a%01b", "/search?q=" + url.QueryEscape(long),
		"/held?rule=" + url.QueryEscape("<x>"), "/held?account=a%0Ab", "/held/message?id=..", "/complaints?view=all", "/audit?s=%00"} {
		if w := b.get(p); w.Code != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", p, w.Code)
		}
	}
	if w := b.post("/account/frobnicate", url.Values{"s": {"alice"}}); w.Code != http.StatusNotFound {
		t.Errorf("unknown action: %d", w.Code)
	}
}

const payload = `<script>alert("x")</script><img src=x onerror=alert(1)>"'&`

func TestPayloadsAreEscaped(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// An account whose name is a payload, locked with a payload reason; a
	// held message and a complaint whose Subject is a payload.
	if err := f.store.Lock(ctx, payload, "reason "+payload, "auto", 0); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Lock(ctx, "alice", "reason "+payload, "op "+payload, 0); err != nil {
		t.Fatal(err)
	}
	f.holdOne("q1.mx1", payload, "subject "+payload)
	f.desk.compl = append(f.desk.compl, Complaint{ID: "c1", At: f.clock().Add(-time.Hour), Account: payload, FeedbackType: "abuse",
		Subject: "subject " + payload, Reporter: payload, Detail: payload})
	f.desk.compl = append(f.desk.compl, Complaint{ID: "c2", At: f.clock().Add(-time.Hour), Subject: "subject " + payload})
	f.desk.refusals = append(f.desk.refusals, Refusal{At: f.clock().Add(-time.Hour), Account: "alice", Rule: payload, Reason: payload, Action: "reject"})
	b := f.browser("192.0.2.1:1234")
	b.mustLogin("op", opPassword)
	subjectURL := "/account?s=" + url.QueryEscape("acct:"+payload)
	for _, p := range []string{"/", "/live", subjectURL, "/account?s=alice", "/search?q=" + url.QueryEscape(payload), "/held",
		"/held/message?id=q1.mx1", "/complaints", "/complaints?view=unattributed", "/audit"} {
		w := b.get(p)
		body := w.Body.String()
		if w.Code != http.StatusOK {
			t.Errorf("GET %s: %d\n%s", p, w.Code, body)
			continue
		}
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") || strings.Contains(body, "onerror=alert") && !strings.Contains(body, "onerror=alert(1)&gt;") {
			t.Errorf("GET %s: the payload comes back unescaped:\n%s", p, body)
		}
		if !strings.Contains(body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
			t.Errorf("GET %s: the escaped payload is not shown:\n%s", p, body)
		}
		checkPage(t, p, body)
	}
	// A search term that is a payload comes back escaped in the form and
	// the heading.
	body := b.get("/search?q=" + url.QueryEscape(payload)).Body.String()
	if strings.Count(body, html.EscapeString(`<script>alert("x")</script>`)) < 2 {
		t.Errorf("the search term is not shown escaped in the field and the heading:\n%s", body)
	}
	// An error message quoting the input is escaped too.
	w := b.post("/account/lock", url.Values{"s": {"sender:" + payload}, "reason": {"x"}})
	if w.Code != http.StatusBadRequest || strings.Contains(w.Body.String(), "<script>alert") {
		t.Errorf("error page: %d\n%s", w.Code, w.Body.String())
	}
	// And the account with the payload name can be acted on.
	w = b.post("/account/unlock", url.Values{"s": {"acct:" + payload}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("unlock the payload account: %d", w.Code)
	}
	if st := f.status(ratelimit.Account(payload)); st.Lock != nil {
		t.Errorf("not unlocked")
	}
}

func TestLoginThrottling(t *testing.T) {
	f := newFixture(t)
	b := f.browser("192.0.2.1:1234")
	for i := range 5 {
		if w := b.login("op", fmt.Sprintf("wrong-%d-password", i)); w.Code != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i, w.Code)
		}
	}
	// The sixth attempt is refused unchecked, even with the right password,
	// and from another address too (per user).
	w := b.login("op", opPassword)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "Too many failed logins") {
		t.Fatalf("after 5 failures: %d %q", w.Code, w.Header().Get("Retry-After"))
	}
	if w := f.browser("198.51.100.7:999").login("op", opPassword); w.Code != http.StatusTooManyRequests {
		t.Errorf("per user, from another address: %d, want 429", w.Code)
	}
	// Another user from the same address is not blocked by op's failures.
	f.browser("192.0.2.1:1234").mustLogin("view", viewerPassword)
	// The window passes: op may log in again.
	f.advance(16 * time.Minute)
	b.mustLogin("op", opPassword)

	// Per address: 20 failures over many names from one address block the
	// address, not the names elsewhere.
	c := f.browser("203.0.113.5:1")
	for i := range 20 {
		if w := c.login(fmt.Sprintf("guess%d", i), "wrong-password-xx"); w.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, w.Code)
		}
	}
	if w := c.login("view", viewerPassword); w.Code != http.StatusTooManyRequests {
		t.Errorf("per address: %d, want 429", w.Code)
	}
	f.browser("203.0.113.6:1").mustLogin("view", viewerPassword)
	// IPv6: one /64 is one address.
	for i := range 20 {
		f.browser(fmt.Sprintf("[2001:db8::%x]:1", i+1)).login(fmt.Sprintf("g%d", i), "wrong-password-xx")
	}
	if w := f.browser("[2001:db8::ffff]:1").login("view", viewerPassword); w.Code != http.StatusTooManyRequests {
		t.Errorf("per /64: %d, want 429", w.Code)
	}
	// Unknown users and wrong passwords read the same.
	unknown := f.browser("192.0.2.99:1").login("nobody", "some-password-xx").Body.String()
	wrong := f.browser("192.0.2.98:1").login("view", "some-password-xx").Body.String()
	if !strings.Contains(unknown, "Wrong user name or password.") || !strings.Contains(wrong, "Wrong user name or password.") {
		t.Errorf("login errors differ or say too much")
	}
	if n := f.logs.FilterMessage("console: login throttled").Len(); n == 0 {
		t.Errorf("throttling is not logged")
	}
}

func TestCookieAttributes(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", tls), func(t *testing.T) {
			var opts []fixtureOpt
			prefix := ""
			if tls {
				opts, prefix = append(opts, withTLS()), "__Host-"
			}
			f := newFixture(t, opts...)
			b := f.browser("192.0.2.1:1234")
			page := b.get("/login")
			lc := findCookie(page.Result().Cookies(), prefix+loginCookie)
			if lc == nil {
				t.Fatalf("no login cookie: %v", page.Result().Cookies())
			}
			w := b.do(http.MethodPost, "/login", url.Values{"csrf": {csrfOf(t, page.Body.String())}, "user": {"op"}, "password": {opPassword}})
			sc := findCookie(w.Result().Cookies(), prefix+sessionCookie)
			if sc == nil {
				t.Fatalf("no session cookie: %v", w.Result().Cookies())
			}
			for _, c := range []*http.Cookie{lc, sc} {
				if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" || c.Secure != tls {
					t.Errorf("cookie %s: HttpOnly %v SameSite %v Path %q Domain %q Secure %v", c.Name, c.HttpOnly, c.SameSite, c.Path, c.Domain, c.Secure)
				}
			}
			if sc.MaxAge != 0 || !sc.Expires.IsZero() {
				t.Errorf("the session cookie outlives the browser: %+v", sc)
			}
			// The session ID is in no page, URL or log line.
			for _, p := range pages {
				r := b.get(p)
				if strings.Contains(r.Body.String(), sc.Value) || strings.Contains(r.Header().Get("Location"), sc.Value) {
					t.Errorf("%s shows the session ID", p)
				}
			}
			for _, e := range f.logs.All() {
				line := fmt.Sprint(e.Message, e.ContextMap())
				if strings.Contains(line, sc.Value) || strings.Contains(line, opPassword) {
					t.Errorf("a log line holds a secret: %s", line)
				}
			}
			// Logout clears the cookie and ends the session.
			tok := b.token()
			old := sc.Value
			w = b.do(http.MethodPost, "/logout", url.Values{"csrf": {tok}})
			if w.Code != http.StatusSeeOther {
				t.Fatalf("logout: %d", w.Code)
			}
			if c := findCookie(w.Result().Cookies(), prefix+sessionCookie); c == nil || c.MaxAge >= 0 {
				t.Errorf("logout does not clear the cookie")
			}
			replay := f.browser("192.0.2.1:1234")
			replay.cookies[prefix+sessionCookie] = &http.Cookie{Name: prefix + sessionCookie, Value: old}
			if w := replay.get("/"); w.Code != http.StatusSeeOther {
				t.Errorf("the session works after logout: %d", w.Code)
			}
		})
	}
}

func findCookie(cs []*http.Cookie, name string) *http.Cookie {
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func TestSessionEnds(t *testing.T) {
	f := newFixture(t)
	b := f.browser("192.0.2.1:1234")
	b.mustLogin("op", opPassword)
	f.advance(29 * time.Minute)
	if w := b.get("/"); w.Code != http.StatusOK {
		t.Fatalf("29 minutes idle: %d", w.Code)
	}
	f.advance(31 * time.Minute)
	if w := b.get("/"); w.Code != http.StatusSeeOther {
		t.Errorf("31 minutes idle: %d, want the login page", w.Code)
	}
	// A removed user or a changed role ends the session at once.
	b.mustLogin("op", opPassword)
	users, err := ReadUsers(f.users)
	if err != nil {
		t.Fatal(err)
	}
	users[0].Role = RoleViewer
	if err := WriteUsers(f.users, users); err != nil {
		t.Fatal(err)
	}
	// A new modification time, without waiting for the clock to move.
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(f.users, later, later); err != nil {
		t.Fatal(err)
	}
	if w := b.get("/"); w.Code != http.StatusSeeOther {
		t.Errorf("after a role change: %d, want the login page", w.Code)
	}
	b.mustLogin("op", opPassword)
	if w := b.post("/account/lock", url.Values{"s": {"alice"}, "reason": {"x"}}); w.Code != http.StatusForbidden {
		t.Errorf("op is a viewer now: %d", w.Code)
	}
	if err := WriteUsers(f.users, users[1:]); err != nil {
		t.Fatal(err)
	}
	if w := b.get("/"); w.Code != http.StatusSeeOther {
		t.Errorf("after removal: %d", w.Code)
	}
}

func TestDeskPages(t *testing.T) {
	f := newFixture(t)
	f.holdOne("q1.mx1", "alice", "first held")
	f.holdOne("q2.mx1", "alice", "second held")
	f.holdOne("q3.mx2", "bob", "bob's held")
	now := f.clock()
	f.desk.compl = []Complaint{
		{ID: "c1", At: now.Add(-2 * time.Hour), Account: "alice", FeedbackType: "abuse", Reporter: "fbl.example", Subject: "spammy"},
		{ID: "c2", At: now.Add(-3 * time.Hour), FeedbackType: "abuse", Reporter: "fbl.example", Subject: "orphan complaint"},
	}
	for i := range 12 {
		f.desk.refusals = append(f.desk.refusals, Refusal{At: now.Add(-time.Duration(i) * time.Hour), Account: "alice",
			Action: "defer", Rule: []string{"ACCOUNT_MSG_RATE", "CONTENT_PHISH"}[i%2], Reason: "rate"})
	}
	f.desk.sent["alice"] = []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23}
	b := f.browser("192.0.2.1:1234")
	b.mustLogin("op", opPassword)

	ov := b.get("/").Body.String()
	for _, want := range []string{"first held", "spammy", "orphan complaint", "<svg viewBox=\"0 0 480 160\"", "ACCOUNT_MSG_RATE (6)", "CONTENT_PHISH (6)"} {
		if !strings.Contains(ov, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	acct := b.get("/account?s=alice").Body.String()
	for _, want := range []string{"first held", "second held", "spammy", "CONTENT_PHISH", "messages (276)", "Messages sent per hour"} {
		if !strings.Contains(acct, want) {
			t.Errorf("account page lacks %q", want)
		}
	}
	if strings.Contains(acct, "bob&#39;s held") {
		t.Errorf("alice's page shows bob's mail")
	}
	held := b.get("/held?account=bob").Body.String()
	if !strings.Contains(held, "bob&#39;s held") || strings.Contains(held, "first held") || f.desk.lastHeldF.Account != "bob" {
		t.Errorf("held filter by account: %+v", f.desk.lastHeldF)
	}
	if held := b.get("/held?rule=ACCOUNT_LOCKED").Body.String(); !strings.Contains(held, "first held") {
		t.Errorf("held filter by rule")
	}
	msg := b.get("/held/message?id=q1.mx1").Body.String()
	if !strings.Contains(msg, "X-Test: yes") || !strings.Contains(msg, "&lt;q1.mx1@example.com&gt;") {
		t.Errorf("held message page:\n%s", msg)
	}
	if w := b.get("/held/message?id=nope"); w.Code != http.StatusNotFound {
		t.Errorf("missing held message: %d", w.Code)
	}
	if c := b.get("/complaints?view=unattributed").Body.String(); !strings.Contains(c, "orphan complaint") || strings.Contains(c, "spammy") {
		t.Errorf("unattributed complaints")
	}
	if c := b.get("/complaints").Body.String(); strings.Contains(c, "orphan complaint") || !strings.Contains(c, "spammy") {
		t.Errorf("attributed complaints")
	}

	// Release asks first, then acts with the console user.
	w := b.post("/held/release", url.Values{"id": {"q1.mx1", "q2.mx1"}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Confirm: release 2 message(s)") || len(f.desk.released) != 0 {
		t.Fatalf("release without confirm: %d %v\n%s", w.Code, f.desk.released, w.Body.String())
	}
	checkPage(t, "confirm", w.Body.String())
	w = b.post("/held/release", url.Values{"id": {"q1.mx1", "q2.mx1"}, "confirm": {"yes"}})
	if w.Code != http.StatusOK || f.desk.released["q1.mx1"] != "op (console)" || f.desk.released["q2.mx1"] != "op (console)" {
		t.Fatalf("release: %d %v", w.Code, f.desk.released)
	}
	if !strings.Contains(w.Body.String(), "released") {
		t.Errorf("the outcome is not shown")
	}
	w = b.post("/held/purge", url.Values{"id": {"q3.mx2", "q1.mx1"}, "confirm": {"yes"}})
	if f.desk.purged["q3.mx2"] != "op (console)" || !strings.Contains(w.Body.String(), "no longer on the hold queue") {
		t.Errorf("purge: %v\n%s", f.desk.purged, w.Body.String())
	}
}

func TestWithoutDesk(t *testing.T) {
	f := newFixture(t, withoutDesk())
	b := f.browser("192.0.2.1:1234")
	b.mustLogin("op", opPassword)
	const na = "Not available with this version of the store."
	for p, n := range map[string]int{"/": 3, "/account?s=alice": 4, "/held": 1, "/held/message?id=q1.mx1": 1, "/complaints": 1} {
		w := b.get(p)
		if w.Code != http.StatusOK || strings.Count(w.Body.String(), na) != n {
			t.Errorf("GET %s: %d, %d times %q, want %d:\n%s", p, w.Code, strings.Count(w.Body.String(), na), na, n, w.Body.String())
		}
	}
	w := b.post("/held/release", url.Values{"id": {"q1.mx1"}, "confirm": {"yes"}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), na) {
		t.Errorf("release without a desk: %d", w.Code)
	}
	// The rest of the console works.
	if w := b.post("/account/lock", url.Values{"s": {"alice"}, "reason": {"x"}}); w.Code != http.StatusSeeOther {
		t.Errorf("lock without a desk: %d", w.Code)
	}
}

func TestOverviewNearLimitAndSearch(t *testing.T) {
	f := newFixture(t)
	f.charge("busy", 9) // 9 of 10 an hour
	f.charge("calm", 2)
	b := f.browser("192.0.2.1:1234")
	b.mustLogin("view", viewerPassword)
	ov := b.get("/").Body.String()
	if !strings.Contains(ov, `href="/account?s=acct%3Abusy"`) || !strings.Contains(ov, "9/10 (90%)") {
		t.Errorf("the overview does not show busy near its limit:\n%s", ov)
	}
	if strings.Contains(ov, "acct%3Acalm") {
		t.Errorf("calm is not near a limit")
	}
	if !strings.Contains(ov, `data-refresh="15"`) {
		t.Errorf("no refresh interval for the script")
	}
	for q, want := range map[string]string{
		"al":                "acct:alice",
		"alice@example.com": "acct:alice",
		"x@shop.example":    "acct:bob",
		"192.0.2.9":         "client:192.0.2.9",
		"busy":              "acct:busy",
	} {
		body := b.get("/search?q=" + url.QueryEscape(q)).Body.String()
		if !strings.Contains(body, ">"+want+"</a>") {
			t.Errorf("search %q does not find %s:\n%s", q, want, body)
		}
	}
	// The overview's live fragment is the body alone.
	live := b.get("/live").Body.String()
	if strings.Contains(live, "<html") || !strings.Contains(live, "Locked accounts") {
		t.Errorf("live fragment:\n%s", live)
	}
}

func TestProxyAuth(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.UsersFile = ""
		o.ProxyHeader = "X-Remote-User"
		o.ProxyTrusted = []netipPrefix{mustPrefix("127.0.0.1/32")}
		o.ProxyOperators = []string{"carol"}
	})
	b := f.browser("127.0.0.1:5555")
	if w := b.get("/"); w.Code != http.StatusForbidden {
		t.Errorf("no header: %d, want 403", w.Code)
	}
	b.headers["X-Remote-User"] = "dave"
	if w := b.get("/"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "role-viewer") {
		t.Errorf("dave: %d", w.Code)
	}
	if w := b.post("/account/lock", url.Values{"s": {"alice"}, "reason": {"x"}}); w.Code != http.StatusForbidden {
		t.Errorf("viewer dave acts: %d", w.Code)
	}
	b.headers["X-Remote-User"] = "carol"
	if w := b.do(http.MethodPost, "/account/lock", url.Values{"s": {"alice"}, "reason": {"x"}}); w.Code != http.StatusForbidden {
		t.Errorf("carol without CSRF token: %d, want 403", w.Code)
	}
	if w := b.post("/account/lock", url.Values{"s": {"alice"}, "reason": {"x"}}); w.Code != http.StatusSeeOther {
		t.Errorf("carol locks: %d", w.Code)
	}
	if st := f.status(ratelimit.Account("alice")); st.Lock == nil || st.Lock.By != "carol (console)" {
		t.Errorf("lock by carol: %+v", st.Lock)
	}
	// The header from anywhere else counts for nothing.
	e := f.browser("192.0.2.50:1")
	e.headers["X-Remote-User"] = "carol"
	if w := e.get("/"); w.Code != http.StatusForbidden {
		t.Errorf("header from an untrusted address: %d, want 403", w.Code)
	}
	b.headers["X-Remote-User"] = "bad name<"
	if w := b.get("/"); w.Code != http.StatusForbidden {
		t.Errorf("invalid user name: %d", w.Code)
	}
	if w := b.get("/login"); w.Code != http.StatusSeeOther {
		t.Errorf("no login page with proxy auth: %d", w.Code)
	}
}

func TestUsersFile(t *testing.T) {
	if HashCost != 12 {
		t.Fatalf("new hashes have cost %d, want 12", HashCost)
	}
	lowHashCost(t)
	path := t.TempDir() + "/users"
	if u, err := ReadUsers(path); err != nil || u != nil {
		t.Fatalf("missing file: %v %v", u, err)
	}
	h, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteUsers(path, []User{{Name: "zed", Role: RoleViewer, Hash: h}, {Name: "amy", Role: RoleOperator, Hash: h}}); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	u, err := ReadUsers(path)
	if err != nil || len(u) != 2 || u[0].Name != "amy" || u[1].Role != RoleViewer {
		t.Fatalf("read back: %+v %v", u, err)
	}
	uf := &userFile{path: path}
	if _, ok, _ := uf.authenticate("amy", "correct horse battery"); !ok {
		t.Errorf("amy cannot log in")
	}
	if _, ok, _ := uf.authenticate("amy", "wrong"); ok {
		t.Errorf("wrong password accepted")
	}
	for _, bad := range []string{"amy:admin:" + string(h), "amy:viewer:plaintext", "am y:viewer:" + string(h), "amy:viewer", "a:viewer:" + string(h) + "\na:viewer:" + string(h)} {
		if err := os.WriteFile(path, []byte(bad+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadUsers(path); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	for _, pw := range []string{"short", strings.Repeat("x", 80), "line\nbreak-password"} {
		if _, err := HashPassword(pw); err == nil {
			t.Errorf("password %q accepted", pw)
		}
	}
	for _, n := range []string{"", "-x", "a b", "a:b", strings.Repeat("a", 65), "<x>"} {
		if ValidUserName(n) == nil {
			t.Errorf("user name %q accepted", n)
		}
	}
}

func TestCharts(t *testing.T) {
	now := time.Date(2026, 12, 2, 3, 30, 0, 0, time.UTC)
	var refs []Refusal
	for i := range 8 {
		refs = append(refs, Refusal{At: now.Add(-time.Duration(i) * 10 * time.Minute), Rule: fmt.Sprintf("R%d", i)})
	}
	refs = append(refs, Refusal{At: now.Add(-25 * time.Hour), Rule: "OLD"})
	c := refusalChart(refs, now)
	if len(c.Legend) != maxSeries+1 || c.Legend[maxSeries].Text != "other" || c.Legend[maxSeries].Count != 3 {
		t.Errorf("legend: %+v", c.Legend)
	}
	var total int
	for _, l := range c.Legend {
		total += int(l.Count)
	}
	if total != 8 {
		t.Errorf("counted %d refusals, want 8 (the old one is out of the window)", total)
	}
	for _, b := range c.Bars {
		if b.X < chartLeft || b.X+b.W > chartW+0.01 || b.Y < chartTop-0.01 || b.Y+b.H > chartH-chartBottom+0.01 {
			t.Errorf("bar outside the plot: %+v", b)
		}
	}
	if e := sendingChart(make([]int64, 24), now); !e.Empty {
		t.Errorf("an all-zero chart is not empty")
	}
	for v, want := range map[int64]int64{1: 2, 3: 5, 7: 10, 11: 20, 45: 50, 101: 200, 999: 1000} {
		if got := niceCeil(v); got != want {
			t.Errorf("niceCeil(%d) = %d, want %d", v, got, want)
		}
	}
}

func TestFailedLoginLogsNoUnknownName(t *testing.T) {
	f := newFixture(t)
	b := f.browser("192.0.2.1:1234")
	b.login("op", "not-the-password")
	b.login("hunter2-secret", "x-password-xx")
	for _, e := range f.logs.FilterMessage("console: login failed").All() {
		if u := e.ContextMap()["user"]; u == "hunter2-secret" {
			t.Errorf("an unknown user name is logged: %v", e.ContextMap())
		}
	}
	if n := f.logs.FilterMessage("console: login failed").FilterField(zapUser("op")).Len(); n != 1 {
		t.Errorf("the failed login of a known user is not logged by name")
	}
}

// lowHashCost makes HashPassword fast for one test.
func lowHashCost(t *testing.T) {
	old := HashCost
	HashCost = bcrypt.MinCost
	t.Cleanup(func() { HashCost = old })
}
