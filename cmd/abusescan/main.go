// Command abusescan checks stored mail offline with the same engine and
// config as the abusemilter daemon: an account's Sent folder, a queue dump,
// complaint samples, a mailbox exported from a compromised web application.
// It reads .eml files, mbox files (mboxo or mboxrd, gzip too), Maildir
// folders and directories of any of these, tells which messages the milter
// would have deferred or rejected and why, and can replay the rate limits
// over the messages in Date order.
//
// The scan itself is internal/scan; this command parses the flags, loads
// the config, shows the progress bar and decides the exit status.
// See docs/abusescan.md for the report formats.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/mailbox"
	"github.com/abusemilter/abusemilter/internal/scan"
)

// Exit codes, decided in scanInputs only and documented in longHelp.
const (
	exitOK    = cli.ExitOK     // nothing at or above --fail-on
	exitFound = cli.ExitFailed // at least one message at or above --fail-on
	exitUsage = cli.ExitUsage  // usage, config or scan error
)

const longHelp = `Scans stored mail with abusemilter's rules and config and reports what the
milter would have done with each message. An INPUT is a message (.eml), an
mbox (mboxo or mboxrd), either gzip-compressed, a Maildir folder, a
directory (walked recursively), or - for standard input; what an input is
comes from its content, not its name. Flags may come before or after the
inputs; after --, every argument is an input.

Who sent the mail:
  (default)              the configured account whose send-as covers the
                         envelope sender (Return-Path, mbox From_ line) or
                         From; otherwise the engine decides, as for a login
                         equal to that address
  --account LOGIN        as if that login (or account name) sent everything
  --account-from-sender  as an account owning the From domain (made up on
                         the fly when the config has none): for other
                         people's mail, so identity rules do not fire on all

Asking the running milter:
  --milter ADDR          send each message through the running milter at
                         ADDR (its trial.listen) as Postfix would, and print
                         its reply, the headers it would add and the
                         findings; a trial charges no counter and no strike
                         (--charge: send as real mail). --login, --client,
                         --helo, --mail-from, --rcpt set the envelope, which
                         otherwise comes from the message

Training the content classifier: abusescan learn --spam INPUT --ham INPUT
-o MODEL (see abusescan learn --help); to scan a file named learn, write
./learn.

Exit status:
  0  no message at or above --fail-on
  1  at least one message at or above --fail-on
  2  usage or config error, an unreadable config, a report that could not
     be written, an interrupted scan, or (--milter) a milter that cannot be
     reached or refuses the session`

// invocation is one parsed command line.
type invocation struct {
	configPath string
	noProgress bool
	opts       scan.Options
	// milter is set by --milter: each message goes through the running
	// milter instead of the offline engine.
	milter   scan.MilterOptions
	mailFrom string
	stdin    io.Reader
	stdout   io.Writer
	stderr   io.Writer
}

// scanSoftMemoryLimit is abusescan's default soft memory limit (GOMEMLIMIT
// overrides it): the heap a scan of any size needs is well below it.
const scanSoftMemoryLimit = 40 << 20

func main() {
	if os.Getenv("GOGC") == "" {
		// Live memory is small and bounded; collect less often.
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// ...but not so rarely that the heap grows with a busy machine:
		// when other processes starve the collector, allocation runs
		// ahead of it and GOGC=400 alone let a 200 MB replay peak at
		// 70-140 MB of RSS instead of 45. A soft limit makes the
		// collector run earlier as the heap nears it (never a failure:
		// a scan whose live data needs more simply uses more).
		debug.SetMemoryLimit(scanSoftMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	root := command(os.Stdin, os.Stdout, os.Stderr, scanInputs)
	root.SetContext(ctx)
	code := cli.Execute(root, os.Args[1:])
	stop()
	os.Exit(code)
}

// command builds abusescan's command tree; run does the work of the root
// command with the parsed invocation (tests replace it).
func command(stdin io.Reader, stdout, stderr io.Writer, run func(context.Context, *invocation) error) *cobra.Command {
	inv := &invocation{stdin: stdin, stdout: stdout, stderr: stderr}
	o := &inv.opts
	root := &cobra.Command{
		Use:   "abusescan [flags] INPUT...",
		Short: "Scan stored mail with abusemilter's rules and config",
		Long:  longHelp,
		Example: `  abusescan --config /etc/abusemilter/abusemilter.yaml --account alice ~alice/Maildir/.Sent
  abusescan complaints/ --account-from-sender --as-received --now received --format json
  zcat queue-dump.mbox.gz | abusescan --account shop-webapp -
  abusescan --milter unix:/run/abusemilter/trial.sock --login alice complaint.eml`,
		// Inputs are files; subcommands (help, completion) still resolve.
		Args: cobra.ArbitraryArgs,
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
			return nil, cobra.ShellCompDirectiveDefault // file names
		},
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cli.Usagef("no input given (use - for standard input)")
			}
			o.Inputs = args
			if err := milterFlags(c, inv); err != nil {
				return err
			}
			return run(c.Context(), inv)
		},
	}
	f := root.Flags()
	f.SortFlags = false
	f.StringVar(&inv.configPath, "config", "", "abusemilter config `FILE` (default: $ABUSEMILTER_CONFIG, else "+config.DefaultPath+" when it exists, else built-in defaults)")
	f.StringVar(&o.Account, "account", "", "scan as if `LOGIN` (a login or account name) sent every message")
	f.BoolVar(&o.AccountFromSender, "account-from-sender", false, "scan each message as sent by an account owning its From domain")
	f.BoolVar(&o.AsReceived, "as-received", false, "input is mail as a recipient got it: set aside trace added after it left the sender (above the own_mtas Received), envelope from From, To and Cc, as the corpus quality test does")
	f.StringVar(&o.Now, "now", "", "evaluate time-based rules at `TIME` (RFC 3339) or at each message's newest Received time (\"received\"); default: the current time")
	f.BoolVar(&o.DNS, "dns", false, "let the DNS rules query DNS (the config's resolver settings); off by default, the DNS rules then skip")
	f.StringVar(&o.Clamd, "clamd", "", "also stream every message to clamd at `ADDRESS` (unix:/run/clamav/clamd.ctl or tcp:HOST:PORT), as the milter does with antivirus.clamd")
	f.BoolVar(&o.ReplayRates, "replay-rates", false, "replay the config's rate limits and strikes over the messages in Date order")
	cli.EnumVar(root, &o.Format, "format", "text", "report `FORMAT`; json is JSON lines", scan.Formats...)
	cli.EnumVar(root, &o.FailOn, "fail-on", "reject", "exit 1 when a message gets this `VERDICT` or worse", scan.FailOns...)
	f.IntVarP(&o.Jobs, "jobs", "j", 0, "run `N` parallel workers (default: the number of CPUs)")
	cli.EnumVar(root, &o.MboxVariant, "mbox-variant", string(mailbox.MboxO), "mbox quoting `VARIANT`: mboxo unquotes \">From \" only, mboxrd \">*From \"", scan.MboxVariants...)
	f.BoolVar(&inv.noProgress, "no-progress", false, "never show the progress bar (it shows only when stderr is a terminal)")
	m := &inv.milter
	f.StringVar(&m.Addr, "milter", "", "send each message through the running milter at `ADDR` (inet:HOST:PORT or unix:PATH, the daemon's trial.listen) and print its reply")
	f.StringVar(&m.Login, "login", "", "--milter: SASL `LOGIN` of the submission (default: the envelope sender)")
	f.StringVar(&m.Client, "client", "", "--milter: client IP `ADDRESS` (default: unknown)")
	f.StringVar(&m.Helo, "helo", "", "--milter: HELO `NAME` (default: this host's name)")
	f.StringVar(&inv.mailFrom, "mail-from", "", "--milter: envelope `SENDER` (default: Return-Path, else From); \"\" is the null sender")
	f.StringArrayVar(&m.Rcpts, "rcpt", nil, "--milter: envelope `RECIPIENT`, repeatable (default: To, Cc and Bcc)")
	f.BoolVar(&m.Charge, "charge", false, "--milter: send as real mail, without the trial macro: the account's counters and strikes move")
	mustDo(root.MarkFlagFilename("config", "yaml", "yml"))
	mustDo(root.RegisterFlagCompletionFunc("now", cobra.FixedCompletions([]cobra.Completion{scan.NowReceived}, cobra.ShellCompDirectiveNoFileComp)))
	mustDo(root.RegisterFlagCompletionFunc("account", cobra.NoFileCompletions))
	root.AddCommand(newLearnCommand(stdout, stderr))
	cli.Setup(root, stdout, stderr)
	return root
}

// milterFlags checks the flags of --milter (and that its own flags come
// only with it) and completes inv.milter.
func milterFlags(c *cobra.Command, inv *invocation) error {
	f := c.Flags()
	own := []string{"login", "client", "helo", "mail-from", "rcpt", "charge"}
	if inv.milter.Addr == "" {
		for _, name := range own {
			if f.Changed(name) {
				return cli.Usagef("--%s goes with --milter only", name)
			}
		}
		return nil
	}
	// The running milter decides with its own config, clock and resolver.
	for _, name := range []string{"config", "account", "account-from-sender", "as-received", "now", "dns", "replay-rates", "jobs"} {
		if f.Changed(name) {
			return cli.Usagef("--%s does not go with --milter: the running milter decides with its own config", name)
		}
	}
	if inv.opts.Format == "csv" {
		return cli.Usagef("--format csv does not go with --milter (text or json)")
	}
	if f.Changed("mail-from") {
		from := strings.Trim(inv.mailFrom, "<>")
		inv.milter.MailFrom = &from
	}
	m := &inv.milter
	m.Format, m.FailOn, m.MboxVariant, m.Inputs = inv.opts.Format, inv.opts.FailOn, inv.opts.MboxVariant, inv.opts.Inputs
	return nil
}

// scanInputs runs the scan of an invocation; it is the one place that
// decides abusescan's exit status.
func scanInputs(ctx context.Context, inv *invocation) error {
	if inv.milter.Addr != "" {
		return tryInputs(ctx, inv)
	}
	src := config.Resolve(inv.configPath, lookup())
	cfg, err := src.Load()
	if err != nil {
		return cli.Exit(exitUsage, err)
	}
	// Which config the verdicts come from, before any report line.
	fmt.Fprintf(inv.stderr, "abusescan: config: %s\n", src)
	o := inv.opts
	o.Stdin = inv.stdin
	if o.Jobs == 0 {
		o.Jobs = runtime.NumCPU()
	}
	o.Warn = func(p *mailbox.Problem) { fmt.Fprintf(inv.stderr, "abusescan: warning: %v\n", p) }
	bar := newProgressBar(inv.stderr, inv.noProgress)
	if bar != nil {
		o.Progress = bar.update
	}
	s, err := scan.New(cfg, o)
	if err != nil {
		return cli.Exit(exitUsage, err)
	}
	res, err := s.Run(ctx, inv.stdout, inv.stderr)
	bar.finish()
	switch {
	case err != nil:
		return cli.Exit(exitUsage, err)
	case res.Failing > 0:
		return cli.Silent(exitFound)
	}
	return nil
}

// lookup finds $ABUSEMILTER_CONFIG and the default config path; tests
// replace it so that the host's files do not matter.
var lookup = config.SystemLookup

// mustDo panics on a programming error in the command tree.
func mustDo(err error) {
	if err != nil {
		panic(err)
	}
}

// tryInputs sends the inputs through the running milter (--milter); like
// scanInputs it decides the exit status: 1 for a message at or above
// --fail-on, 2 when the milter cannot be reached or refuses the session.
func tryInputs(ctx context.Context, inv *invocation) error {
	o := inv.milter
	o.Stdin = inv.stdin
	o.Warn = func(p *mailbox.Problem) { fmt.Fprintf(inv.stderr, "abusescan: warning: %v\n", p) }
	res, err := scan.Milter(ctx, o, inv.stdout, inv.stderr)
	switch {
	case err != nil:
		return cli.Exit(exitUsage, err)
	case res.Failing > 0:
		return cli.Silent(exitFound)
	}
	return nil
}
