package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/identity"
	"github.com/abusemilter/abusemilter/internal/mailbox"
	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
	"github.com/abusemilter/abusemilter/scoring"
)

// The differential test of the header reader: every message of testdata/
// and of the public corpus ($ABUSEMILTER_CORPUS) is sent through a real
// Postfix to an in-process abusemilter (package milter over a
// scoring.Engine), and the header fields (and so the addresses in them)
// that its engine is handed must equal what the scanner's reader
// (scoring.ParseBytes, behind internal/mailbox) reads from the same file,
// after Postfix's own normalisation, which is this:
//
//   - Postfix removes every Return-Path field (the delivering MTA writes
//     one); the comparison drops them from the reader's view.
//   - A bare CR (not before LF) reaches the milter as a space, and a line
//     over line_length_limit (2,048 bytes) is cut into more lines: values
//     compare with bare CRs as spaces and without line breaks.
//   - SMTP carries lines ending in CRLF, dot-stuffed; both are undone.
//   - For a client in local_header_rewrite_clients (by default the local
//     machine, permit_inet_interfaces) Postfix also adds the From (the
//     envelope sender), Date and Message-Id a message lacks (and
//     Resent-Date and Resent-Message-Id to one with Resent- fields), and
//     rewrites address fields from its own parse of them (an address
//     without a domain gets @myorigin; spacing, quoting and comments may
//     change). That is Postfix's rewriting, not its reading: this test
//     turns it off (local_header_rewrite_clients empty), as on a relay
//     that does not rewrite its customers' headers, and drops any such
//     added field that comes last should one appear. The end-to-end tests
//     in e2e_idn_test.go run with the rewriting on.
//
// Everything else (names written with whitespace before the colon, leading
// From_ lines as X-Mailbox-Line, folding, empty values, duplicates, 8-bit
// and Unicode text, where the header section ends) must be equal as it is.
//
// The whole corpus is sent, no sample: its 4,148 messages and testdata's
// take about 30 seconds through four SMTP sessions on a 2-core machine.
func TestEndToEndReaderAgreesWithPostfix(t *testing.T) {
	testenv.RequireTool(t, "postfix")
	testenv.RequireRoot(t, "Postfix's master starts as root")
	files := readerTestFiles(t)
	rec := startViewRecorder(t)
	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		SMTPDMilter: "inet:" + rec.addr, MilterDefaultAction: "tempfail",
		MilterCommandTimeout: 10 * time.Second, MilterContentTimeout: 20 * time.Second, RelayTo: sink.Addr(),
		ExtraMainCF: map[string]string{
			"message_size_limit":           "0", // messages of any size, as the corpus has them
			"local_header_rewrite_clients": "",  // no header rewriting (see above)
		},
	})

	// Four SMTP sessions in parallel subtests, each sending every fourth
	// message in turn.
	const sessions = 4
	var mu sync.Mutex
	var failures []string
	compared := 0
	t.Run("send", func(t *testing.T) {
		for k := range sessions {
			t.Run(fmt.Sprint(k), func(t *testing.T) {
				t.Parallel()
				s := testenv.DialSMTP(t, pf.Addr(), "client.example")
				for n := k; n < len(files); n += sessions {
					f := files[n]
					from := fmt.Sprintf("reader-%d@sender.test", n)
					r := s.Send(t, testenv.SMTPTransaction{From: from, To: []string{"bob@example.org"}, Data: f.data})
					v, ok := rec.view(from)
					mu.Lock()
					if !ok {
						failures = append(failures, fmt.Sprintf("%s: the milter saw no end of message (DATA %v, end %v)", f.name, r.Data, r.End))
					} else {
						compared++
						if diff := compareViews(f.data, v); diff != "" {
							failures = append(failures, f.name+": "+diff)
						}
					}
					mu.Unlock()
				}
			})
		}
	})
	sort.Strings(failures)
	for i, f := range failures {
		if i == 30 {
			t.Errorf("... and %d more", len(failures)-30)
			break
		}
		t.Error(f)
	}
	t.Logf("%d of %d messages compared, %d differ", compared, len(files), len(failures))
}

type readerFile struct {
	name string
	data []byte
}

// readerTestFiles returns the messages to send, read as the scanner reads
// them (internal/mailbox: mboxes give their messages, unreadable inputs
// are skipped): testdata/ and, when set, $ABUSEMILTER_CORPUS.
func readerTestFiles(t *testing.T) []readerFile {
	roots := []string{filepath.Join("..", "..", "testdata")}
	if corpus := os.Getenv("ABUSEMILTER_CORPUS"); corpus != "" {
		roots = append(roots, corpus)
	} else {
		t.Log("ABUSEMILTER_CORPUS is not set: testdata/ only")
	}
	var out []readerFile
	for i, raw := range readerEdgeCases {
		out = append(out, readerFile{name: fmt.Sprintf("edge case %d %.40q", i, raw), data: []byte(raw)})
	}
	for e := range mailbox.Walk(context.Background(), roots, nil, mailbox.Options{BodyCap: 1 << 20}) {
		if e.Message == nil || e.Message.Truncated || e.Message.Skipped > 0 {
			continue
		}
		switch filepath.Ext(e.Message.Source) {
		case ".expected", ".yaml", ".md", ".txt", ".json":
			continue // golden verdicts, configs and notes beside the messages
		}
		out = append(out, readerFile{name: e.Message.Where(), data: e.Message.Data})
	}
	if len(out) < 50 {
		t.Fatalf("only %d messages to send", len(out))
	}
	return out
}

// readerEdgeCases are header sections at the reader's edges.
var readerEdgeCases = []string{
	"From : PayPal <service@paypal.com>\nSubject: first line\n\nbody\n",
	"Subject: later\nFrom : PayPal <service@paypal.com>\nSender\t: x@y.example\nResent-From \t : r@z.example\n\nbody\n",
	"From x@y Mon Jan  1 00:00:00 2024\nFrom: a@b.example\nSubject: mbox\n\nbody\n",
	">From x@y\nFrom z@y\nFrom: a@b.example\nSubject: quoted mbox\n\nbody\n",
	"From x@y\n continued\nFrom: a@b.example\n\nbody\n",
	"Subject: values\nX-Empty:\nX-Empty2: \nX-Tab:\tv\nX-Two:  v\nX-Fold: a\n b\n\tc\nX-FoldFirst:\n next\n\nbody\n",
	"Subject: folded name\nFrom\n : a@b.example\nX-A: 1\n\nbody\n",
	"Subject: dups\nX-Dup: 1\nX-Dup: 2\nx-dup: 3\n--name: x\n\nbody\n",
	"Subject: text\nnot a header line\nFrom: a@b.example\n\nbody\n",
	"Subject: space\nFrom: a@b.example\nX-Space Name: v\n\nbody\n",
	"Subject: cr\r\r\n b\r\nX-CR: a\rb\r\n\r\nbody\r\n",
	"Subject: idn\nFrom: mjl@hé.example\nTo: b@xn--bcher-kva.example\n\nbody\n",
	"Subject: no blank line\nFrom: a@b.example",
}

// addedByPostfix are the fields Postfix adds to a local client's message
// that lacks them.
var addedByPostfix = []string{"From", "Date", "Message-Id", "Resent-Date", "Resent-Message-Id"}

// addressFields are the fields whose addresses Postfix rewrites for a
// local client (cleanup's header_opts with HDR_OPT_MAILBOX/RECIP).
var addressFields = []string{"From", "Sender", "Reply-To", "Errors-To", "Return-Receipt-To", "Return-Path",
	"To", "Cc", "Bcc", "Apparently-To", "Resent-From", "Resent-Sender", "Resent-Reply-To", "Resent-To", "Resent-Cc", "Resent-Bcc",
	"Delivered-To", "X-Original-To"}

// compareViews returns "" when the engine's view of a message equals the
// reader's view of the file after Postfix's normalisation, else what
// differs.
func compareViews(data []byte, v engineView) string {
	m, err := scoring.ParseBytes(data, 0)
	var file []scoring.Header
	if err == nil {
		for _, h := range m.Headers {
			if !h.Is("Return-Path") {
				file = append(file, h)
			}
		}
	}
	got := v.Headers
	// Fields Postfix added at the end, when the file has none.
	for len(got) > len(file) {
		last := got[len(got)-1]
		if !slices.ContainsFunc(addedByPostfix, last.Is) || slices.ContainsFunc(file, func(h scoring.Header) bool { return h.Is(last.Name) }) {
			break
		}
		got = got[:len(got)-1]
	}
	if len(got) != len(file) {
		return fmt.Sprintf("%d fields, the reader has %d:\n engine %s\n reader %s", len(got), len(file), names(got), names(file))
	}
	for i := range file {
		g, f := got[i], file[i]
		if g.Name != f.Name {
			return fmt.Sprintf("field %d is %q, the reader has %q", i, g.Name, f.Name)
		}
		if normValue(g.Value) == normValue(f.Value) {
			continue
		}
		if slices.ContainsFunc(addressFields, f.Is) {
			if ga, fa := addresses(g.Value), addresses(f.Value); slices.Equal(ga, fa) {
				continue
			} else {
				return fmt.Sprintf("%s addresses %q (%.200q), the reader has %q (%.200q)", f.Name, ga, g.Value, fa, f.Value)
			}
		}
		return fmt.Sprintf("%s is %.200q, the reader has %.200q", f.Name, g.Value, f.Value)
	}
	return ""
}

// normValue undoes what SMTP and Postfix do to a value's bytes: bare CRs
// become spaces, long lines are cut.
func normValue(v string) string {
	v = strings.ReplaceAll(v, "\r", " ")
	return strings.ReplaceAll(v, "\n", "")
}

// addresses are the canonical addresses the rules see in a value, a bare
// local part qualified as Postfix qualifies it.
func addresses(v string) []string {
	var out []string
	for _, a := range scoring.HeaderAddresses(v) {
		addr := a.Address
		if !strings.Contains(addr, "@") {
			addr += "@mta.test"
		}
		out = append(out, identity.CanonicalAddress(addr))
	}
	return out
}

func names(hs []scoring.Header) string {
	var b strings.Builder
	for _, h := range hs {
		b.WriteString(h.Name + " ")
	}
	return b.String()
}
