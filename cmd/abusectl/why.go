package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// whyOptions are the options of "abusectl why".
type whyOptions struct {
	Env  *env
	ID   string // queue id or Message-ID
	JSON bool
}

func newWhyCommand(g *globalOptions) *cobra.Command {
	var o whyOptions
	cmd := &cobra.Command{
		Use:   "why QUEUEID|MESSAGE-ID [--json]",
		Short: "show the record behind a refused, held or complained-about message",
		Long: `Prints what the store recorded about one message, found by its queue id or
its Message-ID: who sent it (account, login, client, envelope sender, From,
Subject), the decision (stage, action, deciding rule, the reply sent, every
rule that fired with its reason), each limit with its usage at that moment
(or the one that refused it), the account's state (strikes, lock), what
became of a held message, and the complaints about it.

Records are kept for desk.retention (refused and held messages) and
desk.attribution_retention (the Message-ID record of every accepted
message). Refusals at MAIL FROM or RCPT TO, before the message has its
queue id, are not recorded. Exits 1 when nothing is recorded.`,
		Example: "  abusectl why 4Xyz1abC2\n  abusectl why '<20261127.4711@example.com>'",
		Args:    exactArgs(1, "one QUEUEID or MESSAGE-ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, e *env, out io.Writer) error {
				o.Env, o.ID = e, args[0]
				return runWhy(ctx, o, out)
			})
		},
	}
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON (fields in docs/abusectl.md)")
	return cmd
}

// whyJSON is the --json output of why: the record, its limits and the
// complaints about the message.
type whyJSON struct {
	ratelimit.MessageRecord
	At         *string         `json:"at"`
	StatusAt   *string         `json:"status_at"`
	Limits     []whyLimitJSON  `json:"limits"`
	Exceeded   *whyLimitJSON   `json:"exceeded"`
	RetryAfter int64           `json:"retry_after_seconds,omitempty"`
	Complaints []complaintJSON `json:"complaints"`
}

type whyLimitJSON struct {
	Limit string `json:"limit"`
	Rule  string `json:"rule"`
	Key   string `json:"key"`
	Rate  string `json:"rate"`
	Used  int64  `json:"used"`
}

func limitView(u ratelimit.Usage) whyLimitJSON {
	return whyLimitJSON{Limit: string(u.Dimension), Rule: u.Dimension.RuleID(), Key: u.Key, Rate: u.Rate.String(), Used: u.Used}
}

func runWhy(ctx context.Context, o whyOptions, out io.Writer) error {
	admin, err := o.Env.store(ctx)
	if err != nil {
		return err
	}
	rec, ok, err := admin.DecisionRecord(ctx, o.ID)
	if err != nil {
		return o.Env.storeError(err)
	}
	if !ok {
		return &notFoundError{fmt.Sprintf("no record of %q: not a queue id or Message-ID of a refused, held or accepted message within the retention "+
			"(refusals at MAIL FROM or RCPT TO are not recorded)", o.ID)}
	}
	v := whyJSON{MessageRecord: rec, At: jsonTime(rec.At), StatusAt: jsonTime(rec.StatusAt), Limits: []whyLimitJSON{},
		Complaints: []complaintJSON{}, RetryAfter: seconds(rec.RetryAfter)}
	for _, u := range rec.Usage {
		v.Limits = append(v.Limits, limitView(u))
	}
	if rec.Exceeded != nil {
		x := limitView(*rec.Exceeded)
		v.Exceeded = &x
	}
	if rec.Account != "" {
		cs, err := admin.Complaints(ctx, rec.Account)
		if err != nil {
			return o.Env.storeError(err)
		}
		for _, c := range cs {
			if (rec.QueueID != "" && c.QueueID == rec.QueueID) || (rec.MessageID != "" && c.MessageID == rec.MessageID) {
				v.Complaints = append(v.Complaints, complaintView(c))
			}
		}
	}
	if o.JSON {
		return writeJSON(out, v)
	}
	return writeWhy(out, v, o.Env.now(), o.Env.color)
}

func writeWhy(out io.Writer, v whyJSON, now time.Time, color bool) error {
	var b strings.Builder
	at := parseJSONTime(v.At)
	fmt.Fprintf(&b, "Message:    queue id %s on %s, recorded %s (%s)\n", dash(v.QueueID), dash(v.Instance), clock(at), ago(now, at))
	fmt.Fprintf(&b, "Sender:     account %s (%s), login %s, client %s, envelope sender <%s>, %d recipient(s)\n",
		dash(v.Account), dash(v.IdentifiedBy), dash(v.Login), dash(v.Client), v.Sender, v.Recipients)
	fmt.Fprintf(&b, "Message:    From %s; Subject %s; Message-ID <%s>\n", dash(cell(v.From, 80)), dash(cell(v.Subject, 80)), v.MessageID)
	decision := fmt.Sprintf("%s at %s", strings.ToUpper(v.Action), dash(v.Stage))
	if v.Rule != "" {
		decision += fmt.Sprintf(", rule %s (%s)", v.Rule, v.Clause)
	}
	decision += fmt.Sprintf(", score %g", v.Score)
	if v.Monitor {
		decision += " [monitor mode: reported, not enforced]"
	}
	s := good
	switch v.Action {
	case "reject", "defer":
		s = bad
	case "hold":
		s = warn
	}
	fmt.Fprintf(&b, "Decision:   %s\n", s.paint(decision, color))
	if v.Reply != "" {
		fmt.Fprintf(&b, "Reply:      %s\n", v.Reply)
	}
	if v.LimiterError != "" {
		fmt.Fprintf(&b, "Store:      unavailable, the fail mode decided: %s\n", v.LimiterError)
	}
	state := fmt.Sprintf("%d strike(s)", v.Strikes)
	if v.Locked {
		state += ", LOCKED"
		if v.LockReason != "" {
			state += ": " + v.LockReason
		}
	}
	fmt.Fprintf(&b, "Account:    %s at that moment\n", state)
	if v.Held {
		line := "on hold, waiting for abusectl release or purge"
		if v.Status != ratelimit.StatusHeld {
			line = fmt.Sprintf("%s by %s at %s", v.Status, dash(v.StatusBy), clock(parseJSONTime(v.StatusAt)))
			if d := oneLine(v.StatusDetail); d != "" {
				line += ": " + d
			}
		}
		fmt.Fprintf(&b, "Held:       %s\n", line)
	}
	if _, err := io.WriteString(out, b.String()); err != nil {
		return err
	}
	if len(v.Findings) > 0 {
		fmt.Fprintln(out, "Rules that fired:")
		var t table
		t.header("RULE", "CLAUSE", "SCORE", "REASON")
		for _, f := range v.Findings {
			t.add(plain, f.Rule, f.Clause, fmt.Sprintf("%g", f.Score), f.Reason)
		}
		if err := t.write(out, "  ", color); err != nil {
			return err
		}
	}
	if v.Exceeded != nil {
		fmt.Fprintf(out, "Refused by: %s %s of %s (%s), retry in %s\n", v.Exceeded.Rule, v.Exceeded.Rate, v.Exceeded.Key, v.Exceeded.Limit,
			short(time.Duration(v.RetryAfter)*time.Second))
	}
	if len(v.Limits) > 0 {
		fmt.Fprintln(out, "Limits at that moment (after this message):")
		var t table
		t.header("LIMIT", "RULE", "KEY", "RATE", "USED")
		for _, l := range v.Limits {
			t.add(plain, l.Limit, l.Rule, l.Key, l.Rate, fmt.Sprint(l.Used))
		}
		if err := t.write(out, "  ", color); err != nil {
			return err
		}
	}
	if len(v.Complaints) == 0 {
		_, err := fmt.Fprintln(out, "Complaints: none")
		return err
	}
	fmt.Fprintln(out, "Complaints:")
	var t table
	t.header("WHEN", "TYPE", "REPORTER", "ATTRIBUTED BY")
	for _, c := range v.Complaints {
		t.add(plain, clock(parseJSONTime(c.At)), c.Type, cell(c.Reporter, 40), c.AttributedBy)
	}
	return t.write(out, "  ", color)
}

// dash writes "-" for an empty value.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
