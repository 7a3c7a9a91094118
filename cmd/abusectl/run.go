package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// Exit codes, decided here only (see exitCode) and listed in the help.
const (
	exitOK     = 0
	exitFailed = 1 // Redis unreachable, wrong password, not found, any other failure
	exitUsage  = 2 // bad command line or config
)

// usageError is a bad command line; it exits 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// configError is a config that cannot be used; it exits 2.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// notFoundError is an admin action on something that is not there (unlock
// of an account that is not locked, ...); it exits 1.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// exitCode maps an error to the exit code.
func exitCode(err error) int {
	var ue *usageError
	var ce *configError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue), errors.As(err, &ce):
		return exitUsage
	}
	return exitFailed
}

// deps are what run takes from the process, so that tests can supply their
// own.
type deps struct {
	// defaultConfig is read when neither --config nor --redis is given
	// (empty: none).
	defaultConfig string
	// stdoutIsTerminal and noColor decide colour.
	stdoutIsTerminal bool
	noColor          bool
	now              func() time.Time
	// user is recorded in the audit log; empty: the OS user.
	user string
}

// defaultConfigPath is where the daemon's config usually lives.
const defaultConfigPath = "/etc/abusemilter/abusemilter.yaml"

func systemDeps() deps {
	_, noColor := os.LookupEnv("NO_COLOR")
	def := os.Getenv("ABUSEMILTER_CONFIG")
	if def == "" {
		def = defaultConfigPath
	}
	return deps{
		defaultConfig:    def,
		stdoutIsTerminal: term.IsTerminal(int(os.Stdout.Fd())),
		noColor:          noColor,
		now:              time.Now,
	}
}

// globalOptions are the flags every command accepts, before or after the
// command name.
type globalOptions struct {
	ConfigPath   string
	RedisURL     string
	PasswordFile string
	Timeout      time.Duration
}

func (g *globalOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&g.ConfigPath, "config", g.ConfigPath, "the daemon's YAML config `file` (default $ABUSEMILTER_CONFIG or "+defaultConfigPath+")")
	fs.StringVar(&g.RedisURL, "redis", g.RedisURL, "redis `URL` (redis://host:port/db or rediss://), instead of the config's redis section")
	fs.StringVar(&g.PasswordFile, "password-file", g.PasswordFile, "read the redis password from `file` (instead of the config's password_file/password_env)")
	fs.DurationVar(&g.Timeout, "timeout", g.Timeout, "give up on an unreachable redis after this `duration`")
}

// runner runs a command whose flags have been parsed, with its positional
// arguments.
type runner func(ctx context.Context, e *env, args []string, out io.Writer) error

// command is one subcommand; each lives in its own file.
type command struct {
	name     string
	synopsis string // arguments after the name
	summary  string // one line for the command list
	details  string // paragraphs for "help COMMAND"
	examples []string
	// offline commands (help, completion) need no Redis.
	offline bool
	// setup registers the command's own flags and returns its runner.
	setup func(fs *flag.FlagSet) runner
}

// commands lists every subcommand in the order of the help.
func commands() []*command {
	return []*command{
		statusCommand(), topCommand(), lockedCommand(),
		lockCommand(), unlockCommand(), resetCommand(), overrideCommand(), exemptCommand(),
		completionCommand(), helpCommand(),
	}
}

func findCommand(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

// run is the whole program; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, d deps) int {
	err := dispatch(ctx, args, stdout, stderr, d)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stderr, "abusectl: %s\n", oneLine(err.Error()))
		if exitCode(err) == exitUsage {
			var ue *usageError
			if errors.As(err, &ue) {
				fmt.Fprintln(stderr, "Run 'abusectl help' for usage.")
			}
		}
	}
	return exitCode(err)
}

// oneLine keeps an error on one line (config errors list several problems:
// they are joined with "; ").
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "; ")
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer, d deps) error {
	g := globalOptions{Timeout: 3 * time.Second}
	top := flag.NewFlagSet("abusectl", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	g.register(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return writeOverview(stdout)
		}
		return usageErrorf("%v", err)
	}
	rest := top.Args()
	if len(rest) == 0 {
		writeOverview(stderr)
		return usageErrorf("no command given")
	}
	cmd := findCommand(rest[0])
	if cmd == nil {
		return usageErrorf("unknown command %q (commands: %s)", rest[0], strings.Join(commandNames(), ", "))
	}
	fs := flag.NewFlagSet("abusectl "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs)
	exec := cmd.setup(fs)
	pos, err := parseInterspersed(fs, rest[1:])
	if errors.Is(err, flag.ErrHelp) {
		return writeCommandHelp(stdout, cmd)
	}
	if err != nil {
		return usageErrorf("%s: %v", cmd.name, err)
	}
	e := &env{now: d.now, color: d.stdoutIsTerminal && !d.noColor, user: d.user}
	if e.now == nil {
		e.now = time.Now
	}
	if e.user == "" && !cmd.offline {
		e.user = currentUser()
	}
	e.open = func(ctx context.Context) error { return e.connect(ctx, g, d.defaultConfig) }
	defer e.close()
	return exec(ctx, e, pos, stdout)
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments ("status alice --json"); "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		args = rest
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func commandNames() []string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return names
}
