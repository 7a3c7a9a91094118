// Command milterload drives a milter with Postfix-like load and reports
// throughput, latency per protocol stage and the verdict mix.
//
//	milterload --noop --count 20000
//	milterload --target inet:127.0.0.1:7357 --noop --duration 30s
//	milterload --target unix:/run/abusemilter/abusemilter.sock --corpus $ABUSEMILTER_CORPUS/spamassassin/ham --json
//
// Exit status: 0 when every message got a verdict, 1 when some failed
// (connection or protocol errors, counted in the report), 2 for bad flags
// or a message source or server that could not be set up. "milterload
// --help" says it all; "milterload completion bash|zsh|fish" writes a
// completion script.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/internal/bench/loadgen"
	"github.com/abusemilter/abusemilter/internal/bench/perftest"
	"github.com/abusemilter/abusemilter/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot(os.Stdout, os.Stderr)
	root.SetContext(ctx)
	os.Exit(cli.Execute(root, os.Args[1:]))
}

// options are the command-line flags.
type options struct {
	target      string
	noop        bool
	noopNetwork string
	json        bool

	concurrency int
	count       int64
	duration    time.Duration
	rate        float64
	perConn     int
	timeout     time.Duration
	dialTimeout time.Duration

	corpus      string
	corpusLimit int
	pool        int
	accounts    int
	forged      float64
	minRcpt     int
	maxRcpt     int
	bodySize    int
	seed        uint64

	serveNoOp     string
	writeConfig   string
	configRedis   string
	configMetrics string
	configProd    bool

	// corpusAccounts is --accounts when given with --corpus (0: each
	// corpus message's login is its From address).
	corpusAccounts int
}

const longHelp = `Drives a milter as Postfix would (CONNECT, HELO, then per message MAIL, RCPT,
headers, body, end of message and ABORT; several messages per milter
connection) and reports messages/s, latency per stage, verdicts and errors.
--noop measures an in-process milter that accepts everything, the ceiling;
with --target too, both run with the same load and the ratio is printed.

Durations take Go's syntax (200ms, 10m, 1h30m) and whole days (1d).

Exit status:
  0  every message got a verdict (or --serve-noop, --write-config done)
  1  some messages failed (connection or protocol errors, counted in the
     report), or the report could not be written
  2  bad flags or arguments, or a message source, target or server that
     could not be set up`

const examples = `  milterload --noop --count 20000
  milterload --target inet:127.0.0.1:7357 --noop --duration 30s
  milterload --target unix:/run/abusemilter/abusemilter.sock --corpus $ABUSEMILTER_CORPUS/spamassassin/ham --json
  milterload --serve-noop inet:127.0.0.1:7358
  milterload --write-config perf.yaml --target inet:127.0.0.1:7357 --accounts 3000`

// newRoot builds the command. Its RunE is the one place that decides the
// exit code: cli.Usagef and cli.Exit(cli.ExitUsage, ...) for bad flags and
// anything that could not be set up, cli.Exit(cli.ExitFailed, ...) when
// the report could not be written and cli.Silent(cli.ExitFailed) when some
// messages failed (the report says which).
func newRoot(stdout, stderr io.Writer) *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:     "milterload [--target inet:HOST:PORT | unix:/PATH] [--noop]",
		Short:   "Drive a milter with Postfix-like load and report throughput and latency",
		Long:    longHelp,
		Example: examples,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return cli.Usagef("unexpected argument %q (the milter address goes in --target)", args[0])
			}
			return nil
		},
		RunE: func(c *cobra.Command, _ []string) error {
			if c.Flags().Changed("accounts") {
				o.corpusAccounts = o.accounts
			}
			if err := o.validate(); err != nil {
				return cli.Exit(cli.ExitUsage, err)
			}
			ctx := c.Context()
			switch {
			case o.serveNoOp != "":
				return cli.Exit(cli.ExitUsage, serveNoOp(ctx, o.serveNoOp, stderr))
			case o.writeConfig != "":
				return cli.Exit(cli.ExitUsage, writeConfig(o))
			}
			summary, err := measure(ctx, o, stderr)
			if err != nil {
				return cli.Exit(cli.ExitUsage, err)
			}
			if o.json {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				err = enc.Encode(summary)
			} else {
				err = summary.WriteText(stdout)
			}
			if err != nil {
				return cli.Exit(cli.ExitFailed, fmt.Errorf("write report: %w", err))
			}
			if summary.Failed() > 0 {
				return cli.Silent(cli.ExitFailed)
			}
			return nil
		},
	}
	fs := root.Flags()
	fs.SortFlags = false
	fs.StringVar(&o.target, "target", "", "milter address: inet:HOST:PORT or unix:/PATH")
	fs.BoolVar(&o.noop, "noop", false, "measure an in-process no-op milter (before the target, if any)")
	cli.EnumVar(root, &o.noopNetwork, "noop-network", "tcp", "network of the no-op milter: TCP on 127.0.0.1 or a unix socket", "tcp", "unix")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	fs.IntVar(&o.concurrency, "concurrency", 32, "milter connections in parallel")
	fs.Int64Var(&o.count, "count", 0, "messages to send per run (default 10000 when no --duration)")
	cli.DurationVar(fs, &o.duration, "duration", 0, "run for this long (with --count: whichever ends first)")
	fs.Float64Var(&o.rate, "rate", 0, "target messages/s, paced open-loop (0: as fast as the milter answers)")
	fs.IntVar(&o.perConn, "messages-per-conn", 10, "messages per milter connection before it is closed")
	cli.DurationVar(fs, &o.timeout, "timeout", 10*time.Second, "read and write timeout per milter packet")
	cli.DurationVar(fs, &o.dialTimeout, "dial-timeout", 5*time.Second, "timeout to connect to the milter")
	fs.StringVar(&o.corpus, "corpus", "", "send the .eml files under this directory instead of generated messages")
	fs.IntVar(&o.corpusLimit, "corpus-limit", 0, "read at most this many corpus files (0: all)")
	fs.IntVar(&o.pool, "pool", 1000, "distinct generated messages (cycled)")
	fs.IntVar(&o.accounts, "accounts", 100, "distinct sending accounts (logins userN@customerM.example; with --corpus,\n"+
		"senderN@corpus-accounts.example sending the corpus messages in turn; not given: the From address)")
	fs.Float64Var(&o.forged, "forged", 0.05, "share of generated messages with a From domain the account does not own")
	fs.IntVar(&o.minRcpt, "min-rcpt", 1, "recipients per generated message, at least")
	fs.IntVar(&o.maxRcpt, "max-rcpt", 5, "recipients per message, at most")
	fs.IntVar(&o.bodySize, "body-size", 4000, "approximate body size of generated messages in bytes")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the generated messages")
	fs.StringVar(&o.serveNoOp, "serve-noop", "", "serve the no-op milter at this address (inet:HOST:PORT or unix:/PATH) until\n"+
		"interrupted, measuring nothing: a ceiling in a process of its own, as the daemon is")
	fs.StringVar(&o.writeConfig, "write-config", "", "write an abusemilter config to this file whose accounts own the generated mail\n"+
		"(--accounts/3 customers with two domains each, listening on --target; all rules, DNS off,\n"+
		"limits not reached) and exit")
	fs.StringVar(&o.configRedis, "config-redis", "", "with --write-config: Redis URL of the store (default: embedded store)")
	fs.StringVar(&o.configMetrics, "config-metrics", "", "with --write-config: metrics listen host:port (default: off)")
	fs.BoolVar(&o.configProd, "config-production-limits", false, "with --write-config: the limits a provider sets (account messages over\n"+
		"two windows, recipients, new recipients per day), none reached")
	must(root.MarkFlagDirname("corpus"))
	must(root.MarkFlagFilename("write-config", "yaml", "yml"))
	cli.Setup(root, stdout, stderr)
	return root
}

// must panics on a mistake in the flag set, which every test finds.
func must(err error) {
	if err != nil {
		panic(err)
	}
}

// validate checks the flags that depend on each other and fills in the
// default --count.
func (o *options) validate() error {
	if o.serveNoOp != "" {
		return nil
	}
	if o.writeConfig != "" {
		if o.target == "" {
			return errors.New("--write-config needs --target (the address the daemon is to listen on)")
		}
		if o.corpus == "" && o.accounts%loadgen.UsersPerCustomer != 0 {
			return fmt.Errorf("--accounts %d: must be a multiple of %d with --write-config", o.accounts, loadgen.UsersPerCustomer)
		}
		return nil
	}
	if o.target == "" && !o.noop {
		return errors.New("nothing to measure: give --target, --noop or both")
	}
	if o.count == 0 && o.duration == 0 {
		o.count = 10000
	}
	return nil
}

// measure builds the message source and runs the no-op ceiling and the
// target, in that order, with the same load.
func measure(ctx context.Context, o *options, stderr io.Writer) (*loadgen.Summary, error) {
	var target loadgen.Target
	if o.target != "" {
		var err error
		if target, err = loadgen.ParseTarget(o.target); err != nil {
			return nil, err
		}
	}
	source, err := buildSource(o)
	if err != nil {
		return nil, err
	}
	load := loadgen.Options{
		Source:          source,
		Concurrency:     o.concurrency,
		Count:           o.count,
		Duration:        o.duration,
		Rate:            o.rate,
		MessagesPerConn: o.perConn,
		Timeout:         o.timeout,
		DialTimeout:     o.dialTimeout,
	}
	var noopReport, targetReport *loadgen.Report
	if o.noop {
		srv, err := loadgen.StartNoOp(o.noopNetwork)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(stderr, "milterload: measuring the no-op milter at %s\n", srv.Target)
		opts := load
		opts.Target = srv.Target
		noopReport, err = loadgen.Run(ctx, opts)
		if closeErr := srv.Close(); closeErr != nil {
			fmt.Fprintf(stderr, "milterload: stop the no-op milter: %v\n", closeErr)
		}
		if err != nil {
			return nil, err
		}
		noopReport.Label = "no-op"
	}
	if o.target != "" && ctx.Err() == nil {
		fmt.Fprintf(stderr, "milterload: measuring %s\n", target)
		opts := load
		opts.Target = target
		if targetReport, err = loadgen.Run(ctx, opts); err != nil {
			return nil, err
		}
	}
	return loadgen.NewSummary(noopReport, targetReport), nil
}

func buildSource(o *options) (loadgen.Source, error) {
	var pool loadgen.Pool
	var err error
	if o.corpus != "" {
		pool, err = loadgen.LoadCorpus(o.corpus, loadgen.CorpusOptions{Limit: o.corpusLimit, MaxRcpt: o.maxRcpt, Accounts: o.corpusAccounts})
	} else {
		pool, err = loadgen.Generate(loadgen.GenerateOptions{
			Count: o.pool, Accounts: o.accounts, ForgedShare: o.forged,
			MinRcpt: o.minRcpt, MaxRcpt: o.maxRcpt, BodySize: o.bodySize, Seed: o.seed,
		})
	}
	if err != nil {
		return nil, err
	}
	if err := pool.Validate(); err != nil {
		return nil, err
	}
	return pool, nil
}

// writeConfig writes an abusemilter config whose accounts own the mail that
// the same --accounts generate.
func writeConfig(o *options) error {
	co := perftest.ConfigOptions{
		Customers:        o.accounts / loadgen.UsersPerCustomer,
		Listen:           o.target,
		MetricsListen:    o.configMetrics,
		RedisURL:         o.configRedis,
		ProductionLimits: o.configProd,
	}
	if o.corpus != "" {
		pool, err := buildSource(o)
		if err != nil {
			return err
		}
		co.Corpus = pool.(loadgen.Pool)
	}
	data, err := perftest.Config(co)
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.writeConfig, data, 0o644); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	return nil
}

// serveNoOp serves the no-op milter at addr until ctx ends.
func serveNoOp(ctx context.Context, addr string, stderr io.Writer) error {
	target, err := loadgen.ParseTarget(addr)
	if err != nil {
		return err
	}
	ln, err := net.Listen(target.Network, target.Address)
	if err != nil {
		return fmt.Errorf("serve the no-op milter: %w", err)
	}
	served := make(chan error, 1)
	go func() { served <- loadgen.NewNoOpServer().Serve(ln) }()
	fmt.Fprintf(stderr, "milterload: serving the no-op milter at %s\n", target)
	select {
	case <-ctx.Done():
		ln.Close()
		<-served
		return nil
	case err := <-served:
		return fmt.Errorf("serve the no-op milter: %w", err)
	}
}
