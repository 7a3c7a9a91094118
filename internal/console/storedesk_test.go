package console

import (
	"context"
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
