package milter_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawPeer is an MTA side of the milter protocol written by hand, packet by
// packet, so that it can misbehave in ways go-milter's client cannot: send
// stages out of order, hang up anywhere, declare absurd packet lengths.
type rawPeer struct {
	t    testing.TB
	conn net.Conn
	// agreed holds the protocol options the milter asked for in the
	// negotiation (negotiateOffering); as an MTA does, the peer then does
	// not send a command whose stage was skipped and does not wait for a
	// reply the milter said it would not send.
	agreed uint32
}

// stageOptions are, per command, the protocol options that skip it
// (SMFIP_NO*) and that drop its reply (SMFIP_NR_*).
var stageOptions = map[byte]struct{ skip, noReply uint32 }{
	cmdConn:   {1 << 0, 1 << 12},
	cmdHelo:   {1 << 1, 1 << 13},
	cmdMail:   {1 << 2, 1 << 14},
	cmdRcpt:   {1 << 3, 1 << 15},
	cmdBody:   {1 << 4, 1 << 19},
	cmdHeader: {1 << 5, 1 << 7},
	cmdEOH:    {1 << 6, 1 << 18},
	'T':       {1 << 9, 1 << 16},
}

// Milter command codes (milter-protocol.txt).
const (
	cmdOptNeg = 'O'
	cmdConn   = 'C'
	cmdHelo   = 'H'
	cmdMacro  = 'D'
	cmdMail   = 'M'
	cmdRcpt   = 'R'
	cmdHeader = 'L'
	cmdEOH    = 'N'
	cmdBody   = 'B'
	cmdEOB    = 'E'
	cmdAbort  = 'A'
	cmdQuit   = 'Q'
)

// dialRaw opens a TCP connection to the milter without negotiating.
func dialRaw(t testing.TB, addr string) *rawPeer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawPeer{t: t, conn: c}
}

// rawSession dials and negotiates as Postfix does (protocol version 6, add
// and change header actions, every protocol step).
func rawSession(t testing.TB, addr string) *rawPeer {
	t.Helper()
	p := dialRaw(t, addr)
	p.negotiate()
	return p
}

// beginMessage negotiates, connects from 192.0.2.10 and starts a message
// from alice to bob, as every fault case does before misbehaving.
func (p *rawPeer) beginMessage() {
	p.negotiate()
	p.connect("192.0.2.10")
	p.mail("alice@example.com", "alice")
	p.command(cmdRcpt, cstr("<bob@example.org>"))
}

func (p *rawPeer) negotiate() {
	p.t.Helper()
	p.send(cmdOptNeg, be32(6), be32(0x1|0x10), be32(0))
	code, _ := p.read()
	if code != 'O' {
		p.t.Fatalf("negotiation answered with %q, want 'O'", code)
	}
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// cstr is s followed by a NUL.
func cstr(s string) []byte { return append([]byte(s), 0) }

// write sends bytes as they are, failing the test on error.
func (p *rawPeer) write(b []byte) {
	p.t.Helper()
	p.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.conn.Write(b); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

// packet frames a command and its payload parts.
func packetBytes(code byte, parts ...[]byte) []byte {
	var payload []byte
	for _, part := range parts {
		payload = append(payload, part...)
	}
	out := binary.BigEndian.AppendUint32(nil, uint32(len(payload)+1))
	out = append(out, code)
	return append(out, payload...)
}

func (p *rawPeer) send(code byte, parts ...[]byte) {
	p.t.Helper()
	p.write(packetBytes(code, parts...))
}

// read reads one reply packet.
func (p *rawPeer) read() (byte, []byte) {
	p.t.Helper()
	code, data, err := p.tryRead()
	if err != nil {
		p.t.Fatalf("reading reply: %v", err)
	}
	return code, data
}

func (p *rawPeer) tryRead() (byte, []byte, error) {
	p.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(p.conn, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > 1<<20 {
		return 0, nil, fmt.Errorf("reply length %d", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(p.conn, buf); err != nil {
		return 0, nil, err
	}
	return buf[0], buf[1:], nil
}

// reply is a milter answer to one command: the modifications sent first,
// then the action.
type reply struct {
	mods []rawMod
	code byte   // 'c' continue, 'a' accept, 'y' reply code, 't' tempfail, 'r' reject ...
	text string // for 'y': "550 5.7.1 ..."
}

type rawMod struct {
	code byte // 'h' add header, 'm' change header
	data []byte
}

// command sends a command and reads the reply, collecting modification
// packets until the action.
func (p *rawPeer) command(code byte, parts ...[]byte) reply {
	p.t.Helper()
	opt := stageOptions[code]
	if p.agreed&opt.skip != 0 {
		return reply{code: 'c'} // an MTA does not send a skipped stage
	}
	p.send(code, parts...)
	if p.agreed&opt.noReply != 0 {
		return reply{code: 'c'} // nor waits for a reply that does not come
	}
	return p.readReply()
}

func (p *rawPeer) readReply() reply {
	p.t.Helper()
	var r reply
	for {
		code, data := p.read()
		switch code {
		case 'h', 'm', '+', '-', 'b', 'e', 'q':
			r.mods = append(r.mods, rawMod{code: code, data: data})
			continue
		}
		r.code = code
		if code == 'y' {
			r.text = strings.TrimRight(string(data), "\x00")
		}
		return r
	}
}

// macros sends a macro packet for a command.
func (p *rawPeer) macros(forCmd byte, kv ...string) {
	p.t.Helper()
	parts := [][]byte{{forCmd}}
	for _, s := range kv {
		parts = append(parts, cstr(s))
	}
	p.send(cmdMacro, parts...)
}

func (p *rawPeer) connect(clientAddr string) reply {
	p.t.Helper()
	p.macros(cmdConn, "{client_addr}", clientAddr, "{client_name}", "client.example.net")
	return p.command(cmdConn, cstr("client.example.net"), []byte{'4'}, []byte{0x9c, 0x40}, cstr(clientAddr))
}

func (p *rawPeer) mail(from, login string) reply {
	p.t.Helper()
	kv := []string{"{mail_addr}", from}
	if login != "" {
		kv = append(kv, "{auth_authen}", login, "{auth_type}", "PLAIN")
	}
	p.macros(cmdMail, kv...)
	return p.command(cmdMail, cstr("<"+from+">"))
}

func (p *rawPeer) header(name, value string) reply {
	p.t.Helper()
	return p.command(cmdHeader, cstr(name), cstr(value))
}

// expectClosed waits until the milter has closed the connection.
func (p *rawPeer) expectClosed() {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	for {
		_, err := p.conn.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			p.t.Fatal("milter did not close the connection")
		}
		return
	}
}

// stdLogCapture collects what go-milter writes to the standard logger (it
// logs recovered panics and protocol errors there) for the test's duration.
type stdLogCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *stdLogCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *stdLogCapture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func captureStdLog(t testing.TB) *stdLogCapture {
	c := &stdLogCapture{}
	prevOut, prevFlags := log.Writer(), log.Flags()
	log.SetOutput(c)
	t.Cleanup(func() { log.SetOutput(prevOut); log.SetFlags(prevFlags) })
	return c
}

// noPanics fails the test when go-milter recovered a panic from a callback.
func (c *stdLogCapture) noPanics(t *testing.T) {
	t.Helper()
	if s := c.String(); strings.Contains(s, "panic") {
		t.Fatalf("a milter callback panicked:\n%s", s)
	}
}

// waitGoroutines polls until the number of goroutines is back to at most
// baseline, and returns the count seen.
func waitGoroutines(t testing.TB, baseline int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= baseline {
			return n
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines: %d, baseline %d; stacks:\n%s", n, baseline, buf)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitSessions polls until the server has no session left.
func waitSessions(t testing.TB, h *harness) {
	t.Helper()
	waitFor(t, "sessions to end", func() bool {
		st := h.srv.Stats()
		return st.Active == 0 && st.Overflow == 0
	})
}
