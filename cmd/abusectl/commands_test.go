package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// statusOf runs status --json and decodes it.
func statusOf(t testing.TB, e *env, subject string) statusJSON {
	t.Helper()
	var out bytes.Buffer
	if err := runStatus(context.Background(), statusOptions{Env: e, Subject: subject, JSON: true}, &out); err != nil {
		t.Fatalf("status %s: %v", subject, err)
	}
	var v statusJSON
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, out.String())
	}
	return v
}

func limitOf(t testing.TB, v statusJSON, dim ratelimit.Dimension) limitJSON {
	t.Helper()
	for _, l := range v.Limits {
		if l.Limit == string(dim) {
			return l
		}
	}
	t.Fatalf("status of %s has no %s limit: %+v", v.Subject, dim, v.Limits)
	return limitJSON{}
}

func TestStrikeLockShowsInStatusAndLockedAndUnlockLetsMailThrough(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	mustAccept(t, "first message", f.send(t, "alice", "alice@example.com", 1))
	// Two impersonating messages: two strikes lock alice (threshold 2).
	mustRefuse(t, "forged 1", f.send(t, "alice", "ceo@bank.example", 1), 550, "FROM_DOMAIN_NOT_OWNED")
	mustRefuse(t, "forged 2", f.send(t, "alice", "ceo@bank.example", 1), 550, "FROM_DOMAIN_NOT_OWNED")
	mustRefuse(t, "after the lock", f.send(t, "alice", "alice@example.com", 1), 451, "ACCOUNT_LOCKED")

	v := statusOf(t, f.env, "alice")
	if !v.Locked || v.Lock == nil || v.Lock.By != "auto" || v.Lock.Reason == "" || v.Lock.At == nil {
		t.Fatalf("status does not show the strike lock: %+v", v.Lock)
	}
	if v.Strikes != 2 || v.StrikeThreshold != 2 || v.StrikeWindowSeconds != 3600 {
		t.Errorf("strikes %d/%d in %ds, want 2/2 in 3600s", v.Strikes, v.StrikeThreshold, v.StrikeWindowSeconds)
	}
	// A charge is counted for the window and at most one bucket more (a
	// minute for 1h: see ratelimit's window.go).
	if l := limitOf(t, v, ratelimit.AccountMessages); l.Used != 1 || l.Remaining != 2 || l.Rate != "3/1h" || l.FreesInSeconds <= 0 || l.FreesInSeconds > 3660 {
		t.Errorf("account_messages = %+v, want 1 used of 3/1h, frees within the hour and a minute", l)
	}
	var table bytes.Buffer
	if err := runStatus(ctx, statusOptions{Env: f.env, Subject: "alice"}, &table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"acct:alice", "account_messages", "ACCOUNT_MSG_RATE", "3/1h", "LOCKED by auto", "Strikes:    2 in the last 1h (2 lock the account)"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("status table lacks %q:\n%s", want, table.String())
		}
	}

	var locked bytes.Buffer
	if err := runLocked(ctx, lockedOptions{Env: f.env, JSON: true}, &locked); err != nil {
		t.Fatal(err)
	}
	var lv lockedJSON
	if err := json.Unmarshal(locked.Bytes(), &lv); err != nil {
		t.Fatal(err)
	}
	if len(lv.Locked) != 1 || lv.Locked[0].Account != "alice" || lv.Locked[0].By != "auto" || lv.Locked[0].AgeSeconds < 0 {
		t.Fatalf("locked = %+v, want alice locked by auto", lv.Locked)
	}

	var out bytes.Buffer
	f.milterCaches(t, "alice")
	if err := runUnlock(ctx, unlockOptions{Env: f.env, Account: "alice"}, &out); err != nil {
		t.Fatal(err)
	}
	f.waitMilterForgets(t, "alice")
	mustAccept(t, "first message after unlock", f.send(t, "alice", "alice@example.com", 1))
	v = statusOf(t, f.env, "alice")
	if v.Locked || v.Strikes != 0 {
		t.Errorf("after unlock: locked %v, strikes %d; want unlocked, 0 strikes", v.Locked, v.Strikes)
	}
	if len(v.Audit) == 0 || v.Audit[0].Action != "unlock" || v.Audit[0].By != testUser || v.Audit[0].At == nil {
		t.Errorf("audit does not start with our unlock: %+v", v.Audit)
	}
	// A second unlock finds nothing to unlock: exit 1, one line.
	err := runUnlock(ctx, unlockOptions{Env: f.env, Account: "alice"}, &out)
	var nf *notFoundError
	if !errors.As(err, &nf) || exitCode(err) != exitFailed {
		t.Errorf("unlock of an unlocked account: %v (exit %d), want not found, exit 1", err, exitCode(err))
	}
}

func TestAdminLockIsAuditedAndRefusesTheNextMessage(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var out bytes.Buffer
	if err := runLock(ctx, lockOptions{Env: f.env, Account: "bob", Reason: "ticket 4711", For: 2 * time.Hour}, &out); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, "locked by admin", f.send(t, "bob", "bob@bob.example", 1), 451, "ACCOUNT_LOCKED")
	v := statusOf(t, f.env, "bob")
	if !v.Locked || v.Lock.By != testUser || v.Lock.Reason != "ticket 4711" || v.Lock.Until == nil {
		t.Fatalf("lock = %+v, want by %s, reason, an end", v.Lock, testUser)
	}
	until, at := parseJSONTime(v.Lock.Until), parseJSONTime(v.Lock.At)
	if d := until.Sub(at); d != 2*time.Hour {
		t.Errorf("lock lasts %s, want 2h", d)
	}
	if len(v.Audit) != 1 || v.Audit[0].Action != "lock" || v.Audit[0].By != testUser || !strings.Contains(v.Audit[0].Detail, "ticket 4711") {
		t.Errorf("audit = %+v, want one lock entry by %s", v.Audit, testUser)
	}
	if err := runLock(ctx, lockOptions{Env: f.env, Account: "sender:x@y.example", Reason: "r"}, &out); exitCode(err) != exitUsage {
		t.Errorf("lock of a sender: %v, want a usage error", err)
	}
	if err := runLock(ctx, lockOptions{Env: f.env, Account: "bob"}, &out); exitCode(err) != exitUsage {
		t.Errorf("lock without --reason: %v, want a usage error", err)
	}
}

func TestResetClearsTheCountersTrafficSet(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i := range 3 {
		mustAccept(t, "message "+string(rune('1'+i)), f.send(t, "alice", "alice@example.com", 2))
	}
	// The refusal is a strike too (one more would lock alice).
	mustRefuse(t, "fourth message", f.send(t, "alice", "alice@example.com", 2), 451, "ACCOUNT_MSG_RATE")
	v := statusOf(t, f.env, "alice")
	if l := limitOf(t, v, ratelimit.AccountMessages); l.Used != 3 || l.Remaining != 0 {
		t.Fatalf("before reset account_messages = %+v, want 3 used, 0 left", l)
	}
	if l := limitOf(t, v, ratelimit.AccountRecipients); l.Used != 6 {
		t.Fatalf("before reset account_recipients used %d, want 6", l.Used)
	}
	if v.Strikes != 1 {
		t.Fatalf("before reset strikes %d, want 1", v.Strikes)
	}

	f.milterCaches(t, "alice")
	// Only the recipients counter first.
	var out bytes.Buffer
	if err := runReset(ctx, resetOptions{Env: f.env, Subject: "alice", Limit: "recipients"}, &out); err != nil {
		t.Fatal(err)
	}
	v = statusOf(t, f.env, "alice")
	if r, m := limitOf(t, v, ratelimit.AccountRecipients), limitOf(t, v, ratelimit.AccountMessages); r.Used != 0 || m.Used != 3 {
		t.Fatalf("after reset --limit recipients: recipients %d, messages %d; want 0 and 3", r.Used, m.Used)
	}

	if err := runReset(ctx, resetOptions{Env: f.env, Subject: "acct:alice"}, &out); err != nil {
		t.Fatal(err)
	}
	v = statusOf(t, f.env, "alice")
	if l := limitOf(t, v, ratelimit.AccountMessages); l.Used != 0 || l.Remaining != 3 || l.FreesInSeconds != 0 {
		t.Fatalf("after reset account_messages = %+v, want 0 used, 3 left", l)
	}
	if v.Strikes != 0 {
		t.Errorf("after reset strikes %d, want 0", v.Strikes)
	}
	if v.Audit[0].Action != "reset" || v.Audit[1].Action != "reset" || v.Audit[1].Detail != string(ratelimit.AccountRecipients) {
		t.Errorf("audit = %+v, want two resets, the older of recipients", v.Audit)
	}
	f.waitMilterForgets(t, "alice")
	mustAccept(t, "first message after reset", f.send(t, "alice", "alice@example.com", 1))

	if err := runReset(ctx, resetOptions{Env: f.env, Subject: "alice", Limit: "client_messages"}, &out); exitCode(err) != exitUsage {
		t.Errorf("reset of a client limit on an account: %v, want a usage error", err)
	}
	if err := runReset(ctx, resetOptions{Env: f.env, Subject: "alice", Limit: "nonsense"}, &out); exitCode(err) != exitUsage {
		t.Errorf("reset of an unknown limit: %v, want a usage error", err)
	}
}

func TestOverrideChangesTheLimitOfTheNextMessage(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for range 3 {
		mustAccept(t, "within 3/1h", f.send(t, "alice", "alice@example.com", 1))
	}
	mustRefuse(t, "over 3/1h", f.send(t, "alice", "alice@example.com", 1), 451, "ACCOUNT_MSG_RATE")

	var out bytes.Buffer
	f.milterCaches(t, "alice")
	if err := runOverride(ctx, overrideOptions{Env: f.env, Subject: "alice", Limit: "ACCOUNT_MSG_RATE", Rate: "5/1h", For: 24 * time.Hour}, &out); err != nil {
		t.Fatal(err)
	}
	f.waitMilterForgets(t, "alice")
	mustAccept(t, "first message under the override", f.send(t, "alice", "alice@example.com", 1))
	mustAccept(t, "second message under the override", f.send(t, "alice", "alice@example.com", 1))
	mustRefuse(t, "over the override", f.send(t, "alice", "alice@example.com", 1), 451, "5/1h")

	v := statusOf(t, f.env, "alice")
	l := limitOf(t, v, ratelimit.AccountMessages)
	if !l.Override || l.Rate != "5/1h" || l.Used != 5 || l.Remaining != 0 {
		t.Errorf("account_messages = %+v, want override 5/1h, 5 used", l)
	}
	if len(v.Overrides) != 1 || v.Overrides[0].Limit != "account_messages" || v.Overrides[0].Until == nil || v.Overrides[0].Rates[0] != "5/1h" {
		t.Errorf("overrides = %+v", v.Overrides)
	}
	if v.Audit[0].Action != "override" || v.Audit[0].By != testUser {
		t.Errorf("audit[0] = %+v, want our override", v.Audit[0])
	}

	// Tighter than what was used: refused at once; removing restores 3/1h.
	if err := runOverride(ctx, overrideOptions{Env: f.env, Subject: "alice", Limit: "messages", Remove: true}, &out); err != nil {
		t.Fatal(err)
	}
	if l := limitOf(t, statusOf(t, f.env, "alice"), ratelimit.AccountMessages); l.Override || l.Rate != "3/1h" {
		t.Errorf("after remove: %+v, want the configured 3/1h", l)
	}
	err := runOverride(ctx, overrideOptions{Env: f.env, Subject: "alice", Limit: "messages", Remove: true}, &out)
	if _, ok := err.(*notFoundError); !ok {
		t.Errorf("second remove: %v, want not found", err)
	}
	for _, bad := range []overrideOptions{
		{Subject: "alice", Limit: "messages"},
		{Subject: "alice", Rate: "5/1h"},
		{Subject: "alice", Limit: "messages", Rate: "lots"},
		{Subject: "alice", Limit: "messages", Rate: "5/1h", Remove: true},
	} {
		bad.Env = f.env
		if err := runOverride(ctx, bad, &out); exitCode(err) != exitUsage {
			t.Errorf("override %+v: %v, want a usage error", bad, err)
		}
	}
}

func TestExemptionsLetMailThroughAndAreListed(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for range 3 {
		mustAccept(t, "within the limit", f.send(t, "alice", "alice@example.com", 1))
	}
	mustRefuse(t, "over the limit", f.send(t, "alice", "alice@example.com", 1), 451, "ACCOUNT_MSG_RATE")

	var out bytes.Buffer
	f.milterCaches(t, "alice")
	if err := runExempt(ctx, exemptOptions{Env: f.env, Action: "add", Subject: "alice", Reason: "newsletter", For: 6 * time.Hour}, &out); err != nil {
		t.Fatal(err)
	}
	f.waitMilterForgets(t, "alice")
	mustAccept(t, "exempt", f.send(t, "alice", "alice@example.com", 1))
	mustAccept(t, "exempt again", f.send(t, "alice", "alice@example.com", 1))

	v := statusOf(t, f.env, "alice")
	if !v.Exempt || len(v.Exemptions) != 1 || v.Exemptions[0].Source != "runtime" || v.Exemptions[0].By != testUser || v.Exemptions[0].Until == nil {
		t.Errorf("status exemptions = %+v", v.Exemptions)
	}
	if v := statusOf(t, f.env, "relay"); !v.Exempt || v.Exemptions[0].Source != "config" {
		t.Errorf("relay (exempt in the config): %+v", v.Exemptions)
	}

	out.Reset()
	if err := runExempt(ctx, exemptOptions{Env: f.env, Action: "list", JSON: true}, &out); err != nil {
		t.Fatal(err)
	}
	var list exemptListJSON
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range list.Exemptions {
		got = append(got, e.Subject+"/"+e.Source)
	}
	if strings.Join(got, " ") != "acct:alice/runtime acct:relay/config" {
		t.Errorf("exempt list = %v", got)
	}

	if err := runExempt(ctx, exemptOptions{Env: f.env, Action: "remove", Subject: "alice"}, &out); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, "no longer exempt", f.send(t, "alice", "alice@example.com", 1), 451, "ACCOUNT_MSG_RATE")
	if err := runExempt(ctx, exemptOptions{Env: f.env, Action: "remove", Subject: "alice"}, &out); exitCode(err) != exitFailed {
		t.Errorf("second remove: %v, want exit 1", err)
	}
	if err := runExempt(ctx, exemptOptions{Env: f.env, Action: "add", Subject: "alice"}, &out); exitCode(err) != exitUsage {
		t.Errorf("add without reason: %v, want a usage error", err)
	}
}

func TestSubjectsOfEveryKind(t *testing.T) {
	f := newFixture(t)
	mustAccept(t, "one", f.send(t, "alice", "Alice+tag@Example.com", 1))
	for _, c := range []struct{ arg, subject string }{
		{"alice", "acct:alice"},
		{"acct:alice", "acct:alice"},
		{"alice@example.com", "sender:alice@example.com"},
		{"sender:ALICE@example.com", "sender:alice@example.com"},
		{"192.0.2.10", "client:192.0.2.10"},
		{"client:192.0.2.10", "client:192.0.2.10"},
	} {
		v := statusOf(t, f.env, c.arg)
		if v.Subject != c.subject {
			t.Errorf("status %q is of %q, want %q", c.arg, v.Subject, c.subject)
		}
	}
	var out bytes.Buffer
	if err := runStatus(context.Background(), statusOptions{Env: f.env, Subject: "client:nonsense"}, &out); exitCode(err) != exitUsage {
		t.Errorf("status client:nonsense: %v, want a usage error", err)
	}
}

// TestAuditPrintsTheLogOfEverySubject: audit lists every change of every
// subject newest first, by one actor or of one subject when asked, a page
// at a time; a bad --limit is a usage error.
func TestAuditPrintsTheLogOfEverySubject(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var out bytes.Buffer
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(runLock(ctx, lockOptions{Env: f.env, Account: "bob", Reason: "ticket 4711"}, &out))
	must(runExempt(ctx, exemptOptions{Env: f.env, Action: "add", Subject: "news@shop.example", Reason: "newsletter"}, &out))
	must(f.env.admin.Lock(ctx, "carol", "by hand", "someone-else", 0))
	must(runUnlock(ctx, unlockOptions{Env: f.env, Account: "bob"}, &out))
	audit := func(o auditOptions) []auditLogEntryJSON {
		t.Helper()
		var b bytes.Buffer
		o.Env, o.JSON = f.env, true
		if o.Limit == 0 {
			o.Limit = 50
		}
		must(runAudit(ctx, o, &b))
		var v auditLogJSON
		must(json.Unmarshal(b.Bytes(), &v))
		return v.Entries
	}
	var got []string
	for _, e := range audit(auditOptions{}) {
		got = append(got, e.By+" "+e.Action+" "+e.Subject)
	}
	want := []string{testUser + " unlock acct:bob", "someone-else lock acct:carol", testUser + " exempt sender:news@shop.example", testUser + " lock acct:bob"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("audit log\n%q\nwant\n%q", got, want)
	}
	if mine := audit(auditOptions{Actor: testUser, Offset: 1, Limit: 1}); len(mine) != 1 || mine[0].Action != "exempt" {
		t.Errorf("--actor --offset 1 --limit 1: %+v, want the exemption", mine)
	}
	if bob := audit(auditOptions{Subject: "bob"}); len(bob) != 2 || !strings.Contains(bob[1].Detail, "ticket 4711") {
		t.Errorf("--subject bob: %+v, want its lock and unlock", bob)
	}
	out.Reset()
	must(runAudit(ctx, auditOptions{Env: f.env, Limit: 50}, &out))
	if !strings.Contains(out.String(), "sender:news@shop.example") || !strings.HasPrefix(out.String(), "WHEN") {
		t.Errorf("audit table:\n%s", out.String())
	}
	if err := runAudit(ctx, auditOptions{Env: f.env}, &out); exitCode(err) != exitUsage {
		t.Errorf("--limit 0: %v, want a usage error", err)
	}
}
