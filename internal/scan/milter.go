package scan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/internal/mailbox"
	"github.com/abusemilter/abusemilter/internal/trial"
	"github.com/abusemilter/abusemilter/scoring"
)

// MilterOptions are those of abusescan --milter: each input message is
// sent through a running milter (internal/trial) instead of being judged
// here.
type MilterOptions struct {
	// Addr is the milter, "inet:HOST:PORT" or "unix:/path": the daemon's
	// trial.listen for a trial.
	Addr string
	// Login, Client, Helo: the submission's SASL login (default: the
	// envelope sender, as a login that is an address), client address
	// (default: unknown) and HELO name (default: this host's name).
	Login, Client, Helo string
	// MailFrom and Rcpts override the envelope taken from the message
	// (Return-Path or From; To, Cc and Bcc), as the offline scan takes it.
	MailFrom *string
	Rcpts    []string
	// Charge sends real mail (no trial macro): counters and strikes move.
	Charge      bool
	Format      string // text or json ("": text)
	FailOn      string // reject, defer, never ("": reject)
	MboxVariant string
	Inputs      []string
	Stdin       io.Reader
	Timeout     time.Duration
	// Warn, when set, receives each input that could not be read.
	Warn func(*mailbox.Problem)
}

// maxTrialMessage bounds what is read of one message to send it whole.
const maxTrialMessage = 64 << 20

// milterRecord is one line of --milter --format json.
type milterRecord struct {
	File     string   `json:"file"`
	Offset   int64    `json:"offset"`
	Login    string   `json:"login"`
	Client   string   `json:"client"`
	MailFrom string   `json:"mail_from"`
	Rcpts    []string `json:"rcpts"`
	*trial.Result
}

// Milter sends every input message through the milter at o.Addr and
// reports its answers; like Run, it decides no exit status.
func Milter(ctx context.Context, o MilterOptions, stdout, stderr io.Writer) (Result, error) {
	var res Result
	if len(o.Inputs) == 0 {
		return res, errors.New("no input given (use - for standard input)")
	}
	if _, _, err := trial.Dial(o.Addr); err != nil {
		return res, fmt.Errorf("--milter: %w", err)
	}
	failOn := scoring.Reject
	switch o.FailOn {
	case "reject", "":
	case "defer":
		failOn = scoring.Defer
	case "never":
		failOn = 0
	default:
		return res, fmt.Errorf("--fail-on %q: want reject, defer or never", o.FailOn)
	}
	if o.Format != "" && o.Format != "text" && o.Format != "json" {
		return res, fmt.Errorf("--format %q: --milter writes text or json", o.Format)
	}
	variant, err := mailbox.ParseVariant(cmpOr(o.MboxVariant, string(mailbox.MboxO)))
	if err != nil {
		return res, fmt.Errorf("--mbox-variant: %w", err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	for e := range mailbox.Walk(ctx, o.Inputs, o.Stdin, mailbox.Options{BodyCap: maxTrialMessage, Variant: variant}) {
		if e.Problem != nil {
			if e.Problem.Kind != mailbox.Truncated {
				res.Unreadable++
			}
			if o.Warn != nil {
				o.Warn(e.Problem)
			}
			continue
		}
		m := e.Message
		if m.Skipped > 0 && o.Warn != nil {
			o.Warn(&mailbox.Problem{Source: m.Source, Offset: m.Offset, InMbox: m.Format == mailbox.Mbox, Kind: mailbox.Truncated,
				Err: fmt.Errorf("only the first %d bytes were sent", len(m.Data))})
		}
		rec, err := tryOne(ctx, o, m)
		if err != nil {
			return res, fmt.Errorf("%s: %w", m.Where(), err)
		}
		res.Messages++
		switch rec.Verdict {
		case "reject":
			res.Rejected++
		case "defer":
			res.Deferred++
		default:
			res.Accepted++
		}
		if failOn != 0 && (rec.Verdict == "reject" || failOn == scoring.Defer && rec.Verdict == "defer") {
			res.Failing++
		}
		if o.Format == "json" {
			err = enc.Encode(rec)
		} else {
			err = writeMilterText(stdout, m.Where(), rec)
		}
		if err != nil {
			return res, fmt.Errorf("writing report: %w", err)
		}
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("interrupted after %d messages: %w", res.Messages, context.Cause(ctx))
	}
	if o.Format == "json" {
		return res, enc.Encode(map[string]any{"summary": true, "messages": res.Messages, "accepted": res.Accepted,
			"deferred": res.Deferred, "rejected": res.Rejected, "unreadable": res.Unreadable})
	}
	_, err = fmt.Fprintf(stdout, "\ntried %d messages: %d accepted, %d deferred, %d rejected; unreadable inputs: %d\n",
		res.Messages, res.Accepted, res.Deferred, res.Rejected, res.Unreadable)
	return res, err
}

// tryOne sends one message with the envelope the options and the message
// give.
func tryOne(ctx context.Context, o MilterOptions, m *mailbox.Message) (*milterRecord, error) {
	msg, err := scoring.ParseBytes(m.Data, 0)
	if err != nil {
		return nil, err
	}
	from := envelopeSender(msg, m.EnvelopeFrom)
	if o.MailFrom != nil {
		from = *o.MailFrom
	} else if from == "" {
		// The offline scan takes such a sender as unknown; a milter must be
		// given one, and the null sender would be a guess.
		return nil, errors.New("no envelope sender: the message has no Return-Path address, mbox From_ line or From address; give --mail-from (\"\" is the null sender)")
	}
	rcpts := o.Rcpts
	if len(rcpts) == 0 {
		rcpts = recipients(msg)
	}
	login := o.Login
	if login == "" {
		login = from
	}
	r, err := trial.Send(ctx, trial.Options{
		Addr: o.Addr, Login: login, Client: o.Client, Helo: o.Helo,
		MailFrom: from, Rcpts: rcpts, Charge: o.Charge, Timeout: o.Timeout,
	}, m.Data)
	if err != nil {
		return nil, err
	}
	if !o.Charge && !r.Trial && r.Stage == "eom" {
		return nil, errors.New("the milter did not confirm the trial (is this the daemon's trial.listen?): the message may have been charged")
	}
	return &milterRecord{File: m.Source, Offset: m.Offset, Login: login, Client: o.Client, MailFrom: from, Rcpts: rcpts, Result: r}, nil
}

// writeMilterText writes one message's answers for people.
func writeMilterText(w io.Writer, where string, r *milterRecord) error {
	var b strings.Builder
	verdict := r.Verdict
	if r.Monitor {
		verdict = "accept (monitor mode; enforce would " + trialAction(r) + ")"
	}
	fmt.Fprintf(&b, "%s: %s at %s", where, verdict, r.Stage)
	switch {
	case r.Trial:
		fmt.Fprintf(&b, " (trial: nothing charged; milter message id %s)", r.MilterMsgID)
	case r.Stage != "eom":
		b.WriteString(" (refused before the message: nothing charged)")
	default:
		b.WriteString(" (real mail: counted)")
	}
	b.WriteString("\n")
	if r.Reply != "" {
		fmt.Fprintf(&b, "  reply:     %s\n", r.Reply)
	} else {
		b.WriteString("  reply:     250 (accepted)\n")
	}
	client := r.Client
	if client == "" {
		client = "unknown"
	}
	fmt.Fprintf(&b, "  envelope:  login %s, client %s, from <%s>, to %s\n", orDash(r.Login), client, r.MailFrom, strings.Join(r.Rcpts, ", "))
	for _, s := range r.Stages {
		if s.Stage == "rcpt" && s.Action != "continue" {
			fmt.Fprintf(&b, "  rcpt %s: %s\n", s.Rcpt, s.Text)
		}
	}
	for _, h := range r.Headers {
		if h.Action == "change" && h.Value == "" {
			fmt.Fprintf(&b, "  removes:   %s (#%d)\n", h.Name, h.Index)
			continue
		}
		fmt.Fprintf(&b, "  adds:      %s: %s\n", h.Name, h.Value)
	}
	if r.Trial {
		fmt.Fprintf(&b, "  score:     %g\n", r.Score)
	}
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "  finding:   %s %g (%s): %s\n", f.Rule, f.Score, f.Clause, f.Reason)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// trialAction is the would-be action of a monitor-mode trial.
func trialAction(r *milterRecord) string {
	if r.Rule == "" {
		return "accept"
	}
	return "refuse it: " + r.Rule
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
