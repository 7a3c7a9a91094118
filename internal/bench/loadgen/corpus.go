package loadgen

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/abusemilter/abusemilter/scoring"
)

// CorpusOptions says how corpus messages are sent.
type CorpusOptions struct {
	Limit   int // read at most this many files (in name order); 0 = all
	MaxRcpt int // recipients per message taken from To and Cc, at most; default 5
	// Accounts, when positive, spreads the messages over that many sending
	// accounts: message i is submitted by the login CorpusLogin(i mod
	// Accounts), with its envelope sender and content as they are; a
	// config from perftest.CorpusConfig makes each account own the From
	// domains of its messages. Zero: each message's login is its From
	// address.
	Accounts int
}

// CorpusLogin is the SASL login of corpus account k (from 0) with
// CorpusOptions.Accounts.
func CorpusLogin(k int) string { return fmt.Sprintf("sender%d@corpus-accounts.example", k+1) }

// LoadCorpus reads every .eml file under dir (recursively, in name order)
// into a pool. Each message is sent as its author would submit it: the
// envelope sender and the SASL login are the From address (an account that
// owns its From domain), the recipients are the To and Cc addresses (up to
// MaxRcpt; "recipient@example.org" when there are none). An error names the
// file that could not be read or parsed; no file is silently skipped.
func LoadCorpus(dir string, opts CorpusOptions) (Pool, error) {
	if opts.MaxRcpt <= 0 {
		opts.MaxRcpt = 5
	}
	var paths []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.EqualFold(filepath.Ext(path), ".eml") {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read corpus %q: %w", dir, err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("read corpus %q: no .eml files", dir)
	}
	sort.Strings(paths)
	if opts.Limit > 0 && len(paths) > opts.Limit {
		paths = paths[:opts.Limit]
	}
	pool := make(Pool, 0, len(paths))
	for i, path := range paths {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read corpus message: %w", err)
		}
		m, err := ParseMessage(raw, opts.MaxRcpt)
		if err != nil {
			return nil, fmt.Errorf("parse corpus message %q: %w", path, err)
		}
		if opts.Accounts > 0 {
			m.Login = CorpusLogin(i % opts.Accounts)
		}
		m.ClientAddr = fmt.Sprintf("10.200.%d.%d", i/250%250, i%250+1)
		m.ClientName = "unknown"
		m.Helo = "corpus-client.example"
		pool = append(pool, m)
	}
	return pool, nil
}

// ParseMessage splits a raw RFC 5322 message into header fields and a CRLF
// body with scoring.ParseBytes, the parser the milter's rules use, and
// derives the envelope from its From, To and Cc fields (see LoadCorpus).
// Line ends are made LF first, so a folded value keeps "\n" plus the
// continuation line, as Postfix sends it. Client fields are left empty.
func ParseMessage(raw []byte, maxRcpt int) (*Message, error) {
	raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	parsed, err := scoring.ParseBytes(raw, int64(len(raw)))
	if err != nil {
		return nil, err
	}
	header := make([]HeaderField, 0, len(parsed.Headers))
	for _, h := range parsed.Headers {
		if h.Name == scoring.MboxLineField {
			continue // the file's mbox From_ line, not a field of the message
		}
		header = append(header, HeaderField{Name: h.Name, Value: h.Value})
	}
	m := &Message{Header: header, Body: bytes.ReplaceAll(parsed.Body, []byte("\n"), []byte("\r\n"))}
	m.Sender = firstAddress(parsed, "From")
	if m.Sender == "" {
		m.Sender = firstAddress(parsed, "Return-Path", "Sender")
	}
	m.Login = m.Sender
	for _, name := range []string{"To", "Cc"} {
		for _, v := range parsed.Values(name) {
			list, err := scoring.ParseAddressList(unfold(v))
			if err != nil {
				continue // a malformed list is the milter's business, not ours
			}
			for _, a := range list {
				if len(m.Recipients) < maxRcpt {
					m.Recipients = append(m.Recipients, a.Address)
				}
			}
		}
	}
	if len(m.Recipients) == 0 {
		m.Recipients = []string{"recipient@example.org"}
	}
	return m, nil
}

// firstAddress returns the first address of the first field of the names,
// in that order, that has one.
func firstAddress(m *scoring.Message, names ...string) string {
	for _, name := range names {
		for _, v := range m.Values(name) {
			if list, err := scoring.ParseAddressList(unfold(v)); err == nil && len(list) > 0 {
				return list[0].Address
			}
		}
	}
	return ""
}

// unfold removes the folding of a header value (its values have LF line
// ends only), which net/mail's address parser does not take. scoring has
// the same function but does not export it.
func unfold(v string) string { return strings.ReplaceAll(v, "\n", "") }
