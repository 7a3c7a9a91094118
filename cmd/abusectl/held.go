package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// heldOptions are the options of "abusectl held".
type heldOptions struct {
	Env     *env
	Account string // "": every account
	All     bool   // also those released, purged, ...
	JSON    bool
}

func newHeldCommand(g *globalOptions) *cobra.Command {
	var o heldOptions
	cmd := &cobra.Command{
		Use:   "held [ACCOUNT] [--all] [--json]",
		Short: "list the messages held for review, with queue id, instance, account, rule and subject",
		Long: `Lists the messages the milters put on hold (strikes.lock_action hold, a rule's
hold action, rules.hold_threshold) that are still held: queue id, the MTA
instance holding it, account, when, the deciding rule, header From and
Subject. Release or purge them with "abusectl release" and "abusectl purge";
"abusectl why QUEUEID" shows the whole record. --all lists those already
released or purged too (within desk.retention).`,
		Example: "  abusectl held\n  abusectl held alice --json",
		Args:    maxArgs(1, "one ACCOUNT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, e *env, out io.Writer) error {
				o.Env = e
				if len(args) == 1 {
					o.Account = args[0]
				}
				return runHeld(ctx, o, out)
			})
		},
	}
	cmd.Flags().BoolVar(&o.All, "all", false, "also list messages no longer held (released, purged)")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON (fields in docs/abusectl.md)")
	return cmd
}

// heldJSON is one held message in --json output.
type heldJSON struct {
	QueueID    string  `json:"queue_id"`
	Instance   string  `json:"instance"`
	Account    string  `json:"account"`
	Login      string  `json:"login,omitempty"`
	Client     string  `json:"client,omitempty"`
	Sender     string  `json:"sender"`
	Recipients int     `json:"recipients"`
	From       string  `json:"from,omitempty"`
	Subject    string  `json:"subject,omitempty"`
	MessageID  string  `json:"message_id,omitempty"`
	Rule       string  `json:"rule"`
	Clause     string  `json:"clause,omitempty"`
	Score      float64 `json:"score"`
	Reason     string  `json:"reason"`
	HeldAt     *string `json:"held_at"`
	Status     string  `json:"status"`
	StatusBy   string  `json:"status_by,omitempty"`
	StatusAt   *string `json:"status_at"`
}

func heldView(r ratelimit.MessageRecord) heldJSON {
	return heldJSON{QueueID: r.QueueID, Instance: r.Instance, Account: r.Account, Login: r.Login, Client: r.Client,
		Sender: r.Sender, Recipients: r.Recipients, From: r.From, Subject: r.Subject, MessageID: r.MessageID,
		Rule: r.Rule, Clause: r.Clause, Score: r.Score, Reason: r.Reply, HeldAt: jsonTime(r.At),
		Status: string(r.Status), StatusBy: r.StatusBy, StatusAt: jsonTime(r.StatusAt)}
}

// stillHeld reports whether a held message is on hold as far as the store
// knows (a failed release leaves it held).
func stillHeld(r ratelimit.MessageRecord) bool {
	return r.Status == ratelimit.StatusHeld || r.Status == ratelimit.StatusFailed
}

func runHeld(ctx context.Context, o heldOptions, out io.Writer) error {
	account, err := optionalAccountName(o.Account)
	if err != nil {
		return err
	}
	admin, err := o.Env.store(ctx)
	if err != nil {
		return err
	}
	recs, err := admin.Held(ctx, account)
	if err != nil {
		return o.Env.storeError(err)
	}
	v := struct {
		Held []heldJSON `json:"held"`
	}{Held: []heldJSON{}}
	for _, r := range recs {
		if o.All || stillHeld(r) {
			v.Held = append(v.Held, heldView(r))
		}
	}
	if o.JSON {
		return writeJSON(out, v)
	}
	if len(v.Held) == 0 {
		_, err := fmt.Fprintln(out, "no message is held")
		return err
	}
	now := o.Env.now()
	var t table
	cols := []string{"QUEUE ID", "INSTANCE", "ACCOUNT", "HELD", "RULE", "FROM", "SUBJECT"}
	if o.All {
		cols = append(cols, "STATUS")
	}
	t.header(cols...)
	for _, h := range v.Held {
		row := []string{h.QueueID, h.Instance, h.Account, ago(now, parseJSONTime(h.HeldAt)), h.Rule, cell(h.From, 40), cell(h.Subject, 50)}
		s := warn
		if o.All {
			row = append(row, h.Status)
			if h.Status != string(ratelimit.StatusHeld) {
				s = plain
			}
		}
		t.add(s, row...)
	}
	return t.write(out, "", o.Env.color)
}

// cell fits a header value into a table cell: one line, at most n runes.
func cell(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	if s == "" {
		return "-"
	}
	return s
}

// heldActionOptions are the options of "abusectl release" and "purge".
type heldActionOptions struct {
	Env      *env
	Action   ratelimit.DeskAction
	QueueIDs []string
	Account  string
	Wait     time.Duration
	JSON     bool
}

// heldActionFlags adds the flags release and purge share.
func heldActionFlags(cmd *cobra.Command, o *heldActionOptions) {
	cmd.Flags().StringVar(&o.Account, "account", "", "every message held for this account")
	cli.DurationVar(cmd.Flags(), &o.Wait, "wait", 30*time.Second, "wait this long for the instances' outcomes")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON (fields in docs/abusectl.md)")
}

// outcomeJSON is one outcome in --json output.
type outcomeJSON struct {
	QueueID  string `json:"queue_id"`
	Instance string `json:"instance,omitempty"`
	Account  string `json:"account,omitempty"`
	Action   string `json:"action"`
	Status   string `json:"status"`
	Detail   string `json:"detail,omitempty"`
}

// runHeldAction asks the instances holding the messages to release or
// purge them and prints each outcome.
func runHeldAction(ctx context.Context, o heldActionOptions, out io.Writer) error {
	if (len(o.QueueIDs) == 0) == (o.Account == "") {
		return cli.Usagef("%s: give queue ids or --account ACCOUNT (not both)", o.Action)
	}
	sel := ratelimit.HeldSelector{QueueIDs: o.QueueIDs}
	if o.Account != "" {
		account, err := accountName(o.Account)
		if err != nil {
			return err
		}
		sel.Account = account
	}
	if o.Wait <= 0 {
		return cli.Usagef("--wait must be positive")
	}
	admin, err := o.Env.store(ctx)
	if err != nil {
		return err
	}
	outcomes, err := admin.ActOnHeld(ctx, o.Action, sel, o.Env.user, o.Wait)
	if err != nil {
		return o.Env.storeError(err)
	}
	return printOutcomes(out, o.Action, sel, outcomes, o.JSON)
}

// printOutcomes prints the outcomes of a release or purge; an error when
// any message was not released (purged).
func printOutcomes(out io.Writer, action ratelimit.DeskAction, sel ratelimit.HeldSelector, outcomes []ratelimit.DeskOutcome, asJSON bool) error {
	done := ratelimit.StatusReleased
	if action == ratelimit.Purge {
		done = ratelimit.StatusPurged
	}
	failed := 0
	v := struct {
		Outcomes []outcomeJSON `json:"outcomes"`
	}{Outcomes: []outcomeJSON{}}
	for _, oc := range outcomes {
		if oc.Status != done {
			failed++
		}
		v.Outcomes = append(v.Outcomes, outcomeJSON{QueueID: oc.Request.QueueID, Instance: oc.Request.Instance,
			Account: oc.Request.Account, Action: string(action), Status: string(oc.Status), Detail: oneLine(oc.Detail)})
	}
	if asJSON {
		if err := writeJSON(out, v); err != nil {
			return err
		}
	} else {
		if len(outcomes) == 0 {
			_, err := fmt.Fprintf(out, "no message is held for account %q\n", sel.Account)
			return err
		}
		for _, oc := range v.Outcomes {
			line := fmt.Sprintf("%s: %s", oc.QueueID, oc.Status)
			if oc.Instance != "" {
				line += " (on " + oc.Instance + ")"
			}
			if oc.Status != string(done) && oc.Detail != "" {
				line += ": " + oc.Detail
			}
			if _, err := fmt.Fprintln(out, line); err != nil {
				return err
			}
		}
	}
	if failed > 0 {
		return &notFoundError{fmt.Sprintf("%s: %d of %d messages not %s", action, failed, len(outcomes), done)}
	}
	return nil
}
