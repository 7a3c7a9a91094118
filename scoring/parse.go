package scoring

import (
	"bytes"
	"errors"
	"net/mail"
	"strings"
	"time"
)

// ErrNoHeader is returned by ParseBytes for input that does not start
// with a header field.
var ErrNoHeader = errors.New("no header field at start of message")

// The header reader. ParseBytes (the scanner's reader of raw messages) and
// NewHeader (the milter's reader of the fields an MTA hands it) give the
// rules one form of every header field, the form Postfix and Sendmail hand
// a milter (checked against both by the end-to-end tests in
// cmd/abusemilter):
//
//   - A field is a name of printable US-ASCII other than ':', optional
//     spaces and tabs, a colon and the value (RFC 5322 section 2.2, and
//     the obsolete whitespace before the colon of section 4.5.3, as
//     Postfix's is_header and Sendmail's isheader accept it). The name
//     is kept without that whitespace: "From : x" is a From field.
//   - The value is the text after the colon with one leading space
//     removed (a tab, or a second space, stays), folded lines kept and
//     joined by "\n" alone: a line end is LF after any number of CRs, as
//     Postfix's smtpd strips them. A bare CR elsewhere stays (Postfix
//     hands it on as a space, Sendmail refuses the message). An empty
//     value is a field.
//   - The header section ends at a blank line or at the first line that
//     is neither a field nor the continuation of one (a line with a
//     space in the name, a folded name, text): that line starts the
//     body. A continuation line before any field ends it too. (Sendmail
//     also ends it at a line starting "--"; Postfix reads that as a
//     field, and so does the reader.)
//   - Lines at the very start that begin with "From " after any number
//     of '>' (an mbox From_ line) are not fields: each becomes an
//     X-Mailbox-Line field, as Postfix's smtpd makes it (Sendmail drops a
//     "From " line and reads a ">From " line as body). So "From : x" on
//     the first line is such a line, not a From field, for both MTAs.
//   - Duplicate fields are all kept, in order.
//
// Rules look fields up by name through Message.Get, Values and Count (and
// Check's views of them), which compare names case-insensitively and
// without surrounding whitespace (Header.Is).

// MboxLineField is the name of the field a leading mbox From_ line becomes.
const MboxLineField = "X-Mailbox-Line"

// NewHeader returns a header field in the reader's form from a name and a
// value as an MTA hands them to a milter (the value without the one space
// after the colon): the name without surrounding whitespace, CRLF in the
// value as LF.
func NewHeader(name, value string) Header {
	return Header{Name: trimWSP(name), Value: lfOnly(value)}
}

// FieldName splits a header line at its colon: name is the field name
// (without whitespace before the colon) and value the text after the
// colon; ok is false when the line is not a field (see the reader's rules
// above).
func FieldName(line string) (name, value string, ok bool) {
	n, v := fieldSplit(line)
	if n < 0 {
		return "", "", false
	}
	return line[:n], line[v:], true
}

// fieldSplit returns the length of the field name at the start of line
// and the index after its colon, or -1, -1 when line is not a field.
func fieldSplit[S string | []byte](line S) (nameLen, valueStart int) {
	i := 0
	for i < len(line) && line[i] > ' ' && line[i] < 0x7f && line[i] != ':' {
		i++
	}
	if i == 0 {
		return -1, -1
	}
	j := i
	for j < len(line) && (line[j] == ' ' || line[j] == '\t') {
		j++
	}
	if j == len(line) || line[j] != ':' {
		return -1, -1
	}
	return i, j + 1
}

// isMboxLine reports whether a line at the start of a message is an mbox
// From_ line as Postfix's smtpd takes it: "From " after any '>'.
func isMboxLine[S string | []byte](line S) bool {
	i := 0
	for i < len(line) && line[i] == '>' {
		i++
	}
	return len(line)-i >= 5 && string(line[i:i+5]) == "From "
}

// lineKind classifies a line of the header section.
type lineKind int

const (
	lineEnd   lineKind = iota // not part of the section: the body starts here
	lineMbox                  // a leading mbox From_ line
	lineField                 // starts a field
	lineCont                  // continues the field before it
)

// sectionLine classifies a non-blank line of the header section (without
// its line end). atStart is true while no line but mbox From_ lines has
// been read, haveField once a field has.
func sectionLine(line []byte, atStart, haveField bool) lineKind {
	if atStart && isMboxLine(line) {
		return lineMbox
	}
	if line[0] == ' ' || line[0] == '\t' {
		if haveField {
			return lineCont
		}
		return lineEnd
	}
	if n, _ := fieldSplit(line); n > 0 {
		return lineField
	}
	return lineEnd
}

// ParseBytes parses a raw RFC 5322 message held in memory with the header
// reader described above: every header field in order, a body sample of
// at most bodyCap bytes, and the full body size. It is tolerant: LF or
// CRLF line ends, leading mbox From_ lines, and a header section that ends
// without a blank line (the first line that is not a field starts the
// body). It copies little: the body sample is a slice of data (the caller
// must not change data afterwards) and every header name and value is a
// substring of one string made of the header section. Memory stays
// bounded: a header line is cut at MaxHeaderLine bytes and headers past
// MaxHeaderSection bytes of header section are dropped.
func ParseBytes(data []byte, bodyCap int64) (*Message, error) {
	// Pass 1: find the end of the header section and whether a line needs
	// cutting.
	pos, bodyStart, sectionEnd := 0, len(data), len(data)
	headerBytes, atStart, haveField, cut, cr := 0, true, false, false, false
	for pos < len(data) {
		end := len(data)
		if nl := bytes.IndexByte(data[pos:], '\n'); nl >= 0 {
			end = pos + nl + 1
		}
		line := trimEOL(data[pos:end])
		if len(line) > MaxHeaderLine {
			cut = true
		}
		if headerBytes += min(len(line), MaxHeaderLine) + (end - pos - len(line)); headerBytes > MaxHeaderSection {
			sectionEnd, bodyStart = pos, blankLineAfter(data, pos)
			break
		}
		if len(line) == 0 {
			sectionEnd, bodyStart = pos, end
			break
		}
		kind := sectionLine(line, atStart, haveField)
		if kind == lineEnd {
			sectionEnd, bodyStart = pos, pos
			break
		}
		atStart = atStart && kind == lineMbox
		haveField = haveField || kind == lineField
		cr = cr || end-pos-len(line) >= 2
		pos = end
	}
	section := data[:sectionEnd]
	if cut {
		section = cutLongLines(section)
	}
	block := string(section)
	if cr {
		block = lfLineEnds(block)
	}

	// Pass 2: split the section into fields.
	m := &Message{Headers: make([]Header, 0, 24)}
	atStart = true
	for i := 0; i < len(block); {
		end := i
		for {
			nl := strings.IndexByte(block[end:], '\n')
			if nl < 0 {
				end = len(block)
				break
			}
			end += nl + 1
			if end >= len(block) || (block[end] != ' ' && block[end] != '\t') {
				break
			}
		}
		// A section cut at the end of the input may end in CRs of a line
		// end whose LF is missing; they are line end too.
		field := strings.TrimRight(strings.TrimSuffix(block[i:end], "\n"), "\r")
		i = end
		// Pass 1 ended the section at a continuation of a From_ line, so
		// such a line is never folded.
		if atStart && isMboxLine(field) {
			m.Headers = append(m.Headers, Header{Name: MboxLineField, Value: field})
			continue
		}
		atStart = false
		n, v := fieldSplit(field)
		if n < 0 {
			continue
		}
		value := field[v:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		m.Headers = append(m.Headers, Header{Name: field[:n], Value: value})
	}
	if len(m.Headers) == 0 {
		return nil, ErrNoHeader
	}
	if bodyCap < 0 {
		bodyCap = 0
	}
	body := data[bodyStart:]
	m.BodySize = int64(len(body))
	if int64(len(body)) > bodyCap {
		body, m.BodyTruncated = body[:bodyCap], true
	}
	m.Body = body[:len(body):len(body)]
	return m, nil
}

// blankLineAfter returns where the body starts when the header section is
// cut at pos: after the next blank line, or at the end of data.
func blankLineAfter(data []byte, pos int) int {
	for pos < len(data) {
		end := len(data)
		if nl := bytes.IndexByte(data[pos:], '\n'); nl >= 0 {
			end = pos + nl + 1
		}
		if len(trimEOL(data[pos:end])) == 0 {
			return end
		}
		pos = end
	}
	return len(data)
}

// cutLongLines returns a copy of a header section with every line cut to
// MaxHeaderLine bytes (line ends kept).
func cutLongLines(section []byte) []byte {
	out := make([]byte, 0, len(section))
	for len(section) > 0 {
		end := len(section)
		if nl := bytes.IndexByte(section, '\n'); nl >= 0 {
			end = nl + 1
		}
		line := trimEOL(section[:end])
		out = append(append(out, line[:min(len(line), MaxHeaderLine)]...), section[len(line):end]...)
		section = section[end:]
	}
	return out
}

// Limits of ParseBytes on the header section.
const (
	MaxHeaderLine    = 128 << 10 // bytes kept of one physical header line
	MaxHeaderSection = 4 << 20   // bytes of header section parsed
)

// trimEOL removes a line's end: LF and the CRs before it (Postfix's smtpd
// strips every CR before the LF).
func trimEOL(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimRight(line, "\r")
}

// lfLineEnds writes every line end of s (LF after any number of CRs) as
// LF alone.
func lfLineEnds(s string) string {
	if !strings.Contains(s, "\r\n") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for len(s) > 0 {
		nl := strings.IndexByte(s, '\n')
		if nl < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(strings.TrimRight(s[:nl], "\r"))
		b.WriteByte('\n')
		s = s[nl+1:]
	}
	return b.String()
}

// trimWSP removes spaces and tabs around s.
func trimWSP(s string) string {
	return strings.Trim(s, " \t")
}

// lfOnly writes the line ends of a folded value as LF (see lfLineEnds).
func lfOnly(v string) string { return lfLineEnds(v) }

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
	"x-spam": true, "x-sieve": true, "x-google-smtp-source": true, "x-gm-message-state": true, "x-mailbox-line": true,
	"x-ms-exchange-organization-authas": true, "x-forefront-antispam-report": true,
	"x-microsoft-antispam": true, "x-originalarrivaltime": true, "x-beenthere": false,
}

// traceHeaderPrefixes are prefixes of header names StripTrace sets aside.
var traceHeaderPrefixes = []string{"arc-", "x-spam-", "x-amavis", "x-mailscanner", "x-virus-", "x-ms-exchange-organization-", "x-ms-exchange-crosstenant-", "x-gm-", "x-google-"}

// IsTraceHeader reports whether a header field is one that receiving
// servers add (see StripTrace).
func IsTraceHeader(name string) bool {
	// Lowercased on the stack: this runs for every header of every message
	// the offline scanner reads.
	var buf [64]byte
	name = trimWSP(name)
	if len(name) > len(buf) {
		name = strings.ToLower(name)
	}
	lower := buf[:0]
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower = append(lower, c)
	}
	if traceHeaders[string(lower)] {
		return true
	}
	for _, p := range traceHeaderPrefixes {
		if len(lower) >= len(p) && string(lower[:len(p)]) == p {
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
	if mtas := normalizedHosts(ownMTAs); len(mtas) > 0 {
		for i, h := range headers {
			if !h.Is("Received") {
				continue
			}
			if _, ok := hostMatches(receivedBy(h.Value), mtas); ok {
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
		if !h.Is("Received") {
			continue
		}
		semi := strings.LastIndexByte(h.Value, ';')
		if semi < 0 {
			continue
		}
		if t, err := ParseDate(h.Value[semi+1:]); err == nil {
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

// dateLayout is the form nearly every Date and Received time stamp takes.
const dateLayout = "Mon, 2 Jan 2006 15:04:05 -0700"

// ParseDate parses an RFC 5322 date-time as net/mail.ParseDate does, after
// unfolding and trimming it. The common form is tried first: net/mail tries
// its layouts in turn, and every failed attempt costs an error allocation.
func ParseDate(v string) (time.Time, error) {
	v = strings.TrimSpace(unfold(v))
	if len(v) > 4 && v[3] == ',' && !strings.ContainsRune(v, '\r') {
		if t, err := time.Parse(dateLayout, withoutComment(v)); err == nil {
			return t, nil
		}
	}
	return mail.ParseDate(v)
}

// withoutComment drops one trailing comment such as " (PDT)", which
// net/mail ignores; the value itself when it has another comment or a
// parenthesis elsewhere (net/mail then decides).
func withoutComment(v string) string {
	open := strings.IndexByte(v, '(')
	if open < 0 {
		return v
	}
	if v[len(v)-1] != ')' || strings.ContainsAny(v[open+1:len(v)-1], "()\\") {
		return v + "(" // cannot parse: net/mail decides
	}
	return strings.TrimRight(v[:open], " \t")
}
