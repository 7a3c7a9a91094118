// Package mailbox reads mail stores for the offline scanner: single
// messages (RFC 5322 .eml files), mbox files in both the mboxo and mboxrd
// variants (see https://doveadm.org/mbox and RFC 4155), gzip-compressed
// files of either kind, Maildir folders (cur/ and new/) and directory trees
// holding any mix of these. What an input is comes from its content, never
// from its name.
//
// Reading streams: Walk yields one message at a time, each with its source
// file and byte offset, keeping the header block and at most a configured
// sample of the body, so memory does not grow with the size of a mailbox.
// Inputs that cannot be read as mail (empty, binary, without headers,
// truncated) are yielded as problems, and the walk goes on.
package mailbox

import (
	"fmt"
	"strconv"
)

// Format says what kind of store a message came from.
type Format string

// The stores Walk understands.
const (
	EML     Format = "eml"     // one message per file (also Maildir entries)
	Mbox    Format = "mbox"    // many messages per file, From_ separated
	Maildir Format = "maildir" // one message per file inside cur/ or new/
)

// Variant is the mbox quoting convention: how a body line beginning with
// "From " was escaped when the mbox was written.
type Variant string

// The two mbox variants in use (RFC 4155 leaves the choice open).
const (
	// MboxO escapes only "From " lines as ">From "; reading removes the '>'
	// from ">From " lines only (Postfix local(8), procmail, mutt).
	MboxO Variant = "mboxo"
	// MboxRD escapes every ">*From " line with one more '>'; reading removes
	// one '>' from every such line (Dovecot, newer mail clients).
	MboxRD Variant = "mboxrd"
)

// ParseVariant parses "mboxo" or "mboxrd".
func ParseVariant(s string) (Variant, error) {
	switch Variant(s) {
	case MboxO, MboxRD:
		return Variant(s), nil
	}
	return "", fmt.Errorf("mbox variant %q: want mboxo or mboxrd", s)
}

// Message is one raw message read from an input.
type Message struct {
	// Source is the file the message was read from ("-" for stdin).
	Source string
	// Offset is the byte offset of the message (of its From_ line in an
	// mbox) in the file, after gzip decompression. 0 for single messages.
	Offset int64
	Format Format
	// EnvelopeFrom is the address on an mbox From_ line, when it is one.
	EnvelopeFrom string
	// Data is the header block and at most the body sample of the message,
	// with mbox quoting removed.
	Data []byte
	// Skipped counts body bytes read past the sample and not kept.
	Skipped int64
	// Truncated is set when the input ended in the middle of this message.
	Truncated bool
	// Sink is the message's Options.NewSink sink, which has been fed the
	// whole message; the consumer finishes or closes it.
	Sink Sink
}

// Sink receives every byte of one message as it is read: the header block
// and the whole body (not only the sample), mbox quoting removed, for a
// consumer that must see all of it in bounded memory (the malware scan).
type Sink interface {
	Write(p []byte) (int, error)
	// Close abandons the sink.
	Close()
}

// Size is the full size of the message in bytes.
func (m *Message) Size() int64 { return int64(len(m.Data)) + m.Skipped }

// Where names the message for reports: "file" or "file:offset" in an mbox.
func (m *Message) Where() string {
	if m.Format == Mbox {
		return m.Source + ":" + strconv.FormatInt(m.Offset, 10)
	}
	return m.Source
}

// ProblemKind classifies an input that could not be read as mail.
type ProblemKind string

// The kinds of unreadable input.
const (
	Empty      ProblemKind = "empty"      // a file of zero bytes
	Binary     ProblemKind = "binary"     // not text: NUL bytes in the first block
	NoHeaders  ProblemKind = "no-headers" // text, but no header block
	Truncated  ProblemKind = "truncated"  // the input ends in the middle of a message
	ReadFailed ProblemKind = "read-error" // the file could not be opened or read
)

// Problem is an input, or a part of one, that could not be read as mail.
// A truncated message is reported as a Problem and yielded as a Message.
type Problem struct {
	Source string
	Offset int64
	InMbox bool // Offset is meaningful
	Kind   ProblemKind
	Err    error
}

// Error implements error: "FILE: offset N: KIND: detail".
func (p *Problem) Error() string {
	where := p.Source
	if p.InMbox {
		where += ": offset " + strconv.FormatInt(p.Offset, 10)
	}
	if p.Err != nil {
		return fmt.Sprintf("%s: %s: %v", where, p.Kind, p.Err)
	}
	return fmt.Sprintf("%s: %s", where, p.Kind)
}

// Unwrap returns the underlying error.
func (p *Problem) Unwrap() error { return p.Err }

// Entry is one item of a walk: a message or a problem (exactly one is set).
type Entry struct {
	Message *Message
	Problem *Problem
}

// Options configures reading.
type Options struct {
	// BodyCap is the body sample kept per message; the rest is counted.
	BodyCap int64
	// MaxHeaderBytes bounds the header block kept per message; lines past it
	// count as body. Default 1 MiB.
	MaxHeaderBytes int
	// Variant is the mbox quoting convention; default MboxO.
	Variant Variant
	// OnRead, when set, is called with the number of input bytes consumed
	// (compressed bytes for gzip files), for progress reporting. It is
	// called from the walking goroutine.
	OnRead func(n int64)
	// NewSink, when set, is called at the start of every message; the sink
	// is fed the whole message as it is read and handed over in
	// Message.Sink. A message that is not yielded has its sink closed.
	NewSink func() Sink
}

func (o *Options) defaults() {
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 1 << 20
	}
	if o.Variant == "" {
		o.Variant = MboxO
	}
	if o.BodyCap < 0 {
		o.BodyCap = 0
	}
}
