package mailbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/abusemilter/abusemilter/scoring"
)

// ErrNoHeaders is returned for a message that does not begin with a header.
var ErrNoHeaders = errors.New("message has no header block")

// ParseMessage reads a raw message into what the rules see: every header
// in order with its raw value (folding kept as received, the space after
// the colon and the final line break removed), at most bodyCap bytes of the
// body, and the full body size. A line in the header block that is neither
// a header nor a continuation ends the header block (it is kept as body), as
// MTAs do. It is the scanner's stand-in for the scoring package's own
// parser; only this function needs to change to use that one.
func ParseMessage(r io.Reader, bodyCap int64) (*scoring.Message, error) {
	if br, ok := r.(*bytes.Reader); ok && br.Size() > 0 {
		data := make([]byte, br.Len())
		n, _ := br.Read(data)
		return parseBytes(data[:n], bodyCap)
	}
	br := bufio.NewReaderSize(r, readBufSize)
	var data []byte
	for {
		line, err := br.ReadSlice('\n')
		data = append(data, line...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil || isBlank(line) {
			break
		}
	}
	sample := make([]byte, bodyCap)
	n, _ := io.ReadFull(br, sample)
	data = append(data, sample[:n]...)
	m, err := parseBytes(data, bodyCap)
	if err != nil {
		return nil, err
	}
	skipped, err := io.Copy(io.Discard, br)
	if err != nil {
		return nil, fmt.Errorf("reading message body: %w", err)
	}
	m.BodySize += skipped
	m.BodyTruncated = m.BodyTruncated || skipped > 0
	return m, nil
}

// parseBytes parses a message held in memory. The body sample shares no
// memory with data.
func parseBytes(data []byte, bodyCap int64) (*scoring.Message, error) {
	if !startsWithHeader(data) {
		return nil, ErrNoHeaders
	}
	m := &scoring.Message{Headers: make([]scoring.Header, 0, 32)}
	pos := 0
	for pos < len(data) {
		end := bytes.IndexByte(data[pos:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += pos + 1
		}
		line := data[pos:end]
		if isBlank(line) {
			pos = end
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(m.Headers) == 0 {
				break
			}
			// A continuation line: extend the previous header's raw value.
			h := &m.Headers[len(m.Headers)-1]
			h.Value = h.Value + lineBreak(data, pos) + string(trimEOL(line))
			pos = end
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !validName(bytes.TrimRight(line[:colon], " \t")) {
			break // not a header: the header block ends here
		}
		name := string(bytes.TrimRight(line[:colon], " \t"))
		value := bytes.TrimLeft(trimEOL(line[colon+1:]), " \t")
		m.Headers = append(m.Headers, scoring.Header{Name: name, Value: string(value)})
		pos = end
	}
	body := data[pos:]
	m.BodySize = int64(len(body))
	if int64(len(body)) > bodyCap {
		body = body[:bodyCap]
		m.BodyTruncated = true
	}
	m.Body = bytes.Clone(body)
	if m.Body == nil {
		m.Body = []byte{}
	}
	return m, nil
}

// lineBreak returns the line ending that preceded position pos ("\r\n" or
// "\n"), so folded values keep their folding as received.
func lineBreak(data []byte, pos int) string {
	if pos >= 2 && data[pos-2] == '\r' {
		return "\r\n"
	}
	return "\n"
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

func validName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}
