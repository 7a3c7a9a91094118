package milter_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/abusemilter/abusemilter/milter"
)

// splitLikePostfix splits a raw message into the header fields and body
// that Postfix's cleanup hands to a milter: fields up to the first blank
// line or the first line that is not a field (which then starts the body),
// folded lines joined with "\n", the value's leading blank removed. It never
// fails: whatever does not look like a header is body.
func splitLikePostfix(raw []byte) (fields [][2]string, body []byte) {
	rest := raw
	for len(rest) > 0 {
		line, next, found := bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 && found {
			return fields, next
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(fields) == 0 {
				return nil, rest
			}
			fields[len(fields)-1][1] += "\n" + string(line)
			rest = next
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			return fields, rest
		}
		fields = append(fields, [2]string{string(name), string(bytes.TrimLeft(value, " \t"))})
		rest = next
	}
	return fields, nil
}

// hostileMessage is one entry of the malformed corpus.
type hostileMessage struct {
	name string
	raw  []byte
}

// malformedCorpus returns the committed files of testdata/malformed and the
// large cases, generated here rather than committed.
func malformedCorpus(t *testing.T) []hostileMessage {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "testdata", "malformed", "*.eml"))
	if err != nil || len(paths) < 10 {
		t.Fatalf("malformed corpus: %d files, %v", len(paths), err)
	}
	var out []hostileMessage
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, hostileMessage{filepath.Base(p), raw})
	}
	head := "From: Alice <alice@example.com>\r\nTo: bob@example.org\r\n"

	var b strings.Builder
	b.WriteString(head + "X-Huge: " + strings.Repeat("a", 1_000_000) + "\r\n\r\nbody\r\n")
	out = append(out, hostileMessage{"1 MB header line", []byte(b.String())})

	b.Reset()
	b.WriteString(head + "Subject: ")
	for b.Len() < 1_000_000 {
		b.WriteString("=?utf-8?B?0J/RgNC40LLQtdGC?= =?x?Q?=ZZ?= ")
	}
	b.WriteString("\r\n\r\nbody\r\n")
	out = append(out, hostileMessage{"1 MB of encoded words in Subject", []byte(b.String())})

	b.Reset()
	b.WriteString("From: ")
	for i := 0; b.Len() < 1_000_000; i++ {
		fmt.Fprintf(&b, "\"P%d\" <u%d@paypa1-%d.example>, ", i, i, i)
	}
	b.WriteString("alice@example.com\r\nTo: bob@example.org\r\n\r\nbody\r\n")
	out = append(out, hostileMessage{"1 MB From with 30,000 addresses", []byte(b.String())})

	b.Reset()
	b.WriteString(head)
	for i := range 10_000 {
		fmt.Fprintf(&b, "X-Field-%d: value %d\r\n", i, i)
	}
	b.WriteString("\r\nbody\r\n")
	out = append(out, hostileMessage{"10,000 header fields", []byte(b.String())})

	b.Reset()
	b.WriteString(head)
	for i := range 10_000 {
		fmt.Fprintf(&b, "Received: from h%d.example ([192.0.2.%d]) by mx.example with ESMTP id %d\r\n", i, i%250, i)
	}
	b.WriteString("\r\nbody\r\n")
	out = append(out, hostileMessage{"10,000 Received fields", []byte(b.String())})

	b.Reset()
	b.WriteString(head + "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n")
	const depth = 1000
	for i := 1; i <= depth; i++ {
		fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n", i-1, i)
	}
	b.WriteString("--b1000\r\nContent-Type: text/plain\r\n\r\ninnermost\r\n")
	for i := depth; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	out = append(out, hostileMessage{"MIME nested 1,000 deep", []byte(b.String())})

	out = append(out, hostileMessage{"5 MB body line without a line break",
		[]byte(head + "\r\n" + strings.Repeat("x", 5<<20))})

	out = append(out, hostileMessage{"only a body, no header at all", []byte("\r\n\r\njust text\r\n")})
	return out
}

// TestMalformedCorpus drives every hostile message through the milter:
// each gets a verdict (accept or a valid refusal), none panics, the session
// survives to the next message, and the heap stays bounded.
func TestMalformedCorpus(t *testing.T) {
	logs := captureStdLog(t)
	h, baseline := faultHarness(t, milter.Options{})
	corpus := malformedCorpus(t)
	p := rawSession(t, h.addr)
	p.connect("192.0.2.10")
	mem := newHeapSampler()
	for _, m := range corpus {
		fields, body := splitLikePostfix(m.raw)
		begin := time.Now()
		if r := p.mail("alice@example.com", "alice"); r.code != 'c' {
			t.Fatalf("%s: MAIL: %q %q", m.name, r.code, r.text)
		}
		p.command(cmdRcpt, cstr("<bob@example.org>"))
		for _, f := range fields {
			if r := p.header(f[0], f[1]); r.code != 'c' {
				t.Fatalf("%s: header %.40q: %q %q", m.name, f[0], r.code, r.text)
			}
		}
		p.command(cmdEOH)
		for len(body) > 0 {
			chunk := body[:min(len(body), gomilter.MaxBodyChunk)]
			body = body[len(chunk):]
			if r := p.command(cmdBody, chunk); r.code != 'c' {
				t.Fatalf("%s: body: %q %q", m.name, r.code, r.text)
			}
		}
		r := p.command(cmdEOB)
		switch {
		case r.code == 'a':
		case r.code == 'y' && (strings.HasPrefix(r.text, "4") || strings.HasPrefix(r.text, "5")) && !strings.ContainsAny(r.text, "\r\n"):
		default:
			t.Fatalf("%s: end of message: %q %q, want accept or a 4xx/5xx reply", m.name, r.code, r.text)
		}
		p.send(cmdAbort)
		mem.sample()
		verdict := "accept"
		if r.code == 'y' {
			verdict = r.text[:min(len(r.text), 60)]
		}
		t.Logf("%-40s %8d bytes, %d fields: %-60s %v", m.name, len(m.raw), len(fields), verdict, time.Since(begin).Round(time.Millisecond))
	}
	peak, allocated := mem.growth()
	t.Logf("malformed corpus: %d messages, heap peak +%.1f MiB, allocated %.1f MiB", len(corpus), float64(peak)/(1<<20), float64(allocated)/(1<<20))
	if peak > 48<<20 {
		t.Fatalf("heap grew by %d bytes over the malformed corpus (bound 48 MiB)", peak)
	}
	if d := h.logs.decisions(t); len(d) < len(corpus) {
		t.Fatalf("%d decision lines for %d messages", len(d), len(corpus))
	}
	p.send(cmdQuit)
	p.expectClosed()
	afterFault(t, h, baseline, logs)
}

// TestHeaderFloodBoundedMemory: a peer that sends 40 MB of header fields in
// one message (far past any MTA's limits) does not make the milter hold
// them: the milter keeps its capped copy, and nothing else may keep the rest.
func TestHeaderFloodBoundedMemory(t *testing.T) {
	logs := captureStdLog(t)
	h, baseline := faultHarness(t, milter.Options{})
	p := rawSession(t, h.addr)
	p.connect("192.0.2.10")
	p.mail("alice@example.com", "alice")
	p.command(cmdRcpt, cstr("<bob@example.org>"))
	p.header("From", "Alice <alice@example.com>")
	value := strings.Repeat("v", 2000)
	mem := newHeapSampler()
	const n = 20_000
	for i := range n {
		if r := p.header("X-Flood-"+strconv.Itoa(i), value); r.code != 'c' {
			t.Fatalf("header %d: %q", i, r.code)
		}
		if i%500 == 0 {
			mem.sample()
		}
	}
	p.command(cmdEOH)
	if r := p.command(cmdEOB); r.code != 'a' {
		t.Fatalf("end of message: %q %q", r.code, r.text)
	}
	peak, _ := mem.growth()
	t.Logf("%d header fields of %d bytes (%d MB) in one message: heap peak +%.1f MiB", n, len(value), n*len(value)/1e6, float64(peak)/(1<<20))
	if peak > 16<<20 {
		t.Fatalf("heap grew by %d bytes for 40 MB of header fields (bound 16 MiB)", peak)
	}
	p.send(cmdAbort)
	p.conn.Close()
	afterFault(t, h, baseline, logs)
}
