package console

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// StoreDesk is the Desk and History of a ratelimit store: the held queue,
// release and purge, complaints, decision records and the sending history,
// read and acted on through the same ratelimit.Admin functions abusectl
// uses (held, release, purge, complaints, why).
//
// What the store's records keep bounds what it shows: a held message's
// record keeps its envelope, header From, Subject and Message-ID and the
// findings, not its other header fields (HeldMessage's Headers are those
// three); the store lists the recent decision records from its bounded
// indexes (an account's newest 50, every account's newest 2000); and
// complaints are listed per account, so the attributed complaints of
// "every account" are those of the accounts in view (locked, with held
// mail, or among the busiest by strikes or messages).
type StoreDesk struct {
	Admin ratelimit.Admin
	// Wait is how long Release and Purge wait for the instances' outcomes
	// (default 30 s, abusectl release's --wait default).
	Wait time.Duration
}

var (
	_ Desk    = (*StoreDesk)(nil)
	_ History = (*StoreDesk)(nil)
)

// NewStoreDesk returns the Desk and History of a store.
func NewStoreDesk(admin ratelimit.Admin) *StoreDesk { return &StoreDesk{Admin: admin} }

func (d *StoreDesk) wait() time.Duration {
	if d.Wait <= 0 {
		return 30 * time.Second
	}
	return d.Wait
}

// stillHeld reports whether a held record is on hold as far as the store
// knows (a failed release leaves the message held).
func stillHeld(r ratelimit.MessageRecord) bool {
	return r.Status == ratelimit.StatusHeld || r.Status == ratelimit.StatusFailed || r.Status == ""
}

// findingsOf lists the deciding rule first (with the lock's reason, or
// its clause), then the rules that fired.
func findingsOf(r ratelimit.MessageRecord) []Finding {
	var out []Finding
	decided := r.Rule == ""
	for _, f := range r.Findings {
		decided = decided || f.Rule == r.Rule
	}
	if !decided {
		reason := r.LockReason
		if reason == "" {
			reason = r.Clause
		}
		out = append(out, Finding{Rule: r.Rule, Reason: reason})
	}
	for _, f := range r.Findings {
		out = append(out, Finding{Rule: f.Rule, Reason: f.Reason})
	}
	return out
}

// heldOf is a held record as the console shows it; its ID is the queue id
// (release and purge select held messages by queue id).
func heldOf(r ratelimit.MessageRecord) HeldMessage {
	return HeldMessage{ID: r.QueueID, QueueID: r.QueueID, Instance: r.Instance, Account: r.Account, Login: r.Login,
		Client: r.Client, Sender: r.Sender, Recipients: r.Recipients, From: r.From, Subject: r.Subject,
		MessageID: r.MessageID, Findings: findingsOf(r), At: r.At}
}

// matchesRule reports whether the record was decided by, or fired, rule.
func matchesRule(r ratelimit.MessageRecord, rule string) bool {
	if rule == "" || strings.EqualFold(r.Rule, rule) || strings.EqualFold(r.Clause, rule) {
		return true
	}
	for _, f := range r.Findings {
		if strings.EqualFold(f.Rule, rule) || strings.EqualFold(f.Clause, rule) {
			return true
		}
	}
	return false
}

// Held implements Desk: the messages still on hold, newest first.
func (d *StoreDesk) Held(ctx context.Context, f HeldFilter) ([]HeldMessage, error) {
	recs, err := d.Admin.Held(ctx, f.Account)
	if err != nil {
		return nil, fmt.Errorf("held messages of %q: %w", f.Account, err)
	}
	var out []HeldMessage
	for _, r := range recs {
		if !stillHeld(r) || !matchesRule(r, f.Rule) {
			continue
		}
		out = append(out, heldOf(r))
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out, nil
}

// HeldMessage implements Desk: the held record of a queue id. Its Headers
// are the header fields the record keeps (From, Subject, Message-ID).
func (d *StoreDesk) HeldMessage(ctx context.Context, id string) (HeldMessage, bool, error) {
	r, ok, err := d.Admin.DecisionRecord(ctx, id)
	if err != nil {
		return HeldMessage{}, false, fmt.Errorf("record of %q: %w", id, err)
	}
	if !ok || !r.Held || r.QueueID != id || !stillHeld(r) {
		return HeldMessage{}, false, nil
	}
	m := heldOf(r)
	for _, h := range []Header{{"From", r.From}, {"Subject", r.Subject}, {"Message-ID", angle(r.MessageID)}} {
		if h.Value != "" {
			m.Headers = append(m.Headers, h)
		}
	}
	return m, true, nil
}

func angle(id string) string {
	if id == "" {
		return ""
	}
	return "<" + id + ">"
}

// Release implements Desk: ratelimit.Admin.ActOnHeld, waiting for each
// outcome as "abusectl release" does; by is audited.
func (d *StoreDesk) Release(ctx context.Context, ids []string, by string) ([]Outcome, error) {
	return d.act(ctx, ratelimit.Release, ids, by)
}

// Purge implements Desk, as Release.
func (d *StoreDesk) Purge(ctx context.Context, ids []string, by string) ([]Outcome, error) {
	return d.act(ctx, ratelimit.Purge, ids, by)
}

func (d *StoreDesk) act(ctx context.Context, action ratelimit.DeskAction, ids []string, by string) ([]Outcome, error) {
	outs, err := d.Admin.ActOnHeld(ctx, action, ratelimit.HeldSelector{QueueIDs: ids}, by, d.wait())
	if err != nil {
		return nil, fmt.Errorf("%s of %v: %w", action, ids, err)
	}
	want := ratelimit.StatusReleased
	if action == ratelimit.Purge {
		want = ratelimit.StatusPurged
	}
	out := make([]Outcome, 0, len(outs))
	for _, o := range outs {
		detail := string(o.Status)
		switch o.Status {
		case ratelimit.StatusNotHeld:
			detail = "no longer on the hold queue"
		case ratelimit.StatusUnknown:
			detail = "no held message with this queue id is recorded"
		case ratelimit.StatusPending:
			detail = "no answer from " + o.Request.Instance + " yet (the request stays queued)"
		}
		if o.Detail != "" && o.Status != ratelimit.StatusUnknown && o.Status != ratelimit.StatusPending {
			detail += ": " + o.Detail
		}
		if o.Request.Instance != "" {
			detail += " (on " + o.Request.Instance + ")"
		}
		out = append(out, Outcome{ID: o.Request.QueueID, OK: o.Status == want, Detail: detail})
	}
	return out, nil
}

// Complaints implements Desk. The store lists complaints per account: the
// attributed complaints of every account are those of the accounts in
// view (see StoreDesk).
func (d *StoreDesk) Complaints(ctx context.Context, f ComplaintFilter) ([]Complaint, error) {
	var accounts []string
	switch {
	case !f.Attributed:
		accounts = []string{""}
	case f.Account != "":
		accounts = []string{f.Account}
	default:
		var err error
		if accounts, err = d.accountsInView(ctx); err != nil {
			return nil, err
		}
	}
	var out []Complaint
	for _, a := range accounts {
		cs, err := d.Admin.Complaints(ctx, a)
		if err != nil {
			return nil, fmt.Errorf("complaints of %q: %w", a, err)
		}
		for _, c := range cs {
			if !f.Since.IsZero() && c.At.Before(f.Since) {
				continue
			}
			detail := c.Reason
			if c.AttributedBy != "" {
				detail = "attributed by " + c.AttributedBy
			}
			if c.QueueID != "" {
				detail += ", queue id " + c.QueueID
			}
			out = append(out, Complaint{ID: c.ID, At: c.At, Account: c.Account, FeedbackType: c.Type,
				Reporter: c.Reporter, MessageID: c.MessageID, Subject: c.Subject, Detail: strings.TrimPrefix(detail, ", ")})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.After(out[j].At) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// accountsInView are the accounts whose complaints "every account" lists:
// the locked ones, those with held mail, and the busiest of the week by
// strikes and of the day by messages.
func (d *StoreDesk) accountsInView(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	locked, err := d.Admin.Locked(ctx)
	if err != nil {
		return nil, fmt.Errorf("locked accounts: %w", err)
	}
	for _, l := range locked {
		add(l.Account)
	}
	held, err := d.Admin.Held(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("held messages: %w", err)
	}
	for _, r := range held {
		add(r.Account)
	}
	for _, t := range []struct {
		by     ratelimit.TopBy
		window time.Duration
	}{{ratelimit.TopStrikes, 7 * 24 * time.Hour}, {ratelimit.TopMessages, 24 * time.Hour}} {
		top, err := d.Admin.Top(ctx, t.by, t.window, 200)
		if err != nil {
			return nil, fmt.Errorf("busiest accounts by %s: %w", t.by, err)
		}
		for _, e := range top {
			if e.Subject.Kind == ratelimit.KindAccount {
				add(e.Subject.Name)
			}
		}
	}
	return out, nil
}

// Refusals implements Desk with the store's index of recent decision
// records (ratelimit.Admin.Decisions): an account's newest 50 held,
// deferred or rejected messages, or every account's newest 2000.
func (d *StoreDesk) Refusals(ctx context.Context, f RefusalFilter) ([]Refusal, error) {
	recs, err := d.Admin.Decisions(ctx, f.Account, 0)
	if err != nil {
		return nil, fmt.Errorf("recent decisions of %q: %w", f.Account, err)
	}
	var out []Refusal
	for _, r := range recs {
		if !f.Since.IsZero() && r.At.Before(f.Since) {
			continue
		}
		action := r.Action
		if action == "" && r.Held {
			action = "hold"
		}
		rule := r.Rule
		if rule == "" {
			rule = r.Clause
		}
		out = append(out, Refusal{At: r.At, Account: r.Account, QueueID: r.QueueID, MessageID: r.MessageID, Action: action,
			Rule: rule, Clause: r.Clause, Reason: r.Reply, Findings: findingsOf(r)})
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out, nil
}

// SentPerHour implements History with the store's sending history
// (ratelimit.Admin.SentPerHour), its hours placed by their start on the
// console's clock: an hour the store has not reached, or no longer keeps,
// is zero.
func (d *StoreDesk) SentPerHour(ctx context.Context, account string, hours int, now time.Time) ([]int64, error) {
	got, err := d.Admin.SentPerHour(ctx, account, min(max(hours, 1), ratelimit.HistoryHours))
	if err != nil {
		return nil, fmt.Errorf("sending history of %q: %w", account, err)
	}
	out := make([]int64, hours)
	end := now.Truncate(time.Hour)
	for _, h := range got {
		i := hours - 1 - int(end.Sub(h.Start.Truncate(time.Hour))/time.Hour)
		if i >= 0 && i < hours {
			out[i] = h.Sent
		}
	}
	return out, nil
}
