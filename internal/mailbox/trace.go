package mailbox

import (
	"bytes"
	"net/mail"
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/scoring"
)

// receiverHeaders are header names (lowercase) that systems add after a
// message has left its sender: trace fields, delivery and filtering
// results, mail-store bookkeeping.
var receiverHeaders = map[string]bool{
	"received": true, "return-path": true, "delivered-to": true, "x-original-to": true,
	"envelope-to": true, "x-envelope-to": true, "x-envelope-from": true, "x-rcpt-to": true,
	"authentication-results": true, "x-original-authentication-results": true,
	"received-spf": true, "x-received": true, "x-virus-scanned": true, "x-virus-status": true,
	"x-greylist": true, "x-uid": true, "status": true, "x-status": true, "x-keywords": true,
	"x-mozilla-status": true, "x-mozilla-status2": true, "x-mozilla-keys": true,
	"content-length": true, "lines": true, "x-imap": true, "x-imapbase": true,
	"x-evolution": true, "x-spam": true, "x-forwarded-to": true, "x-forwarded-for": true,
}

// receiverPrefixes are prefixes (lowercase) of receiver-added header names.
var receiverPrefixes = []string{
	"arc-", "x-spam-", "x-spamd-", "x-ham-report", "x-amavis-", "x-virus-", "x-barracuda-",
	"x-ms-exchange-organization-", "x-ms-exchange-transport-", "x-forefront-antispam-",
	"x-microsoft-antispam", "x-mimecast-", "x-proofpoint-", "x-rspamd-", "x-dspam-",
	"x-bogosity", "x-mailscanner", "x-policyd-",
}

// IsReceiverHeader reports whether a header of this name is one a
// receiving system adds (trace, filtering results, mail-store fields).
func IsReceiverHeader(name string) bool {
	var buf [64]byte
	if len(name) > len(buf) {
		return false
	}
	lower := buf[:len(name)]
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	if receiverHeaders[string(lower)] {
		return true
	}
	for _, p := range receiverPrefixes {
		if bytes.HasPrefix(lower, []byte(p)) {
			return true
		}
	}
	return false
}

// StripTrace sets aside what was added to a message after it left the
// sender, for mail as a recipient got it: when a Received header names one
// of ownMTAs as the receiving host ("by"), every header above the lowest
// such header (the provider's entry point) is dropped and that header is
// kept, as the milter would have seen the message there; otherwise every
// receiver-added header (IsReceiverHeader) is dropped. The input is not
// modified.
func StripTrace(hs []scoring.Header, ownMTAs []string) []scoring.Header {
	if len(ownMTAs) > 0 {
		entry := -1
		for i, h := range hs {
			if strings.EqualFold(h.Name, "Received") && matchesMTA(ReceivedBy(h.Value), ownMTAs) {
				entry = i
			}
		}
		if entry >= 0 {
			return append([]scoring.Header(nil), hs[entry:]...)
		}
	}
	out := make([]scoring.Header, 0, len(hs))
	for _, h := range hs {
		if !IsReceiverHeader(h.Name) {
			out = append(out, h)
		}
	}
	return out
}

// matchesMTA reports whether host is one of mtas or inside a domain suffix
// among them ("mx1.example.net" matches "example.net" and ".example.net").
func matchesMTA(host string, mtas []string) bool {
	if host == "" {
		return false
	}
	for _, m := range mtas {
		m = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(m), "."))
		if m != "" && (host == m || strings.HasSuffix(host, "."+m)) {
			return true
		}
	}
	return false
}

// ReceivedBy returns the lowercase host name after "by" in a Received
// header value, or "".
func ReceivedBy(v string) string {
	f := strings.Fields(v)
	for i := 0; i+1 < len(f); i++ {
		if strings.EqualFold(f[i], "by") {
			return strings.ToLower(strings.Trim(f[i+1], "()[];"))
		}
	}
	return ""
}

// ReceivedTime parses the date after the last ';' of a Received header.
func ReceivedTime(v string) (time.Time, bool) {
	semi := strings.LastIndexByte(v, ';')
	if semi < 0 {
		return time.Time{}, false
	}
	return ParseDate(v[semi+1:])
}

// ParseDate parses an RFC 5322 date, tolerating folding, a trailing
// comment such as "(PDT)" and a missing weekday.
func ParseDate(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if strings.ContainsAny(s, "\r\n\t") || strings.Contains(s, "  ") {
		s = strings.Join(strings.Fields(s), " ")
	}
	// The common forms first: net/mail tries a dozen layouts in turn, and
	// every failed attempt costs an error allocation.
	if i := strings.IndexByte(s, ','); i == 3 {
		if t, err := time.Parse("Mon, 2 Jan 2006 15:04:05 -0700", strings.TrimSpace(cutComment(s))); err == nil {
			return t, true
		}
	} else if t, err := time.Parse("2 Jan 2006 15:04:05 -0700", strings.TrimSpace(cutComment(s))); err == nil {
		return t, true
	}
	// Try without a trailing comment first: net/mail accepts it only in
	// some forms, and failed attempts cost an error allocation each.
	if i := strings.IndexByte(s, '('); i > 0 {
		if t, err := mail.ParseDate(strings.TrimSpace(s[:i])); err == nil {
			return t, true
		}
	}
	if t, err := mail.ParseDate(strings.TrimSpace(s)); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// cutComment drops a trailing "(comment)".
func cutComment(s string) string {
	if i := strings.IndexByte(s, '('); i > 0 {
		return s[:i]
	}
	return s
}

// NewestReceived returns the time of the topmost Received header that has
// a readable date.
func NewestReceived(hs []scoring.Header) (time.Time, bool) {
	for _, h := range hs {
		if strings.EqualFold(h.Name, "Received") {
			if t, ok := ReceivedTime(h.Value); ok {
				return t, true
			}
		}
	}
	return time.Time{}, false
}
