// Package complaint reads the complaints an abuse desk receives about its
// customers' mail and finds in them what identifies the original message:
// its Message-ID and the tracking header the milter added.
//
// It reads ARF reports (RFC 5965: multipart/report with a
// message/feedback-report part whose Feedback-Type is abuse, fraud, virus
// or other, and the original as message/rfc822 or text/rfc822-headers),
// delivery status notifications (RFC 3464: multipart/report with
// report-type=delivery-status), and forwarded messages, with the original
// attached (message/rfc822) or quoted inline in the body. Anything that is
// not a mail message at all is ErrNotMail.
//
// It also makes and checks the tracking header (tracking.go): the account
// and the time, authenticated with HMAC-SHA256 under a key of the
// provider's, so that a complaint whose Message-ID was lost still names
// the account, and a forged or altered header names none.
package complaint

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"

	"github.com/abusemilter/abusemilter/attachment"
)

// ErrNotMail is returned for input that is not a mail message at all.
var ErrNotMail = errors.New("not a mail message")

// MaxSize bounds what Parse reads of a report.
const MaxSize = 10 << 20

// Report is what a complaint says about the original message.
type Report struct {
	// Type is the ARF Feedback-Type (abuse, fraud, virus, other), "dsn" for
	// a delivery status notification, or "forwarded".
	Type string
	// Reporter is the report's From; ReportID its Message-ID.
	Reporter string
	ReportID string
	// ID identifies the report: the SHA-256 of its Message-ID, or of its
	// bytes when it has none (a report delivered twice counts once).
	ID string
	// MessageID is the original's Message-ID (without angle brackets),
	// Subject its Subject; Tracking is the value of the original's
	// tracking header; each empty when the report does not show it.
	MessageID string
	Subject   string
	Tracking  string
	// Original says where the original was found: "attached" (a
	// message/rfc822 or text/rfc822-headers part), "inline" (quoted in the
	// body), or "" (not found).
	Original string
	// OriginalMessage is the attached original (a message/rfc822 part) as
	// it was sent, transfer encoding removed; nil when the report does not
	// carry it whole. abusescan learn trains on it.
	OriginalMessage []byte
}

// Parse reads a complaint. trackingHeader is the name of the tracking
// header to look for in the original (e.g. X-Abuse-Tracking).
func Parse(r io.Reader, trackingHeader string) (*Report, error) {
	raw, err := io.ReadAll(io.LimitReader(r, MaxSize))
	if err != nil {
		return nil, fmt.Errorf("reading the complaint: %w", err)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil || !looksLikeMail(msg.Header) {
		return nil, ErrNotMail
	}
	rep := &Report{Reporter: msg.Header.Get("From"), ReportID: trimID(msg.Header.Get("Message-Id"))}
	sum := sha256.Sum256(raw)
	if rep.ReportID != "" {
		sum = sha256.Sum256([]byte(rep.ReportID))
	}
	rep.ID = hex.EncodeToString(sum[:16])
	p := parser{tracking: trackingHeader, rep: rep}
	p.walk(textproto.MIMEHeader(msg.Header), msg.Body, 0)
	if rep.Type == "" {
		rep.Type = "forwarded"
	}
	return rep, nil
}

// looksLikeMail reports whether a header block is a message's: it has at
// least one of the fields every message or report has.
func looksLikeMail(h mail.Header) bool {
	for _, f := range []string{"From", "Message-Id", "Date", "Subject", "Content-Type", "To", "Received", "Return-Path"} {
		if h.Get(f) != "" {
			return true
		}
	}
	return false
}

// maxDepth bounds MIME nesting.
const maxDepth = 8

type parser struct {
	tracking string
	rep      *Report
}

// walk looks at one entity: a multipart is walked part by part, a report
// part read, an attached original taken, a text body searched for an
// inline original.
func (p *parser) walk(h textproto.MIMEHeader, body io.Reader, depth int) {
	if depth > maxDepth {
		return
	}
	ct, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		ct = "text/plain"
	}
	body = attachment.DecodeTransfer(h.Get("Content-Transfer-Encoding"), body)
	switch {
	case strings.HasPrefix(ct, "multipart/"):
		if ct == "multipart/report" && depth == 0 {
			switch strings.ToLower(params["report-type"]) {
			case "feedback-report":
				p.rep.Type = "abuse" // until the report part says
			case "delivery-status":
				p.rep.Type = "dsn"
			}
		}
		mr := multipart.NewReader(body, params["boundary"])
		for {
			part, err := mr.NextRawPart()
			if err != nil {
				return
			}
			p.walk(part.Header, part, depth+1)
		}
	case ct == "message/feedback-report":
		b, _ := io.ReadAll(io.LimitReader(body, 64<<10))
		fields := headerBlock(b)
		if t := strings.ToLower(strings.TrimSpace(fields.Get("Feedback-Type"))); t != "" {
			switch t {
			case "abuse", "fraud", "virus", "other":
				p.rep.Type = t
			default:
				p.rep.Type = "other"
			}
		}
	case ct == "message/rfc822" || ct == "text/rfc822-headers" || ct == "message/rfc822-headers":
		b, _ := io.ReadAll(io.LimitReader(body, MaxSize))
		if ct == "message/rfc822" && p.rep.Original != "attached" {
			p.rep.OriginalMessage = b
		}
		p.original(headerBlock(b), "attached")
		if p.rep.Type == "" && depth > 0 {
			p.rep.Type = "forwarded"
		}
	case strings.HasPrefix(ct, "text/plain") && p.rep.Original == "":
		b, _ := io.ReadAll(io.LimitReader(body, MaxSize))
		p.inline(b)
	}
}

// original takes the original's fields, unless an attached original was
// found already (the first one wins: a forwarded report's own original
// comes after it).
func (p *parser) original(h textproto.MIMEHeader, where string) {
	if p.rep.Original == "attached" {
		return
	}
	mid, subj, trk := trimID(h.Get("Message-Id")), h.Get("Subject"), ""
	if p.tracking != "" {
		trk = strings.TrimSpace(h.Get(p.tracking))
	}
	if mid == "" && trk == "" && subj == "" {
		return
	}
	p.rep.MessageID, p.rep.Subject, p.rep.Tracking, p.rep.Original = mid, decodeWord(subj), trk, where
}

// forwardMarkers start the quoted original in a forwarded message's body.
var forwardMarkers = regexp.MustCompile(`(?im)^[ \t>]*(-{2,}\s*(original message|forwarded message)\s*-{2,}|begin forwarded message:|-{5,} ?forwarded by)`)

// quoteRe strips the quoting of a line: "> " prefixes.
var quoteRe = regexp.MustCompile(`^[ \t]*(>[ \t]?)*`)

// inline finds an original quoted in a text body: the header lines after
// a forwarding marker, or failing one, Message-ID and tracking lines
// anywhere.
func (p *parser) inline(body []byte) {
	text := string(body)
	if loc := forwardMarkers.FindStringIndex(text); loc != nil {
		text = text[loc[1]:]
		if nl := strings.IndexByte(text, '\n'); nl >= 0 {
			text = text[nl+1:]
		}
	}
	var block strings.Builder
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(quoteRe.ReplaceAllString(line, ""), "\r")
		if name, _, ok := strings.Cut(line, ":"); ok && isFieldName(name) {
			block.WriteString(line + "\r\n")
		}
	}
	p.original(headerBlock([]byte(block.String())), "inline")
}

func isFieldName(s string) bool {
	if s == "" || len(s) > 76 {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// headerBlock reads the header fields at the start of b (a message, or a
// header block alone).
func headerBlock(b []byte) textproto.MIMEHeader {
	b = bytes.TrimLeft(b, "\r\n")
	if !bytes.Contains(b, []byte("\n\n")) && !bytes.Contains(b, []byte("\r\n\r\n")) {
		b = append(append([]byte(nil), b...), "\r\n\r\n"...)
	}
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(b))).ReadMIMEHeader()
	if err != nil && h == nil {
		return textproto.MIMEHeader{}
	}
	return h
}

// trimID returns a Message-ID without white space and angle brackets.
func trimID(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '<'); i >= 0 {
		if j := strings.IndexByte(s[i:], '>'); j > 0 {
			return strings.TrimSpace(s[i+1 : i+j])
		}
	}
	return s
}

func decodeWord(s string) string {
	if d, err := new(mime.WordDecoder).DecodeHeader(s); err == nil {
		return d
	}
	return s
}
