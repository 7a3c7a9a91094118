package milter_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/milter"
)

// FuzzSession feeds arbitrary protocol bytes to a milter session after a
// valid negotiation, over a real socket. Whatever the bytes, the milter must
// not panic, must end the session when the peer hangs up (no hung session,
// no leftover), and everything it writes back must be well-framed packets
// whose custom replies are 4xx/5xx SMTP replies on one line.
//
// Seeds are in testdata/fuzz/FuzzSession; run it longer with
// go test -run '^$' -fuzz FuzzSession -fuzztime 2m ./milter/
func FuzzSession(f *testing.F) {
	f.Add(validTransaction())
	f.Add([]byte{})
	f.Add(packetBytes(cmdEOB))
	f.Add(binary.BigEndian.AppendUint32(nil, 0x80000000))
	f.Add(append(packetBytes(cmdMacro), packetBytes(cmdEOB)...))

	logs := captureStdLog(f)
	// A unix socket: tens of thousands of TCP connections a minute would
	// run out of loopback ports (TIME_WAIT) and stall the fuzzer.
	srv := milter.New(milter.Options{Engine: newEngine(f, baseConfig), MaxPacket: 256 << 10, IdleTimeout: 5 * time.Second})
	sock := filepath.Join(f.TempDir(), "milter.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		f.Fatal(err)
	}
	go srv.Serve(ln)
	f.Cleanup(func() { srv.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.DialTimeout("unix", sock, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		p := &rawPeer{t: t, conn: c}
		p.negotiate()
		// Write in a goroutine: the milter may stop reading (and close) at
		// any point, and its replies must be read meanwhile.
		written := make(chan error, 1)
		go func() {
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			_, err := c.Write(data)
			c.(*net.UnixConn).CloseWrite()
			written <- err
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		replies, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the milter neither finished nor closed the session after the peer's %d bytes and hang-up", len(data))
		}
		<-written
		// After a reset (the milter closed with input unread), the last
		// packet may be cut short; everything before it must be whole.
		checkReplies(t, replies, err == nil)
		if strings.Contains(logs.String(), "panic") {
			t.Fatalf("a callback panicked:\n%s", logs.String())
		}
		waitFor(t, "the session to end", func() bool { st := srv.Stats(); return st.Active == 0 && st.Overflow == 0 })
	})
}

// checkReplies parses what the milter wrote: whole packets, known codes,
// custom replies that Postfix would accept.
func checkReplies(t *testing.T, b []byte, complete bool) {
	t.Helper()
	for len(b) > 0 {
		if len(b) < 5 {
			if !complete {
				return
			}
			t.Fatalf("a truncated reply packet: %q", b)
		}
		n := binary.BigEndian.Uint32(b)
		if n == 0 || n > 1<<20 {
			t.Fatalf("reply packet length %d", n)
		}
		if uint64(n) > uint64(len(b)-4) {
			if !complete {
				return
			}
			t.Fatalf("reply packet length %d with %d bytes left", n, len(b)-4)
		}
		code, data := b[4], b[5:4+n]
		b = b[4+n:]
		switch code {
		case 'c', 'a', 't', 'r', 'd', 'h', 'm', 'O':
		case 'y':
			text := strings.TrimSuffix(string(data), "\x00")
			if strings.ContainsAny(text, "\r\n\x00") {
				t.Fatalf("reply with a line break or NUL: %q", text)
			}
			code, err := strconv.Atoi(text[:min(3, len(text))])
			if err != nil || code < 400 || code > 599 {
				t.Fatalf("custom reply %q is not a 4xx/5xx reply", text)
			}
		default:
			t.Fatalf("unexpected reply code %q", code)
		}
		if code == 'h' || code == 'm' {
			if bytes.ContainsAny(data, "\r\n") {
				t.Fatalf("header modification with a line break: %q", data)
			}
		}
	}
}

// validTransaction is what Postfix sends for one message, after
// negotiation.
func validTransaction() []byte {
	var b []byte
	add := func(code byte, parts ...[]byte) { b = append(b, packetBytes(code, parts...)...) }
	macro := func(stage byte, kv ...string) {
		parts := [][]byte{{stage}}
		for _, s := range kv {
			parts = append(parts, cstr(s))
		}
		add(cmdMacro, parts...)
	}
	macro(cmdConn, "{client_addr}", "192.0.2.10", "{client_name}", "client.example.net")
	add(cmdConn, cstr("client.example.net"), []byte{'4', 0x9c, 0x40}, cstr("192.0.2.10"))
	add(cmdHelo, cstr("client.example.net"))
	macro(cmdMail, "{auth_authen}", "alice", "{auth_type}", "PLAIN", "{mail_addr}", "alice@example.com")
	add(cmdMail, cstr("<alice@example.com>"))
	macro(cmdRcpt, "{rcpt_addr}", "bob@example.org", "i", "4ABC")
	add(cmdRcpt, cstr("<bob@example.org>"))
	add(cmdHeader, cstr("From"), cstr("PayPal <service@paypal.com>"))
	add(cmdHeader, cstr("Subject"), cstr("hello"))
	add(cmdEOH)
	add(cmdBody, []byte("Hello Bob,\r\n\r\nsee you.\r\n"))
	add(cmdEOB)
	add(cmdAbort)
	add(cmdQuit)
	return b
}

// TestValidTransactionStream checks that the main fuzz seed is a real
// transaction: written in one go, it gets the verdict a forged From gets.
func TestValidTransactionStream(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig)})
	p := rawSession(t, h.addr)
	p.write(validTransaction())
	p.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	replies, err := io.ReadAll(p.conn)
	if err != nil {
		t.Fatal(err)
	}
	checkReplies(t, replies, true)
	if !bytes.Contains(replies, []byte("y550 "+rejectFromText+"\x00")) {
		t.Fatalf("the seed transaction did not get its 550: %q", replies)
	}
}
