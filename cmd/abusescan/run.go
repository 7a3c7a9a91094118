package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/identity"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/daemon"
	"github.com/abusemilter/abusemilter/internal/mailbox"
	"github.com/abusemilter/abusemilter/ratelimit"
	"github.com/abusemilter/abusemilter/scoring"
)

// options is everything a scan needs; parseArgs fills it from flags and
// tests fill it directly.
type options struct {
	ConfigPath        string
	Account           string
	AccountFromSender bool
	AsReceived        bool
	Now               string // "", an RFC 3339 time, or "received"
	ReplayRates       bool
	DNS               bool   // let the DNS rules query the resolver (off: they skip)
	Format            string // text, json, csv
	FailOn            string // reject, defer, never
	Jobs              int
	MboxVariant       string
	NoProgress        bool
	Inputs            []string
	Stdin             io.Reader
	// rules, when set, replaces the built-in rule set (tests only).
	rules []scoring.Rule
}

// clockMode says which time rules see.
type clockMode int

const (
	clockWall     clockMode = iota // the current time
	clockFixed                     // --now TIME
	clockReceived                  // --now received
)

// scan is one validated scan: the config, the directory and the settings
// derived from the options.
type scan struct {
	opts     options
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
	// engine runs the rules for every worker, without a limiter (rates are
	// replayed apart, in Date order).
	engine *scoring.Engine
}

// run scans the inputs and writes the report; it returns the exit code.
func run(ctx context.Context, opts options, stdout, stderr io.Writer) int {
	s, err := newScan(opts)
	if err != nil {
		fmt.Fprintf(stderr, "abusescan: %v\n", err)
		return exitUsage
	}
	out := stdout
	var buf *bufio.Writer
	if opts.Format == "json" || opts.Format == "csv" {
		buf = bufio.NewWriterSize(stdout, 64<<10)
		out = buf
	}
	rep, err := newReporter(opts.Format, out, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "abusescan: %v\n", err)
		return exitUsage
	}
	sum := newSummary()
	prog := startProgress(s.opts, stderr)
	err = s.execute(ctx, stderr, prog, func(r *record) error {
		sum.add(r)
		return rep.message(r)
	}, sum)
	prog.finish()
	if err == nil {
		err = rep.summary(sum)
	}
	if err == nil && buf != nil {
		err = buf.Flush()
	}
	if err != nil {
		fmt.Fprintf(stderr, "abusescan: %v\n", err)
		return exitUsage
	}
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "abusescan: interrupted after %d messages\n", sum.Messages)
		return exitUsage
	}
	if s.failOn != 0 && sum.atOrAbove(s.failOn) > 0 {
		return exitFound
	}
	return exitOK
}

// newScan validates the options and loads the config.
func newScan(opts options) (*scan, error) {
	s := &scan{opts: opts}
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
	case opts.Now == "received":
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

	s.cfg = config.Default()
	if opts.ConfigPath != "" {
		if s.cfg, err = config.Load(opts.ConfigPath); err != nil {
			return nil, err
		}
	}
	if s.dir, err = daemon.Directory(s.cfg); err != nil {
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
	if opts.Account != "" {
		if s.fixed, s.fixedHow = s.resolveAccount(opts.Account); s.fixed == nil {
			return nil, fmt.Errorf("--account %q: no such login or account in the config", opts.Account)
		}
	}
	return s, nil
}

// resolveAccount finds --account as a login (as the milter would) or as an
// account name.
func (s *scan) resolveAccount(login string) (*identity.Account, identity.How) {
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
func (s *scan) newEngine(limiter ratelimit.Limiter) *scoring.Engine {
	if s.opts.rules == nil {
		return daemon.Engine(s.cfg, s.dir, limiter, s.resolver)
	}
	opts := daemon.EngineOptions(s.cfg)
	opts.Rules, opts.Resolver = s.opts.rules, s.resolver
	return scoring.NewEngine(s.dir, limiter, opts)
}
