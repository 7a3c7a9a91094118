package mailbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/scoring"
)

const testdata = "../../testdata/mailboxes"

// walkAll collects a walk as "where" strings (messages) and "KIND where"
// strings (problems), with the messages themselves.
func walkAll(t *testing.T, inputs []string, opts Options) (got []string, msgs []*Message) {
	t.Helper()
	for e := range Walk(context.Background(), inputs, nil, opts) {
		switch {
		case e.Message != nil:
			rel, _ := filepath.Rel(testdata, e.Message.Source)
			w := rel
			if e.Message.Format == Mbox {
				w = fmt.Sprintf("%s:%d", rel, e.Message.Offset)
			}
			got = append(got, string(e.Message.Format)+" "+w)
			msgs = append(msgs, e.Message)
		case e.Problem != nil:
			rel, _ := filepath.Rel(testdata, e.Problem.Source)
			if e.Problem.InMbox {
				rel = fmt.Sprintf("%s:%d", rel, e.Problem.Offset)
			}
			got = append(got, fmt.Sprintf("%s %s", e.Problem.Kind, rel))
		default:
			t.Fatalf("entry with neither message nor problem")
		}
	}
	return got, msgs
}

func td(name string) string { return filepath.Join(testdata, name) }

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func bodyOf(t *testing.T, m *Message) string {
	t.Helper()
	pm, err := scoring.ParseBytes(m.Data, 1<<20)
	if err != nil {
		t.Fatalf("%s: %v", m.Where(), err)
	}
	return string(pm.Body)
}

func TestMboxVariants(t *testing.T) {
	want := []string{"mbox sent.mbox:0", "mbox sent.mbox:207", "mbox sent.mbox:463", "mbox sent.mbox:726"}
	got, msgs := walkAll(t, []string{td("sent.mbox")}, Options{BodyCap: 1 << 20})
	equal(t, "mboxo", got, want)
	if len(msgs) != 4 {
		t.Fatalf("got %d messages, want 4", len(msgs))
	}
	// mboxo cannot tell ">From " written by the author from an escape: both
	// lose their '>'.
	if b := bodyOf(t, msgs[2]); b != "I wrote:\nFrom the start it was clear.\nFrom here on, mboxrd only.\nbye\n" {
		t.Errorf("mboxo body = %q", b)
	}
	if b := bodyOf(t, msgs[0]); b != "See you at noon.\n" {
		t.Errorf("first body = %q (the separator blank line must not be part of it)", b)
	}
	if msgs[0].EnvelopeFrom != "alice@example.com" {
		t.Errorf("envelope from = %q", msgs[0].EnvelopeFrom)
	}
	// Offsets point at the From_ lines.
	raw, err := os.ReadFile(td("sent.mbox"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if !bytes.HasPrefix(raw[m.Offset:], []byte("From alice@example.com ")) {
			t.Errorf("offset %d does not point at a From_ line", m.Offset)
		}
	}

	_, rd := walkAll(t, []string{td("sent.mboxrd")}, Options{BodyCap: 1 << 20, Variant: MboxRD})
	if len(rd) != 4 {
		t.Fatalf("mboxrd: got %d messages, want 4", len(rd))
	}
	if b := bodyOf(t, rd[2]); b != "I wrote:\nFrom the start it was clear.\n>From here on, mboxrd only.\nbye\n" {
		t.Errorf("mboxrd body = %q", b)
	}
}

func TestGzipMbox(t *testing.T) {
	got, msgs := walkAll(t, []string{td("sent.mbox.gz")}, Options{BodyCap: 1 << 20})
	// Offsets are in the decompressed stream: the same as the plain mbox.
	equal(t, "gzip", got, []string{"mbox sent.mbox.gz:0", "mbox sent.mbox.gz:207", "mbox sent.mbox.gz:463", "mbox sent.mbox.gz:726"})
	_, plain := walkAll(t, []string{td("sent.mbox")}, Options{BodyCap: 1 << 20})
	for i := range msgs {
		if !bytes.Equal(msgs[i].Data, plain[i].Data) {
			t.Errorf("message %d differs between sent.mbox.gz and sent.mbox", i)
		}
	}
}

func TestMaildir(t *testing.T) {
	got, _ := walkAll(t, []string{td("maildir")}, Options{BodyCap: 1 << 20})
	// cur/ then new/, tmp/ and dovecot-uidlist ignored.
	equal(t, "maildir", got, []string{
		"maildir maildir/cur/1700000001.M1P1.host:2,S",
		"maildir maildir/cur/1700000002.M2P1.host:2,S",
		"maildir maildir/new/1700000003.M3P1.host",
	})
}

func TestTruncatedMbox(t *testing.T) {
	got, msgs := walkAll(t, []string{td("truncated.mbox")}, Options{BodyCap: 1 << 20})
	equal(t, "truncated", got, []string{"mbox truncated.mbox:0", "truncated truncated.mbox:207", "mbox truncated.mbox:207"})
	if msgs[0].Truncated || !msgs[1].Truncated {
		t.Errorf("truncated flags = %v %v, want false true", msgs[0].Truncated, msgs[1].Truncated)
	}
	if b := bodyOf(t, msgs[1]); b != "This message is cut off in the mid" {
		t.Errorf("truncated body = %q", b)
	}
}

func TestMixedDirectory(t *testing.T) {
	got, _ := walkAll(t, []string{td("mixed")}, Options{BodyCap: 1 << 20})
	equal(t, "mixed", got, []string{
		"eml mixed/a-message.eml",
		"empty mixed/b-empty",
		"binary mixed/c-binary.png",
		"no-headers mixed/d-notes.txt",
		"eml mixed/e-forged.msg",
		"maildir mixed/nested/deeper/Maildir/cur/1700000008.M8P9.host:2,S",
		"maildir mixed/nested/deeper/Maildir/new/1700000009.M9P9.host",
		"mbox mixed/nested/f-archive:0",
		"mbox mixed/nested/f-archive:207",
	})
}

func TestProblemMessages(t *testing.T) {
	var probs []string
	for e := range Walk(context.Background(), []string{td("mixed/b-empty"), td("does-not-exist")}, nil, Options{}) {
		if e.Problem == nil {
			t.Fatalf("unexpected message from %s", e.Message.Source)
		}
		probs = append(probs, e.Problem.Error())
	}
	if len(probs) != 2 || !strings.Contains(probs[0], "b-empty: empty") || !strings.Contains(probs[1], "does-not-exist: read-error") {
		t.Errorf("problems = %q", probs)
	}
	p := &Problem{Source: "x.mbox", Offset: 42, InMbox: true, Kind: Truncated}
	if p.Error() != "x.mbox: offset 42: truncated" {
		t.Errorf("Error() = %q", p.Error())
	}
}

func TestBodyCapAndSize(t *testing.T) {
	body := strings.Repeat("0123456789\n", 1000) // 11,000 bytes
	mbox := "From a@b.example Fri Nov 20 10:00:00 2026\nSubject: big\n\n" + body + "\n"
	var msgs []*Message
	for e := range ReadStream(context.Background(), "big", strings.NewReader(mbox), Options{BodyCap: 100}) {
		if e.Problem != nil {
			t.Fatal(e.Problem)
		}
		msgs = append(msgs, e.Message)
	}
	if len(msgs) != 1 {
		t.Fatalf("got %d messages", len(msgs))
	}
	m := msgs[0]
	if m.Size() != int64(len("Subject: big\n\n")+len(body)) || m.Skipped != int64(len(body)-100) {
		t.Errorf("size %d skipped %d", m.Size(), m.Skipped)
	}
	pm, err := scoring.ParseBytes(m.Data, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(pm.Body) != 100 || pm.BodySize != 100 {
		t.Errorf("body %d bytes, size %d", len(pm.Body), pm.BodySize)
	}
}

func TestTruncatedGzip(t *testing.T) {
	gz, err := os.ReadFile(td("sent.mbox.gz"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for e := range ReadStream(context.Background(), "cut.gz", bytes.NewReader(gz[:len(gz)*2/3]), Options{BodyCap: 1 << 20}) {
		if e.Problem != nil {
			got = append(got, e.Problem.Error())
			continue
		}
		got = append(got, e.Message.Where())
	}
	// Whole messages come out before the cut; the last one is flagged.
	if len(got) < 2 || !strings.HasPrefix(got[len(got)-2], "cut.gz: offset ") || !strings.Contains(got[len(got)-2], "truncated: input ends early: unexpected EOF") {
		t.Errorf("entries = %q", got)
	}
}

// TestFromSpaceColon: a file whose first line is "From : x" (whitespace
// before the colon, RFC 5322 section 4.5.3) is one message, not an mbox,
// and gets no truncation warning; so is one starting with "Subject : x".
// Inside an mbox, a header "From : x" right after the From_ line does not
// split the message.
func TestFromSpaceColon(t *testing.T) {
	for _, raw := range []string{
		"From : PayPal <service@paypal.com>\nSubject: hi\n\nbody\n",
		"From\t: PayPal <service@paypal.com>\nSubject: hi\n\nbody",
		"Subject : hi\nFrom : PayPal <service@paypal.com>\n\nbody\n",
	} {
		var entries []Entry
		for e := range ReadStream(context.Background(), "x.eml", strings.NewReader(raw), Options{BodyCap: 100}) {
			entries = append(entries, e)
		}
		if len(entries) != 1 || entries[0].Message == nil || entries[0].Message.Format != EML || string(entries[0].Message.Data) != raw {
			t.Errorf("%q: entries %+v, want the file as one message", raw, entries)
		}
	}
	mbox := "From a@b.example Mon Jan  1 00:00:00 2024\nFrom : PayPal <service@paypal.com> 2024 1:2 9\nSubject: hi\n\nbody\n\n"
	var msgs []*Message
	for e := range ReadStream(context.Background(), "x.mbox", strings.NewReader(mbox), Options{BodyCap: 100}) {
		if e.Problem != nil {
			t.Fatalf("problem %v", e.Problem)
		}
		msgs = append(msgs, e.Message)
	}
	if len(msgs) != 1 || msgs[0].Format != Mbox || !strings.HasPrefix(string(msgs[0].Data), "From : PayPal") {
		t.Fatalf("mbox: %d messages", len(msgs))
	}
	// The message itself begins with "From : ...": the header reader, as
	// Postfix would on submission, takes that first line for a From_ line.
	pm, err := scoring.ParseBytes(msgs[0].Data, 100)
	if err != nil || pm.Get("X-Mailbox-Line") != "From : PayPal <service@paypal.com> 2024 1:2 9" || pm.Get("Subject") != "hi" {
		t.Errorf("mbox message fields %q, %v", pm.Headers, err)
	}
}
