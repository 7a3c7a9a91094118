// Package clamd is a client of ClamAV's scanning daemon (clamd): it streams
// a message to clamd with the INSTREAM command as the message arrives,
// chunk by chunk, up to a size cap, and reads the verdict at its end
// (see clamd(8), "INSTREAM" and "IDSESSION"). It never holds a message:
// each chunk is written to clamd's socket and forgotten.
//
// Connections are kept in a small pool in clamd's session mode (IDSESSION),
// so that a busy milter does not connect once per message; a pooled
// connection that clamd closed is noticed before use. Every step (connect,
// write, the verdict) is bounded by the timeout, and a circuit breaker,
// like the rate store's, answers at once while clamd is down: after
// BreakerFailures failures in a row it lets one scan through per
// BreakerProbe until one succeeds. Callers decide what an error means (the
// milter's antivirus.on_error).
package clamd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/abusemilter/abusemilter/breaker"
)

// ErrUnavailable wraps every error that means clamd did not give a verdict:
// it cannot be reached, timed out, closed the connection, answered an
// error, or the breaker is open.
var ErrUnavailable = errors.New("clamd unavailable")

// ErrStreamTooLong is wrapped (beside ErrUnavailable) when clamd refused a
// stream longer than its StreamMaxLength: a configuration mismatch, not an
// outage, so it does not count towards the breaker.
var ErrStreamTooLong = errors.New("clamd refused the stream as longer than its StreamMaxLength; set antivirus.max_size at or below it")

// Defaults for Options fields left zero.
const (
	DefaultTimeout         = 10 * time.Second
	DefaultMaxSize         = 25 << 20 // clamd's own StreamMaxLength default
	DefaultMaxIdle         = 8
	DefaultBreakerFailures = 3
	DefaultBreakerProbe    = time.Second
	// maxIdleAge keeps pooled connections well under clamd's IdleTimeout
	// (30s by default), after which clamd closes a session.
	maxIdleAge = 20 * time.Second
)

// Options configures a Client.
type Options struct {
	// Address is "unix:/run/clamav/clamd.ctl" or "tcp:HOST:PORT".
	Address string
	// Timeout bounds each step of a scan: connecting, each write, and
	// waiting for the verdict after the last chunk.
	Timeout time.Duration
	// MaxSize is how much of a message is streamed; the rest is not
	// scanned (Result.Truncated). Keep it at or below clamd's
	// StreamMaxLength, or clamd refuses the stream.
	MaxSize int64
	// MaxIdle is the number of idle connections kept for reuse.
	MaxIdle int
	// BreakerFailures failed scans in a row open the breaker; it then
	// lets one scan through every BreakerProbe until one succeeds.
	BreakerFailures int
	BreakerProbe    time.Duration
}

// Result is clamd's verdict on one message.
type Result struct {
	// Signature names what clamd found, e.g. "Win.Test.EICAR_HDB-1"; ""
	// when the stream is clean.
	Signature string
	// Scanned is the number of bytes streamed; Truncated reports that the
	// message was longer than MaxSize and the rest was not scanned.
	Scanned   int64
	Truncated bool
}

// Stats are the client's counters, for metrics.
type Stats struct {
	Scans        uint64 // scans finished with a verdict
	Found        uint64 // of them, with a signature
	Errors       uint64 // scans without a verdict (fail-fast included)
	FailFast     uint64 // scans refused at once by the open breaker
	BreakerOpen  bool
	BreakerOpens uint64
	Truncated    uint64 // scans of messages longer than MaxSize
}

// Client talks to one clamd. It is safe for concurrent use.
type Client struct {
	opts            Options
	network, target string

	mu   sync.Mutex
	idle []*conn

	breaker *breaker.Breaker
	stats   struct{ scans, found, errors, failFast, opens, truncated atomic.Uint64 }
}

// conn is one clamd connection in session mode.
type conn struct {
	net.Conn
	r    *bufio.Reader
	used time.Time
}

// ParseAddress splits "unix:/path" or "tcp:HOST:PORT" into a Go network
// and address.
func ParseAddress(s string) (network, addr string, err error) {
	kind, rest, ok := strings.Cut(s, ":")
	switch {
	case !ok:
	case kind == "unix" && strings.HasPrefix(rest, "/"):
		return "unix", rest, nil
	case kind == "tcp" || kind == "inet":
		if _, _, err := net.SplitHostPort(rest); err == nil {
			return "tcp", rest, nil
		}
	}
	return "", "", fmt.Errorf("clamd address %q: want unix:/path/to/clamd.ctl or tcp:HOST:PORT", s)
}

// New makes a client; it does not connect.
func New(opts Options) (*Client, error) {
	network, addr, err := ParseAddress(opts.Address)
	if err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.MaxIdle <= 0 {
		opts.MaxIdle = DefaultMaxIdle
	}
	if opts.BreakerFailures <= 0 {
		opts.BreakerFailures = DefaultBreakerFailures
	}
	if opts.BreakerProbe <= 0 {
		opts.BreakerProbe = DefaultBreakerProbe
	}
	c := &Client{opts: opts, network: network, target: addr}
	c.breaker = breaker.New(opts.BreakerFailures, opts.BreakerProbe)
	return c, nil
}

// Address returns the configured address.
func (c *Client) Address() string { return c.opts.Address }

// Stats returns the counters.
func (c *Client) Stats() Stats {
	return Stats{
		Scans: c.stats.scans.Load(), Found: c.stats.found.Load(), Errors: c.stats.errors.Load(),
		FailFast: c.stats.failFast.Load(), BreakerOpen: c.breaker.IsOpen(), BreakerOpens: c.stats.opens.Load(),
		Truncated: c.stats.truncated.Load(),
	}
}

// Close closes the idle connections; scans in progress finish on theirs.
func (c *Client) Close() error {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, cn := range idle {
		cn.Close()
	}
	return nil
}

// Ping asks clamd for PONG (for --check-config and health checks); it
// does not go through the breaker.
func (c *Client) Ping(ctx context.Context) error {
	cn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cn.Close()
	reply, err := c.command(cn, "PING")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("%w: PING to %s answered %q", ErrUnavailable, c.opts.Address, reply)
	}
	return nil
}

// Version returns clamd's version line, e.g. "ClamAV 1.4.6/27000/...".
func (c *Client) Version(ctx context.Context) (string, error) {
	cn, err := c.dial(ctx)
	if err != nil {
		return "", err
	}
	defer cn.Close()
	return c.command(cn, "VERSION")
}

// command sends one command in session mode and reads its reply without
// the request number.
func (c *Client) command(cn *conn, cmd string) (string, error) {
	cn.SetDeadline(time.Now().Add(c.opts.Timeout))
	if _, err := cn.Write([]byte("n" + cmd + "\n")); err != nil {
		return "", c.unavailable("writing "+cmd, err)
	}
	line, err := cn.r.ReadString('\n')
	if err != nil {
		return "", c.unavailable("reading the reply to "+cmd, err)
	}
	return stripID(strings.TrimRight(line, "\n")), nil
}

// dial opens a connection and starts a session.
func (c *Client) dial(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, c.network, c.target)
	if err != nil {
		return nil, c.unavailable("connecting", err)
	}
	cn := &conn{Conn: nc, r: bufio.NewReaderSize(nc, 512), used: time.Now()}
	nc.SetWriteDeadline(time.Now().Add(c.opts.Timeout))
	if _, err := nc.Write([]byte("nIDSESSION\n")); err != nil {
		nc.Close()
		return nil, c.unavailable("starting a session", err)
	}
	return cn, nil
}

func (c *Client) unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s %s: %w", ErrUnavailable, what, c.opts.Address, err)
}

// get returns a live pooled connection or a new one.
func (c *Client) get(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		n := len(c.idle)
		if n == 0 {
			c.mu.Unlock()
			return c.dial(ctx)
		}
		cn := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		if time.Since(cn.used) < maxIdleAge && alive(cn) {
			return cn, nil
		}
		cn.Close()
	}
}

// alive reports whether clamd has not closed a pooled connection: a read
// that would block means nothing (no EOF) is waiting.
func alive(cn *conn) bool {
	if cn.r.Buffered() > 0 {
		return false // a stray reply: do not trust the session
	}
	cn.SetReadDeadline(time.Now())
	_, err := cn.r.Peek(1)
	cn.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// put returns a connection to the pool, or closes it.
func (c *Client) put(cn *conn) {
	cn.used = time.Now()
	cn.SetDeadline(time.Time{})
	c.mu.Lock()
	if len(c.idle) < c.opts.MaxIdle {
		c.idle = append(c.idle, cn)
		cn = nil
	}
	c.mu.Unlock()
	if cn != nil {
		cn.Close()
	}
}

// Scan is one message being streamed to clamd. Use it from one goroutine:
// Write the message's bytes as they arrive, then Finish, or Close.
type Scan struct {
	c       *Client
	cn      *conn
	err     error // the first failure; later writes are dropped
	sent    int64
	over    bool
	done    bool
	started time.Time
}

// NewScan starts a scan: it takes a connection and sends INSTREAM. With the
// breaker open it fails at once with an error wrapping ErrUnavailable.
func (c *Client) NewScan(ctx context.Context) (*Scan, error) {
	if !c.breaker.Allow(time.Now()) {
		c.stats.failFast.Add(1)
		c.stats.errors.Add(1)
		return nil, fmt.Errorf("%w: %s: circuit breaker open after repeated failures", ErrUnavailable, c.opts.Address)
	}
	cn, err := c.get(ctx)
	if err == nil {
		cn.SetWriteDeadline(time.Now().Add(c.opts.Timeout))
		if _, werr := cn.Write([]byte("nINSTREAM\n")); werr != nil {
			cn.Close()
			err = c.unavailable("sending INSTREAM", werr)
		}
	}
	if err != nil {
		c.failed()
		return nil, err
	}
	return &Scan{c: c, cn: cn, started: time.Now()}, nil
}

// failed counts a scan without a verdict and tells the breaker.
func (c *Client) failed() {
	c.stats.errors.Add(1)
	if c.breaker.Done(time.Now(), false) {
		c.stats.opens.Add(1)
	}
}

// Write streams the next bytes of the message as one INSTREAM chunk. It
// never fails: past MaxSize the bytes are not sent, and a failure is kept
// for Finish (so that the caller's other consumers of the stream go on).
func (s *Scan) Write(p []byte) (int, error) {
	n := len(p)
	if s.err != nil || s.done || len(p) == 0 {
		return n, nil
	}
	if room := s.c.opts.MaxSize - s.sent; int64(len(p)) > room {
		p = p[:max(room, 0)]
		s.over = true
		if len(p) == 0 {
			return n, nil
		}
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(p)))
	s.cn.SetWriteDeadline(time.Now().Add(s.c.opts.Timeout))
	bufs := net.Buffers{hdr[:], p}
	if _, err := bufs.WriteTo(s.cn); err != nil {
		s.err = s.c.unavailable("streaming the message", err)
		if s.tooLong() {
			s.err = fmt.Errorf("%w: %w (%d bytes sent to %s)", ErrUnavailable, ErrStreamTooLong, s.sent, s.c.opts.Address)
		}
		return n, nil
	}
	s.sent += int64(len(p))
	return n, nil
}

// Finish ends the stream and waits (at most the timeout, or ctx) for the
// verdict. An error wraps ErrUnavailable: clamd gave no verdict.
func (s *Scan) Finish(ctx context.Context) (Result, error) {
	if s.done {
		return Result{}, errors.New("clamd scan: finished twice")
	}
	s.done = true
	res := Result{Scanned: s.sent, Truncated: s.over}
	if s.over {
		s.c.stats.truncated.Add(1)
	}
	if s.err == nil {
		res.Signature, s.err = s.verdict(ctx)
	}
	if s.err != nil {
		s.cn.Close()
		if errors.Is(s.err, ErrStreamTooLong) {
			s.c.stats.errors.Add(1) // clamd is up: the breaker is not told
		} else {
			s.c.failed()
		}
		return res, s.err
	}
	s.c.put(s.cn)
	s.c.stats.scans.Add(1)
	if res.Signature != "" {
		s.c.stats.found.Add(1)
	}
	s.c.breaker.Done(time.Now(), true)
	return res, nil
}

// verdict sends the terminating chunk and reads clamd's reply.
func (s *Scan) verdict(ctx context.Context) (string, error) {
	deadline := time.Now().Add(s.c.opts.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	s.cn.SetDeadline(deadline)
	if _, err := s.cn.Write([]byte{0, 0, 0, 0}); err != nil {
		return "", s.c.unavailable("ending the stream", err)
	}
	line, err := s.cn.r.ReadString('\n')
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return "", s.c.unavailable("waiting for the verdict", errors.New("no answer within the timeout"))
		}
		return "", s.c.unavailable("reading the verdict", err)
	}
	reply := strings.TrimPrefix(stripID(strings.TrimRight(line, "\n")), "stream: ")
	switch {
	case reply == "OK":
		return "", nil
	case strings.HasSuffix(reply, " FOUND"):
		return strings.TrimSuffix(reply, " FOUND"), nil
	case strings.Contains(reply, "size limit exceeded"):
		return "", fmt.Errorf("%w: %w (%d bytes sent to %s)", ErrUnavailable, ErrStreamTooLong, s.sent, s.c.opts.Address)
	}
	return "", fmt.Errorf("%w: %s answered %q", ErrUnavailable, s.c.opts.Address, reply)
}

// tooLong reports, after a failed write, whether clamd said why it closed
// the stream: "INSTREAM size limit exceeded".
func (s *Scan) tooLong() bool {
	s.cn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	line, _ := s.cn.r.ReadString('\n')
	return strings.Contains(line, "size limit exceeded")
}

// Close abandons the scan (the message was aborted); the connection is
// closed, since clamd still waits for the rest of the stream.
func (s *Scan) Close() {
	if !s.done {
		s.done = true
		s.cn.Close()
	}
}

// stripID removes the "N: " request number of a session reply.
func stripID(line string) string {
	if i := strings.Index(line, ": "); i > 0 {
		if strings.Trim(line[:i], "0123456789") == "" {
			return line[i+2:]
		}
	}
	return line
}
