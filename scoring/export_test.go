package scoring

// Functions that only tests call live here, outside the product code: the
// milter and the scanner go through Engine.CheckMessage and ParseBytes.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/abusemilter/abusemilter/identity"
)

// ParseMessage reads a raw RFC 5322 message: every header field in order
// with its raw value (folding kept, line ends as written, without the final
// line end), a body sample of at most bodyCap bytes, and the full body size.
// It is tolerant: LF or CRLF line ends, a leading mbox "From " line, and a
// header section that ends without a blank line (the first line that is not
// a field starts the body). Memory stays bounded: a header line is cut at
// MaxHeaderLine bytes and headers past MaxHeaderSection bytes are dropped.
// It fails only when there is no header at all or the reader fails.
//
// It reads the header section (within those bounds) and the body sample
// into memory and parses them with ParseBytes, the one parser.
func ParseMessage(r io.Reader, bodyCap int64) (*Message, error) {
	br := bufio.NewReader(r)
	var buf []byte
	headerBytes := 0
	atStart, haveField := true, false
	for {
		line, eol, err := readCappedLine(br, MaxHeaderLine)
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("reading message header: %w", err)
		}
		if len(line) == 0 && eol == "" {
			break // end of input
		}
		if headerBytes += len(line) + len(eol); headerBytes > MaxHeaderSection {
			if err := skipHeaderSection(br); err != nil {
				return nil, fmt.Errorf("reading message header: %w", err)
			}
			buf = append(buf, '\n') // the section ends here for ParseBytes
			break
		}
		buf = append(append(buf, line...), eol...)
		if len(line) == 0 || err != nil {
			break // blank line or end of input
		}
		kind := sectionLine(line, atStart, haveField)
		if kind == lineEnd {
			break // the first body line
		}
		atStart = atStart && kind == lineMbox
		haveField = haveField || kind == lineField
	}
	if bodyCap < 0 {
		bodyCap = 0
	}
	b := bytes.NewBuffer(buf)
	if _, err := b.ReadFrom(io.LimitReader(br, bodyCap)); err != nil {
		return nil, fmt.Errorf("reading message body: %w", err)
	}
	rest, err := io.Copy(io.Discard, br)
	if err != nil {
		return nil, fmt.Errorf("reading message body: %w", err)
	}
	m, err := ParseBytes(b.Bytes(), bodyCap)
	if err != nil {
		return nil, err
	}
	m.BodySize += rest
	m.BodyTruncated = m.BodyTruncated || rest > 0
	return m, nil
}

// readCappedLine reads one line and returns at most limit bytes of it
// without its line end, and the line end ("\r\n", "\n", or "" at the end
// of input); the rest of a longer line is read and dropped.
func readCappedLine(br *bufio.Reader, limit int) (line []byte, eol string, err error) {
	var prev byte // last byte of the previous fragment
	for {
		frag, err := br.ReadSlice('\n')
		if room := limit + 2 - len(line); room > 0 {
			line = append(line, frag[:min(room, len(frag))]...)
		}
		if err == bufio.ErrBufferFull {
			prev = frag[len(frag)-1]
			continue
		}
		if n := len(frag); n > 0 && frag[n-1] == '\n' {
			before := prev
			if n >= 2 {
				before = frag[n-2]
			}
			eol = "\n"
			line = bytes.TrimSuffix(line, []byte("\n"))
			if before == '\r' {
				// Every CR before the LF is part of the line end (trimEOL).
				trimmed := bytes.TrimRight(line, "\r")
				if n := len(line) - len(trimmed); n > 1 {
					eol = strings.Repeat("\r", n) + "\n"
				} else {
					eol = "\r\n"
				}
				line = trimmed
			}
		}
		return line[:min(len(line), limit)], eol, err
	}
}

// skipHeaderSection drops the rest of an oversized header section, up to
// and including the blank line that ends it.
func skipHeaderSection(br *bufio.Reader) error {
	for {
		line, eol, err := readCappedLine(br, 1)
		if len(line) == 0 && eol != "" {
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

// NewDKIMStream starts verifying a message with the given headers, whose
// values have no whitespace after the colon (as ParseMessage returns them):
// each field is rebuilt as Name ": " Value, which suits relaxed header
// canonicalization but not simple (RFC 6376 §3.4.1) for a field written
// otherwise. With no DKIM-Signature header the stream does nothing and
// Finish returns an empty, non-nil result. With a nil resolver nothing can
// be verified and Finish returns nil ("not verified").
func NewDKIMStream(ctx context.Context, resolver Resolver, headers []Header) *DKIMStream {
	return newDKIMStream(ctx, resolver, headers, ": ")
}

// Decide runs the rules only and turns their findings into a verdict (no
// rate limits, no mode): what the golden and table tests compare.
func (e *Engine) Decide(ctx context.Context, env *Envelope, msg *Message, acct *identity.Account) Verdict {
	findings, score := e.Evaluate(ctx, env, msg, acct)
	return e.judge(findings, score)
}
