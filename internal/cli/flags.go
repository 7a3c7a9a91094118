package cli

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/abusemilter/abusemilter/internal/config"
)

// durationValue is a pflag.Value in the config's duration syntax: Go's
// (200ms, 10m, 1h30m) plus whole days (7d) and a bare 0.
type durationValue time.Duration

func (d *durationValue) Set(s string) error {
	v, err := config.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = durationValue(v)
	return nil
}

func (d *durationValue) String() string {
	if *d == 0 {
		return "0" // pflag leaves a zero default out of the help
	}
	return config.Duration{Duration: time.Duration(*d)}.String()
}

func (d *durationValue) Type() string { return "duration" }

// DurationVar defines a duration flag that takes the config's syntax,
// days included (7d, 1d, 36h, 90s).
func DurationVar(fs *pflag.FlagSet, p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	fs.Var((*durationValue)(p), name, usage)
}

// enumValue is a string flag limited to a fixed set of words.
type enumValue struct {
	p       *string
	allowed []string
}

func (e *enumValue) Set(s string) error {
	if !slices.Contains(e.allowed, s) {
		return fmt.Errorf("%q is not one of %s", s, strings.Join(e.allowed, ", "))
	}
	*e.p = s
	return nil
}

func (e *enumValue) String() string { return *e.p }
func (e *enumValue) Type() string   { return "string" }

// EnumVar defines a flag of cmd that accepts only the allowed words, says
// them in its help and completes them in every shell.
func EnumVar(cmd *cobra.Command, p *string, name, value, usage string, allowed ...string) {
	*p = value
	cmd.Flags().Var(&enumValue{p: p, allowed: allowed}, name, usage+" ("+strings.Join(allowed, "|")+")")
	must(cmd.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(allowed, cobra.ShellCompDirectiveNoFileComp)))
}

// PersistentEnumVar is EnumVar for a flag every subcommand of cmd takes.
func PersistentEnumVar(cmd *cobra.Command, p *string, name, value, usage string, allowed ...string) {
	*p = value
	cmd.PersistentFlags().Var(&enumValue{p: p, allowed: allowed}, name, usage+" ("+strings.Join(allowed, "|")+")")
	must(cmd.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(allowed, cobra.ShellCompDirectiveNoFileComp)))
}

// must panics on a programming error in the command tree (a flag
// registered twice), found by every test that builds the tree.
func must(err error) {
	if err != nil {
		panic(err)
	}
}
