package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// exemptOptions are the options of "abusectl exempt".
type exemptOptions struct {
	Env     *env
	Action  string // add, remove or list
	Subject string // add and remove
	Reason  string // add
	For     time.Duration
	JSON    bool // list
}

// exemptActions are the first argument of exempt.
var exemptActions = []string{"add", "remove", "list"}

func newExemptCommand(g *globalOptions) *cobra.Command {
	var o exemptOptions
	cmd := &cobra.Command{
		Use:   "exempt add SUBJECT --reason TEXT [--for DURATION] | remove SUBJECT | list [--json]",
		Short: "exempt a subject from every limit, remove an exemption, list exemptions",
		Long: `An exempt account, sender or client is neither counted nor refused by any
limit (a lock still applies). "add" and "remove" take effect on the next
message; "list" shows the exemptions set here and those of the config
(limits.exempt), which only a config change removes. remove fails (exit 1)
when the subject has no exemption set here.`,
		Example: `  abusectl exempt add alice --reason "monthly newsletter" --for 6h
  abusectl exempt add client:192.0.2.25 --reason "the webmail host"
  abusectl exempt remove alice
  abusectl exempt list --json`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				return cli.Usagef("exempt needs add, remove or list")
			case args[0] == "list" && len(args) == 1:
			case (args[0] == "add" || args[0] == "remove") && len(args) == 2:
			case args[0] == "list":
				return cli.Usagef("exempt list takes no further arguments")
			case args[0] == "add" || args[0] == "remove":
				return cli.Usagef("exempt %s takes one ACCOUNT, sender:ADDR or client:IP", args[0])
			default:
				return cli.Usagef("exempt %q: want add, remove or list", args[0])
			}
			return nil
		},
		ValidArgsFunction: func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []cobra.Completion
			for _, a := range exemptActions {
				if strings.HasPrefix(a, toComplete) {
					out = append(out, a)
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, e *env, out io.Writer) error {
				o.Env, o.Action = e, args[0]
				if len(args) == 2 {
					o.Subject = args[1]
				}
				return runExempt(ctx, o, out)
			})
		},
	}
	cmd.Flags().StringVar(&o.Reason, "reason", "", "why (required for add)")
	cli.DurationVar(cmd.Flags(), &o.For, "for", 0, "expire after this long (add; default until removed)")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON (list; fields in docs/abusectl.md)")
	return cmd
}

// exemptListJSON is the --json output of exempt list.
type exemptListJSON struct {
	Exemptions []exemptionJSON `json:"exemptions"`
}

func runExempt(ctx context.Context, o exemptOptions, out io.Writer) error {
	switch o.Action {
	case "list":
		return runExemptList(ctx, o, out)
	case "add", "remove":
	default:
		return cli.Usagef("exempt %q: want add, remove or list", o.Action)
	}
	s, err := parseSubject(o.Subject)
	if err != nil {
		return err
	}
	if o.Action == "add" && strings.TrimSpace(o.Reason) == "" {
		return cli.Usagef("exempt add: --reason is required")
	}
	if err := nonNegative("for", o.For); err != nil {
		return err
	}
	admin, err := o.Env.store(ctx)
	if err != nil {
		return err
	}
	if o.Action == "add" {
		if err := admin.Exempt(ctx, s, o.Reason, o.For, o.Env.user); err != nil {
			return o.Env.storeError(err)
		}
		_, err = fmt.Fprintf(out, "exempted %s from every limit %s: %q\n", s, forText(o.For), o.Reason)
		return err
	}
	st, err := admin.Status(ctx, s)
	if err != nil {
		return o.Env.storeError(err)
	}
	if st.Exemption == nil {
		msg := fmt.Sprintf("%s has no exemption set by abusectl", s)
		if _, ok := configExemption(s, o.Env.policy); ok {
			msg += " (it is exempt in the config: limits.exempt)"
		}
		return &notFoundError{msg}
	}
	if err := admin.Unexempt(ctx, s, o.Env.user); err != nil {
		return o.Env.storeError(err)
	}
	_, err = fmt.Fprintf(out, "removed the exemption of %s: its limits apply again\n", s)
	return err
}

func runExemptList(ctx context.Context, o exemptOptions, out io.Writer) error {
	admin, err := o.Env.store(ctx)
	if err != nil {
		return err
	}
	list, err := admin.Exemptions(ctx)
	if err != nil {
		return o.Env.storeError(err)
	}
	v := exemptListJSON{Exemptions: []exemptionJSON{}}
	for _, e := range list {
		v.Exemptions = append(v.Exemptions, exemptionJSON{Subject: e.Subject.String(), Source: "runtime",
			Reason: e.Reason, By: e.By, At: jsonTime(e.At), Until: jsonTime(e.Until)})
	}
	v.Exemptions = append(v.Exemptions, configExemptions(o.Env.policy)...)
	if o.JSON {
		return writeJSON(out, v)
	}
	if len(v.Exemptions) == 0 {
		_, err := fmt.Fprintln(out, "no exemption")
		return err
	}
	var t table
	t.header("SUBJECT", "SOURCE", "BY", "SINCE", "UNTIL", "REASON")
	for _, e := range v.Exemptions {
		until := "removed"
		if e.Until != nil {
			until = clock(parseJSONTime(e.Until))
		}
		since := "-"
		if e.At != nil {
			since = clock(parseJSONTime(e.At))
		}
		t.add(plain, e.Subject, e.Source, e.By, since, until, e.Reason)
	}
	return t.write(out, "", o.Env.color)
}

// configExemptions lists the exemptions of the config, sorted.
func configExemptions(p ratelimit.Policy) []exemptionJSON {
	var subjects []string
	for a, ok := range p.ExemptAccounts {
		if ok {
			subjects = append(subjects, ratelimit.Account(a).String())
		}
	}
	for s, ok := range p.ExemptSenders {
		if ok {
			subjects = append(subjects, ratelimit.Subject{Kind: ratelimit.KindSender, Name: s}.String())
		}
	}
	for _, n := range p.ExemptNetworks {
		subjects = append(subjects, string(ratelimit.KindClient)+":"+n.String())
	}
	sort.Strings(subjects)
	out := []exemptionJSON{}
	for _, s := range subjects {
		out = append(out, exemptionJSON{Subject: s, Source: "config", Reason: "listed in limits.exempt", By: "config"})
	}
	return out
}
