package main

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/internal/config"
)

// Exit codes, decided in commandError only and listed in the root
// command's help (exitCodesHelp).
const (
	exitOK     = cli.ExitOK
	exitFailed = cli.ExitFailed // Redis unreachable, wrong password, not found, any other failure
	exitUsage  = cli.ExitUsage  // bad command line or config
)

const exitCodesHelp = `Exit codes:
  0  success
  1  failure: redis unreachable, wrong password, not found (unlock of an
     account that is not locked, remove of a missing override or exemption,
     why of an unrecorded message), a release or purge not done for every
     message
  2  usage or config error (bad flags or arguments, unreadable config, a
     config that uses the embedded store)
  65, 75  complaint only: not mail; the store cannot be reached`

// notFoundError is an admin action on something that is not there (unlock
// of an account that is not locked, ...); it exits 1.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// configError is a config that cannot be used; it exits 2.
func configError(err error) error { return cli.Exit(exitUsage, err) }

// commandError is the one place that decides the exit code of what a
// command returned: usage and config errors (cli.Usagef, configError)
// keep their 2, anything else (an unreachable or refusing store, a
// notFoundError) is a failure, 1. The message is kept on one line.
func commandError(err error) error {
	if err == nil {
		return nil
	}
	code := exitFailed
	var ee *cli.ExitError
	if errors.As(err, &ee) {
		code = ee.Code
	}
	return cli.Exit(code, oneLineError{err})
}

// oneLineError keeps an error on one line (config errors list several
// problems: they are joined with "; ").
type oneLineError struct{ err error }

func (e oneLineError) Error() string { return oneLine(e.err.Error()) }
func (e oneLineError) Unwrap() error { return e.err }

func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "; ")
}

// deps are what the commands take from the process, so that tests can
// supply their own.
type deps struct {
	// lookup finds $ABUSEMILTER_CONFIG and the default config path when
	// --config is not given (the zero value: neither).
	lookup config.Lookup
	// stdoutIsTerminal and noColor decide colour.
	stdoutIsTerminal bool
	noColor          bool
	now              func() time.Time
	// user is recorded in the audit log; empty: the OS user.
	user string
}

// defaultConfigPath is where the daemon's config usually lives.
const defaultConfigPath = config.DefaultPath

func systemDeps() deps {
	_, noColor := os.LookupEnv("NO_COLOR")
	return deps{
		lookup:           config.SystemLookup(),
		stdoutIsTerminal: term.IsTerminal(int(os.Stdout.Fd())),
		noColor:          noColor,
		now:              time.Now,
	}
}

// globalOptions are the flags every command accepts, before or after the
// command name, and the process dependencies.
type globalOptions struct {
	ConfigPath   string
	RedisURL     string
	PasswordFile string
	Timeout      time.Duration

	deps deps
}

// run runs fn against an env that connects to the store on first use (so
// that a bad command line is reported before any connection attempt), and
// decides the exit code of its error.
func (g *globalOptions) run(cmd *cobra.Command, fn func(ctx context.Context, e *env, out io.Writer) error) error {
	e := &env{now: g.deps.now, color: g.deps.stdoutIsTerminal && !g.deps.noColor, user: g.deps.user}
	if e.now == nil {
		e.now = time.Now
	}
	if e.user == "" {
		e.user = currentUser()
	}
	e.open = func(ctx context.Context) error { return e.connect(ctx, *g, g.deps.lookup) }
	defer e.close()
	return commandError(fn(cmd.Context(), e, cmd.OutOrStdout()))
}

// newRootCommand builds the whole command tree of abusectl.
func newRootCommand(d deps, stdout, stderr io.Writer) *cobra.Command {
	g := &globalOptions{Timeout: 3 * time.Second, deps: d}
	cobra.EnableCommandSorting = false
	root := &cobra.Command{
		Use:   "abusectl",
		Short: "rate-limit and abuse-desk admin for abusemilter (works on the shared Redis store)",
		Long: `abusectl - rate-limit and abuse-desk admin for abusemilter (works on the shared Redis store)

Subjects: ACCOUNT (or acct:NAME), sender:ADDRESS, client:IP; a bare IP
address is a client. A bare address (carol@example.com) is the account of
that name when one exists (counters, a lock, strikes or a config entry, as
for an ad-hoc account whose login is an address), else the sender; status
shows both, and a change that could mean either is refused with what each
reading would do.

The store is the redis section of the daemon's config (--config, else
$ABUSEMILTER_CONFIG, else ` + defaultConfigPath + ` when it exists), or
--redis URL.
Every change is audit-logged in Redis with your OS user and applies to the
milters' next message. Read commands take --json (fields in docs/abusectl.md);
colour only on a terminal and never with NO_COLOR set.

` + exitCodesHelp,
		// Parse the flags before the command name on the way down, so that
		// "--nope status alice" names --nope rather than "alice".
		TraverseChildren: true,
		// No command: the overview on stderr, and a usage error.
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Help()
			return cli.Usagef("no command given")
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.ConfigPath, "config", "", "the daemon's YAML config file (default $ABUSEMILTER_CONFIG, else "+defaultConfigPath+" when it exists)")
	pf.StringVar(&g.RedisURL, "redis", "", "redis URL (redis://host:port/db or rediss://), instead of the config's redis section")
	pf.StringVar(&g.PasswordFile, "password-file", "", "read the redis password from this file (instead of the config's password_file/password_env)")
	cli.DurationVar(pf, &g.Timeout, "timeout", g.Timeout, "give up on an unreachable redis after this long")
	must(root.MarkPersistentFlagFilename("config", "yaml", "yml"))
	must(root.MarkPersistentFlagFilename("password-file"))

	root.AddCommand(
		newStatusCommand(g), newTopCommand(g), newLockedCommand(g),
		newLockCommand(g), newUnlockCommand(g), newResetCommand(g), newOverrideCommand(g), newExemptCommand(g),
		newServeCommand(g), newUserCommand(g),
		newHeldCommand(g), newReleaseCommand(g), newPurgeCommand(g), newComplaintCommand(g), newComplaintsCommand(g), newWhyCommand(g),
		newAuditCommand(g),
	)
	cli.Setup(root, stdout, stderr)
	root.SetUsageTemplate(usageTemplate)

	// The generated help and completion commands, with examples as every
	// command has; an unknown help topic or shell is a usage error.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			c.Example = "  abusectl help\n  abusectl help override"
			c.Args = func(c *cobra.Command, args []string) error {
				if found, _, err := c.Root().Find(args); err != nil || found == c.Root() && len(args) > 0 {
					return cli.Usagef("help: unknown command %q", strings.Join(args, " "))
				}
				return nil
			}
		case "completion":
			c.Example = "  abusectl completion bash > /etc/bash_completion.d/abusectl\n" +
				"  abusectl completion zsh > \"${fpath[1]}/_abusectl\"\n" +
				"  abusectl completion fish > ~/.config/fish/completions/abusectl.fish"
			c.RunE = func(*cobra.Command, []string) error {
				return cli.Usagef("completion needs a shell: bash, zsh, fish or powershell")
			}
		}
	}
	return root
}

// usageTemplate is cobra's with the usage line on the "Usage:" line
// itself ("Usage: abusectl lock ACCOUNT ...", "Usage: abusectl [command]").
const usageTemplate = `Usage:{{if .HasAvailableSubCommands}} {{.CommandPath}} [command]{{else if .Runnable}} {{.UseLine}}{{end}}{{if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}{{$cmds := .Commands}}

Available Commands:{{range $cmds}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Global Flags:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableSubCommands}}

Use "{{.CommandPath}} [command] --help" for more information about a command.{{end}}
`

// must panics on a programming error in the command tree, found by every
// test that builds it.
func must(err error) {
	if err != nil {
		panic(err)
	}
}

// exactArgs is a positional-argument check whose error is a usage error
// in the command's own words.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			if n == 0 {
				return cli.Usagef("%s takes no arguments, got %q", cmd.Name(), args)
			}
			return cli.Usagef("%s takes %s, got %d arguments", cmd.Name(), what, len(args))
		}
		return nil
	}
}

// maxArgs is a positional-argument check for commands with an optional
// argument: at most n, what names them in the usage error.
func maxArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return cli.Usagef("%s takes at most %s, got %d arguments", cmd.Name(), what, len(args))
		}
		return nil
	}
}
