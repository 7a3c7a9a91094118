package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/internal/complaint"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/daemon"
	"github.com/abusemilter/abusemilter/internal/notify"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// The exit codes of "abusectl complaint" beyond 0, as a Postfix pipe alias
// reads them (sysexits.h): 75 makes Postfix keep the report and retry.
const (
	exitDataErr  = 65 // EX_DATAERR: the input is not mail
	exitTempFail = 75 // EX_TEMPFAIL: the store cannot be reached
)

// complaintOptions are the options of "abusectl complaint".
type complaintOptions struct {
	Env *env
	// Config is the config the tracking header's name and key come from.
	Config *config.Config
	In     io.Reader
	Name   string // of the input, for messages
	JSON   bool
}

func newComplaintCommand(g *globalOptions) *cobra.Command {
	var o complaintOptions
	cmd := &cobra.Command{
		Use:   "complaint [FILE|-] [--json]",
		Short: "record a complaint (ARF report, DSN, forwarded spam) against the account that sent the message",
		Long: `Reads a complaint about a message (from FILE, or standard input when FILE is
"-" or missing): an ARF feedback-loop report (RFC 5965), a delivery status
notification (RFC 3464), or a forwarded message with the original attached
or quoted inline. It finds the original's Message-ID (and the tracking
header the milter added), attributes the complaint to the account that sent
the message, counts it (desk.complaints), adds its strikes, locks the
account at desk.complaints.threshold, and sends a complaint event to the
config's webhooks and audit log. A complaint that cannot be attributed is
kept in the list of "abusectl complaints --unattributed", never dropped.

It works as a Postfix pipe alias (docs/desk.md):
  abuse-fbl: "|/usr/bin/abusectl --config /etc/abusemilter/abusemilter.yaml complaint -"

Exit codes (sysexits, as Postfix reads them):
  0   recorded (attributed or not; the same report twice counts once)
  65  the input is not mail at all (Postfix bounces it)
  75  the rate store cannot be reached, or the config cannot be read
      (Postfix keeps the report and retries: nothing is lost)
  2   usage error (a FILE that cannot be opened)`,
		Example: "  abusectl complaint report.eml\n  abusectl complaint - < report.eml",
		Args:    maxArgs(1, "one FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, e *env, out io.Writer) error {
				cfg, _, err := loadConfig(*g, g.deps.lookup)
				if err != nil {
					return tempFail(err)
				}
				o.Env, o.Config, o.In, o.Name = e, cfg, cmd.InOrStdin(), "standard input"
				if len(args) == 1 && args[0] != "-" {
					f, err := os.Open(args[0])
					if err != nil {
						return cli.Usagef("complaint: %v", err)
					}
					defer f.Close()
					o.In, o.Name = f, args[0]
				}
				return runComplaint(ctx, o, out, cmd.ErrOrStderr())
			})
		},
	}
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON (fields in docs/abusectl.md)")
	return cmd
}

// complaintJSON is the --json output of complaint.
type complaintJSON struct {
	ID           string  `json:"id"`
	Account      string  `json:"account"`
	AttributedBy string  `json:"attributed_by"`
	Reason       string  `json:"reason"`
	Type         string  `json:"type"`
	Reporter     string  `json:"reporter"`
	MessageID    string  `json:"message_id"`
	QueueID      string  `json:"queue_id"`
	Instance     string  `json:"instance"`
	Subject      string  `json:"subject"`
	At           *string `json:"at"`
	Duplicate    bool    `json:"duplicate,omitempty"`
	Complaints   int     `json:"complaints,omitempty"`
	Strikes      int     `json:"strikes,omitempty"`
	Locked       bool    `json:"locked,omitempty"`
	NewlyLocked  bool    `json:"newly_locked,omitempty"`
	LockReason   string  `json:"lock_reason,omitempty"`
}

// tempFail makes a failure to read the config or reach the store exit 75:
// Postfix keeps the report and retries, so a complaint is never bounced
// for a problem on this side.
func tempFail(err error) error {
	if err == nil {
		return nil
	}
	return cli.Exit(exitTempFail, err)
}

func runComplaint(ctx context.Context, o complaintOptions, out, errOut io.Writer) error {
	tr := o.Config.Desk.Tracking
	rep, err := complaint.Parse(o.In, tr.Header)
	if errors.Is(err, complaint.ErrNotMail) {
		return cli.Exit(exitDataErr, fmt.Errorf("complaint: %s is not a mail message", o.Name))
	}
	if err != nil {
		return cli.Exit(exitTempFail, err)
	}
	complaintNotifier(o, errOut)
	admin, err := o.Env.store(ctx)
	if err != nil {
		return tempFail(err)
	}
	c := ratelimit.Complaint{ID: rep.ID, Type: rep.Type, Reporter: rep.Reporter, MessageID: rep.MessageID, Subject: rep.Subject}
	if err := attribute(ctx, admin, rep, tr, o.Env.now(), &c); err != nil {
		return tempFail(o.Env.storeError(err))
	}
	res, err := admin.AddComplaint(ctx, c, o.Env.user)
	if err != nil {
		return tempFail(o.Env.storeError(err))
	}
	c.At = res.Complaint.At
	v := complaintView(c)
	v.Duplicate, v.Complaints, v.Strikes, v.Locked, v.NewlyLocked = res.Duplicate, res.Complaints, res.Strikes, res.Locked, res.NewlyLocked
	if res.Lock != nil {
		v.LockReason = res.Lock.Reason
	}
	if o.JSON {
		return writeJSON(out, v)
	}
	_, err = fmt.Fprintln(out, complaintLine(v))
	return err
}

// attribute finds the account of a complaint: by the original's
// Message-ID in the store's records, else by a tracking header that
// verifies; otherwise c.Reason says why not.
func attribute(ctx context.Context, admin ratelimit.Admin, rep *complaint.Report, tr config.TrackingConfig, now time.Time, c *ratelimit.Complaint) error {
	var why []string
	switch {
	case rep.MessageID != "":
		rec, ok, err := admin.DecisionRecord(ctx, rep.MessageID)
		if err != nil {
			return err
		}
		if ok && rec.Account != "" {
			c.Account, c.QueueID, c.Instance, c.AttributedBy = rec.Account, rec.QueueID, rec.Instance, "message-id"
			return nil
		}
		why = append(why, fmt.Sprintf("no record of Message-ID <%s> (older than desk.attribution_retention, or not sent through these milters)", rep.MessageID))
	case rep.Original == "":
		why = append(why, "the report does not show the original message")
	default:
		why = append(why, "the original has no Message-ID")
	}
	if rep.Tracking != "" {
		key, err := tr.Key()
		switch {
		case err != nil:
			why = append(why, "tracking header not checked: "+err.Error())
		case key == nil:
			why = append(why, "tracking header not checked: no desk.tracking key configured")
		default:
			account, _, err := complaint.Verify(key, rep.Tracking, now, tr.MaxAge.Duration)
			if err == nil {
				c.Account, c.AttributedBy = account, "tracking-header"
				return nil
			}
			why = append(why, err.Error())
		}
	}
	c.Reason = strings.Join(why, "; ")
	return nil
}

// complaintLine is the one-line report of a recorded complaint.
func complaintLine(v complaintJSON) string {
	what := v.Type + " complaint " + v.ID
	if v.MessageID != "" {
		what += " about <" + v.MessageID + ">"
	}
	if v.Duplicate {
		what += " (recorded before: not counted again)"
	}
	if v.Account == "" {
		return what + ": unattributed, kept for the desk (" + v.Reason + ")"
	}
	line := fmt.Sprintf("%s: account %q by %s", what, v.Account, v.AttributedBy)
	if v.QueueID != "" {
		line += fmt.Sprintf(" (queue id %s on %s)", v.QueueID, v.Instance)
	}
	line += fmt.Sprintf("; %d complaints in the window, %d strikes", v.Complaints, v.Strikes)
	if v.NewlyLocked {
		line += "; account LOCKED: " + v.LockReason
	} else if v.Locked {
		line += "; account locked"
	}
	return line
}

// complaintNotifier sends the store's complaint and lock events to the
// config's webhooks and audit log (the on-lock command runs on milter hosts
// only), flushed when the command ends. A notifier that cannot start (an
// audit log this user cannot open) is reported and left out: the
// complaint is still recorded.
func complaintNotifier(o complaintOptions, errOut io.Writer) {
	no, err := daemon.NotifyOptions(o.Config.Notify)
	if err == nil {
		no.OnLockCommand = nil
		var n *notify.Notifier
		if n, err = notify.New(no); err == nil {
			o.Env.storeOpts.OnEvent = func(ev ratelimit.Event) {
				switch ev.Kind {
				case ratelimit.EventComplaint:
					n.Publish(daemon.ComplaintEvent(ev))
				case ratelimit.EventLock:
					n.Publish(daemon.LockedEvent(ev))
				}
			}
			o.Env.afterClose = append(o.Env.afterClose, func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = n.Close(ctx)
			})
			return
		}
	}
	fmt.Fprintf(errOut, "abusectl: complaint events are not sent: %v\n", oneLine(err.Error()))
}
