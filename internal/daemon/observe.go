package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/abusemilter/abusemilter/internal/logging"
	"github.com/abusemilter/abusemilter/internal/metrics"
	"github.com/abusemilter/abusemilter/internal/notify"
	"github.com/abusemilter/abusemilter/milter"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// observer connects the milter and the rate store to metrics and
// notifications: it counts decisions and sessions, turns store events into
// notifications, and publishes entering and leaving the fail mode when the
// store's circuit breaker opens or closes.
type observer struct {
	log      *zap.Logger
	metrics  *metrics.Metrics
	notifier *notify.Notifier
	// redact hides addresses in account names (log.redact); nil: none.
	redact   *logging.Redactor
	failMode atomic.Value // string: the configured redis_failure
	// failActive is the fail mode last logged (failModeChanged).
	failActive atomic.Bool
	// store is what the limiter in use reports. A pointer to a struct,
	// not an atomic.Value holding the limiter: that one panics when a
	// reload swaps a *ratelimit.Memory for a *ratelimit.Redis.
	store atomic.Pointer[storeSources]

	// panicsMu guards panicLogged: when each rule's panic was last logged.
	panicsMu    sync.Mutex
	panicLogged map[string]time.Time
	now         func() time.Time // default time.Now
}

// rulePanicLogEvery is how often a rule that keeps panicking is logged.
const rulePanicLogEvery = time.Minute

// rulePanicked counts a rule's panic and logs it once a minute per rule,
// with its ID and the panic value: a broken rule must not stop firing
// silently, nor flood the log at the message rate.
func (o *observer) rulePanicked(rule string, value any) {
	o.metrics.RulePanicked(rule)
	now := time.Now
	if o.now != nil {
		now = o.now
	}
	t := now()
	o.panicsMu.Lock()
	last, seen := o.panicLogged[rule]
	due := !seen || t.Sub(last) >= rulePanicLogEvery
	if due {
		if o.panicLogged == nil {
			o.panicLogged = make(map[string]time.Time)
		}
		o.panicLogged[rule] = t
	}
	o.panicsMu.Unlock()
	if due {
		o.log.Error("rule panicked; the message is decided as if it had not fired (logged at most once a minute per rule)",
			zap.String("rule", rule), zap.String("panic", fmt.Sprint(value)))
	}
}

// storeSources are the views of the limiter in use that metrics and
// notifications read; a nil field is a view that limiter does not offer.
type storeSources struct {
	stats statsSource
	sub   subscriber
	admin lockLister
	desk  ratelimit.DeskQueue
}

// lockLister is a store that lists its locked accounts (ratelimit.Admin).
type lockLister interface {
	Locked(ctx context.Context) ([]ratelimit.LockedAccount, error)
}

// statsSource is a store that reports its call counters.
type statsSource interface{ Stats() ratelimit.Stats }

// subscriber is a store that subscribes to admin changes and says whether
// the subscription is confirmed now (the Redis store).
type subscriber interface{ Subscribed() bool }

// setStore records the limiter in use and its metrics sources.
func (o *observer) setStore(l ratelimit.Limiter, failMode string) {
	o.failMode.Store(failMode)
	var src storeSources
	src.stats, _ = l.(statsSource)
	src.sub, _ = l.(subscriber)
	src.admin, _ = l.(lockLister)
	src.desk, _ = l.(ratelimit.DeskQueue)
	o.store.Store(&src)
}

// lockedAccounts reads how many accounts the current store holds locked;
// ok is false for a store that cannot list them.
func (o *observer) lockedAccounts(ctx context.Context) (n int, ok bool, err error) {
	src := o.store.Load()
	if src == nil || src.admin == nil {
		return 0, false, nil
	}
	locked, err := src.admin.Locked(ctx)
	return len(locked), true, err
}

// deskQueue returns the current store's desk queue (nil: none).
func (o *observer) deskQueue() ratelimit.DeskQueue {
	src := o.store.Load()
	if src == nil {
		return nil
	}
	return src.desk
}

// storeStats returns the current store's counters.
func (o *observer) storeStats() (ratelimit.Stats, bool) {
	src := o.store.Load()
	if src == nil || src.stats == nil {
		return ratelimit.Stats{}, false
	}
	return src.stats.Stats(), true
}

// subscribed reports whether the current store's subscription to admin
// changes is confirmed; ok is false for a store without one.
func (o *observer) subscribed() (subscribed, ok bool) {
	src := o.store.Load()
	if src == nil || src.sub == nil {
		return false, false
	}
	return src.sub.Subscribed(), true
}

// Decision implements milter.Observer: a decision is counted by stage,
// mode, action, clause and rule; a trial only by its action (it charged
// nothing and must not move the decision series the alerts watch).
func (o *observer) Decision(ev milter.DecisionEvent) {
	v := ev.Verdict
	if ev.Trial {
		o.metrics.Trial(v.Action.String())
		return
	}
	o.metrics.Decision(ev.Stage, string(ev.Mode), v.Action.String(), string(v.Clause), v.Rule, v.RuleIDs(), ev.Elapsed)
	o.virusFound(v)
	if ev.Stage != "eom" {
		return
	}
	if st, ok := o.storeStats(); ok {
		var cause error
		if v.LimiterError != "" {
			cause = errors.New(v.LimiterError)
		}
		mode, _ := o.failMode.Load().(string)
		o.failModeChanged(st.BreakerOpen, mode, cause)
		o.notifier.FailMode(st.BreakerOpen, mode, cause)
	}
}

// failModeChanged logs entering (a warning, priority 4 in the journal) and
// leaving the rate store's fail mode, once per change.
func (o *observer) failModeChanged(active bool, mode string, cause error) {
	if o.failActive.Swap(active) == active {
		return
	}
	if !active {
		o.log.Info("rate store fail mode left: the store answers again", zap.String("fail_mode", mode))
		return
	}
	fields := []zap.Field{zap.String("fail_mode", mode)}
	if cause != nil {
		fields = append(fields, zap.String("error", cause.Error()))
	}
	o.log.Warn("rate store fail mode entered: the circuit breaker is open, redis_failure decides", fields...)
}

// SessionOpened implements milter.Observer.
func (o *observer) SessionOpened() { o.metrics.SessionOpened() }

// SessionClosed implements milter.Observer.
func (o *observer) SessionClosed() { o.metrics.SessionClosed() }

// SessionRefused implements milter.Observer.
func (o *observer) SessionRefused() { o.metrics.SessionRefused() }

// storeEvent receives the rate store's events (on the store's own
// goroutine) and logs, counts and publishes them.
func (o *observer) storeEvent(ev ratelimit.Event) {
	switch ev.Kind {
	case ratelimit.EventLock:
		o.metrics.AccountLocked()
		e := LockedEvent(ev)
		o.log.Warn("account locked", zap.String("account", o.redact.Address(e.Account)), zap.String("reason", e.Reason), zap.String("by", e.By), zap.Int("strikes", e.Strikes))
		o.notifier.Publish(e)
	case ratelimit.EventWouldLock:
		o.log.Warn("account would be locked (monitor mode)", zap.String("account", o.redact.Address(ev.Subject.Name)), zap.Int("strikes", ev.Strikes))
		o.notifier.Publish(notify.Event{Kind: notify.AccountWouldLock, Account: ev.Subject.Name, Strikes: ev.Strikes, Time: ev.At})
	case ratelimit.EventUnlock:
		o.metrics.AccountUnlocked()
		by := ""
		if ev.Lock != nil {
			by = ev.Lock.By
		}
		o.log.Info("account unlocked", zap.String("account", o.redact.Address(ev.Subject.Name)), zap.String("by", by))
		o.notifier.Publish(notify.Event{Kind: notify.AccountUnlocked, Account: ev.Subject.Name, By: by, Time: ev.At})
	case ratelimit.EventHeld:
		if r := ev.Record; r != nil {
			o.notifier.Publish(notify.Event{Kind: notify.MessageHeld, Time: ev.At, Account: r.Account, QueueID: r.QueueID,
				MessageID: r.MessageID, Instance: r.Instance, Rule: r.Rule, Reason: r.Reply})
		}
	case ratelimit.EventReleased, ratelimit.EventPurged:
		if out := ev.Outcome; out != nil {
			kind := notify.MessageReleased
			if ev.Kind == ratelimit.EventPurged {
				kind = notify.MessagePurged
			}
			o.notifier.Publish(notify.Event{Kind: kind, Time: ev.At, Account: out.Request.Account, QueueID: out.Request.QueueID,
				Instance: out.Request.Instance, By: out.Request.By, Status: string(out.Status), Reason: out.Detail})
		}
	case ratelimit.EventComplaint:
		o.notifier.Publish(ComplaintEvent(ev))
	case ratelimit.EventUsage:
		o.notifier.Publish(notify.Event{
			Kind: notify.LimitThreshold, Time: ev.At,
			Dimension: string(ev.Dimension), Rule: ev.Dimension.RuleID(),
			KeyKind: keyKind(ev.Subject.Kind), Key: ev.Subject.Name,
			Used: ev.Used, Limit: ev.Rate.Limit, Window: ratelimit.FormatWindow(ev.Rate.Window), Share: ev.Threshold,
		})
	}
}

// keyKind names a subject kind as the event schema does.
func keyKind(k ratelimit.SubjectKind) string {
	switch k {
	case ratelimit.KindSender:
		return "sender"
	case ratelimit.KindClient:
		return "client"
	}
	return "account"
}

// ComplaintEvent is the notification of a store's EventComplaint (for
// abusectl, which publishes the complaints it records, too).
func ComplaintEvent(ev ratelimit.Event) notify.Event {
	e := notify.Event{Kind: notify.Complaint, Time: ev.At, Complaints: ev.Complaints, Strikes: ev.Strikes}
	if c := ev.Complaint; c != nil {
		e.Account, e.QueueID, e.MessageID, e.Instance = c.Account, c.QueueID, c.MessageID, c.Instance
		e.FeedbackType, e.Reason, e.By = c.Type, c.Reason, c.Reporter
	}
	return e
}

// LockedEvent is the notification of a store's EventLock.
func LockedEvent(ev ratelimit.Event) notify.Event {
	e := notify.Event{Kind: notify.AccountLocked, Account: ev.Subject.Name, Strikes: ev.Strikes, Time: ev.At}
	if ev.Lock != nil {
		e.Reason, e.By, e.Until = ev.Lock.Reason, ev.Lock.By, ev.Lock.Until
		if ev.Lock.By == "complaints" {
			e.Rule = ratelimit.RuleComplaints
		}
	}
	return e
}
