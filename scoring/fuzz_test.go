package scoring

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/identity"
)

// goldenSeeds adds the golden corpus messages as fuzz seeds.
func goldenSeeds(f *testing.F) [][]byte {
	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "messages", "*.eml"))
	var out [][]byte
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			out = append(out, b)
		}
	}
	return out
}

// FuzzAddresses: address parsing, salvage and the display-name checks
// never panic, and every address they return has a local part and a domain.
func FuzzAddresses(f *testing.F) {
	for _, s := range []string{
		`"support@paypal.com" <x@example.com>`, "a@b.c, d@e.f", "Alice <alice@example.com", "=?utf-8?B?PD4=?= <a@b.c>",
		"Service Dept. <s@paypal.com>", "<=?utf-8?q?a=40b?=>", "undisclosed-recipients:;", "(comment) a@[127.0.0.1]",
		"\"unterminated <a@b.c>", "=?x-unknown?q?abc?= <a@b>", "Jörg <jörg@bücher.de>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		addrs, _ := parseAddressesTolerant(v)
		for _, a := range addrs {
			if l, d := identity.SplitAddress(a.Address); l == "" || d == "" {
				t.Fatalf("address %q from %q lacks a local part or domain", a.Address, v)
			}
			foreignNameInDisplay(a.Name, domainOf(a.Address))
			identity.CanonicalAddress(a.Address)
		}
		encodedWordTrick(v)
		salvageAddresses(v)
		validMsgID(v)
		receivedBy(v)
		authservID(v)
		dkimTag(v, "d")
		lookalikeOf(v, newLexicon(&RuleSettings{CustomerDomains: []string{"example.com"}}).brandLex)
		bodyURLHosts([]byte(v))
	})
}

// FuzzParseMessage: any bytes parse without panic; a parsed message has a
// header and a consistent body sample.
func FuzzParseMessage(f *testing.F) {
	for _, s := range goldenSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte("From: a@b.c\n\nbody"))
	f.Add([]byte("\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMessage(bytes.NewReader(data), 256)
		if err != nil {
			if err != ErrNoHeader {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if len(m.Headers) == 0 {
			t.Fatal("parsed message without headers")
		}
		if int64(len(m.Body)) > m.BodySize || len(m.Body) > 256 || m.BodyTruncated != (m.BodySize > int64(len(m.Body))) {
			t.Fatalf("body sample %d bytes, size %d, truncated %v", len(m.Body), m.BodySize, m.BodyTruncated)
		}
		for _, h := range m.Headers {
			if h.Name == "" || strings.ContainsAny(h.Name, ": \t") {
				t.Fatalf("bad header name %q", h.Name)
			}
		}
	})
}

// FuzzEngine: every input gets a verdict, and no rule panics (rules are
// called directly here, outside the engine's panic guard).
func FuzzEngine(f *testing.F) {
	for _, s := range goldenSeeds(f) {
		f.Add(s, "alice@example.com", uint8(1))
	}
	f.Add([]byte("From: =?utf-8?q?=00?= <a@b>\r\n\r\n"), "", uint8(40))
	acct, _ := identity.NewAccount("alice", []string{"example.com"})
	fwd, _ := identity.NewAccount("fwd", []string{"any"})
	fwd.Forwarder = true
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	settings := RuleSettings{OwnMTAs: []string{"mx.provider.net"}, CustomerDomains: []string{"example.com", "smith-law.com"}}
	e := NewEngine(nil, nil, Options{Now: func() time.Time { return now }, Settings: settings, Resolver: fuzzResolver{}})
	f.Fuzz(func(t *testing.T, data []byte, mailFrom string, rcpts uint8) {
		m, err := ParseMessage(bytes.NewReader(data), 4096)
		if err != nil {
			m = &Message{Body: data, BodySize: int64(len(data))}
		}
		env := &Envelope{AuthLogin: "alice", MailFrom: mailFrom}
		for i := 0; i < int(rcpts%64); i++ {
			env.Rcpts = append(env.Rcpts, "r"+string(rune('a'+i%26))+"@d"+string(rune('a'+i%13))+".example")
		}
		for _, a := range []*identity.Account{acct, fwd} {
			c := &Check{Ctx: context.Background(), Env: env, Msg: m, Account: a, Now: now, Resolver: fuzzResolver{}, Settings: &settings, lex: e.lex}
			for _, r := range e.rules {
				r.Check(c) // a panic fails the fuzz run
			}
			v := e.Decide(context.Background(), env, m, a)
			if v.Action != Accept && v.Action != Reject {
				t.Fatalf("content verdict %v, want accept or reject", v.Action)
			}
			if r := v.Reply(); !strings.HasPrefix(r, "250 ") && !strings.HasPrefix(r, "550 ") || strings.ContainsAny(r, "\r\n") {
				t.Fatalf("reply %q", r)
			}
		}
	})
}

// fuzzResolver answers DMARC queries for a few names, without I/O.
type fuzzResolver struct{}

func (fuzzResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	if strings.HasSuffix(name, ".com") {
		return []string{"v=DMARC1; p=reject; sp=quarantine"}, nil
	}
	return nil, context.DeadlineExceeded
}
