package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/mail"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// CorpusOptions says how corpus messages are sent.
type CorpusOptions struct {
	Limit   int // read at most this many files (in name order); 0 = all
	MaxRcpt int // recipients per message taken from To and Cc, at most; default 5
}

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
		m.ClientAddr = fmt.Sprintf("10.200.%d.%d", i/250%250, i%250+1)
		m.ClientName = "unknown"
		m.Helo = "corpus-client.example"
		pool = append(pool, m)
	}
	return pool, nil
}

// ParseMessage splits a raw RFC 5322 message into header fields and a CRLF
// body and derives the envelope from its From, To and Cc fields (see
// LoadCorpus). Client fields are left empty.
func ParseMessage(raw []byte, maxRcpt int) (*Message, error) {
	raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	var header []HeaderField
	rest := raw
	for len(rest) > 0 {
		line, next, _ := bytes.Cut(rest, []byte("\n"))
		if len(line) == 0 {
			rest = next
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(header) == 0 {
				return nil, errors.New("message starts with a continuation line")
			}
			header[len(header)-1].Value += "\n" + string(line)
			rest = next
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			break // not a field: the body starts here (no blank line)
		}
		value = bytes.TrimPrefix(value, []byte(" "))
		header = append(header, HeaderField{Name: string(name), Value: string(value)})
		rest = next
	}
	if len(header) == 0 {
		return nil, errors.New("no header fields")
	}
	m := &Message{Header: header, Body: bytes.ReplaceAll(rest, []byte("\n"), []byte("\r\n"))}
	m.Sender = firstAddress(header, "From")
	if m.Sender == "" {
		m.Sender = firstAddress(header, "Return-Path", "Sender")
	}
	m.Login = m.Sender
	for _, name := range []string{"To", "Cc"} {
		for _, f := range header {
			if !strings.EqualFold(f.Name, name) {
				continue
			}
			list, err := mail.ParseAddressList(unfold(f.Value))
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

func firstAddress(header []HeaderField, names ...string) string {
	for _, name := range names {
		for _, f := range header {
			if !strings.EqualFold(f.Name, name) {
				continue
			}
			if a, err := mail.ParseAddress(unfold(f.Value)); err == nil {
				return a.Address
			}
			if list, err := mail.ParseAddressList(unfold(f.Value)); err == nil && len(list) > 0 {
				return list[0].Address
			}
		}
	}
	return ""
}

func unfold(v string) string { return strings.ReplaceAll(v, "\n", "") }
