package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// Subject resolution. A bare address (alice@example.com, without acct: or
// sender:) can mean two things: the envelope sender, or an account named
// by that address, which is what an ad-hoc account is (a login that is an
// address, with identity.login_is_address) and what a sender-login map
// account is named. The reading is decided by what exists:
//
//   - the account reading exists when the account has counters, a lock,
//     strikes, overrides or an exemption in the store, or an entry in the
//     config (identity.accounts, a sender-login map, limits.exempt);
//   - the sender reading exists when the sender has counters, overrides or
//     an exemption in the store, or an entry in the config
//     (limits.senders, limits.exempt.senders).
//
// status shows both readings side by side when the account one exists.
// A change (lock, unlock, reset, override) is applied to the one reading
// that exists and that the change can apply to; when both or neither
// exist, nothing is changed and the error says what each reading would do.

// reading is one interpretation of a subject argument.
type reading struct {
	subj ratelimit.Subject
	// evidence says why it exists ("2 strikes", "a config entry"); empty
	// when nothing is known of it.
	evidence []string
	status   ratelimit.Status
}

func (r reading) exists() bool { return len(r.evidence) > 0 }

// explicitKind reports whether arg names its kind (acct:, sender:, client:).
func explicitKind(arg string) bool {
	k, _, ok := strings.Cut(strings.TrimSpace(arg), ":")
	if !ok {
		return false
	}
	switch ratelimit.SubjectKind(k) {
	case ratelimit.KindAccount, ratelimit.KindSender, ratelimit.KindClient:
		return true
	}
	return false
}

// bareAddress reports whether arg is an address without a kind, and so
// may be read as an account too.
func bareAddress(arg string) (ratelimit.Subject, bool, error) {
	s, err := parseSubject(arg)
	if err != nil {
		return s, false, err
	}
	return s, s.Kind == ratelimit.KindSender && !explicitKind(arg), nil
}

// accountReadingName is the account name a bare address reads as: the
// config's own spelling when it has the account, else the address in
// lower case (as an ad-hoc or login-map account is named).
func (e *env) accountReadingName(arg string) string {
	arg = strings.TrimSpace(arg)
	if e.accounts[arg] {
		return arg
	}
	return strings.ToLower(arg)
}

// readings returns the account and the sender reading of a bare address,
// with what the store and the config know of each.
func (e *env) readings(ctx context.Context, admin ratelimit.Admin, arg string, sender ratelimit.Subject) (acct, snd reading, err error) {
	acct.subj = ratelimit.Account(e.accountReadingName(arg))
	snd.subj = sender
	if acct.status, err = admin.Status(ctx, acct.subj); err != nil {
		return acct, snd, e.storeError(err)
	}
	if snd.status, err = admin.Status(ctx, snd.subj); err != nil {
		return acct, snd, e.storeError(err)
	}
	if e.accounts[acct.subj.Name] {
		acct.evidence = append(acct.evidence, "a config entry")
	} else if e.policy.ExemptAccounts[acct.subj.Name] {
		acct.evidence = append(acct.evidence, "a config exemption")
	}
	acct.evidence = append(acct.evidence, storeEvidence(acct.status)...)
	if _, ok := e.policy.SenderOverrides[snd.subj.Name]; ok {
		snd.evidence = append(snd.evidence, "a config entry")
	} else if e.policy.ExemptSenders[snd.subj.Name] {
		snd.evidence = append(snd.evidence, "a config exemption")
	}
	snd.evidence = append(snd.evidence, storeEvidence(snd.status)...)
	return acct, snd, nil
}

// storeEvidence lists what the store holds for a subject.
func storeEvidence(st ratelimit.Status) []string {
	var out []string
	if st.Lock != nil {
		out = append(out, "a lock")
	}
	if st.Strikes > 0 {
		out = append(out, plural(st.Strikes, "strike"))
	}
	for _, l := range st.Limits {
		if l.Used > 0 {
			out = append(out, "counters")
			break
		}
	}
	if len(st.Overrides) > 0 {
		out = append(out, plural(len(st.Overrides), "override"))
	}
	if st.Exemption != nil {
		out = append(out, "an exemption")
	}
	return out
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// describe says what is known of a reading, for messages.
func (r reading) describe() string {
	if !r.exists() {
		return fmt.Sprintf("%s (nothing known: no counters, lock, strikes or config entry)", r.subj)
	}
	return fmt.Sprintf("%s (%s)", r.subj, strings.Join(r.evidence, ", "))
}

// change is what a command would do to a subject, for the message that
// lists the readings: "lock account alice@example.com".
type change struct {
	command string                         // "reset", with its flags: "override --limit messages --rate 5/1h"
	applies func(ratelimit.Subject) bool   // whether the change can apply to this kind (nil: any)
	would   func(ratelimit.Subject) string // what it would do
	// decides is set when the command's own flags name the kind (a
	// --limit that counts only senders, say): then the one reading they
	// allow is taken even when nothing is known of it yet.
	decides bool
}

// resolveChange picks the subject a change applies to. An argument that
// names its kind, or is not a bare address, is taken as it is. For a bare
// address, the one reading that exists and that the change applies to is
// taken; otherwise nothing is changed and the usage error says what each
// reading would do and how to name it.
func resolveChange(ctx context.Context, e *env, arg string, c change) (ratelimit.Subject, error) {
	s, bare, err := bareAddress(arg)
	if err != nil || !bare {
		return s, err
	}
	admin, err := e.store(ctx)
	if err != nil {
		return s, err
	}
	acct, snd, err := e.readings(ctx, admin, arg, s)
	if err != nil {
		return s, err
	}
	var candidates, possible []reading
	for _, r := range []reading{acct, snd} {
		if c.applies != nil && !c.applies(r.subj) {
			continue
		}
		possible = append(possible, r)
		if r.exists() {
			candidates = append(candidates, r)
		}
	}
	if len(candidates) == 1 {
		return candidates[0].subj, nil
	}
	if len(possible) == 1 && c.decides {
		return possible[0].subj, nil
	}
	var b strings.Builder
	switch {
	case len(candidates) > 1:
		fmt.Fprintf(&b, "%q is ambiguous, so nothing was changed: it names %s and %s", arg, acct.describe(), snd.describe())
	case len(possible) == 1:
		r := possible[0]
		fmt.Fprintf(&b, "%q names no %s that exists, so nothing was changed: %s", arg, kindWord(r.subj.Kind), r.describe())
	default:
		fmt.Fprintf(&b, "%q names neither a known account nor a known sender, so nothing was changed", arg)
	}
	for _, r := range possible {
		fmt.Fprintf(&b, "\n  abusectl %s %s  would %s", c.command, r.subj, c.would(r.subj))
	}
	if len(possible) < 2 {
		for _, r := range []reading{acct, snd} {
			if c.applies != nil && !c.applies(r.subj) {
				fmt.Fprintf(&b, "\n  (%s cannot be the subject of %s)", r.subj, strings.Fields(c.command)[0])
			}
		}
	}
	return s, cli.Usagef("%s", b.String())
}

func kindWord(k ratelimit.SubjectKind) string {
	switch k {
	case ratelimit.KindAccount:
		return "account"
	case ratelimit.KindSender:
		return "sender"
	}
	return "client"
}

// accountArg resolves the account argument of lock and unlock: a bare
// name or acct:NAME as it is, a bare address to the account of that name
// when one exists (see resolveChange).
func accountArg(ctx context.Context, e *env, arg, command string, would func(account string) string) (string, error) {
	if _, bare, err := bareAddress(arg); err != nil {
		return "", err
	} else if !bare {
		return accountName(arg)
	}
	s, err := resolveChange(ctx, e, arg, change{
		command: command,
		applies: func(s ratelimit.Subject) bool { return s.Kind == ratelimit.KindAccount },
		would:   func(s ratelimit.Subject) string { return would(s.Name) },
	})
	if err != nil {
		return "", err
	}
	return s.Name, nil
}
