package mailbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// splitter cuts a stream into messages. With mbox set it splits at From_
// lines and removes the variant's quoting; without it the whole stream is
// one message.
type splitter struct {
	r       *bufio.Reader
	source  string
	mbox    bool
	variant Variant
	opts    *Options

	off       int64  // bytes consumed so far
	nextFrom  []byte // the From_ line that starts the next message
	nextOff   int64
	atStart   bool // nothing read yet
	eof       bool
	readErr   error
	lastStart bool   // the last chunk ended a line (the next one starts one)
	scratch   []byte // reused to collect each message, copied out once
}

func newSplitter(r *bufio.Reader, source string, mbox bool, opts *Options) *splitter {
	return &splitter{r: r, source: source, mbox: mbox, variant: opts.Variant, opts: opts, atStart: true, lastStart: true}
}

// chunk reads the next piece of a line: a whole line with its newline, or
// a buffer-full of a longer one. startsLine tells whether it begins a line.
func (s *splitter) chunk() (b []byte, startsLine bool, err error) {
	b, err = s.r.ReadSlice('\n')
	startsLine = s.lastStart
	s.lastStart = len(b) > 0 && b[len(b)-1] == '\n'
	s.off += int64(len(b))
	if errors.Is(err, bufio.ErrBufferFull) {
		err = nil
	}
	return b, startsLine, err
}

var (
	fromPrefix = []byte("From ")
	lfBlank    = []byte("\n")
	crlfBlank  = []byte("\r\n")
)

// isBlank reports whether a whole line is empty ("\n" or "\r\n").
func isBlank(b []byte) bool {
	return len(b) == 1 && b[0] == '\n' || len(b) == 2 && b[0] == '\r' && b[1] == '\n'
}

// looksLikeFromLine accepts "From sender Www Mmm dd hh:mm:ss yyyy" lines
// that are not preceded by a blank line (some writers omit it): it wants
// a time and a digit near the end.
func looksLikeFromLine(b []byte) bool {
	b = bytes.TrimRight(b, "\r\n ")
	if len(b) < 20 || !bytes.HasPrefix(b, fromPrefix) {
		return false
	}
	colon := bytes.IndexByte(b[5:], ':')
	last := b[len(b)-1]
	return colon > 0 && last >= '0' && last <= '9'
}

// unquote removes one level of mbox quoting from a body line.
func (s *splitter) unquote(b []byte) []byte {
	if len(b) < 6 || b[0] != '>' {
		return b
	}
	if s.variant == MboxRD {
		i := 0
		for i < len(b) && b[i] == '>' {
			i++
		}
		if bytes.HasPrefix(b[i:], fromPrefix) {
			return b[1:]
		}
		return b
	}
	if bytes.HasPrefix(b[1:], fromPrefix) {
		return b[1:]
	}
	return b
}

// envelopeAddress extracts the sender from a From_ line when it is an address.
func envelopeAddress(line []byte) string {
	f := bytes.Fields(line)
	if len(f) < 2 || bytes.IndexByte(f[1], '@') < 0 {
		return ""
	}
	return string(bytes.Trim(f[1], "<>"))
}

// next returns the next message, or io.EOF. The problem, when not nil,
// reports the message as truncated or the input as unreadable part way.
func (s *splitter) next() (*Message, *Problem, error) {
	if s.eof {
		return nil, nil, io.EOF
	}
	m := &Message{Source: s.source, Format: EML, Data: s.scratch[:0]}
	defer func() {
		// Collect in the reused buffer, hand out an exact-size copy.
		if cap(m.Data) <= 4<<20 {
			s.scratch = m.Data[:0]
		}
		m.Data = bytes.Clone(m.Data)
	}()
	if s.mbox {
		m.Format = Mbox
		if s.atStart {
			// The caller checked that the stream begins with a From_ line.
			line, _, err := s.chunk()
			s.nextFrom, s.nextOff = bytes.Clone(line), 0
			if err != nil {
				s.eof, s.readErr = true, err
			}
		}
		m.Offset, m.EnvelopeFrom = s.nextOff, envelopeAddress(s.nextFrom)
	}
	s.atStart = false
	inHeader := true
	headerLen := 0
	var pendingBlank []byte // a blank line held back: it may be the separator
	prevBlank := false
	appendBody := func(b []byte) {
		room := s.opts.BodyCap - (int64(len(m.Data)) - int64(headerLen))
		if inHeader {
			room = 0
		}
		if room >= int64(len(b)) {
			m.Data = append(m.Data, b...)
			return
		}
		if room > 0 {
			m.Data = append(m.Data, b[:room]...)
			b = b[room:]
		}
		m.Skipped += int64(len(b))
	}
	if s.opts.NewSink != nil {
		m.Sink = s.opts.NewSink()
	}
	emit := func(b []byte) {
		if m.Sink != nil {
			m.Sink.Write(b)
		}
		if inHeader {
			if len(m.Data)+len(b) <= s.opts.MaxHeaderBytes {
				m.Data = append(m.Data, b...)
				if isBlank(b) {
					inHeader, headerLen = false, len(m.Data)
				}
				return
			}
			inHeader, headerLen = false, len(m.Data)
		}
		appendBody(b)
	}
	for !s.eof {
		start := s.off
		b, startsLine, err := s.chunk()
		if len(b) > 0 {
			if s.mbox && startsLine && bytes.HasPrefix(b, fromPrefix) && (prevBlank || (looksLikeFromLine(b) && !isField(b))) {
				s.nextFrom, s.nextOff = bytes.Clone(b), start
				return m, nil, nil
			}
			if pendingBlank != nil {
				emit(pendingBlank)
				pendingBlank = nil
			}
			if startsLine && isBlank(b) {
				pendingBlank = lfBlank
				if len(b) == 2 {
					pendingBlank = crlfBlank
				}
				prevBlank = true
			} else {
				if s.mbox && startsLine {
					b = s.unquote(b)
				}
				emit(b)
				prevBlank = false
			}
		}
		if err != nil {
			s.eof = true
			if !errors.Is(err, io.EOF) {
				s.readErr = err
			}
		}
	}
	// End of input: a proper mbox message ends with its blank separator
	// line; a single message just ends.
	if pendingBlank != nil && !s.mbox {
		emit(pendingBlank)
	}
	var p *Problem
	switch {
	case s.readErr != nil:
		m.Truncated = true
		p = &Problem{Source: s.source, Offset: m.Offset, InMbox: s.mbox, Kind: Truncated, Err: fmt.Errorf("input ends early: %w", s.readErr)}
	case s.mbox && pendingBlank == nil:
		m.Truncated = true
		p = &Problem{Source: s.source, Offset: m.Offset, InMbox: true, Kind: Truncated, Err: errors.New("file ends in the middle of this message (no final blank line)")}
	}
	return m, p, nil
}
