package milter

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	gomilter "github.com/emersion/go-milter"
	"go.uber.org/zap"
)

// errPacketTooLarge is returned to go-milter instead of a packet header
// whose declared length is over the cap; the library then closes the session
// without allocating anything.
var errPacketTooLarge = errors.New("milter packet too large")

// readBufferSize is the read buffer of one session: a packet's length and
// payload, and a macro packet with the command after it, usually come in
// one system call instead of two or four.
const readBufferSize = 4096

// sessionConn wraps one MTA connection. It reads the milter framing itself:
// each packet's 4-byte length is checked against the cap before it is
// handed to go-milter, which would otherwise allocate whatever the peer
// declares. It also applies the idle timeout (the read deadline is reset on
// every read) and closes the session at a packet boundary once the server
// drains, unless a message is in progress.
type sessionConn struct {
	net.Conn
	srv       *Server
	log       *zap.Logger
	idle      time.Duration
	maxPacket uint32
	// trialListener is set for a connection accepted on a TrialListener:
	// only such a session may be a trial (trial.go).
	trialListener bool

	// Framing state, touched only by the reading goroutine.
	in        *bufio.Reader // over socketReader; made on first read
	atPacket  bool          // the next socket read starts a packet
	hdr       [4]byte
	hdrN      int    // header bytes read from the peer
	hdrOut    int    // header bytes not yet handed to the library
	remaining uint32 // payload bytes left in the current packet

	// Option negotiation, touched only by the session's goroutine (go-milter
	// reads, calls the backend and writes the reply on one goroutine).
	neg negotiation

	mu        sync.Mutex
	boundary  bool // the reader waits for the first byte of a packet
	inMessage bool // between MAIL FROM and end of message or abort
	draining  bool

	closeOnce sync.Once
}

// Read implements net.Conn for go-milter, one packet part at a time.
func (c *sessionConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.in == nil {
		c.in = bufio.NewReaderSize(socketReader{c}, readBufferSize)
	}
	if c.remaining == 0 && c.hdrOut == 0 {
		if err := c.readHeader(); err != nil {
			return 0, err
		}
	}
	if c.hdrOut > 0 {
		n := copy(p, c.hdr[4-c.hdrOut:])
		c.hdrOut -= n
		return n, nil
	}
	if uint32(len(p)) > c.remaining {
		p = p[:c.remaining]
	}
	n, err := c.in.Read(p)
	c.remaining -= uint32(n)
	return n, c.readErr(err)
}

// socketReader reads from the peer for the session's buffer, arming the
// read deadline (and the drain check) before every system call.
type socketReader struct{ c *sessionConn }

func (r socketReader) Read(p []byte) (int, error) {
	if err := r.c.arm(r.c.atPacket); err != nil {
		return 0, err
	}
	return r.c.Conn.Read(p)
}

// readHeader reads a whole 4-byte length and checks it against the cap.
func (c *sessionConn) readHeader() error {
	if err := c.atBoundary(); err != nil {
		return err
	}
	for c.hdrN < 4 {
		c.atPacket = c.hdrN == 0
		n, err := c.in.Read(c.hdr[c.hdrN:])
		c.atPacket = false
		c.hdrN += n
		if n > 0 {
			c.mu.Lock()
			c.boundary = false
			c.mu.Unlock()
		}
		if err != nil && c.hdrN < 4 {
			return c.readErr(err)
		}
	}
	length := binary.BigEndian.Uint32(c.hdr[:])
	c.hdrN = 0
	if length > c.maxPacket {
		c.srv.stats.oversized.Add(1)
		c.log.Warn("milter packet too large, closing session",
			zap.Uint32("declared_bytes", length), zap.Uint32("max_packet", c.maxPacket))
		c.Conn.Close()
		return fmt.Errorf("%w: %d bytes declared, at most %d allowed", errPacketTooLarge, length, c.maxPacket)
	}
	c.remaining = length
	c.hdrOut = 4
	if !c.neg.seenFirst {
		c.neg.seenFirst = true
		c.peekOptNeg(length)
	}
	return nil
}

// peekOptNeg records the protocol options the MTA offers in its OPTNEG, the
// first packet of a session, without consuming it: go-milter reads it next.
// A first packet that is not an OPTNEG offers nothing.
func (c *sessionConn) peekOptNeg(length uint32) {
	if length < optNegLen {
		return
	}
	b, err := c.in.Peek(optNegLen)
	if err != nil || b[0] != optNegCode {
		return // the library's read of the same bytes reports the error
	}
	c.neg.offered = binary.BigEndian.Uint32(b[9:13])
}

// atBoundary ends a draining session that is not in a message before it
// reads the next packet, also when that packet is already buffered.
func (c *sessionConn) atBoundary() error {
	if c.hdrN > 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining && !c.inMessage {
		return io.EOF
	}
	return nil
}

// arm sets the read deadline before a read from the peer; at a packet
// boundary of a draining session that is not in a message it ends the
// session instead.
func (c *sessionConn) arm(boundary bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.boundary = boundary
	if boundary && c.draining && !c.inMessage {
		return io.EOF
	}
	var deadline time.Time
	if c.idle > 0 {
		deadline = time.Now().Add(c.idle)
	}
	return c.Conn.SetReadDeadline(deadline)
}

// readErr turns a timeout into a quiet end of session (logged here, once,
// rather than by go-milter as an error).
func (c *sessionConn) readErr(err error) error {
	if err == nil {
		return nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.mu.Lock()
		draining := c.draining
		c.mu.Unlock()
		if !draining {
			c.srv.stats.idleTimeouts.Add(1)
			c.log.Info("milter session idle, closing", zap.Duration("idle_timeout", c.idle))
		}
		return io.EOF
	}
	return err
}

// Write implements net.Conn with a write deadline of one idle timeout. The
// first reply of a session, go-milter's OPTNEG, is adjusted on its way out
// (see negotiation).
func (c *sessionConn) Write(p []byte) (int, error) {
	if c.neg.written < optNegReplyHead {
		p = c.neg.adjustReply(p)
		if c.neg.written >= optNegReplyHead && c.neg.isOptNeg && c.log.Core().Enabled(zap.DebugLevel) {
			c.log.Debug("milter options negotiated",
				zap.String("offered", fmt.Sprintf("0x%x", c.neg.offered)),
				zap.String("agreed", fmt.Sprintf("0x%x", c.neg.agreed)))
		}
	}
	if c.idle > 0 {
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.idle)); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

// leadingSpace reports whether the session negotiated SMFIP_HDR_LEADSPC:
// the MTA then sends header values with their leading whitespace.
func (c *sessionConn) leadingSpace() bool {
	return c.neg.agreed&uint32(gomilter.OptHeaderLeadingSpace) != 0
}

// Close implements net.Conn and unregisters the session.
func (c *sessionConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		err = c.Conn.Close()
		c.srv.sessionDone(c)
	})
	return err
}

// setInMessage marks the start (MAIL FROM) or end (end of message, abort,
// refusal at MAIL) of a transaction.
func (c *sessionConn) setInMessage(in bool) {
	c.mu.Lock()
	c.inMessage = in
	c.mu.Unlock()
}

// drain asks the session to end: at once when it waits between messages,
// otherwise at the first packet boundary after its message ends.
func (c *sessionConn) drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining = true
	if c.boundary && !c.inMessage {
		c.Conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// Sizes of the option negotiation packets (milter-protocol.txt): the MTA's
// OPTNEG is the command byte and three 32-bit words (version, actions,
// protocol options); the reply starts with its 4-byte length, the command
// byte and the same three words, then the macro lists (SETSYMLIST).
const (
	optNegCode         = 'O'
	optNegLen          = 1 + 3*4
	optNegReplyHead    = 4 + optNegLen
	optNegReplyProtoAt = 4 + 1 + 2*4 // offset of the protocol options in the reply
)

// negotiation limits the protocol options the milter asks for to those the
// MTA offered. Upstream go-milter v0.5.0 ignored the MTA's OPTNEG and
// answered with its Server.Protocol as it was; Sendmail refuses a milter
// that asks for an option it did not offer ("negotiate: protocol abilities
// ... != MTA milter abilities") and an older MTA would not know the option.
// The vendored go-milter now limits its reply to the offer itself (and
// must: it skips the replies of the no-reply options it agreed to, see
// third_party/go-milter/PATCHES.md); this second AND of the reply's
// protocol word with the offer (peekOptNeg, adjustReply) changes nothing
// then, and records what was agreed for leadingSpace. The AND works byte
// by byte, so a reply split over several writes is adjusted all the same.
type negotiation struct {
	seenFirst bool   // the first packet from the MTA was looked at
	offered   uint32 // protocol options in the MTA's OPTNEG; 0 without one
	written   int    // bytes of the reply head written so far
	isOptNeg  bool   // the first reply is an OPTNEG
	agreed    uint32 // protocol options of the reply as sent
}

// adjustReply returns p, or a copy of it with the reply's protocol options
// limited to the MTA's offer, for the first optNegReplyHead bytes written.
func (n *negotiation) adjustReply(p []byte) []byte {
	var out []byte
	for i := range p {
		off := n.written + i
		if off >= optNegReplyHead {
			break
		}
		switch {
		case off == 4:
			n.isOptNeg = p[i] == optNegCode
		case off >= optNegReplyProtoAt && n.isOptNeg:
			shift := 8 * (optNegReplyHead - 1 - off)
			b := p[i] & byte(n.offered>>shift)
			if b != p[i] {
				if out == nil {
					out = append([]byte(nil), p...)
				}
				out[i] = b
			}
			n.agreed |= uint32(b) << shift
		}
	}
	n.written += len(p)
	if out == nil {
		return p
	}
	return out
}
