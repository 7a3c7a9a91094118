package scoring

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"
)

// ErrNoHeader is returned by ParseMessage for input that does not start
// with a header field.
var ErrNoHeader = errors.New("no header field at start of message")

// ParseMessage reads a raw RFC 5322 message: every header field in order
// with its raw value (folding kept, line ends as written, without the final
// line end), a body sample of at most bodyCap bytes, and the full body size.
// It is tolerant: LF or CRLF line ends, a leading mbox "From " line, and a
// header section that ends without a blank line (the first line that is not
// a field starts the body). Memory stays bounded: a header line is cut at
// MaxHeaderLine bytes and headers past MaxHeaderSection bytes are dropped.
// It fails only when there is no header at all or the reader fails.
func ParseMessage(r io.Reader, bodyCap int64) (*Message, error) {
	br := bufio.NewReader(r)
	m := &Message{}
	first := true
	cur := -1     // index of the header being read
	prevEOL := "" // line end of its last line, kept when it is folded
	var bodyStart []byte
	headerBytes := 0
	for {
		line, err := readCappedLine(br, MaxHeaderLine)
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("reading message header: %w", err)
		}
		if len(line) == 0 && err != nil {
			break
		}
		if headerBytes += len(line); headerBytes > MaxHeaderSection {
			if err := skipHeaderSection(br); err != nil {
				return nil, fmt.Errorf("reading message header: %w", err)
			}
			break
		}
		content := trimEOL(line)
		if first && bytes.HasPrefix(line, []byte("From ")) {
			first = false
			continue // mbox separator
		}
		first = false
		if len(content) == 0 {
			break // end of header section
		}
		if (content[0] == ' ' || content[0] == '\t') && cur >= 0 {
			m.Headers[cur].Value += prevEOL + string(content)
		} else {
			colon := bytes.IndexByte(content, ':')
			if colon <= 0 || !validFieldName(content[:colon]) {
				bodyStart = line // not a field: the body starts here
				break
			}
			m.Headers = append(m.Headers, Header{Name: string(content[:colon]), Value: strings.TrimLeft(string(content[colon+1:]), " \t")})
			cur = len(m.Headers) - 1
		}
		prevEOL = lineEnd(line)
		if err != nil {
			break
		}
	}
	if len(m.Headers) == 0 {
		return nil, ErrNoHeader
	}
	body := io.MultiReader(bytes.NewReader(bodyStart), br)
	if bodyCap < 0 {
		bodyCap = 0
	}
	sample, err := io.ReadAll(io.LimitReader(body, bodyCap))
	if err != nil {
		return nil, fmt.Errorf("reading message body: %w", err)
	}
	rest, err := io.Copy(io.Discard, body)
	if err != nil {
		return nil, fmt.Errorf("reading message body: %w", err)
	}
	m.Body, m.BodySize, m.BodyTruncated = sample, int64(len(sample))+rest, rest > 0
	return m, nil
}

// Limits of ParseMessage on the header section.
const (
	MaxHeaderLine    = 128 << 10 // bytes kept of one physical header line
	MaxHeaderSection = 4 << 20   // bytes of header section parsed
)

// readCappedLine reads one line (with its line end) and keeps at most limit
// bytes of it; the rest of a longer line is read and dropped.
func readCappedLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if room := limit - len(line); room > 0 {
			line = append(line, frag[:min(room, len(frag))]...)
		}
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}

// skipHeaderSection drops the rest of an oversized header section, up to
// and including the blank line that ends it.
func skipHeaderSection(br *bufio.Reader) error {
	for {
		line, err := readCappedLine(br, 2)
		if len(line) > 0 && (line[0] == '\n' || line[0] == '\r' && len(line) > 1 && line[1] == '\n') {
			return nil
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// lineEnd returns the line end a line was read with ("\r\n" when none).
func lineEnd(line []byte) string {
	if bytes.HasSuffix(line, []byte("\r\n")) {
		return "\r\n"
	}
	if bytes.HasSuffix(line, []byte("\n")) {
		return "\n"
	}
	return "\r\n"
}

func trimEOL(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}

// validFieldName reports whether b is an RFC 5322 field name: printable
// US-ASCII except colon and space.
func validFieldName(b []byte) bool {
	for _, c := range b {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// traceHeaders are the header fields that receiving servers add on the
// way in (trace, authentication results, filters' verdicts, mailbox
// bookkeeping). StripTrace sets them aside.
var traceHeaders = map[string]bool{
	"received": true, "return-path": true, "delivered-to": true, "x-original-to": true,
	"authentication-results": true, "received-spf": true, "x-received": true,
	"x-original-authentication-results": true, "x-envelope-from": true, "x-envelope-to": true,
	"x-authentication-warning": true, "x-virus-scanned": true, "x-virus-status": true,
	"x-scanned-by": true, "x-greylist": true, "x-uidl": true, "status": true, "x-status": true,
	"x-keywords": true, "lines": true, "content-length": true, "x-rcpt-to": true,
	"x-spam": true, "x-sieve": true, "x-google-smtp-source": true, "x-gm-message-state": true,
	"x-ms-exchange-organization-authas": true, "x-forefront-antispam-report": true,
	"x-microsoft-antispam": true, "x-originalarrivaltime": true, "x-beenthere": false,
}

// traceHeaderPrefixes are prefixes of header names StripTrace sets aside.
var traceHeaderPrefixes = []string{"arc-", "x-spam-", "x-amavis", "x-mailscanner", "x-virus-", "x-ms-exchange-organization-", "x-ms-exchange-crosstenant-", "x-gm-", "x-google-"}

// IsTraceHeader reports whether a header field is one that receiving
// servers add (see StripTrace).
func IsTraceHeader(name string) bool {
	n := strings.ToLower(name)
	if traceHeaders[n] {
		return true
	}
	for _, p := range traceHeaderPrefixes {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	return false
}

// StripTrace splits received headers into those the sender wrote (kept, in
// order) and those receiving servers added (trace: Received, Return-Path,
// Delivered-To, X-Original-To, Authentication-Results, ARC-*, X-Spam-* and
// similar), so that a received message can be checked as its sender
// submitted it.
func StripTrace(headers []Header) (kept, trace []Header) {
	kept = make([]Header, 0, len(headers))
	for _, h := range headers {
		if IsTraceHeader(h.Name) {
			trace = append(trace, h)
		} else {
			kept = append(kept, h)
		}
	}
	return kept, trace
}

// StripTraceAt is StripTrace for mail that passed through the provider's
// own MTAs (host names or domain suffixes, as RuleSettings.OwnMTAs): when a
// Received header names one of them as the receiving host ("by"), the
// lowest such header is where the milter saw the message, so every header
// above it is trace and it and every header below it are kept. Without
// such a header it is StripTrace.
func StripTraceAt(headers []Header, ownMTAs []string) (kept, trace []Header) {
	entry := -1
	for i, h := range headers {
		if !strings.EqualFold(h.Name, "Received") {
			continue
		}
		if host := receivedBy(h.Value); host != "" {
			if _, ok := hostMatches(host, normalizedHosts(ownMTAs)); ok {
				entry = i
			}
		}
	}
	if entry < 0 {
		return StripTrace(headers)
	}
	return append([]Header(nil), headers[entry:]...), append([]Header(nil), headers[:entry]...)
}

// normalizedHosts lowercases host names and trims dots and spaces, as
// hostMatches wants them.
func normalizedHosts(hosts []string) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		if h = strings.ToLower(strings.Trim(h, ". ")); h != "" {
			out = append(out, h)
		}
	}
	return out
}

// ReceivedTime returns the time stamp of the newest (topmost) Received
// header that has a parseable one, and false when none has.
func ReceivedTime(headers []Header) (time.Time, bool) {
	for _, h := range headers {
		if !strings.EqualFold(h.Name, "Received") {
			continue
		}
		semi := strings.LastIndexByte(h.Value, ';')
		if semi < 0 {
			continue
		}
		if t, err := mail.ParseDate(strings.TrimSpace(unfold(h.Value[semi+1:]))); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// unfold removes folding line ends from a header value (RFC 5322 3.2.2).
func unfold(v string) string {
	if !strings.ContainsAny(v, "\r\n") {
		return v
	}
	v = strings.ReplaceAll(v, "\r\n", "")
	return strings.ReplaceAll(v, "\n", "")
}
