package main

import (
	be "encoding/binary"
	"encoding/json"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rawPacket frames one milter command.
func rawPacket(code byte, parts ...string) []byte {
	payload := strings.Join(parts, "")
	b := be.BigEndian.AppendUint32(nil, uint32(len(payload)+1))
	return append(append(b, code), payload...)
}

// rawExchange writes packets and reads one reply packet per command that
// expects one (all but macros and ABORT).
func rawExchange(t *testing.T, c net.Conn, packets ...[]byte) {
	t.Helper()
	for _, p := range packets {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(p); err != nil {
			t.Fatalf("write: %v", err)
		}
		if p[4] == 'D' || p[4] == 'A' {
			continue
		}
		for {
			var hdr [5]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				t.Fatalf("reading the reply to %q: %v", p[4], err)
			}
			if _, err := io.CopyN(io.Discard, c, int64(be.BigEndian.Uint32(hdr[:4]))-1); err != nil {
				t.Fatal(err)
			}
			if hdr[4] != 'h' && hdr[4] != 'm' { // modifications come before the action
				break
			}
		}
	}
}

// TestBinaryLogOneLinePerEvent sends the real daemon decisions with CR/LF
// and other hostile bytes in every client field, and protocol garbage that
// go-milter itself logs (an unknown command code that is a line feed); every
// line the daemon writes must be one JSON object, one decision per message.
func TestBinaryLogOneLinePerEvent(t *testing.T) {
	cfg := writeConfig(t, t.TempDir(), "mode: monitor\n"+daemonConfig)
	p := startDaemon(t, "--config", cfg)
	addr := milterAddr(t, p)
	const bad = "x\r\n{\"msg\":\"decision\",\"action\":\"forged\"}\n\x00\xff%s"
	const messages = 3
	for range messages {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		nul := "\x00"
		rawExchange(t, c,
			rawPacket('O', "\x00\x00\x00\x06", "\x00\x00\x00\x11", "\x00\x00\x00\x00"),
			rawPacket('D', "C", "{client_name}", nul, "h"+bad, nul),
			rawPacket('C', "h"+bad, nul, "4", "\x9c\x40", "192.0.2.10", nul),
			rawPacket('H', "helo"+bad, nul),
			rawPacket('D', "M", "{auth_authen}", nul, "alice", nul, "{auth_type}", nul, bad, nul, "i", nul, "Q"+bad, nul),
			rawPacket('M', "<service"+bad+"@paypal.com>", nul),
			rawPacket('R', "<bob"+bad+"@example.org>", nul),
			rawPacket('L', "From", nul, "\"PayPal"+bad+"\" <service@paypal.com>", nul),
			rawPacket('N'),
			rawPacket('B', bad),
			rawPacket('E'),
			rawPacket('A'),
		)
		// An unknown command whose code is a line feed: go-milter logs it
		// through the standard logger and closes the session.
		c.Write(rawPacket('\n', bad))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c)
		c.Close()
	}
	p.waitCount(t, "decisions", "decision", 0, messages, nil)
	p.waitLog(t, "Unrecognized command code:", 0) // the line feed is trimmed as a line end
	p.signal(t, syscall.SIGTERM)
	if code := p.waitExit(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	p.mu.Lock()
	raw := append([]string(nil), p.raw...)
	p.mu.Unlock()
	decisions := 0
	for _, line := range raw {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("a log line is not one JSON object: %q: %v", line, err)
		}
		if m["msg"] == "decision" {
			decisions++
			if m["action"] != "reject" || m["monitor"] != true {
				t.Errorf("a decision line with forged fields: %v", m)
			}
		}
	}
	if decisions != messages {
		t.Fatalf("%d decision lines for %d messages:\n%s", decisions, messages, strings.Join(raw, "\n"))
	}
	t.Logf("%d log lines, all single JSON objects", len(raw))
}
