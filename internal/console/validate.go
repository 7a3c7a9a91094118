package console

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// Bounds of the inputs.
const (
	maxSubject = 320 // an address at most
	maxReason  = 500
	maxSearch  = 320
	maxIDs     = 500
)

// plainText checks a one-line text input: valid UTF-8, no control
// characters, at most max characters.
func plainText(what, s string, max int) (string, error) {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%s is not valid text", what)
	}
	if utf8.RuneCountInString(s) > max {
		return "", fmt.Errorf("%s is longer than %d characters", what, max)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", fmt.Errorf("%s contains a control character", what)
		}
	}
	return s, nil
}

// parseSubjectInput reads a subject as abusectl does (ACCOUNT, acct:NAME,
// sender:ADDR, client:IP, a bare address or IP).
func parseSubjectInput(s string) (ratelimit.Subject, error) {
	s, err := plainText("the subject", s, maxSubject)
	if err != nil {
		return ratelimit.Subject{}, err
	}
	if s == "" {
		return ratelimit.Subject{}, errors.New("no subject given")
	}
	subj, err := ratelimit.ParseSubject(s)
	if err != nil {
		return subj, err
	}
	if strings.TrimSpace(subj.Name) == "" {
		return subj, fmt.Errorf("subject %q: not a name", s)
	}
	return subj, nil
}

// parseAccountInput reads an account name (bare or acct:NAME).
func parseAccountInput(s string) (string, error) {
	subj, err := parseSubjectInput(s)
	if err != nil {
		return "", err
	}
	if subj.Kind != ratelimit.KindAccount {
		return "", fmt.Errorf("%q is a %s, not an account", s, subj.Kind)
	}
	return subj.Name, nil
}

// parseReason reads a required reason.
func parseReason(s string) (string, error) {
	s, err := plainText("the reason", s, maxReason)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", errors.New("a reason is required (it is what the next admin reads)")
	}
	return s, nil
}

// parseFor reads an optional duration in the config's syntax (7d, 2h);
// empty or 0 is "until removed".
func parseFor(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if len(s) > 20 {
		return 0, errors.New("the duration is too long")
	}
	d, err := config.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want e.g. 30m, 2h or 7d", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q must not be negative", s)
	}
	if d > 366*24*time.Hour {
		return 0, fmt.Errorf("duration %q: at most a year", s)
	}
	return d, nil
}

// parseLimitInput reads a limit name for a subject: a dimension, its rule
// ID, or messages, recipients, new_recipients in the subject's kind.
func parseLimitInput(s ratelimit.Subject, name string) (ratelimit.Dimension, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if len(n) > 64 {
		return "", errors.New("the limit name is too long")
	}
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
	d, ok := short[n]
	if !ok {
		for _, dd := range ratelimit.Dimensions {
			if n == string(dd) || strings.EqualFold(name, dd.RuleID()) {
				d, ok = dd, true
			}
		}
	}
	if !ok {
		return "", fmt.Errorf("unknown limit %q", name)
	}
	for _, dd := range subjectDimensions(s.Kind) {
		if dd == d {
			return d, nil
		}
	}
	return "", fmt.Errorf("the limit %s does not count a %s", d, s.Kind)
}

// subjectDimensions lists the limits counted for a kind of subject.
func subjectDimensions(k ratelimit.SubjectKind) []ratelimit.Dimension {
	var out []ratelimit.Dimension
	prefix := map[ratelimit.SubjectKind]string{
		ratelimit.KindAccount: "account_", ratelimit.KindSender: "sender_", ratelimit.KindClient: "client_",
	}[k]
	for _, d := range ratelimit.Dimensions {
		if strings.HasPrefix(string(d), prefix) {
			out = append(out, d)
		}
	}
	return out
}

// parseRatesInput reads "500/1h" or "20/10m,500/24h".
func parseRatesInput(s string) ([]ratelimit.Rate, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("no rate given (want N/WINDOW, e.g. 500/1h)")
	}
	if len(s) > 200 {
		return nil, errors.New("the rates are too long")
	}
	var out []ratelimit.Rate
	for _, part := range strings.Split(s, ",") {
		r, err := ratelimit.ParseRate(strings.TrimSpace(part))
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// heldIDRE is what a held message's ID may look like (queue IDs, instance
// names, separators).
var heldIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}$`)

func parseHeldIDs(vals []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, v := range vals {
		v = strings.TrimSpace(v)
		if v == "" || seen[v] {
			continue
		}
		if !heldIDRE.MatchString(v) {
			return nil, fmt.Errorf("%q is not a held message's ID", v)
		}
		seen[v] = true
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("no message selected")
	}
	if len(out) > maxIDs {
		return nil, fmt.Errorf("at most %d messages at once", maxIDs)
	}
	return out, nil
}

// ruleRE is what a rule or clause name may look like in a filter.
var ruleRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{0,64}$`)
