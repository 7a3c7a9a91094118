package loadgen

import (
	"errors"
	"fmt"
)

// HeaderField is one header field as a milter receives it: the name, and the
// value after the colon with its leading blanks removed and any folding kept
// as "\n" plus the continuation line (what Postfix sends).
type HeaderField struct {
	Name  string
	Value string
}

// Message is one submission: who sends it (SASL login and client), the
// envelope and the content. Messages are read-only once built and shared
// between workers.
type Message struct {
	Login      string // SASL login, sent as {auth_authen}; empty = unauthenticated
	ClientAddr string // client IP address, {client_addr}
	ClientName string // client host name, {client_name}
	Helo       string // HELO/EHLO argument
	Sender     string // envelope sender (MAIL FROM), without angle brackets
	Recipients []string
	Header     []HeaderField
	Body       []byte // with CRLF line endings, as Postfix sends it
}

// Size returns the approximate size of the message in bytes.
func (m *Message) Size() int {
	n := len(m.Body) + 2
	for _, f := range m.Header {
		n += len(f.Name) + len(f.Value) + 4
	}
	return n
}

// Source hands out the messages of a run. Message(n) returns the message to
// send as the n-th of the run (n counts from 0); it must be safe for
// concurrent use, and the same n gives the same message, so two runs with
// the same source send the same load.
type Source interface {
	Message(n int64) *Message
}

// Pool is a Source that cycles through a fixed list of messages.
type Pool []*Message

var _ Source = Pool(nil)

// Message returns the message at n modulo the pool size.
func (p Pool) Message(n int64) *Message { return p[n%int64(len(p))] }

// Validate reports messages that a milter client cannot send: no sender
// domain is required (the null sender is legal), but each message needs at
// least one recipient.
func (p Pool) Validate() error {
	if len(p) == 0 {
		return errors.New("message pool is empty")
	}
	for i, m := range p {
		if m == nil {
			return fmt.Errorf("message %d of the pool is nil", i)
		}
		if len(m.Recipients) == 0 {
			return fmt.Errorf("message %d of the pool (sender %q) has no recipients", i, m.Sender)
		}
	}
	return nil
}
