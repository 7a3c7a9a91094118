package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options is the load shape of one run.
type Options struct {
	Target          Target
	Source          Source
	Concurrency     int           // milter connections in parallel; default 32
	Count           int64         // messages to send; 0 = until Duration ends
	Duration        time.Duration // stop taking new messages after this; 0 = until Count is reached
	Rate            float64       // target messages/s, paced open-loop; 0 = as fast as the milter answers
	MessagesPerConn int           // transactions per milter connection before QUIT; default 10
	Timeout         time.Duration // per read and per write on the milter connection; default 10s
	DialTimeout     time.Duration // default 5s
	Now             func() time.Time
}

// Stages of a milter conversation, in the order they happen. "open" is the
// dial and option negotiation of a new milter connection; "message" is the
// whole of one message, from the moment a worker starts it (including
// opening a connection when it needs one) until the end-of-message reply.
const (
	StageOpen    = "open"
	StageConnect = "connect"
	StageHelo    = "helo"
	StageMail    = "mail"
	StageRcpt    = "rcpt"
	StageHeader  = "header"
	StageEOH     = "eoh"
	StageBody    = "body"
	StageEnd     = "end"
	StageMessage = "message"
)

// Stages lists the stages in report order.
var Stages = []string{StageOpen, StageConnect, StageHelo, StageMail, StageRcpt, StageHeader, StageEOH, StageBody, StageEnd, StageMessage}

// Run drives the target with the load described by opts until Count
// messages have been sent or Duration has passed (or ctx ends), and reports
// what happened. Failures to talk to the milter are counted in the report,
// not returned: Run returns an error only for invalid options.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if opts.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}
	rec := newRecorder()
	r := &runner{opts: opts, rec: rec}
	var tokens <-chan struct{}
	var pacer *pacer
	if opts.Rate > 0 {
		pacer = newPacer(opts.Rate, opts.Count, opts.Concurrency)
		tokens = pacer.tokens
	}
	start := opts.Now()
	cpuStart := processCPU()
	var wg sync.WaitGroup
	if pacer != nil {
		wg.Go(func() { pacer.run(ctx) })
	}
	for range opts.Concurrency {
		wg.Go(func() { r.work(ctx, tokens) })
	}
	wg.Wait()
	elapsed := opts.Now().Sub(start)
	rep := rec.report(opts, start, elapsed)
	rep.ProcessCPUSeconds = (processCPU() - cpuStart).Seconds()
	if pacer != nil {
		rep.RateMissed = pacer.missed.Load()
	}
	rep.finishRate()
	return rep, nil
}

func (o *Options) setDefaults() error {
	if o.Concurrency == 0 {
		o.Concurrency = 32
	}
	if o.MessagesPerConn == 0 {
		o.MessagesPerConn = 10
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	var errs []error
	if o.Target.Network != "tcp" && o.Target.Network != "unix" {
		errs = append(errs, fmt.Errorf("target network %q: want tcp or unix", o.Target.Network))
	}
	if o.Source == nil {
		errs = append(errs, errors.New("no message source"))
	}
	if o.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("concurrency %d: must be positive", o.Concurrency))
	}
	if o.Count < 0 || o.Duration < 0 || o.Rate < 0 {
		errs = append(errs, fmt.Errorf("count %d, duration %s, rate %v: none may be negative", o.Count, o.Duration, o.Rate))
	}
	if o.Count == 0 && o.Duration == 0 {
		errs = append(errs, errors.New("neither a message count nor a duration: the run would not end"))
	}
	if o.MessagesPerConn < 0 {
		errs = append(errs, fmt.Errorf("messages per connection %d: must be positive", o.MessagesPerConn))
	}
	return errors.Join(errs...)
}

type runner struct {
	opts    Options
	rec     *recorder
	claimed atomic.Int64
}

// next claims the index of the next message to send, or returns false when
// the run is over. With a rate, a worker first waits for the pacer's token.
func (r *runner) next(ctx context.Context, tokens <-chan struct{}) (int64, bool) {
	if ctx.Err() != nil {
		return 0, false
	}
	if tokens != nil {
		select {
		case _, ok := <-tokens:
			if !ok {
				return 0, false
			}
		case <-ctx.Done():
			return 0, false
		}
	}
	n := r.claimed.Add(1) - 1
	if r.opts.Count > 0 && n >= r.opts.Count {
		return 0, false
	}
	return n, true
}

func (r *runner) work(ctx context.Context, tokens <-chan struct{}) {
	w := newWorker(&r.opts, r.rec)
	defer w.closeSession()
	for {
		n, ok := r.next(ctx, tokens)
		if !ok {
			return
		}
		w.send(n, r.opts.Source.Message(n))
		if d := w.backoff(); d > 0 {
			// The milter cannot be reached: do not spin on dial errors.
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// pacer hands out one token per 1/rate seconds, open-loop: a slot that finds
// no worker free (the token buffer full) is counted as missed, not queued. In
// count mode it goes on until Count tokens have been taken.
type pacer struct {
	rate   float64
	count  int64
	tokens chan struct{}
	missed atomic.Int64
}

func newPacer(rate float64, count int64, concurrency int) *pacer {
	return &pacer{rate: rate, count: count, tokens: make(chan struct{}, concurrency)}
}

func (p *pacer) run(ctx context.Context) {
	defer close(p.tokens)
	interval := max(time.Duration(float64(time.Second)/p.rate), time.Millisecond)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	start := time.Now()
	var slots, delivered int64
	for {
		due := int64(time.Since(start).Seconds()*p.rate) + 1
		for ; slots < due && (p.count == 0 || delivered < p.count); slots++ {
			select {
			case p.tokens <- struct{}{}:
				delivered++
			default:
				p.missed.Add(1)
			}
		}
		if p.count > 0 && delivered >= p.count {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// processCPU returns the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
