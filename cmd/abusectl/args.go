package main

import (
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// parseSubject reads a subject argument.
func parseSubject(arg string) (ratelimit.Subject, error) {
	s, err := ratelimit.ParseSubject(arg)
	if err != nil {
		return s, cli.Usagef("%v", err)
	}
	return s, nil
}

// parseLimit reads a --limit name for a subject: a dimension name
// (account_messages), its rule ID as replies show it (ACCOUNT_MSG_RATE), or
// a short name (messages, recipients, new_recipients) taken in the
// subject's kind.
func parseLimit(s ratelimit.Subject, name string) (ratelimit.Dimension, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	short := map[string]ratelimit.Dimension{
		"recipients":     ratelimit.AccountRecipients,
		"new_recipients": ratelimit.AccountNewRecipients,
	}
	switch s.Kind {
	case ratelimit.KindAccount:
		short["messages"] = ratelimit.AccountMessages
	case ratelimit.KindSender:
		short["messages"] = ratelimit.SenderMessages
	case ratelimit.KindClient:
		short["messages"] = ratelimit.ClientMessages
	}
	if d, ok := short[n]; ok {
		return d, checkLimitKind(s, d)
	}
	for _, d := range ratelimit.Dimensions {
		if n == string(d) || strings.EqualFold(name, d.RuleID()) {
			return d, checkLimitKind(s, d)
		}
	}
	var names []string
	for _, d := range ratelimit.Dimensions {
		names = append(names, string(d))
	}
	return "", cli.Usagef("--limit %q: unknown limit (want one of %s, or messages, recipients, new_recipients)", name, strings.Join(names, ", "))
}

// parseRates reads "500/1h" or "20/10m,500/24h".
func parseRates(s string) ([]ratelimit.Rate, error) {
	var out []ratelimit.Rate
	for _, part := range strings.Split(s, ",") {
		r, err := ratelimit.ParseRate(part)
		if err != nil {
			return nil, cli.Usagef("--rate: %v", err)
		}
		out = append(out, r)
	}
	return out, nil
}

// forText describes a duration flag in confirmations.
func forText(d time.Duration) string {
	if d == 0 {
		return "until removed"
	}
	return "for " + short(d)
}

// checkLimitKind refuses a limit that does not count this kind of subject
// (account_* limits count accounts, sender_* senders, client_* clients).
func checkLimitKind(s ratelimit.Subject, d ratelimit.Dimension) error {
	prefix := map[ratelimit.SubjectKind]string{
		ratelimit.KindAccount: "account_", ratelimit.KindSender: "sender_", ratelimit.KindClient: "client_",
	}[s.Kind]
	if !strings.HasPrefix(string(d), prefix) {
		return cli.Usagef("--limit %s does not count a %s (%s): pick a %s* limit", d, s.Kind, s, prefix)
	}
	return nil
}

// nonNegative refuses a negative duration given to flag.
func nonNegative(flag string, d time.Duration) error {
	if d < 0 {
		return cli.Usagef("--%s %s: a duration must not be negative", flag, d)
	}
	return nil
}

// completeLimits offers the names --limit takes (it also takes rule IDs,
// so it is not an enumerated flag).
func completeLimits(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	names := []string{"messages", "recipients", "new_recipients"}
	for _, d := range ratelimit.Dimensions {
		names = append(names, string(d))
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}
