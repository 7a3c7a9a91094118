// Package scan is abusescan's engine: it owns the offline scan of stored
// mail with the milter's rules and config. It walks the inputs (.eml,
// mbox, gzip, Maildir, directories, standard input) through
// internal/mailbox, judges every message on a pool of workers with the
// engine the daemon would build (internal/daemon's assembly), replays the
// config's rate limits and strikes in Date order (--replay-rates), and
// writes the report in text, JSON lines or CSV. It reports progress through
// a callback and decides no exit status: the command owns the flags, the
// progress bar and the exit codes.
package scan

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/abusemilter/abusemilter/identity"
	"github.com/abusemilter/abusemilter/internal/clamd"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/daemon"
	"github.com/abusemilter/abusemilter/internal/mailbox"
	"github.com/abusemilter/abusemilter/ratelimit"
	"github.com/abusemilter/abusemilter/scoring"
)

// The values the enumerated options take; the command offers them for
// completion.
var (
	Formats      = []string{"text", "json", "csv"}
	FailOns      = []string{"reject", "defer", "never"}
	MboxVariants = []string{string(mailbox.MboxO), string(mailbox.MboxRD)}
)

// NowReceived is the Options.Now value that judges each message at its
// newest Received time.
const NowReceived = "received"

// Options is everything a scan needs besides the config.
type Options struct {
	Account           string // scan as if this login (or account name) sent every message
	AccountFromSender bool   // scan each message as sent by an account owning its From domain
	AsReceived        bool   // inputs are mail as a recipient got it
	Now               string // "", an RFC 3339 time, or NowReceived
	ReplayRates       bool   // replay the config's rate limits and strikes in Date order
	DNS               bool   // let the DNS rules query the resolver (off: they skip)
	Format            string // text, json, csv ("": text)
	FailOn            string // reject, defer, never ("": reject)
	Jobs              int    // parallel workers (less than 1: 1)
	MboxVariant       string // mboxo, mboxrd ("": mboxo)
	// Clamd, when set, is a clamd address (unix:/path or tcp:HOST:PORT)
	// every message is also streamed to, as the milter does with
	// antivirus.clamd (the config's antivirus timeout and max_size apply).
	Clamd  string
	Inputs []string
	Stdin  io.Reader // the input "-"

	// Progress, when set, is called once before the inputs are read, with
	// Total, then as bytes are read and messages scanned. Calls never
	// overlap; it should return quickly.
	Progress func(Progress)
	// Warn, when set, receives each input that could not be read and each
	// warning about a message (truncated), in input order.
	Warn func(*mailbox.Problem)

	// rules, when set, replaces the built-in rule set (tests only).
	rules []scoring.Rule
}

// Progress is how far a scan is.
type Progress struct {
	Read     int64 // input bytes consumed (compressed bytes for gzip)
	Total    int64 // the inputs' total size; -1 when unknown (standard input)
	Messages int64 // messages scanned
}

// Result counts what a scan found.
type Result struct {
	Messages, Accepted, Deferred, Rejected int
	Held                                   int // held for review
	Unreadable                             int // inputs (or mbox messages) skipped
	// Failing counts the messages whose verdict is Options.FailOn or worse
	// (0 with "never").
	Failing int
}

// clockMode says which time rules see.
type clockMode int

const (
	clockWall     clockMode = iota // the current time
	clockFixed                     // --now TIME
	clockReceived                  // --now received
)

// Scan is one validated scan: the config, the directory and the settings
// derived from the options.
type Scan struct {
	opts     Options
	cfg      *config.Config
	dir      *identity.Directory
	accounts []*identity.Account // configured accounts, by name
	fixed    *identity.Account   // --account
	fixedHow identity.How
	clock    clockMode
	fixedNow time.Time
	failOn   scoring.Action // 0: never
	bodyCap  int64
	variant  mailbox.Variant
	resolver scoring.Resolver // nil without --dns
	// classifier is rules.classifier's model, loaded once.
	classifier scoring.ClassifierSettings
	// engine runs the rules for every worker, without a limiter (rates are
	// replayed apart, in Date order).
	engine *scoring.Engine
	// malware is what every message streams through as it is read: the
	// attachment inspection and, with --clamd, clamd (av).
	malware scoring.MalwareStreamOptions
	av      *clamd.Client
}

// New validates the options and builds, through internal/daemon's
// assembly, the directory and engine the daemon would run with cfg.
// cfg is not modified.
func New(cfg *config.Config, opts Options) (*Scan, error) {
	s := &Scan{opts: opts}
	if len(opts.Inputs) == 0 {
		return nil, errors.New("no input given (use - for standard input)")
	}
	for _, in := range opts.Inputs {
		if in == "-" {
			continue
		}
		if _, err := os.Stat(in); err != nil {
			return nil, fmt.Errorf("input %q: %w", in, err)
		}
	}
	if opts.Account != "" && opts.AccountFromSender {
		return nil, errors.New("--account and --account-from-sender exclude each other")
	}
	switch opts.FailOn {
	case "reject", "":
		s.failOn = scoring.Reject
	case "defer":
		s.failOn = scoring.Defer
	case "never":
	default:
		return nil, fmt.Errorf("--fail-on %q: want reject, defer or never", opts.FailOn)
	}
	switch opts.Format {
	case "text", "json", "csv", "":
	default:
		return nil, fmt.Errorf("--format %q: want text, json or csv", opts.Format)
	}
	if s.opts.Jobs < 1 {
		s.opts.Jobs = 1
	}
	switch {
	case opts.Now == "":
		s.clock = clockWall
	case opts.Now == NowReceived:
		s.clock = clockReceived
	default:
		t, err := time.Parse(time.RFC3339, opts.Now)
		if err != nil {
			return nil, fmt.Errorf("--now %q: want an RFC 3339 time such as 2026-11-27T10:00:00Z, or \"received\"", opts.Now)
		}
		s.clock, s.fixedNow = clockFixed, t
	}
	variant := opts.MboxVariant
	if variant == "" {
		variant = string(mailbox.MboxO)
	}
	v, err := mailbox.ParseVariant(variant)
	if err != nil {
		return nil, fmt.Errorf("--mbox-variant: %w", err)
	}
	s.variant = v

	c := *cfg // --dns changes the copy only
	s.cfg = &c
	if s.dir, err = daemon.Directory(s.cfg); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if s.classifier, err = daemon.Classifier(s.cfg); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	s.accounts = s.dir.Accounts()
	s.bodyCap = s.cfg.Message.BodySample.Bytes
	if opts.DNS {
		// Asked for on the command line: whatever dns.enabled says.
		s.cfg.DNS.Enabled = true
		s.resolver = daemon.Resolver(s.cfg)
	}
	s.engine = s.newEngine(nil)
	if err := s.setupMalware(); err != nil {
		return nil, err
	}
	if opts.Account != "" {
		if s.fixed, s.fixedHow = s.resolveAccount(opts.Account); s.fixed == nil {
			return nil, fmt.Errorf("--account %q: no such login or account in the config", opts.Account)
		}
	}
	return s, nil
}

// Run scans the inputs and writes the report to stdout (the summary of
// --format csv to stderr, so that stdout stays one table). An error is a
// report that could not be written or an interrupted scan (ctx done).
func (s *Scan) Run(ctx context.Context, stdout, stderr io.Writer) (Result, error) {
	if s.av != nil {
		defer s.av.Close()
	}
	out := stdout
	var buf *bufio.Writer
	if s.opts.Format == "json" || s.opts.Format == "csv" {
		buf = bufio.NewWriterSize(stdout, 64<<10)
		out = buf
	}
	rep := newReporter(s.opts.Format, out, stderr)
	sum := newSummary()
	err := s.execute(ctx, s.newProgress(), func(r *record) error {
		sum.add(r)
		return rep.message(r)
	}, sum)
	if err == nil {
		err = rep.summary(sum)
	}
	if err == nil && buf != nil {
		err = buf.Flush()
	}
	res := Result{Messages: sum.Messages, Accepted: sum.Accepted, Deferred: sum.Deferred, Rejected: sum.Rejected, Held: sum.Held, Unreadable: sum.unreadable()}
	if s.failOn != 0 {
		res.Failing = sum.atOrAbove(s.failOn)
	}
	if err != nil {
		return res, err
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("interrupted after %d messages: %w", sum.Messages, context.Cause(ctx))
	}
	return res, nil
}

// resolveAccount finds --account as a login (as the milter would) or as an
// account name.
func (s *Scan) resolveAccount(login string) (*identity.Account, identity.How) {
	if a, how := s.dir.Resolve(login, noAddr); a != nil {
		return a, how
	}
	if a := s.dir.Account(login); a != nil {
		return a, identity.ByLogin
	}
	if a := s.dir.Account(strings.ToLower(login)); a != nil {
		return a, identity.ByLogin
	}
	return nil, ""
}

// newEngine builds the engine the daemon would run with this config (the
// directory's domains among the customer domains), over limiter (nil: no
// rate limits) and the --dns resolver.
func (s *Scan) newEngine(limiter ratelimit.Limiter) *scoring.Engine {
	if s.opts.rules == nil {
		return daemon.Engine(s.cfg, s.dir, limiter, s.resolver, daemon.WithClassifier(s.classifier))
	}
	opts := daemon.EngineOptions(s.cfg)
	opts.Rules, opts.Resolver, opts.Settings.Classifier = s.opts.rules, s.resolver, s.classifier
	return scoring.NewEngine(s.dir, limiter, opts)
}

// progress serializes the calls of Options.Progress; a nil *progress does
// nothing.
type progress struct {
	mu sync.Mutex
	p  Progress
	f  func(Progress)
}

// newProgress reports the inputs' total size and returns the tracker, nil
// without Options.Progress.
func (s *Scan) newProgress() *progress {
	if s.opts.Progress == nil {
		return nil
	}
	p := &progress{f: s.opts.Progress, p: Progress{Total: inputSize(s.opts.Inputs)}}
	p.f(p.p)
	return p
}

// read is mailbox.Options.OnRead.
func (p *progress) read(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.Read += n
	p.f(p.p)
}

// message counts one scanned message.
func (p *progress) message() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.Messages++
	p.f(p.p)
}

// inputSize sums the sizes of the input files; -1 when unknown (stdin).
func inputSize(inputs []string) int64 {
	var total int64
	for _, in := range inputs {
		if in == "-" {
			return -1
		}
		_ = filepath.WalkDir(in, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					total += fi.Size()
				}
			}
			return nil
		})
	}
	return total
}
