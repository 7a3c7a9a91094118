// Command abusescan checks stored mail offline with the same engine and
// config as the abusemilter daemon: an account's Sent folder, a queue dump,
// complaint samples, a mailbox exported from a compromised web application.
// It reads .eml files, mbox files (mboxo or mboxrd, gzip too), Maildir
// folders and directories of any of these, tells which messages the milter
// would have deferred or rejected and why, and can replay the rate limits
// over the messages in Date order.
//
// See docs/abusescan.md for the report formats.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

// Exit codes, decided in run and documented in the help text.
const (
	exitOK    = 0 // nothing at or above --fail-on
	exitFound = 1 // at least one message at or above --fail-on
	exitUsage = 2 // usage or config error
)

const usageText = `usage: abusescan [flags] INPUT...

Scans stored mail with abusemilter's rules and config and reports what the
milter would have done with each message. An INPUT is a message (.eml), an
mbox (mboxo or mboxrd), either gzip-compressed, a Maildir folder, a
directory (walked recursively), or - for standard input; what an input is
comes from its content, not its name.

Who sent the mail:
  (default)              the configured account whose send-as covers the
                         envelope sender (Return-Path, mbox From_ line) or
                         From; otherwise the engine decides, as for a login
                         equal to that address
  --account LOGIN        as if that login (or account name) sent everything
  --account-from-sender  as an account owning the From domain (made up on
                         the fly when the config has none): for other
                         people's mail, so identity rules do not fire on all

Flags:
`

const exitText = `
Exit status:
  0  no message at or above --fail-on
  1  at least one message at or above --fail-on
  2  usage or config error
`

func main() {
	opts, err := parseArgs(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(exitOK)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "abusescan: %v\n", err)
		os.Exit(exitUsage)
	}
	opts.Stdin = os.Stdin
	if os.Getenv("GOGC") == "" {
		// Live memory is small and bounded; collect less often.
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, opts, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// parseArgs turns command-line arguments into options. Help output and
// flag errors go to stderr.
func parseArgs(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("abusescan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.ConfigPath, "config", "", "abusemilter config `FILE` (default: built-in defaults)")
	fs.StringVar(&o.Account, "account", "", "scan as if `LOGIN` (a login or account name) sent every message")
	fs.BoolVar(&o.AccountFromSender, "account-from-sender", false, "scan each message as sent by an account owning its From domain")
	fs.BoolVar(&o.AsReceived, "as-received", false, "input is mail as a recipient got it: set aside trace added after it left the sender (above the own_mtas Received), envelope from From, To and Cc, as the corpus quality test does")
	fs.StringVar(&o.Now, "now", "", "evaluate time-based rules at `TIME` (RFC 3339) or at each message's newest Received time (\"received\"); default: the current time")
	fs.BoolVar(&o.DNS, "dns", false, "let the DNS rules query DNS (the config's resolver settings); off by default, the DNS rules then skip")
	fs.BoolVar(&o.ReplayRates, "replay-rates", false, "replay the config's rate limits and strikes over the messages in Date order")
	fs.StringVar(&o.Format, "format", "text", "report `FORMAT`: text, json (JSON lines) or csv")
	fs.StringVar(&o.FailOn, "fail-on", "reject", "exit 1 when a message gets this `VERDICT` or worse: reject, defer or never")
	fs.IntVar(&o.Jobs, "j", runtime.NumCPU(), "run `N` parallel workers (default: the number of CPUs)")
	fs.StringVar(&o.MboxVariant, "mbox-variant", "mboxo", "mbox quoting `VARIANT`: mboxo (\">From \" only) or mboxrd (\">*From \")")
	fs.BoolVar(&o.NoProgress, "no-progress", false, "never show the progress bar (it shows only when stderr is a terminal)")
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		printFlags(stderr, fs)
		fmt.Fprint(stderr, exitText)
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.Inputs = fs.Args()
	if len(o.Inputs) == 0 {
		fs.Usage()
		return o, errors.New("no input given (use - for standard input)")
	}
	return o, nil
}

// printFlags lists the flags as they are meant to be written: --long,
// and -j for the one-letter flag.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		line := "  " + dash + f.Name
		if arg != "" {
			line += " " + arg
		}
		if f.DefValue != "" && f.DefValue != "false" && f.Name != "j" {
			usage += fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintf(w, "%s\n      %s\n", line, usage)
	})
}
