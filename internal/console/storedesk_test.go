package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// newStoreFixture is newFixture serving the held queue, complaints,
// refusals and the sending history from its real in-memory store through
// StoreDesk (not the test memDesk).
func newStoreFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixture(t, func(o *Options) {
		d := &StoreDesk{Admin: o.Admin, Wait: 10 * time.Second}
		o.Desk, o.History = d, d
	})
}

// hold records a held message through the milter's API (Recorder).
func (f *fixture) hold(queueID, account, subject, rule string) {
	f.t.Helper()
	if err := f.store.RecordDecision(context.Background(), ratelimit.MessageRecord{
		QueueID: queueID, MessageID: "<" + queueID + "@mail.example>", Account: account, Login: account,
		Client: "192.0.2.7", Sender: account + "@example.com", Recipients: 3, From: account + " <" + account + "@example.com>",
		Subject: subject, Stage: "eom", Action: "hold", Rule: rule, Reply: "held for review",
		Findings: []ratelimit.RecordFinding{{Rule: rule, Score: 5, Reason: "fired by " + rule}}, Held: true,
	}); err != nil {
		f.t.Fatal(err)
	}
}

// instance plays the MTA instance's executor through the store's
// DeskQueue: each request is answered with status (and remembered).
func (f *fixture) instance(t *testing.T, status func(ratelimit.DeskRequest) ratelimit.HeldStatus) (*sync.Mutex, *[]ratelimit.DeskRequest) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var seen []ratelimit.DeskRequest
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			reqs, err := f.store.NextDeskRequests(ctx, time.Second)
			if err != nil {
				return
			}
			for _, r := range reqs {
				mu.Lock()
				seen = append(seen, r)
				mu.Unlock()
				_ = f.store.CompleteDeskRequest(ctx, ratelimit.DeskOutcome{Request: r, Status: status(r), Detail: "test instance"})
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return &mu, &seen
}

func TestStoreDeskHeldQueue(t *testing.T) {
	f := newStoreFixture(t)
	f.hold("4AAA1", "alice", "<script>alert(1)</script> offer", "BULK_PHISH")
	f.advance(time.Minute)
	f.hold("4BBB2", "bob", "invoice", "ACCOUNT_LOCKED")
	b := f.browser("192.0.2.1:1000")
	b.mustLogin("view", viewerPassword)

	w := b.get("/held")
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, "4AAA1") || !strings.Contains(body, "4BBB2") {
		t.Fatalf("held queue: %d, want both messages\n%s", w.Code, body)
	}
	if strings.Contains(body, "<script>alert(1)") || !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt; offer") {
		t.Fatal("the held message's subject is not escaped")
	}
	if strings.Contains(body, "not available") {
		t.Fatal("the held queue says it is not available")
	}
	// Newest first.
	if strings.Index(body, "4BBB2") > strings.Index(body, "4AAA1") {
		t.Fatal("held queue not newest first")
	}
	for _, c := range []struct {
		q, want, not string
	}{{"?account=alice", "4AAA1", "4BBB2"}, {"?rule=ACCOUNT_LOCKED", "4BBB2", "4AAA1"}} {
		body := b.get("/held" + c.q).Body.String()
		if !strings.Contains(body, c.want) || strings.Contains(body, c.not) {
			t.Errorf("/held%s: want %s and not %s", c.q, c.want, c.not)
		}
	}
	// One message: what the record keeps, said so.
	body = b.get("/held/message?id=4AAA1").Body.String()
	for _, want := range []string{"Message-ID: &lt;4AAA1@mail.example&gt;", "From: alice &lt;alice@example.com&gt;", "keeps these header fields only", "fired by BULK_PHISH"} {
		if !strings.Contains(body, want) {
			t.Errorf("held message page lacks %q\n%s", want, body)
		}
	}
	// The deciding rule comes first, with the lock's reason, when it is
	// not among the rules that fired.
	if err := f.store.RecordDecision(context.Background(), ratelimit.MessageRecord{QueueID: "4CCC3", Account: "carol",
		Sender: "carol@example.com", Subject: "locked", Action: "hold", Rule: ratelimit.RuleAccountLocked, Clause: "policy",
		LockReason: "2 strikes within 1h", Findings: []ratelimit.RecordFinding{{Rule: "DATE_MISSING", Reason: "no Date header"}}, Held: true}); err != nil {
		t.Fatal(err)
	}
	if body := b.get("/held/message?id=4CCC3").Body.String(); !strings.Contains(body, "<code>ACCOUNT_LOCKED</code>: 2 strikes within 1h; <code>DATE_MISSING</code>: no Date header") {
		t.Errorf("the held message's rules: want the deciding rule first\n%s", body)
	}
	if w := b.get("/held/message?id=4ZZZ9"); w.Code != http.StatusNotFound {
		t.Errorf("unknown held message: %d, want 404", w.Code)
	}
	// The overview and the account page count it.
	if body := b.get("/account?s=acct:alice").Body.String(); !strings.Contains(body, "4AAA1") {
		t.Error("the account page does not list alice's held message")
	}
}

func TestStoreDeskReleaseAndPurge(t *testing.T) {
	f := newStoreFixture(t)
	f.hold("4AAA1", "alice", "first", "BULK_PHISH")
	f.hold("4BBB2", "alice", "second", "BULK_PHISH")
	mu, seen := f.instance(t, func(r ratelimit.DeskRequest) ratelimit.HeldStatus {
		if r.Action == ratelimit.Purge {
			return ratelimit.StatusPurged
		}
		return ratelimit.StatusReleased
	})
	b := f.browser("192.0.2.1:1000")
	b.mustLogin("op", opPassword)

	// The first POST asks for confirmation and does nothing.
	w := b.post("/held/release", url.Values{"id": {"4AAA1"}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "first") {
		t.Fatalf("release without confirmation: %d\n%s", w.Code, w.Body.String())
	}
	mu.Lock()
	n := len(*seen)
	mu.Unlock()
	if n != 0 {
		t.Fatal("a release request was made before confirmation")
	}
	if rec, _, _ := f.store.DecisionRecord(context.Background(), "4AAA1"); rec.Status != ratelimit.StatusHeld {
		t.Fatalf("status before confirmation: %q", rec.Status)
	}

	w = b.post("/held/release", url.Values{"id": {"4AAA1"}, "confirm": {"yes"}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "released") {
		t.Fatalf("confirmed release: %d\n%s", w.Code, w.Body.String())
	}
	rec, ok, err := f.store.DecisionRecord(context.Background(), "4AAA1")
	if err != nil || !ok || rec.Status != ratelimit.StatusReleased || rec.StatusBy != "op (console)" {
		t.Fatalf("record after release: %+v %v %v", rec, ok, err)
	}
	w = b.post("/held/purge", url.Values{"id": {"4BBB2"}, "confirm": {"yes"}})
	if !strings.Contains(w.Body.String(), "purged") {
		t.Fatalf("confirmed purge:\n%s", w.Body.String())
	}
	if rec, _, _ := f.store.DecisionRecord(context.Background(), "4BBB2"); rec.Status != ratelimit.StatusPurged {
		t.Fatalf("status after purge: %q", rec.Status)
	}
	// Audited with the console user's name, request and outcome.
	var got []string
	for _, e := range f.status(ratelimit.Account("alice")).Audit {
		if e.By == "op (console)" {
			got = append(got, e.Action)
		}
	}
	for _, want := range []string{"release-request", "release", "purge-request", "purge"} {
		if !strings.Contains(" "+strings.Join(got, " ")+" ", " "+want+" ") {
			t.Errorf("audit log by op (console) lacks %q: %v", want, got)
		}
	}
	// Neither is on the queue now; acting again says so.
	if body := b.get("/held").Body.String(); strings.Contains(body, "4AAA1") || strings.Contains(body, "4BBB2") {
		t.Error("released and purged messages still listed as held")
	}
	mu.Lock()
	n = len(*seen)
	mu.Unlock()
	w = b.post("/held/release", url.Values{"id": {"4AAA1"}, "confirm": {"yes"}})
	mu.Lock()
	again := len(*seen) - n
	mu.Unlock()
	if again != 0 || !strings.Contains(w.Body.String(), "released") {
		t.Errorf("release of a released message: %d new requests, want 0 and its status\n%s", again, w.Body.String())
	}
	// A viewer may not act.
	v := f.browser("192.0.2.2:1000")
	v.mustLogin("view", viewerPassword)
	if w := v.post("/held/purge", url.Values{"id": {"4AAA1"}, "confirm": {"yes"}}); w.Code != http.StatusForbidden {
		t.Errorf("viewer purge: %d, want 403", w.Code)
	}
}

func TestStoreDeskComplaints(t *testing.T) {
	f := newStoreFixture(t)
	ctx := context.Background()
	if err := f.store.Lock(ctx, "alice", "test", "op", 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []ratelimit.Complaint{
		{ID: "c1", Account: "alice", AttributedBy: "message-id", Type: "abuse", Reporter: "fbl@isp.example", MessageID: "m1@mail.example", Subject: "<b>win</b>"},
		{ID: "c2", Reason: "no record of the Message-ID", Type: "dsn", Reporter: "mailer-daemon@other.example", MessageID: "m2@mail.example", Subject: "lost"},
	} {
		if _, err := f.store.AddComplaint(ctx, c, "complaint-pipe"); err != nil {
			t.Fatal(err)
		}
	}
	b := f.browser("192.0.2.1:1000")
	b.mustLogin("view", viewerPassword)
	body := b.get("/complaints").Body.String()
	if !strings.Contains(body, "fbl@isp.example") || strings.Contains(body, "mailer-daemon@other.example") {
		t.Fatalf("attributed complaints: want alice's only\n%s", body)
	}
	if strings.Contains(body, "<b>win</b>") || !strings.Contains(body, "&lt;b&gt;win&lt;/b&gt;") {
		t.Error("complaint subject not escaped")
	}
	body = b.get("/complaints?view=unattributed").Body.String()
	if !strings.Contains(body, "mailer-daemon@other.example") || strings.Contains(body, "fbl@isp.example") {
		t.Fatalf("unattributed complaints: want the DSN only\n%s", body)
	}
	if body := b.get("/account?s=acct:alice").Body.String(); !strings.Contains(body, "fbl@isp.example") {
		t.Error("the account page does not list alice's complaint")
	}
}

// TestStoreDeskHistory: through the real store, the account page draws
// the messages the account sent per hour (real bars, the total) and lists
// its recent refusals with rule, clause, reason and ids; the overview's
// chart counts the refusal by clause; payloads in the account's name, the
// reason and the rule come back escaped; a viewer sees all of it but may
// not act.
func TestStoreDeskHistory(t *testing.T) {
	f := newStoreFixture(t)
	ctx := context.Background()
	const payload = `<script>alert(1)</script>`
	acct := "eve" + payload
	f.charge(acct, 3)
	f.advance(time.Hour)
	f.charge(acct, 2)
	if err := f.store.RecordDecision(ctx, ratelimit.MessageRecord{QueueID: "4DEF1", MessageID: "<m1@mail.example>", Account: acct,
		Sender: "eve@example.com", Action: "defer", Rule: "RATE_" + payload, Clause: "limits", Reply: "4.7.1 " + payload}); err != nil {
		t.Fatal(err)
	}
	b := f.browser("192.0.2.1:1000")
	b.mustLogin("view", viewerPassword)
	page := "/account?s=" + url.QueryEscape("acct:"+acct)
	w := b.get(page)
	body := w.Body.String()
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", page, w.Code, body)
	}
	if strings.Contains(body, "<script>alert") {
		t.Fatalf("the payload comes back unescaped:\n%s", body)
	}
	sending := section(t, body, "sending")
	if strings.Contains(sending, "not available") || strings.Count(sending, "<rect class=\"s0\"") != 2+1 { // two bars and the legend's swatch
		t.Errorf("sending chart: want two bars\n%s", sending)
	}
	hour := f.clock().Truncate(time.Hour)
	for _, want := range []string{hour.Add(-time.Hour).UTC().Format("15:04") + " UTC: messages 3", hour.UTC().Format("15:04") + " UTC: messages 2", "messages (5)"} {
		if !strings.Contains(sending, want) {
			t.Errorf("sending chart lacks %q\n%s", want, sending)
		}
	}
	refusals := section(t, body, "refusals")
	for _, want := range []string{"<td>defer</td>", "<code>RATE_&lt;script&gt;alert(1)&lt;/script&gt;</code>", "<td>limits</td>",
		"4.7.1 &lt;script&gt;alert(1)&lt;/script&gt;", "<code>4DEF1</code>", "&lt;m1@mail.example&gt;"} {
		if !strings.Contains(refusals, want) {
			t.Errorf("recent refusals lack %q\n%s", want, refusals)
		}
	}
	if over := b.get("/").Body.String(); !strings.Contains(over, "limits (1)") {
		t.Errorf("the overview's refusal chart does not count the refusal by its clause\n%s", over)
	}
	for _, action := range []string{"lock", "unlock", "reset"} {
		if w := b.post("/account/"+action, url.Values{"s": {"acct:" + acct}, "reason": {"x"}, "confirm": {"yes"}}); w.Code != http.StatusForbidden {
			t.Errorf("viewer %s: %d, want 403", action, w.Code)
		}
	}
}

// section returns the <section id="id"> of a page.
func section(t *testing.T, body, id string) string {
	t.Helper()
	i := strings.Index(body, `<section id="`+id+`"`)
	if i < 0 {
		t.Fatalf("no section %q in\n%s", id, body)
	}
	j := strings.Index(body[i:], "</section>")
	return body[i : i+j]
}

// TestStoreDeskAuditLog: the audit page lists every subject's entries
// from the store's audit log, newest first, the console user's actions
// under their name, by pages of 100 with links, filtered by subject and
// actor; an actor's name comes back escaped.
func TestStoreDeskAuditLog(t *testing.T) {
	f := newStoreFixture(t)
	ctx := context.Background()
	const payload = `<img src=x onerror=alert(1)>`
	if err := f.store.Exempt(ctx, ratelimit.Sender("news@shop.example"), "newsletter", 0, "root"+payload); err != nil {
		t.Fatal(err)
	}
	for i := range 110 {
		if err := f.store.Lock(ctx, fmt.Sprintf("acct%03d", i), "test", "root", 0); err != nil {
			t.Fatal(err)
		}
	}
	op := f.browser("192.0.2.1:1000")
	op.mustLogin("op", opPassword)
	if w := op.post("/account/unlock", url.Values{"s": {"acct:acct109"}, "confirm": {"yes"}}); w.Code != http.StatusOK && w.Code != http.StatusSeeOther {
		t.Fatalf("unlock: %d\n%s", w.Code, w.Body.String())
	}
	b := f.browser("192.0.2.2:1000")
	b.mustLogin("view", viewerPassword)
	first := b.get("/audit").Body.String()
	if n := strings.Count(first, "<tr><td><time"); n != auditPageSize {
		t.Errorf("first page: %d entries, want %d", n, auditPageSize)
	}
	if !strings.Contains(first, "<td>op (console)</td><td>unlock</td>") || strings.Index(first, "unlock") > strings.Index(first, "acct108") {
		t.Errorf("first page: want the console user's unlock first\n%s", first)
	}
	if !strings.Contains(first, `href="/audit?page=2"`) || strings.Contains(first, "Newer") {
		t.Errorf("first page: want a link to the older page only")
	}
	second := b.get("/audit?page=2").Body.String()
	if n := strings.Count(second, "<tr><td><time"); n != 12 || !strings.Contains(second, "sender:news@shop.example") {
		t.Errorf("second page: %d entries, want the last 12 with the exemption\n%s", n, second)
	}
	if strings.Contains(second, payload) || !strings.Contains(second, "root&lt;img src=x onerror=alert(1)&gt;") {
		t.Errorf("the actor's name is not escaped\n%s", second)
	}
	if !strings.Contains(second, `href="/audit"`) || strings.Contains(second, "page=3") {
		t.Errorf("second page: want a link to the newer page only")
	}
	mine := b.get("/audit?actor=" + url.QueryEscape("op (console)")).Body.String()
	if n := strings.Count(mine, "<tr><td><time"); n != 1 {
		t.Errorf("by op (console): %d entries, want 1", n)
	}
	one := b.get("/audit?s=acct005").Body.String()
	if n := strings.Count(one, "<tr><td><time"); n != 1 || !strings.Contains(one, "acct:acct005") {
		t.Errorf("of acct005: %d entries, want its lock", n)
	}
	for _, bad := range []string{"/audit?page=0", "/audit?page=x", "/audit?actor=%00"} {
		if w := b.get(bad); w.Code != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", bad, w.Code)
		}
	}
}
