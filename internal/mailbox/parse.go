package mailbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

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
	m, err := ParseBytes(data, bodyCap)
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

// ParseBytes is ParseMessage for a message held in memory that the caller
// hands over (it must not change data afterwards): no copy is made, and the
// body sample is a slice of data. The header block is converted to one
// string, of which every name and value is a substring.
func ParseBytes(data []byte, bodyCap int64) (*scoring.Message, error) {
	if !startsWithHeader(data) {
		return nil, ErrNoHeaders
	}
	// Find where the header block ends: a blank line, or a line that is
	// neither a header nor a continuation.
	pos, bodyStart := 0, len(data)
	for pos < len(data) {
		end := bytes.IndexByte(data[pos:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += pos + 1
		}
		line := data[pos:end]
		if isBlank(line) {
			bodyStart = end
			break
		}
		if line[0] != ' ' && line[0] != '\t' {
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 || !validName(bytes.TrimRight(line[:colon], " \t")) {
				bodyStart = pos // not a header: it belongs to the body
				break
			}
		}
		pos = end
	}
	headerEnd := min(pos, len(data))
	block := string(data[:headerEnd])
	m := &scoring.Message{Headers: make([]scoring.Header, 0, 24)}
	for i := 0; i < len(block); {
		// One field: its first line and every continuation line.
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
		field := strings.TrimSuffix(strings.TrimSuffix(block[i:end], "\n"), "\r")
		i = end
		colon := strings.IndexByte(field, ':')
		if colon <= 0 {
			continue // a continuation line before any header
		}
		name := strings.TrimRight(field[:colon], " \t")
		value := strings.TrimLeft(field[colon+1:], " \t")
		m.Headers = append(m.Headers, scoring.Header{Name: name, Value: value})
	}
	body := data[bodyStart:]
	m.BodySize = int64(len(body))
	if int64(len(body)) > bodyCap {
		body = body[:bodyCap]
		m.BodyTruncated = true
	}
	m.Body = body[:len(body):len(body)]
	return m, nil
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
