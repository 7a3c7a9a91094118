// Package cli is the one command-line framework of abusemilter's commands
// (abusemilter, abusescan, abusectl, milterload), on github.com/spf13/cobra:
// help on stdout, --version on every command, flags before or after
// arguments, an unknown flag answered in two lines, one duration syntax
// that also takes days, enumerated flags that validate and complete their
// values, completion scripts and man pages generated from the command tree,
// and exit codes decided in one place per command.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/abusemilter/abusemilter/internal/version"
)

// The exit codes every command shares. A command may define more of its
// own (abusectl's 3 for an unreachable store, say) and documents them in
// its help.
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitUsage  = 2
)

// ExitError carries the exit code a command decided for an error.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Exit wraps err with the exit code it should end the command with.
func Exit(code int, err error) error {
	if err == nil {
		return nil
	}
	return &ExitError{Code: code, Err: err}
}

// Usagef is a usage error (exit 2): a bad argument or flag value.
func Usagef(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// Silent is an error whose message the command has printed already; only
// its exit code is used.
var errSilent = errors.New("(reported)")

// Silent ends the command with code without printing anything more.
func Silent(code int) error { return &ExitError{Code: code, Err: errSilent} }

// Setup prepares a root command: output streams, --version, the
// completion command (bash, zsh, fish), a hidden "man DIR" command that
// writes the man pages, and the error handling that Execute relies on.
// Call it after every subcommand and flag is added.
func Setup(root *cobra.Command, stdout, stderr io.Writer) {
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SilenceUsage = true
	root.SilenceErrors = true
	root.Version = version.String()
	root.SetVersionTemplate(root.Name() + " {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%w\nRun '%s --help' for usage.", err, c.CommandPath())}
	})
	root.CompletionOptions.HiddenDefaultCmd = false
	root.AddCommand(manCommand(root))
	// Help on stdout (cobra's default for help already, made explicit for
	// the help subcommand of every level).
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Run: func(c *cobra.Command, args []string) {
			cmd, _, e := c.Root().Find(args)
			if cmd == nil || e != nil {
				c.Printf("Unknown help topic %q\n", strings.Join(args, " "))
				cobra.CheckErr(c.Root().Usage())
				return
			}
			cmd.InitDefaultHelpFlag()
			cmd.InitDefaultVersionFlag()
			cobra.CheckErr(cmd.Help())
		},
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			var names []cobra.Completion
			for _, sub := range c.Root().Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					names = append(names, sub.Name())
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
	})
}

// Execute runs root with args and returns the exit code. An *ExitError
// ends with its code; any other error comes from cobra itself (an unknown
// command, a wrong number of arguments) and is a usage error. Errors are
// printed as one "NAME: message" line (two for an unknown flag).
func Execute(root *cobra.Command, args []string) int {
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	code := ExitUsage
	var ee *ExitError
	if errors.As(err, &ee) {
		code = ee.Code
	} else if strings.HasPrefix(err.Error(), "unknown command") || strings.Contains(err.Error(), "arg(s)") {
		err = fmt.Errorf("%w\nRun '%s --help' for usage.", err, root.Name())
	}
	if !errors.Is(err, errSilent) {
		fmt.Fprintf(root.ErrOrStderr(), "%s: %v\n", root.Name(), err)
	}
	return code
}

// manCommand writes a man page per command of the tree (section 1).
func manCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write the man pages of " + root.Name() + " into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return Exit(ExitFailed, err)
			}
			root.DisableAutoGenTag = true
			header := &doc.GenManHeader{Title: strings.ToUpper(root.Name()), Section: "1", Source: "abusemilter " + version.Version, Manual: "abusemilter manual"}
			return Exit(ExitFailed, doc.GenManTree(root, header, args[0]))
		},
	}
}
