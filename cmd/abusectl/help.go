package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// helpOptions are the options of "abusectl help".
type helpOptions struct {
	Command string // empty: the overview
}

func helpCommand() *command {
	return &command{
		name:     "help",
		synopsis: "[COMMAND]",
		summary:  "show the commands, or one command's flags and examples",
		examples: []string{"abusectl help", "abusectl help override"},
		offline:  true,
		setup: func(fs *flag.FlagSet) runner {
			var o helpOptions
			return func(ctx context.Context, _ *env, args []string, out io.Writer) error {
				if len(args) > 1 {
					return usageErrorf("help takes at most one COMMAND")
				}
				if len(args) == 1 {
					o.Command = args[0]
				}
				return runHelp(ctx, o, out)
			}
		},
	}
}

func runHelp(_ context.Context, o helpOptions, out io.Writer) error {
	if o.Command == "" {
		return writeOverview(out)
	}
	c := findCommand(o.Command)
	if c == nil {
		return usageErrorf("help: unknown command %q (commands: %s)", o.Command, strings.Join(commandNames(), ", "))
	}
	return writeCommandHelp(out, c)
}

const exitCodesHelp = `Exit codes:
  0  success
  1  failure: redis unreachable, wrong password, not found (unlock of an
     account that is not locked, remove of a missing override or exemption)
  2  usage or config error (bad flags or arguments, unreadable config, a
     config that uses the embedded store)
`

const globalHelp = `Global flags (before or after the command):
  --config FILE         the daemon's config (default $ABUSEMILTER_CONFIG or ` + defaultConfigPath + `)
  --redis URL           redis://host:port/db or rediss://, instead of the config's redis section
  --password-file FILE  redis password, instead of the config's password_file/password_env
  --timeout DURATION    give up on an unreachable redis after this long (default 3s)
`

func writeOverview(out io.Writer) error {
	var b strings.Builder
	b.WriteString(`abusectl - rate-limit admin for abusemilter (works on the shared Redis store)

Usage: abusectl [global flags] COMMAND [arguments] [flags]

Commands:
`)
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	b.WriteString("\nSubjects: ACCOUNT (or acct:NAME), sender:ADDRESS, client:IP; a bare address\nwith '@' is a sender, a bare IP address a client.\n\n")
	b.WriteString(globalHelp)
	b.WriteString("\nEvery change is audit-logged in Redis with your OS user and applies to the\nmilters' next message. Read commands take --json (fields in docs/abusectl.md);\ncolour only on a terminal and never with NO_COLOR set.\n\n")
	b.WriteString(exitCodesHelp)
	b.WriteString("\nRun 'abusectl help COMMAND' for a command's flags and examples.\n")
	_, err := io.WriteString(out, b.String())
	return err
}

func writeCommandHelp(out io.Writer, c *command) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: abusectl %s %s\n\n%s.\n", c.name, c.synopsis, upperFirst(c.summary))
	if c.details != "" {
		fmt.Fprintf(&b, "\n%s\n", c.details)
	}
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.setup(fs)
	var flags strings.Builder
	fs.SetOutput(&flags)
	fs.PrintDefaults()
	if flags.Len() > 0 {
		fmt.Fprintf(&b, "\nFlags:\n%s", longFlags(flags.String()))
	}
	if !c.offline {
		fmt.Fprintf(&b, "\n%s", globalHelp)
	}
	if len(c.examples) > 0 {
		b.WriteString("\nExamples:\n")
		for _, ex := range c.examples {
			fmt.Fprintf(&b, "  %s\n", ex)
		}
	}
	fmt.Fprintf(&b, "\n%s", exitCodesHelp)
	_, err := io.WriteString(out, b.String())
	return err
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// longFlags writes flag.PrintDefaults output with double-dash long flags
// (one-letter flags such as -n keep one dash).
func longFlags(defaults string) string {
	lines := strings.Split(defaults, "\n")
	for i, l := range lines {
		if rest, ok := strings.CutPrefix(l, "  -"); ok {
			name, _, _ := strings.Cut(rest, " ")
			if len(name) > 1 {
				lines[i] = "  --" + rest
			}
		}
	}
	return strings.Join(lines, "\n")
}
