package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// statusOptions are the options of "abusectl status".
type statusOptions struct {
	Env     *env
	Subject string // ACCOUNT, sender:ADDR, client:IP, or an address or IP
	JSON    bool
	// Audit caps the audit entries shown (0: all the store returns).
	Audit int
}

func newStatusCommand(g *globalOptions) *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:   "status ACCOUNT|ADDRESS|sender:ADDR|client:IP [--json] [--audit N]",
		Short: "show usage, remaining quota, strikes, lock, overrides, exemptions and audit of one subject",
		Long: `Shows every limit that applies to the subject: for each window the rate,
how much is used, how much remains and when the oldest counted message
leaves the window; the strikes in the strike window; whether the account is
locked, why, by whom and since when; overrides and exemptions in force (set
at run time, or in the config); the most recent admin actions.

The subject is an account name, sender:ADDRESS, client:IP or acct:NAME; a
bare IP address is a client. A bare address (carol@example.com) is shown as
the account of that name and as the sender side by side when such an
account exists (counters, a lock, strikes or a config entry: an ad-hoc
account of a login that is an address, a sender-login map account), and as
the sender otherwise; --json then prints {"subject", "readings": [account,
sender]}.`,
		Example: `  abusectl status alice
  abusectl status sender:newsletter@example.com --json
  abusectl status 192.0.2.10`,
		Args: exactArgs(1, "one ACCOUNT, sender:ADDR or client:IP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, e *env, out io.Writer) error {
				o.Env, o.Subject = e, args[0]
				return runStatus(ctx, o, out)
			})
		},
	}
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON (fields in docs/abusectl.md)")
	cmd.Flags().IntVar(&o.Audit, "audit", 10, "show at most N audit entries (0: all kept)")
	return cmd
}

// statusJSON is the --json output of status; its fields are documented in
// docs/abusectl.md and kept stable.
type statusJSON struct {
	Subject             string          `json:"subject"`
	Kind                string          `json:"kind"`
	Name                string          `json:"name"`
	Limits              []limitJSON     `json:"limits"`
	Strikes             int             `json:"strikes"`
	StrikeWindowSeconds int64           `json:"strike_window_seconds"`
	StrikeThreshold     int             `json:"strike_threshold"`
	Locked              bool            `json:"locked"`
	Lock                *lockJSON       `json:"lock"`
	Overrides           []overrideJSON  `json:"overrides"`
	Exempt              bool            `json:"exempt"`
	Exemptions          []exemptionJSON `json:"exemptions"`
	Audit               []auditJSON     `json:"audit"`
	// Accounts only: the messages held now, and the complaints within the
	// complaint window (desk.complaints).
	Held                   []heldJSON `json:"held"`
	Complaints             int        `json:"complaints"`
	ComplaintWindowSeconds int64      `json:"complaint_window_seconds"`
	ComplaintThreshold     int        `json:"complaint_threshold"`
}

type limitJSON struct {
	Limit          string `json:"limit"`
	Rule           string `json:"rule"`
	Rate           string `json:"rate"`
	Max            int64  `json:"max"`
	WindowSeconds  int64  `json:"window_seconds"`
	Used           int64  `json:"used"`
	Remaining      int64  `json:"remaining"`
	FreesInSeconds int64  `json:"frees_in_seconds"`
	Override       bool   `json:"override"`
}

type lockJSON struct {
	Account    string  `json:"account,omitempty"`
	Reason     string  `json:"reason"`
	By         string  `json:"by"`
	At         *string `json:"at"`
	AgeSeconds int64   `json:"age_seconds"`
	Until      *string `json:"until"`
}

type overrideJSON struct {
	Limit string   `json:"limit"`
	Rates []string `json:"rates"`
	Until *string  `json:"until"`
}

type exemptionJSON struct {
	Subject string  `json:"subject"`
	Source  string  `json:"source"` // "runtime" (abusectl exempt) or "config"
	Reason  string  `json:"reason"`
	By      string  `json:"by"`
	At      *string `json:"at"`
	Until   *string `json:"until"`
}

type auditJSON struct {
	At     *string `json:"at"`
	By     string  `json:"by"`
	Action string  `json:"action"`
	Detail string  `json:"detail"`
}

func runStatus(ctx context.Context, o statusOptions, out io.Writer) error {
	subj, bare, err := bareAddress(o.Subject)
	if err != nil {
		return err
	}
	admin, err := o.Env.store(ctx)
	if err != nil {
		return err
	}
	if bare {
		return statusOfAddress(ctx, o, admin, subj, out)
	}
	st, err := admin.Status(ctx, subj)
	if err != nil {
		return o.Env.storeError(err)
	}
	v := o.view(st)
	if subj.Kind == ratelimit.KindAccount {
		if err := deskStatus(ctx, admin, subj.Name, o.Env.policy, o.Env.now(), &v); err != nil {
			return o.Env.storeError(err)
		}
	}
	if o.JSON {
		return writeJSON(out, v)
	}
	return writeStatus(out, v, o.Env.color)
}

// deskStatus adds an account's held messages and complaints to its status.
func deskStatus(ctx context.Context, admin ratelimit.Admin, account string, p ratelimit.Policy, now time.Time, v *statusJSON) error {
	held, err := admin.Held(ctx, account)
	if err != nil {
		return err
	}
	for _, r := range held {
		if stillHeld(r) {
			v.Held = append(v.Held, heldView(r))
		}
	}
	cs, err := admin.Complaints(ctx, account)
	if err != nil {
		return err
	}
	window := p.Desk.ComplaintWindow
	for _, c := range cs {
		if now.Sub(c.At) < window {
			v.Complaints++
		}
	}
	v.ComplaintWindowSeconds, v.ComplaintThreshold = seconds(window), p.Desk.ComplaintThreshold
	return nil
}

// view turns a store status into what status shows.
func (o statusOptions) view(st ratelimit.Status) statusJSON {
	if o.Audit > 0 && len(st.Audit) > o.Audit {
		st.Audit = st.Audit[:o.Audit]
	}
	return statusView(st, o.Env.policy, o.Env.now())
}

// addressStatusJSON is the --json output of status for a bare address
// that names an account as well as a sender: both readings, the account
// first.
type addressStatusJSON struct {
	Subject  string       `json:"subject"`
	Readings []statusJSON `json:"readings"`
}

// statusOfAddress shows a bare address: when an account of that name
// exists, the account and the sender side by side; otherwise the sender,
// with a line saying that no such account exists.
func statusOfAddress(ctx context.Context, o statusOptions, admin ratelimit.Admin, sender ratelimit.Subject, out io.Writer) error {
	acct, snd, err := o.Env.readings(ctx, admin, o.Subject, sender)
	if err != nil {
		return err
	}
	sv := o.view(snd.status)
	if !acct.exists() {
		if o.JSON {
			return writeJSON(out, sv)
		}
		if err := writeStatus(out, sv, o.Env.color); err != nil {
			return err
		}
		_, err := fmt.Fprintf(out, "Shown as a sender: no account is named %s (no counters, lock, strikes or config entry under that name).\n", acct.subj.Name)
		return err
	}
	av := o.view(acct.status)
	if o.JSON {
		return writeJSON(out, addressStatusJSON{Subject: strings.TrimSpace(o.Subject), Readings: []statusJSON{av, sv}})
	}
	if _, err := fmt.Fprintf(out, "%s names an account and a sender address; both are shown (name one with acct: or sender:):\n  account: %s\n  sender:  %s\n\n",
		strings.TrimSpace(o.Subject), acct.describe(), snd.describe()); err != nil {
		return err
	}
	if err := writeStatus(out, av, o.Env.color); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(out); err != nil {
		return err
	}
	return writeStatus(out, sv, o.Env.color)
}

// configExemption returns the exemption the config itself grants, if any.
func configExemption(s ratelimit.Subject, p ratelimit.Policy) (exemptionJSON, bool) {
	var exempt bool
	switch s.Kind {
	case ratelimit.KindAccount:
		exempt = p.ExemptAccounts[s.Name]
	case ratelimit.KindSender:
		exempt = p.ExemptSenders[s.Name]
	case ratelimit.KindClient:
		a, err := netip.ParseAddr(s.Name)
		exempt = err == nil && p.ExemptClient(a)
	}
	return exemptionJSON{Subject: s.String(), Source: "config", Reason: "listed in limits.exempt", By: "config"}, exempt
}

func statusView(st ratelimit.Status, p ratelimit.Policy, now time.Time) statusJSON {
	v := statusJSON{
		Subject: st.Subject.String(), Kind: string(st.Subject.Kind), Name: st.Subject.Name,
		Limits: []limitJSON{}, Overrides: []overrideJSON{}, Exemptions: []exemptionJSON{}, Audit: []auditJSON{}, Held: []heldJSON{},
		Strikes: st.Strikes, StrikeWindowSeconds: seconds(st.StrikeWindow), StrikeThreshold: p.Strikes.Threshold,
	}
	for _, l := range st.Limits {
		v.Limits = append(v.Limits, limitJSON{
			Limit: string(l.Dimension), Rule: l.Dimension.RuleID(), Rate: l.Rate.String(), Max: l.Rate.Limit,
			WindowSeconds: seconds(l.Rate.Window), Used: l.Used, Remaining: l.Remaining,
			FreesInSeconds: seconds(l.FreesIn), Override: l.Override,
		})
	}
	if st.Lock != nil {
		v.Locked = true
		v.Lock = &lockJSON{Reason: st.Lock.Reason, By: st.Lock.By, At: jsonTime(st.Lock.At),
			AgeSeconds: seconds(now.Sub(st.Lock.At)), Until: jsonTime(st.Lock.Until)}
	}
	for _, ov := range st.Overrides {
		o := overrideJSON{Limit: string(ov.Dimension), Rates: []string{}, Until: jsonTime(ov.Until)}
		for _, r := range ov.Rates {
			o.Rates = append(o.Rates, r.String())
		}
		v.Overrides = append(v.Overrides, o)
	}
	if e := st.Exemption; e != nil {
		v.Exemptions = append(v.Exemptions, exemptionJSON{Subject: e.Subject.String(), Source: "runtime",
			Reason: e.Reason, By: e.By, At: jsonTime(e.At), Until: jsonTime(e.Until)})
	}
	if e, ok := configExemption(st.Subject, p); ok {
		v.Exemptions = append(v.Exemptions, e)
	}
	v.Exempt = len(v.Exemptions) > 0
	for _, a := range st.Audit {
		v.Audit = append(v.Audit, auditJSON{At: jsonTime(a.At), By: a.By, Action: a.Action, Detail: a.Detail})
	}
	return v
}

func parseJSONTime(s *string) time.Time {
	if s == nil {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339, *s)
	return t
}

func writeStatus(out io.Writer, v statusJSON, color bool) error {
	var b strings.Builder
	fmt.Fprintln(&b, v.Subject)
	if len(v.Limits) == 0 {
		fmt.Fprintln(&b, "  no limit applies (none configured for this kind of subject)")
	} else {
		var t table
		t.header("LIMIT", "RULE", "RATE", "USED", "REMAINING", "FREES IN")
		for _, l := range v.Limits {
			s := good
			switch {
			case l.Remaining == 0:
				s = bad
			case l.Used*5 >= l.Max*4:
				s = warn
			}
			rate := l.Rate
			if l.Override {
				rate += " (override)"
			}
			frees := "-"
			if l.Used > 0 {
				frees = "in " + short(time.Duration(l.FreesInSeconds)*time.Second)
			}
			t.add(s, l.Limit, l.Rule, rate, fmt.Sprint(l.Used), fmt.Sprint(l.Remaining), frees)
		}
		if _, err := io.WriteString(out, b.String()); err != nil {
			return err
		}
		b.Reset()
		if err := t.write(out, "  ", color); err != nil {
			return err
		}
	}
	if v.Kind == string(ratelimit.KindAccount) {
		lockAt := "locking off"
		if v.StrikeThreshold > 0 {
			lockAt = fmt.Sprintf("%d lock the account", v.StrikeThreshold)
		}
		fmt.Fprintf(&b, "Strikes:    %d in the last %s (%s)\n", v.Strikes, short(time.Duration(v.StrikeWindowSeconds)*time.Second), lockAt)
		if l := v.Lock; l != nil {
			at := parseJSONTime(l.At)
			line := fmt.Sprintf("LOCKED by %s at %s (%s ago), %s: %q", l.By, clock(at),
				short(time.Duration(l.AgeSeconds)*time.Second), untilPlain(l.Until), l.Reason)
			fmt.Fprintf(&b, "Lock:       %s\n", bad.paint(line, color))
		} else {
			fmt.Fprintf(&b, "Lock:       %s\n", good.paint("not locked", color))
		}
		lockAt = "locking off"
		if v.ComplaintThreshold > 0 {
			lockAt = fmt.Sprintf("%d lock the account", v.ComplaintThreshold)
		}
		fmt.Fprintf(&b, "Complaints: %d in the last %s (%s)\n", v.Complaints, short(time.Duration(v.ComplaintWindowSeconds)*time.Second), lockAt)
		if len(v.Held) == 0 {
			fmt.Fprintln(&b, "Held:       none")
		}
		for i, h := range v.Held {
			label := "Held:       "
			if i > 0 {
				label = "            "
			}
			fmt.Fprintf(&b, "%s%s\n", label, warn.paint(fmt.Sprintf("%s on %s since %s, %s: %s", h.QueueID, h.Instance,
				clock(parseJSONTime(h.HeldAt)), h.Rule, cell(h.Subject, 50)), color))
		}
	}
	if len(v.Overrides) == 0 {
		fmt.Fprintln(&b, "Overrides:  none")
	}
	for i, o := range v.Overrides {
		label := "Overrides:  "
		if i > 0 {
			label = "            "
		}
		fmt.Fprintf(&b, "%s%s %s, %s\n", label, o.Limit, strings.Join(o.Rates, ","), untilPlain(o.Until))
	}
	if len(v.Exemptions) == 0 {
		fmt.Fprintln(&b, "Exemption:  none")
	}
	for i, e := range v.Exemptions {
		label := "Exemption:  "
		if i > 0 {
			label = "            "
		}
		line := "EXEMPT from every limit (" + e.Source + ")"
		if e.Source == "runtime" {
			line += fmt.Sprintf(" by %s at %s, %s: %q", e.By, clock(parseJSONTime(e.At)), untilPlain(e.Until), e.Reason)
		}
		fmt.Fprintf(&b, "%s%s\n", label, warn.paint(line, color))
	}
	if _, err := io.WriteString(out, b.String()); err != nil {
		return err
	}
	if len(v.Audit) == 0 {
		_, err := fmt.Fprintln(out, "Audit:      no admin action recorded")
		return err
	}
	fmt.Fprintln(out, "Audit (newest first):")
	var t table
	t.header("WHEN", "BY", "ACTION", "DETAIL")
	for _, a := range v.Audit {
		t.add(plain, clock(parseJSONTime(a.At)), a.By, a.Action, a.Detail)
	}
	return t.write(out, "  ", color)
}

// untilPlain writes an end time, or "until removed".
func untilPlain(s *string) string {
	if s == nil {
		return "until removed"
	}
	return "until " + clock(parseJSONTime(s))
}
