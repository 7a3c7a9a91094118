package daemon

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/abusemilter/abusemilter/internal/complaint"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/notify"
	"github.com/abusemilter/abusemilter/ratelimit"
	"github.com/abusemilter/abusemilter/scoring"
)

// executor carries out the abuse desk's release and purge requests for
// this instance: it takes them from the rate store (which brings each to
// the instance that held the message), runs the configured command on this
// host (argv, no shell, placeholders filled per request) and reports the
// outcome back to the store, which records it on the held message, in the
// audit log and for the waiting abusectl.
type executor struct {
	log *zap.Logger
	// queue returns the store in use (it changes on a reload); nil when it
	// has no desk queue.
	queue func() ratelimit.DeskQueue
	cfg   atomic.Pointer[config.DeskConfig]
}

// executorWait is how long one call waits for requests; a reload's new
// store is picked up within it.
const executorWait = 5 * time.Second

// run serves requests until ctx ends.
func (x *executor) run(ctx context.Context) {
	var lastLogged time.Time
	for ctx.Err() == nil {
		q := x.queue()
		if q == nil {
			sleep(ctx, executorWait)
			continue
		}
		reqs, err := q.NextDeskRequests(ctx, executorWait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if time.Since(lastLogged) >= time.Minute {
				x.log.Warn("cannot read release and purge requests from the rate store (logged once a minute)", zap.Error(err))
				lastLogged = time.Now()
			}
			sleep(ctx, time.Second)
			continue
		}
		for _, req := range reqs {
			o := x.execute(ctx, req)
			if err := q.CompleteDeskRequest(context.WithoutCancel(ctx), o); err != nil {
				x.log.Error("the outcome of a request could not be recorded", zap.String("queue_id", req.QueueID),
					zap.String("action", string(req.Action)), zap.String("status", string(o.Status)), zap.Error(err))
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// DeskCommand returns argv with the placeholders of a request filled in:
// {queue_id}, {account}, {instance}, {by} and {action}. The arguments go to
// the program as they are, without a shell.
func DeskCommand(argv []string, req ratelimit.DeskRequest) []string {
	r := strings.NewReplacer("{queue_id}", req.QueueID, "{account}", req.Account, "{instance}", req.Instance,
		"{by}", req.By, "{action}", string(req.Action))
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = r.Replace(a)
	}
	return out
}

// postsuperDone matches postsuper's report of what it did, e.g.
// "postsuper: Released from hold: 1 message", "postsuper: Deleted: 1 message".
var postsuperDone = regexp.MustCompile(`(Released from hold|Deleted): [1-9][0-9]* message`)

// execute runs the command of one request and says what became of the
// message. postsuper says nothing when it found no such message on hold:
// the message had left the hold queue already (StatusNotHeld).
func (x *executor) execute(ctx context.Context, req ratelimit.DeskRequest) ratelimit.DeskOutcome {
	cfg := x.cfg.Load()
	argv := cfg.ReleaseCommand
	done := ratelimit.StatusReleased
	if req.Action == ratelimit.Purge {
		argv, done = cfg.PurgeCommand, ratelimit.StatusPurged
	}
	args := DeskCommand(argv, req)
	start := time.Now()
	// The training copy comes first, while the message is still queued. A
	// copy that fails is logged and the request goes ahead: the desk's
	// decision never waits on training material.
	if path, err := saveTrainingCopy(ctx, cfg, req, start); err != nil {
		x.log.Warn("training copy not saved; the request goes ahead", zap.String("action", string(req.Action)),
			zap.String("queue_id", req.QueueID), zap.Error(err))
	} else if path != "" {
		x.log.Info("training copy saved", zap.String("action", string(req.Action)), zap.String("queue_id", req.QueueID), zap.String("file", path))
	}
	output, err := notify.RunCommand(ctx, args, nil, cfg.CommandTimeout.Duration)
	o := ratelimit.DeskOutcome{Request: req, Status: done, Detail: output, At: time.Now()}
	switch {
	case err != nil:
		o.Status = ratelimit.StatusFailed
		o.Detail = strings.TrimSpace(err.Error() + ": " + output)
	case filepath.Base(args[0]) == "postsuper" && !postsuperDone.MatchString(output):
		o.Status = ratelimit.StatusNotHeld
		if o.Detail == "" {
			o.Detail = "postsuper found no such message on hold"
		}
	}
	if o.Status == ratelimit.StatusReleased && len(cfg.DeliverCommand) > 0 {
		deliver := DeskCommand(cfg.DeliverCommand, req)
		if out, err := notify.RunCommand(ctx, deliver, nil, cfg.CommandTimeout.Duration); err != nil {
			// released all the same: the MTA sends it at its next queue run
			o.Detail = strings.TrimSpace(o.Detail + "\n" + err.Error() + ": " + out)
		}
	}
	x.log.Info("desk request carried out", zap.String("action", string(req.Action)), zap.String("queue_id", req.QueueID),
		zap.String("account", req.Account), zap.String("by", req.By), zap.String("status", string(o.Status)),
		zap.String("command", args[0]), zap.String("output", output), zap.Duration("took", time.Since(start)))
	return o
}

// tracker adds the desk's headers to the mail of tracked accounts: the
// Feedback-ID and the signed tracking header (desk.tracking).
type tracker struct {
	cfg config.TrackingConfig
	key []byte
	now func() time.Time
}

// newTracker reads the tracking key of a config; nil when no account is
// tracked.
func newTracker(cfg config.TrackingConfig) (*tracker, error) {
	if len(cfg.Accounts) == 0 {
		return nil, nil
	}
	key, err := cfg.Key()
	if err != nil {
		return nil, err
	}
	return &tracker{cfg: cfg, key: key, now: time.Now}, nil
}

// headers returns the fields to add to a message of account.
func (t *tracker) headers(account string) []scoring.Header {
	if t == nil || account == "" || !t.cfg.Tracks(account) {
		return nil
	}
	var hs []scoring.Header
	if t.cfg.FeedbackID != "" {
		hs = append(hs, scoring.Header{Name: "Feedback-ID", Value: strings.ReplaceAll(t.cfg.FeedbackID, "{account}", account)})
	}
	if t.key != nil {
		hs = append(hs, scoring.Header{Name: t.cfg.Header, Value: complaint.Track(t.key, account, t.now())})
	}
	return hs
}
