package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// SinkMessage is one message delivered to a Sink.
type SinkMessage struct {
	// Helo is the name the client gave in EHLO/HELO.
	Helo string
	// From is the envelope sender without angle brackets ("" for bounces).
	From string
	// To holds the envelope recipients, in the order given.
	To []string
	// Data is the message as transmitted, dot-unstuffed, CRLF line ends,
	// without the terminating ".".
	Data []byte
}

// Header returns the first value of the named header field of the message
// (case-insensitive name), unfolded, or "" when absent.
func (m SinkMessage) Header(name string) string {
	head, _, _ := bytes.Cut(m.Data, []byte("\r\n\r\n"))
	var value string
	found := false
	for _, line := range strings.Split(string(head), "\r\n") {
		if found {
			if line != "" && (line[0] == ' ' || line[0] == '\t') {
				value += " " + strings.TrimSpace(line)
				continue
			}
			return value
		}
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			found, value = true, strings.TrimSpace(v)
		}
	}
	return value
}

// Sink is an SMTP server on 127.0.0.1 that accepts every message and
// records it: the relay host for the MTAs under test.
type Sink struct {
	ln net.Listener
	wg sync.WaitGroup

	mu       sync.Mutex
	messages []SinkMessage
	arrived  chan struct{} // closed and replaced at every arrival
	conns    map[net.Conn]struct{}
	closed   bool
}

// StartSink starts a sink on a free 127.0.0.1 port; it stops at the end of
// the test.
func StartSink(t testing.TB) *Sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("start smtp sink: %v", err)
	}
	s := &Sink{ln: ln, arrived: make(chan struct{}), conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Addr returns the sink's "127.0.0.1:PORT".
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Port returns the sink's TCP port.
func (s *Sink) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Close stops the sink and waits for its connections to end.
func (s *Sink) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

// Messages returns a copy of the messages received so far.
func (s *Sink) Messages() []SinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SinkMessage(nil), s.messages...)
}

// WaitForMessages waits until at least n messages have arrived and returns
// all messages received so far; it fails the test after timeout.
func (s *Sink) WaitForMessages(t testing.TB, n int, timeout time.Duration) []SinkMessage {
	t.Helper()
	msgs, err := s.waitUntil(timeout, func(msgs []SinkMessage) bool { return len(msgs) >= n })
	if err != nil {
		t.Fatalf("smtp sink: waited %v for %d message(s), got %d: %v", timeout, n, len(msgs), err)
	}
	return msgs
}

// WaitFor waits until a message for which match returns true has arrived,
// and returns it; it fails the test after timeout.
func (s *Sink) WaitFor(t testing.TB, timeout time.Duration, what string, match func(SinkMessage) bool) SinkMessage {
	t.Helper()
	var found SinkMessage
	msgs, err := s.waitUntil(timeout, func(msgs []SinkMessage) bool {
		for _, m := range msgs {
			if match(m) {
				found = m
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("smtp sink: waited %v for %s among %d message(s): %v", timeout, what, len(msgs), err)
	}
	return found
}

// waitUntil blocks until cond holds for the messages received so far, or
// until timeout.
func (s *Sink) waitUntil(timeout time.Duration, cond func([]SinkMessage) bool) ([]SinkMessage, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		msgs := append([]SinkMessage(nil), s.messages...)
		arrived := s.arrived
		s.mu.Unlock()
		if cond(msgs) {
			return msgs, nil
		}
		select {
		case <-arrived:
		case <-deadline.C:
			return msgs, errors.New("deadline exceeded")
		}
	}
}

func (s *Sink) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.handle(c)
		}()
	}
}

func (s *Sink) record(m SinkMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages = append(s.messages, m)
	close(s.arrived)
	s.arrived = make(chan struct{})
}

// handle speaks just enough SMTP (RFC 5321) for an MTA's relay client.
func (s *Sink) handle(c net.Conn) {
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	reply := func(lines ...string) bool {
		for _, l := range lines {
			w.WriteString(l + "\r\n")
		}
		return w.Flush() == nil
	}
	if !reply("220 sink.test ESMTP testenv sink") {
		return
	}
	var cur SinkMessage
	inTx := false
	for {
		c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		line, err := readLine(r)
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			cur.Helo = arg
			reply("250-sink.test", "250-8BITMIME", "250-SMTPUTF8", "250 ENHANCEDSTATUSCODES")
		case "HELO":
			cur.Helo = arg
			reply("250 sink.test")
		case "MAIL":
			cur = SinkMessage{Helo: cur.Helo, From: pathArg(arg, "FROM:")}
			inTx = true
			reply("250 2.1.0 Ok")
		case "RCPT":
			if !inTx {
				reply("503 5.5.1 Need MAIL first")
				continue
			}
			cur.To = append(cur.To, pathArg(arg, "TO:"))
			reply("250 2.1.5 Ok")
		case "DATA":
			if !inTx || len(cur.To) == 0 {
				reply("503 5.5.1 Need RCPT first")
				continue
			}
			reply("354 End data with <CR><LF>.<CR><LF>")
			data, err := readData(r)
			if err != nil {
				return
			}
			cur.Data = data
			s.record(cur)
			inTx = false
			reply(fmt.Sprintf("250 2.0.0 Ok: stored as message %d", len(s.Messages())))
		case "RSET":
			cur = SinkMessage{Helo: cur.Helo}
			inTx = false
			reply("250 2.0.0 Ok")
		case "NOOP":
			reply("250 2.0.0 Ok")
		case "QUIT":
			reply("221 2.0.0 Bye")
			return
		default:
			reply("502 5.5.2 Command not implemented")
		}
	}
}

// pathArg extracts the address from "FROM:<a@b> PARAMS" or "TO:<a@b>".
func pathArg(arg, keyword string) string {
	if len(arg) >= len(keyword) && strings.EqualFold(arg[:len(keyword)], keyword) {
		arg = arg[len(keyword):]
	}
	arg = strings.TrimSpace(arg)
	if strings.HasPrefix(arg, "<") {
		if end := strings.IndexByte(arg, '>'); end >= 0 {
			return arg[1:end]
		}
	}
	addr, _, _ := strings.Cut(arg, " ")
	return addr
}

// readLine reads one line and strips its CRLF (or LF).
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// readData reads a DATA section up to the lone "." line, undoing dot
// stuffing and keeping CRLF line ends.
func readData(r *bufio.Reader) ([]byte, error) {
	var buf bytes.Buffer
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("read message data: %w", err)
		}
		body := strings.TrimRight(line, "\r\n")
		if body == "." {
			return buf.Bytes(), nil
		}
		body = strings.TrimPrefix(body, ".")
		buf.WriteString(body)
		buf.WriteString("\r\n")
	}
}
