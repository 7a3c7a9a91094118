package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/classifier"
	"github.com/abusemilter/abusemilter/internal/atomicfile"
	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/internal/complaint"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/mailbox"
	"github.com/abusemilter/abusemilter/scoring"
)

const learnHelp = `Trains the content classifier (rule CONTENT_CLASSIFIER) on the provider's
own mail and writes the model that rules.classifier.model loads. --spam and
--ham name inputs as abusescan reads them (.eml files, mbox files, Maildir
folders, directories of any of these), each flag repeatable.

The training material is the abuse desk's own decisions: with
desk.training set, every held message the desk purges is saved into
purged_dir and every one it releases into released_dir, so that

  abusescan learn --spam /var/lib/abusemilter/training/purged \
                  --ham /var/lib/abusemilter/training/released -o MODEL

closes the loop. Complaint samples (abuse reports about the provider's
customers) are spam samples too: give their folder with another --spam; a
feedback report or DSN that carries the original message whole
(multipart/report with a message/rfc822 part) is learnt as that original,
not as the report around it. The model is a logistic
regression over hashed tokens of the headers, text and links; the same
inputs give the same model file (the training date comes from
$SOURCE_DATE_EPOCH when set). The summary printed gives the training-set
figures and those of a model trained without every --hold-out'th message
and evaluated on them.

Exit status:
  0  the model was written
  2  usage error, an input that is missing or holds no message, or a model
     that could not be written`

// learnOptions are the flags of abusescan learn.
type learnOptions struct {
	spam, ham       []string
	output          string
	holdProbability float64
	holdOut         int
	bucketBits      int
}

func newLearnCommand(stdout, stderr io.Writer) *cobra.Command {
	var o learnOptions
	c := &cobra.Command{
		Use:   "learn --spam INPUT... --ham INPUT... -o MODEL",
		Short: "Train the content classifier on the desk's released (ham) and purged (spam) mail",
		Long:  learnHelp,
		Example: `  abusescan learn --spam /var/lib/abusemilter/training/purged --spam complaints/ \
      --ham /var/lib/abusemilter/training/released --ham ~alice/Maildir/.Sent \
      -o /var/lib/abusemilter/classifier.model`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runLearn(c.Context(), o, stdout, stderr)
		},
	}
	f := c.Flags()
	f.SortFlags = false
	f.StringArrayVar(&o.spam, "spam", nil, "spam `INPUT`: a message, mbox, Maildir or directory (repeatable)")
	f.StringArrayVar(&o.ham, "ham", nil, "ham `INPUT`: a message, mbox, Maildir or directory (repeatable)")
	f.StringVarP(&o.output, "output", "o", "", "write the model to `FILE` (atomically)")
	f.Float64Var(&o.holdProbability, "hold-probability", classifier.DefaultHoldProbability, "spam `PROBABILITY` the model suggests for holding (rules.classifier.hold_probability overrides it)")
	f.IntVar(&o.holdOut, "hold-out", 5, "also evaluate a model trained without every `N`th message on those (0: skip)")
	f.IntVar(&o.bucketBits, "bucket-bits", 20, "2^`BITS` hashed feature buckets (4 bytes each in the model)")
	mustDo(c.MarkFlagRequired("output"))
	mustDo(c.MarkFlagFilename("output"))
	return c
}

// runLearn reads the inputs, trains and writes the model.
func runLearn(ctx context.Context, o learnOptions, stdout, stderr io.Writer) error {
	switch {
	case len(o.spam) == 0 || len(o.ham) == 0:
		return cli.Usagef("both --spam and --ham are needed")
	case !(o.holdProbability > 0 && o.holdProbability < 1):
		return cli.Usagef("--hold-probability %v: want between 0 and 1", o.holdProbability)
	case o.bucketBits < 10 || o.bucketBits > 24:
		return cli.Usagef("--bucket-bits %d: want 10 to 24", o.bucketBits)
	case o.holdOut < 0 || o.holdOut == 1:
		return cli.Usagef("--hold-out %d: want 0 or at least 2", o.holdOut)
	}
	date, err := trainingDate()
	if err != nil {
		return cli.Exit(exitUsage, err)
	}
	tr, err := classifier.NewTrainer(1 << o.bucketBits)
	if err != nil {
		return cli.Exit(exitUsage, err)
	}
	for _, set := range []struct {
		flag   string
		inputs []string
		spam   bool
	}{{"--spam", o.spam, true}, {"--ham", o.ham, false}} {
		for _, in := range set.inputs {
			n, err := addInput(ctx, tr, in, set.spam, stderr)
			if err != nil {
				return cli.Exit(exitUsage, fmt.Errorf("%s %s: %w", set.flag, in, err))
			}
			fmt.Fprintf(stderr, "abusescan learn: %s %s: %d messages\n", set.flag, in, n)
		}
	}
	m, err := tr.Train(classifier.TrainOptions{HoldProbability: o.holdProbability, HoldOut: o.holdOut, Date: date})
	if err != nil {
		return cli.Exit(exitUsage, err)
	}
	data := m.Marshal()
	if err := atomicfile.Write(o.output, data, 0o644); err != nil {
		return cli.Exit(exitUsage, err)
	}
	s := m.Summary()
	fmt.Fprintf(stdout, "model %s: %d bytes, trained %s on %d ham / %d spam, %d of %d buckets used, tokenizer %d\n",
		o.output, len(data), s.Trained, s.Ham, s.Spam, s.Features, s.Buckets, s.Tokenizer)
	fmt.Fprintf(stdout, "training set at p >= %v: %v\n", s.HoldProbability, s.Training)
	if s.HeldOut != nil {
		fmt.Fprintf(stdout, "held out (every %dth message) at p >= %v: %v\n", o.holdOut, s.HoldProbability, *s.HeldOut)
	}
	return nil
}

// errNoMessages: an input without a message to learn from.
var errNoMessages = errors.New("no message found")

// addInput adds the messages of one input with a label and returns how
// many there were; unreadable parts of it are warned about.
func addInput(ctx context.Context, tr *classifier.Trainer, input string, spam bool, stderr io.Writer) (int, error) {
	if _, err := os.Stat(input); err != nil {
		return 0, err
	}
	bodyCap := config.Default().Message.BodySample.Bytes
	n := 0
	for e := range mailbox.Walk(ctx, []string{input}, nil, mailbox.Options{BodyCap: bodyCap}) {
		if e.Problem != nil {
			fmt.Fprintf(stderr, "abusescan learn: warning: %v\n", e.Problem)
		}
		if e.Message == nil {
			continue
		}
		data := e.Message.Data
		if spam {
			data = reportedOriginal(data)
		}
		msg, err := scoring.ParseBytes(data, bodyCap)
		if err != nil {
			fmt.Fprintf(stderr, "abusescan learn: warning: %s: %v\n", e.Message.Where(), err)
			continue
		}
		tr.Add(msg, spam)
		n++
	}
	if err := ctx.Err(); err != nil {
		return n, err
	}
	if n == 0 {
		return 0, errNoMessages
	}
	return n, nil
}

// reportedOriginal returns the original a complaint carries whole (an ARF
// feedback report or a DSN with the message attached as message/rfc822),
// else data itself: complaint samples are spam samples, but what was sent
// is the original, not the report around it.
func reportedOriginal(data []byte) []byte {
	msg, err := scoring.ParseBytes(data, 0)
	if err != nil || !strings.HasPrefix(strings.ToLower(strings.TrimSpace(msg.Get("Content-Type"))), "multipart/report") {
		return data
	}
	r, err := complaint.Parse(bytes.NewReader(data), "")
	if err != nil || len(r.OriginalMessage) == 0 {
		return data
	}
	return r.OriginalMessage
}

// trainingDate is today, or $SOURCE_DATE_EPOCH (seconds since 1970) when
// set, for reproducible models.
func trainingDate() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Now(), nil
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: want seconds since 1970", v)
	}
	return time.Unix(sec, 0), nil
}
