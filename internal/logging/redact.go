package logging

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Redactor replaces the local part of e-mail addresses with a keyed hash
// (log.redact: addresses), for providers who must not log them:
// "alice@example.com" becomes "~3f9a0c12d4e5b6a7@example.com". The hash is
// HMAC-SHA256 over the whole lowercased address, cut to 64 bits: the same
// address always gives the same hash under one key (lines of one sender
// still join), the same local part at two domains does not, and without
// the key a hash cannot be tried against guessed addresses. The domain
// stays readable, because the abuse desk needs it.
//
// A nil *Redactor changes nothing, so callers need no "if redacting".
type Redactor struct{ key []byte }

// NewRedactor returns a Redactor with key; an empty key is replaced by a
// random one (hashes then match within this process only).
func NewRedactor(key []byte) *Redactor {
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			panic("logging: no randomness for the redaction key: " + err.Error())
		}
	}
	return &Redactor{key: append([]byte(nil), key...)}
}

// RedactorFor builds the Redactor of log.redact: nil for "none" or "", one
// keyed with keyFile's content (trailing newline ignored) or, when keyFile
// is empty, with a random key.
func RedactorFor(mode, keyFile string) (*Redactor, error) {
	switch mode {
	case "", "none":
		return nil, nil
	case "addresses":
	default:
		return nil, fmt.Errorf("log.redact %q: want none or addresses", mode)
	}
	if keyFile == "" {
		return NewRedactor(nil), nil
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("log.redact_key_file: %w", err)
	}
	key := strings.TrimRight(string(b), "\r\n")
	if key == "" {
		return nil, fmt.Errorf("log.redact_key_file %q is empty", keyFile)
	}
	return NewRedactor([]byte(key)), nil
}

// Address redacts one address (or a login that is one); a string without
// an "@" is returned as it is.
func (r *Redactor) Address(s string) string {
	if r == nil {
		return s
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 {
		return s
	}
	return r.hash(s) + s[at:]
}

// Addresses redacts each address of a list, in place, and returns it.
func (r *Redactor) Addresses(list []string) []string {
	if r == nil {
		return list
	}
	for i, s := range list {
		list[i] = r.Address(s)
	}
	return list
}

// addressInText finds what looks like an address in free text (a finding's
// reason); it errs on the side of redacting.
var addressInText = regexp.MustCompile(`[A-Za-z0-9.!#$%&'*+/=?^_` + "`" + `{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*`)

// Text redacts every address inside free text.
func (r *Redactor) Text(s string) string {
	if r == nil || !strings.Contains(s, "@") {
		return s
	}
	return addressInText.ReplaceAllStringFunc(s, r.Address)
}

func (r *Redactor) hash(addr string) string {
	m := hmac.New(sha256.New, r.key)
	m.Write([]byte(strings.ToLower(addr)))
	return "~" + hex.EncodeToString(m.Sum(nil)[:8])
}
