package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/abusemilter/abusemilter/internal/config"
)

// The sink names given to the Observer (and used as metric labels).
const (
	SinkWebhook = "webhook"
	SinkCommand = "command"
	SinkAudit   = "audit"
)

// Observer counts deliveries; *metrics.Metrics satisfies it.
type Observer interface {
	NotifySent(sink string)
	NotifyFailed(sink string)
	NotifyDropped(sink string)
}

type nopObserver struct{}

func (nopObserver) NotifySent(string)    {}
func (nopObserver) NotifyFailed(string)  {}
func (nopObserver) NotifyDropped(string) {}

// Secret is a credential that prints, formats and marshals as
// "[redacted]", so that logging a structure that holds it cannot leak it.
type Secret string

const redacted = "[redacted]"

// String implements fmt.Stringer.
func (Secret) String() string { return redacted }

// GoString implements fmt.GoStringer (for %#v).
func (Secret) GoString() string { return redacted }

// MarshalJSON implements json.Marshaler.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Webhook is one webhook receiver.
type Webhook struct {
	URL string
	// Token, when set, is sent as "Authorization: Bearer TOKEN", or as the
	// bare value of TokenHeader when that is set. It is never logged.
	Token       Secret
	TokenHeader string
	Timeout     time.Duration // per attempt; default 5s
	Retries     int           // further attempts after a failure
}

// Options configures a Notifier. Zero values take the defaults.
type Options struct {
	Webhooks []Webhook
	// QueueSize bounds each sink's queue (default 1000).
	QueueSize int
	// OnLockCommand is run for every AccountLocked event (argv, no shell;
	// placeholders are filled per event, see Command).
	OnLockCommand      []string
	CommandTimeout     time.Duration // default 30s
	CommandConcurrency int           // default 2
	// AuditLog is the path of the JSON-lines audit log ("" for none).
	AuditLog string

	// Host is the "host" field of events (default os.Hostname()).
	Host     string
	Logger   *zap.Logger // default: no logging
	Observer Observer    // default: no counting
	// BackoffBase is the wait before the first retry; each further retry
	// waits twice as long, up to BackoffMax (defaults 1s and 1m). Each wait
	// is jittered down by up to half.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// HTTPClient sends the webhooks (default: a client that never follows
	// redirects, so that a token is never sent elsewhere).
	HTTPClient *http.Client
	// UserAgent is sent with webhooks (default "abusemilter").
	UserAgent string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// sink is one destination with its own bounded queue.
type sink struct {
	kind    string
	queue   chan Event
	workers int
	wants   func(Event) bool
	deliver func(ctx context.Context, ev Event) error
	// lastDropLog rate-limits the "queue full" log line (unix nanoseconds).
	lastDropLog atomic.Int64
}

// Notifier publishes events to its sinks. Create it with New, stop it with
// Close. A nil *Notifier is valid and does nothing.
type Notifier struct {
	opts   Options
	log    *zap.Logger
	obs    Observer
	sinks  []*sink
	audit  *auditLog
	closed atomic.Bool
	quit   chan struct{} // closed by Close: workers drain and stop
	cancel context.CancelFunc
	wg     sync.WaitGroup

	failMode atomic.Bool // last state given to FailMode
}

// New starts a Notifier: it opens the audit log (an error here is a
// configuration problem worth stopping for) and starts the sink workers.
func New(opts Options) (*Notifier, error) {
	if opts.QueueSize <= 0 {
		opts.QueueSize = config.DefaultNotifyQueueSize
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = config.DefaultNotifyCommandTimeout
	}
	if opts.CommandConcurrency <= 0 {
		opts.CommandConcurrency = config.DefaultNotifyCommandConcurrency
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = time.Second
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = time.Minute
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "abusemilter"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
	}
	n := &Notifier{
		opts: opts,
		log:  opts.Logger,
		obs:  opts.Observer,
		quit: make(chan struct{}),
	}
	if n.log == nil {
		n.log = zap.NewNop()
	}
	n.log = n.log.Named("notify")
	if n.obs == nil {
		n.obs = nopObserver{}
	}
	if opts.AuditLog != "" {
		a, err := openAuditLog(opts.AuditLog)
		if err != nil {
			return nil, err
		}
		n.audit = a
		n.sinks = append(n.sinks, &sink{kind: SinkAudit, workers: 1, deliver: a.write})
	}
	for i := range opts.Webhooks {
		w := &webhookSender{hook: opts.Webhooks[i], n: n}
		if w.hook.Timeout <= 0 {
			w.hook.Timeout = config.DefaultWebhookTimeout
		}
		n.sinks = append(n.sinks, &sink{kind: SinkWebhook, workers: 1, deliver: w.send})
	}
	if len(opts.OnLockCommand) > 0 {
		c := &commandRunner{argv: opts.OnLockCommand, timeout: opts.CommandTimeout, log: n.log}
		n.sinks = append(n.sinks, &sink{
			kind: SinkCommand, workers: opts.CommandConcurrency, deliver: c.run,
			wants: func(ev Event) bool { return ev.Kind == AccountLocked },
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	for _, s := range n.sinks {
		s.queue = make(chan Event, opts.QueueSize)
		for range s.workers {
			n.wg.Add(1)
			go n.work(ctx, s)
		}
	}
	return n, nil
}

// Publish queues ev for every sink that wants it, filling Version, ID, Time
// and Host when empty. It never blocks and does no I/O: a sink whose queue
// is full drops the event and counts it with Observer.NotifyDropped.
func (n *Notifier) Publish(ev Event) {
	if n == nil {
		return
	}
	if ev.Version == 0 {
		ev.Version = SchemaVersion
	}
	if ev.ID == "" {
		ev.ID = newID()
	}
	if ev.Time.IsZero() {
		ev.Time = n.opts.Now()
	}
	if ev.Host == "" {
		ev.Host = n.opts.Host
	}
	closed := n.closed.Load()
	for _, s := range n.sinks {
		if s.wants != nil && !s.wants(ev) {
			continue
		}
		if !closed {
			select {
			case s.queue <- ev:
				continue
			default:
			}
		}
		n.dropped(s, ev, closed)
	}
}

func (n *Notifier) dropped(s *sink, ev Event, closed bool) {
	n.obs.NotifyDropped(s.kind)
	now := time.Now().UnixNano()
	last := s.lastDropLog.Load()
	if now-last < int64(time.Second) || !s.lastDropLog.CompareAndSwap(last, now) {
		return
	}
	why := "queue full"
	if closed {
		why = "notifier closed"
	}
	n.log.Warn("notification dropped", zap.String("sink", s.kind), zap.String("why", why),
		zap.String("event", string(ev.Kind)), zap.String("account", ev.Account))
}

// QueueDepths returns the events waiting in the queues, summed by sink
// kind (webhook, command, audit); nil for a nil Notifier. It is cheap and
// safe for concurrent use (metrics read it at every scrape).
func (n *Notifier) QueueDepths() map[string]int {
	if n == nil {
		return nil
	}
	out := make(map[string]int, len(n.sinks))
	for _, s := range n.sinks {
		out[s.kind] += len(s.queue)
	}
	return out
}

// Locked publishes AccountLocked. until is the end of the lock (zero: until
// unlocked); by is "auto" or the admin.
func (n *Notifier) Locked(account, reason, rule, by string, until time.Time) {
	n.Publish(Event{Kind: AccountLocked, Account: account, Reason: reason, Rule: rule, By: by, Until: until})
}

// Unlocked publishes AccountUnlocked; by is "expiry" or the admin.
func (n *Notifier) Unlocked(account, by string) {
	n.Publish(Event{Kind: AccountUnlocked, Account: account, By: by})
}

// FailMode reports the rate store's state on every call that knows it;
// an event is published only when the state changes (the first call with
// active false publishes nothing). mode is the configured fail mode and
// cause the store's error (used only when entering).
func (n *Notifier) FailMode(active bool, mode string, cause error) {
	if n == nil || n.failMode.Swap(active) == active {
		return
	}
	ev := Event{Kind: FailModeLeft, FailMode: mode}
	if active {
		ev.Kind = FailModeEntered
		if cause != nil {
			ev.Error = cause.Error()
		}
	}
	n.Publish(ev)
}

// Reopen reopens the audit log file (after logrotate moved it); call it on
// SIGHUP. Without an audit log it does nothing.
func (n *Notifier) Reopen() error {
	if n == nil || n.audit == nil {
		return nil
	}
	return n.audit.reopen()
}

// work delivers a sink's events until Close; then it delivers what is
// still queued and returns.
func (n *Notifier) work(ctx context.Context, s *sink) {
	defer n.wg.Done()
	for {
		select {
		case ev := <-s.queue:
			n.deliver(ctx, s, ev)
		case <-n.quit:
			for {
				select {
				case ev := <-s.queue:
					n.deliver(ctx, s, ev)
				default:
					return
				}
			}
		}
	}
}

func (n *Notifier) deliver(ctx context.Context, s *sink, ev Event) {
	if err := s.deliver(ctx, ev); err != nil {
		n.obs.NotifyFailed(s.kind)
		n.log.Warn("notification failed", zap.String("sink", s.kind),
			zap.String("event", string(ev.Kind)), zap.String("event_id", ev.ID),
			zap.String("account", ev.Account), zap.Error(err))
		return
	}
	n.obs.NotifySent(s.kind)
}

// Close stops accepting events, delivers what is queued until ctx ends,
// then aborts deliveries still in progress (counting them as failed and
// what is left in the queues as dropped) and closes the audit log.
func (n *Notifier) Close(ctx context.Context) error {
	if n == nil || n.closed.Swap(true) {
		return nil
	}
	close(n.quit)
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		n.cancel()
		<-done
		err = fmt.Errorf("closing notifier: %w", ctx.Err())
	}
	n.cancel()
	for _, s := range n.sinks {
		for len(s.queue) > 0 {
			<-s.queue
			n.obs.NotifyDropped(s.kind)
		}
	}
	if n.audit != nil {
		err = errors.Join(err, n.audit.close())
	}
	return err
}
