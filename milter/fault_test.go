package milter_test

import (
	"encoding/binary"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/abusemilter/abusemilter/milter"
)

// Tests of a misbehaving MTA peer, over real sockets. After each fault the
// server must have no session, no goroutine and no memory left over from it,
// and a normal message on a new connection must still get its right verdict.

// expectHealthy sends a message alice may send and one she may not on a new
// connection, and checks both verdicts.
func expectHealthy(t *testing.T, h *harness) {
	t.Helper()
	s := h.session(t)
	connect(t, s, "192.0.2.10")
	if r := send(t, s, alice("Alice <alice@example.com>", "bob@example.org")); r.end.Code != gomilter.ActAccept {
		t.Fatalf("after the fault, an own-domain message: %q %d %s, want accept", r.end.Code, r.end.SMTPCode, r.end.SMTPText)
	}
	r := send(t, s, alice("PayPal <service@paypal.com>", "bob@example.org"))
	if r.end.Code != gomilter.ActReplyCode || r.end.SMTPCode != 550 || r.end.SMTPText != rejectFromText {
		t.Fatalf("after the fault, a forged From: %q %d %q, want 550 %q", r.end.Code, r.end.SMTPCode, r.end.SMTPText, rejectFromText)
	}
	s.Close()
}

// baseline is what a server uses when idle: goroutines and live heap.
type baseline struct {
	goroutines int
	heap       uint64
}

// heapSlack is how much more live heap than at the baseline a test may
// hold after a fault (its own buffers, logs of the decisions).
const heapSlack = 8 << 20

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// faultHarness starts a server and returns it with the goroutine count and
// live heap to come back to once its fault sessions are gone.
func faultHarness(t *testing.T, opts milter.Options) (*harness, baseline) {
	t.Helper()
	if opts.Engine == nil {
		opts.Engine = newEngine(t, baseConfig)
	}
	h := start(t, opts)
	// One session started and ended, so that the library's serving
	// goroutines exist before the baseline is taken.
	expectHealthy(t, h)
	waitSessions(t, h)
	return h, baseline{goroutines: runtime.NumGoroutine(), heap: liveHeap()}
}

// afterFault checks that the fault left nothing behind (sessions,
// goroutines, live heap) and that the milter still decides right.
func afterFault(t *testing.T, h *harness, base baseline, logs *stdLogCapture) {
	t.Helper()
	waitSessions(t, h)
	waitGoroutines(t, base.goroutines)
	heap := liveHeap()
	if heap > base.heap+heapSlack {
		t.Fatalf("live heap %d bytes after the fault, %d before: more than %d left behind", heap, base.heap, heapSlack)
	}
	t.Logf("after the fault: goroutines back to %d, live heap %+d KiB", base.goroutines, (int64(heap)-int64(base.heap))/1024)
	logs.noPanics(t)
	expectHealthy(t, h)
	waitSessions(t, h)
	waitGoroutines(t, base.goroutines)
}

func TestPeerHangsUp(t *testing.T) {
	body := []byte(strings.Repeat("line of body text\r\n", 1000))
	for _, tt := range []struct {
		name string
		run  func(p *rawPeer)
	}{
		{"right after connecting", func(p *rawPeer) {}},
		{"in the middle of negotiation", func(p *rawPeer) {
			p.write(packetBytes(cmdOptNeg, be32(6), be32(0x11), be32(0))[:7])
		}},
		{"in the middle of a packet header", func(p *rawPeer) {
			p.negotiate()
			p.write([]byte{0, 0})
		}},
		{"after MAIL", func(p *rawPeer) {
			p.negotiate()
			p.connect("192.0.2.10")
			p.mail("alice@example.com", "alice")
		}},
		{"in the middle of the headers", func(p *rawPeer) {
			p.beginMessage()
			p.header("From", "alice@example.com")
			// Half of a header packet: the length says more is coming.
			p.write(packetBytes(cmdHeader, cstr("Subject"), cstr("half of it"))[:12])
		}},
		{"in the middle of the body", func(p *rawPeer) {
			p.beginMessage()
			p.header("From", "alice@example.com")
			p.command(cmdEOH)
			p.command(cmdBody, body)
			p.write(packetBytes(cmdBody, body)[:len(body)/2])
		}},
		{"before end of message", func(p *rawPeer) {
			p.beginMessage()
			p.command(cmdEOH)
			p.command(cmdBody, body)
		}},
		{"between messages, after end of message and ABORT", func(p *rawPeer) {
			p.beginMessage()
			p.header("From", "alice@example.com")
			p.command(cmdEOH)
			if r := p.command(cmdEOB); r.code != 'a' {
				p.t.Fatalf("end of message: %q %q, want accept", r.code, r.text)
			}
			p.send(cmdAbort)
		}},
		{"while the milter writes its reply", func(p *rawPeer) {
			p.beginMessage()
			p.command(cmdEOH)
			p.send(cmdEOB) // close without reading the answer
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs := captureStdLog(t)
			h, baseline := faultHarness(t, milter.Options{})
			p := dialRaw(t, h.addr)
			tt.run(p)
			p.conn.Close()
			afterFault(t, h, baseline, logs)
		})
	}
}

// TestOutOfOrderStages sends stages in orders no MTA should: each command
// still gets an answer (no panic, no dropped connection) and the session
// goes on to a correct verdict for a proper message afterwards.
func TestOutOfOrderStages(t *testing.T) {
	for _, tt := range []struct {
		name string
		run  func(p *rawPeer)
	}{
		{"MAIL before CONNECT and HELO", func(p *rawPeer) {
			p.mail("alice@example.com", "alice")
			p.command(cmdRcpt, cstr("<bob@example.org>"))
			p.command(cmdEOH)
			p.command(cmdEOB)
		}},
		{"RCPT before MAIL", func(p *rawPeer) {
			p.connect("192.0.2.10")
			p.command(cmdRcpt, cstr("<bob@example.org>"))
		}},
		{"headers and body before MAIL", func(p *rawPeer) {
			p.connect("192.0.2.10")
			p.header("From", "PayPal <service@paypal.com>")
			p.command(cmdEOH)
			p.command(cmdBody, []byte("hello\r\n"))
		}},
		{"end of message with no MAIL", func(p *rawPeer) {
			p.connect("192.0.2.10")
			p.command(cmdEOB)
		}},
		{"end of message as the first command", func(p *rawPeer) {
			p.command(cmdEOB)
		}},
		{"two MAILs in one transaction", func(p *rawPeer) {
			p.connect("192.0.2.10")
			p.mail("service@paypal.com", "alice")
			p.mail("alice@example.com", "alice")
		}},
		{"CONNECT twice", func(p *rawPeer) {
			p.connect("192.0.2.10")
			p.connect("198.51.100.7")
		}},
		{"HELO in the middle of the headers", func(p *rawPeer) {
			p.connect("192.0.2.10")
			p.mail("alice@example.com", "alice")
			p.header("From", "alice@example.com")
			p.command(cmdHelo, cstr("other.example"))
		}},
		{"macros for a stage that never comes", func(p *rawPeer) {
			p.macros(cmdEOB, "i", "QUEUEID", "{auth_authen}", "mallory")
			p.macros('Z', "x")
			p.send(cmdMacro) // no stage byte at all: the library closes the session
		}},
		{"ABORT with no message, twice", func(p *rawPeer) {
			p.send(cmdAbort)
			p.send(cmdAbort)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs := captureStdLog(t)
			h, baseline := faultHarness(t, milter.Options{})
			p := rawSession(t, h.addr)
			tt.run(p)
			// Whatever came before, an ABORT then a proper message on the
			// same connection gets the verdicts it deserves — unless the
			// milter closed the session (allowed only for a malformed packet).
			p.send(cmdAbort)
			if tt.name == "macros for a stage that never comes" {
				p.expectClosed()
			} else {
				p.connect("192.0.2.10")
				if r := p.mail("alice@example.com", "alice"); r.code != 'c' {
					t.Fatalf("MAIL after the fault: %q %q", r.code, r.text)
				}
				p.command(cmdRcpt, cstr("<bob@example.org>"))
				p.header("From", "PayPal <service@paypal.com>")
				p.command(cmdEOH)
				if r := p.command(cmdEOB); r.code != 'y' || r.text != "550 "+rejectFromText {
					t.Fatalf("forged From after the fault: %q %q", r.code, r.text)
				}
				p.send(cmdAbort)
				p.send(cmdQuit)
				p.expectClosed()
			}
			afterFault(t, h, baseline, logs)
		})
	}
}

// heapSampler records the highest HeapAlloc seen.
type heapSampler struct {
	base, peak uint64
	total0     uint64
	ms         runtime.MemStats
}

func newHeapSampler() *heapSampler {
	runtime.GC()
	s := &heapSampler{}
	runtime.ReadMemStats(&s.ms)
	s.base, s.peak, s.total0 = s.ms.HeapAlloc, s.ms.HeapAlloc, s.ms.TotalAlloc
	return s
}

func (s *heapSampler) sample() {
	runtime.ReadMemStats(&s.ms)
	s.peak = max(s.peak, s.ms.HeapAlloc)
}

// growth is the peak heap over the start, and the bytes allocated since.
func (s *heapSampler) growth() (peak, allocated uint64) {
	s.sample()
	return s.peak - min(s.peak, s.base), s.ms.TotalAlloc - s.total0
}

// TestHugeBody streams a 100 MB body in 64 KiB chunks: the milter keeps
// only its sample, so the heap stays far below the body's size.
func TestHugeBody(t *testing.T) {
	logs := captureStdLog(t)
	h, baseline := faultHarness(t, milter.Options{})
	const bodySize = 100 << 20
	chunk := []byte(strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n", gomilter.MaxBodyChunk/64))
	frame := packetBytes(cmdBody, chunk)

	p := rawSession(t, h.addr)
	p.connect("192.0.2.10")
	p.mail("alice@example.com", "alice")
	p.command(cmdRcpt, cstr("<bob@example.org>"))
	p.header("From", "Alice <alice@example.com>")
	p.command(cmdEOH)
	mem := newHeapSampler()
	for sent := 0; sent < bodySize; sent += len(chunk) {
		p.write(frame)
		if r := p.readReply(); r.code != 'c' {
			t.Fatalf("body chunk at %d bytes: %q %q", sent, r.code, r.text)
		}
		if (sent/len(chunk))%32 == 0 {
			mem.sample()
		}
	}
	if r := p.command(cmdEOB); r.code != 'a' {
		t.Fatalf("end of a 100 MB message: %q %q, want accept", r.code, r.text)
	}
	peak, allocated := mem.growth()
	t.Logf("100 MB body: heap peak +%.1f MiB, allocated %.1f MiB in total", float64(peak)/(1<<20), float64(allocated)/(1<<20))
	if peak > 16<<20 {
		t.Fatalf("heap grew by %d bytes while streaming a 100 MB body (bound 16 MiB)", peak)
	}
	d := h.logs.decisions(t)
	if last := d[len(d)-1]; last["body_bytes"] != float64(len(chunk)*((bodySize+len(chunk)-1)/len(chunk))) {
		t.Fatalf("decision line body_bytes %v", last["body_bytes"])
	}
	p.send(cmdAbort)
	p.conn.Close()
	afterFault(t, h, baseline, logs)
}

// TestDeclaredTwoGigabytes: a packet that declares 2 GB is refused from its
// length alone; nothing near that size is allocated.
func TestDeclaredTwoGigabytes(t *testing.T) {
	logs := captureStdLog(t)
	h, baseline := faultHarness(t, milter.Options{})
	for _, stage := range []string{"before negotiation", "in a message"} {
		p := dialRaw(t, h.addr)
		if stage == "in a message" {
			p.negotiate()
			p.connect("192.0.2.10")
			p.mail("alice@example.com", "alice")
		}
		mem := newHeapSampler()
		p.write(binary.BigEndian.AppendUint32(nil, 2<<30))
		p.write([]byte{cmdBody, 'x', 'y', 'z'})
		p.expectClosed()
		waitSessions(t, h)
		peak, allocated := mem.growth()
		t.Logf("2 GB declared %s: heap peak +%d KiB, allocated %d KiB", stage, peak>>10, allocated>>10)
		if allocated > 1<<20 {
			t.Fatalf("%s: %d bytes allocated while refusing a 2 GB packet", stage, allocated)
		}
	}
	if n := h.srv.Stats().OversizedPackets; n != 2 {
		t.Fatalf("oversized packets counted: %d, want 2", n)
	}
	afterFault(t, h, baseline, logs)
}

// TestManyIdleConnections opens 2,000 idle connections against a session
// cap of 1,000: the first 1,000 are sessions that still serve, the next
// 1,000 are answered with a tempfail, the rest would be closed at once; when
// all close, the goroutines are back to where they were.
func TestManyIdleConnections(t *testing.T) {
	const capSessions, conns = 1000, 2000
	logs := captureStdLog(t)
	h, baseline := faultHarness(t, milter.Options{MaxSessions: capSessions})
	peers := make([]*rawPeer, 0, conns)
	for range conns {
		// Not dialRaw: its cleanup would keep 2,000 connections reachable
		// until the test ends and blur the heap check after closing them.
		c, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
		if err != nil {
			for _, p := range peers {
				p.conn.Close()
			}
			t.Fatalf("connection %d: %v", len(peers), err)
		}
		peers = append(peers, &rawPeer{t: t, conn: c})
	}
	waitFor(t, "every connection to be taken in", func() bool {
		st := h.srv.Stats()
		return st.Active == capSessions && st.Overflow == conns-capSessions
	})
	peak := runtime.NumGoroutine()
	// Past twice the cap, a connection is closed at once.
	extra := dialRaw(t, h.addr)
	extra.expectClosed()

	// Connections are accepted in the order they were made: the first is a
	// session, the last is past the cap.
	first, last := peers[0], peers[conns-1]
	last.negotiate()
	if r := last.connect("192.0.2.11"); r.code != 't' {
		t.Fatalf("a session past the cap answered %q at connect, want tempfail", r.code)
	}
	first.negotiate()
	first.connect("192.0.2.10")
	first.mail("alice@example.com", "alice")
	first.command(cmdRcpt, cstr("<bob@example.org>"))
	first.header("From", "PayPal <service@paypal.com>")
	first.command(cmdEOH)
	if r := first.command(cmdEOB); r.code != 'y' || r.text != "550 "+rejectFromText {
		t.Fatalf("a session within the cap, among 2,000 connections: %q %q", r.code, r.text)
	}
	if st := h.srv.Stats(); st.Refused != conns-capSessions+1 {
		t.Fatalf("refused sessions: %d, want %d", st.Refused, conns-capSessions+1)
	}
	for _, p := range peers {
		p.conn.Close()
	}
	peers, first, last = nil, nil, nil
	start := time.Now()
	waitSessions(t, h)
	after := waitGoroutines(t, baseline.goroutines)
	t.Logf("2,000 connections: %d goroutines at the peak, %d before, %d after closing (in %v)",
		peak, baseline.goroutines, after, time.Since(start).Round(time.Millisecond))
	afterFault(t, h, baseline, logs)
}

// TestSlowPeerOneByteAtATime: a peer that sends one byte at a time, each
// within the idle timeout, is served; the byte-at-a-time framing reaches the
// same verdict.
func TestSlowPeerOneByteAtATime(t *testing.T) {
	logs := captureStdLog(t)
	h, baseline := faultHarness(t, milter.Options{IdleTimeout: 2 * time.Second})
	p := dialRaw(t, h.addr)
	var stream []byte
	stream = append(stream, packetBytes(cmdOptNeg, be32(6), be32(0x11), be32(0))...)
	trickle := func(b []byte) {
		for i := range b {
			p.write(b[i : i+1])
		}
	}
	trickle(stream)
	if code, _ := p.read(); code != 'O' {
		t.Fatalf("negotiation: %q", code)
	}
	trickle(packetBytes(cmdMacro, []byte{cmdMail}, cstr("{auth_authen}"), cstr("alice")))
	trickle(packetBytes(cmdMail, cstr("<alice@example.com>")))
	if r := p.readReply(); r.code != 'c' {
		t.Fatalf("mail: %q", r.code)
	}
	trickle(packetBytes(cmdHeader, cstr("From"), cstr("PayPal <service@paypal.com>")))
	p.readReply()
	trickle(packetBytes(cmdEOB))
	if r := p.readReply(); r.code != 'y' || r.text != "550 "+rejectFromText {
		t.Fatalf("end: %q %q", r.code, r.text)
	}
	p.conn.Close()
	afterFault(t, h, baseline, logs)
}
