package scoring_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/scoring"
)

// headerCases are what Postfix 3.7 and Sendmail 8.17 hand a milter for
// each header section (observed through both, see
// cmd/abusemilter/e2e_reader_test.go), less what the MTA adds itself (a
// From, Date and Message-Id for a local client, Postfix).
var headerCases = []struct {
	name, raw string
	want      []string // "Name=Value"
}{
	{"space before the colon", "Subject: p1\nFrom : PayPal <service@paypal.com>\nSender\t: x@y.example\nResent-From \t : r@z.example\n\nbody\n",
		[]string{"Subject=p1", "From=PayPal <service@paypal.com>", "Sender=x@y.example", "Resent-From=r@z.example"}},
	{"From : on the first line is a From_ line", "From : PayPal <service@paypal.com>\nSubject: p0\n\nbody\n",
		[]string{"X-Mailbox-Line=From : PayPal <service@paypal.com>", "Subject=p0"}},
	{"mbox From_ line", "From x@y Mon Jan  1 00:00:00 2024\nFrom: a@b.example\nSubject: p2\n\nbody\n",
		[]string{"X-Mailbox-Line=From x@y Mon Jan  1 00:00:00 2024", "From=a@b.example", "Subject=p2"}},
	{"quoted From_ line", ">From x@y\nFrom: a@b.example\n\nbody\n",
		[]string{"X-Mailbox-Line=>From x@y", "From=a@b.example"}},
	{"two From_ lines", "From x@y\nFrom z@y\nFrom: a@b.example\n\nbody\n",
		[]string{"X-Mailbox-Line=From x@y", "X-Mailbox-Line=From z@y", "From=a@b.example"}},
	{"continuation after a From_ line ends the section", "From x@y\n continued\nFrom: a@b.example\n\nbody\n",
		[]string{"X-Mailbox-Line=From x@y"}},
	{"empty, tab, two spaces, folded", "Subject: p4\nX-Empty:\nX-Empty2: \nX-Tab:\tv\nX-Two:  v\nX-Fold: a\n b\n\tc\nX-FoldFirst:\n next\n\nbody\n",
		[]string{"Subject=p4", "X-Empty=", "X-Empty2=", "X-Tab=\tv", "X-Two= v", "X-Fold=a\n b\n\tc", "X-FoldFirst=\n next"}},
	{"CRLF folds become LF", "Subject: a\r\n b\r\nFrom: x@y.example\r\n\r\nbody",
		[]string{"Subject=a\n b", "From=x@y.example"}},
	{"every CR before a line end is part of it", "Subject: a\r\r\n b\r\nX-CR: a\rb\r\r\r\n\r\r\nbody",
		[]string{"Subject=a\n b", "X-CR=a\rb"}},
	{"a folded name ends the section", "Subject: p5\nFrom\n : a@b.example\nX-A: 1\n\nbody\n",
		[]string{"Subject=p5"}},
	{"duplicates kept in order", "Subject: p6\nX-Dup: 1\nX-Dup: 2\nx-dup: 3\n--name: x\n\nbody\n",
		[]string{"Subject=p6", "X-Dup=1", "X-Dup=2", "x-dup=3", "--name=x"}},
	{"text ends the section", "Subject: p8\nnot a header line\nFrom: a@b.example\n\nbody\n",
		[]string{"Subject=p8"}},
	{"a space in the name ends the section", "Subject: p9\nFrom: a@b.example\nX-Space Name: v\n\nbody\n",
		[]string{"Subject=p9", "From=a@b.example"}},
	{"Unicode and punycode kept as written", "Subject: p11\nFrom: mjl@hé.example\nTo: b@xn--bcher-kva.example\n\nbody\n",
		[]string{"Subject=p11", "From=mjl@hé.example", "To=b@xn--bcher-kva.example"}},
}

func fields(hs []scoring.Header) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Name + "=" + h.Value
	}
	return out
}

// TestHeaderReader: the scanner's reader gives the fields an MTA hands the
// milter.
func TestHeaderReader(t *testing.T) {
	for _, tt := range headerCases {
		m := parseBoth(t, []byte(tt.raw), 100)
		if m == nil {
			t.Errorf("%s: no header", tt.name)
			continue
		}
		if got := fields(m.Headers); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
	for _, raw := range []string{" Subject: p7\nFrom: a@b.example\n\nbody\n", "not a header\n", "X Y: z\n"} {
		if _, err := scoring.ParseBytes([]byte(raw), 10); err != scoring.ErrNoHeader {
			t.Errorf("ParseBytes(%q) err = %v, want ErrNoHeader", raw, err)
		}
	}
}

// TestHeaderLookup: every rule's way to a field compares names
// case-insensitively and without surrounding whitespace, whichever reader
// made the field.
func TestHeaderLookup(t *testing.T) {
	m := &scoring.Message{Headers: []scoring.Header{
		{Name: "FROM ", Value: "a@b.example"}, // as a careless caller might build it
		scoring.NewHeader(" sender\t", "s@b.example"),
		scoring.NewHeader("Received", "from x\r\n\tby y; Mon, 1 Jan 2024 00:00:00 +0000"),
		{Name: "received", Value: "from z by w; Tue, 2 Jan 2024 00:00:00 +0000"},
	}}
	if m.Get("from") != "a@b.example" || m.Get("Sender") != "s@b.example" || m.Count("RECEIVED") != 2 {
		t.Errorf("lookup: from %q sender %q received %d", m.Get("from"), m.Get("Sender"), m.Count("RECEIVED"))
	}
	if got := m.Values("Received"); len(got) != 2 || !strings.Contains(got[0], "\n\tby y") || strings.Contains(got[0], "\r") {
		t.Errorf("Received values %q", got)
	}
	if !m.Headers[0].Is("From") || m.Headers[0].Is("Fro") {
		t.Error("Header.Is")
	}
	if h := scoring.NewHeader("From\t ", "x"); h.Name != "From" {
		t.Errorf("NewHeader name %q", h.Name)
	}
	for _, tt := range []struct{ line, name, value string }{
		{"From: x", "From", " x"}, {"From : x", "From", " x"}, {"From\t:x", "From", "x"}, {"--a:", "--a", ""},
	} {
		if n, v, ok := scoring.FieldName(tt.line); !ok || n != tt.name || v != tt.value {
			t.Errorf("FieldName(%q) = %q %q %v", tt.line, n, v, ok)
		}
	}
	for _, bad := range []string{"From", " From: x", "X Y: z", ": x", "Fröm: x"} {
		if _, _, ok := scoring.FieldName(bad); ok {
			t.Errorf("FieldName(%q) ok", bad)
		}
	}
}

// FuzzHeaderReader: whatever the bytes, the reader gives fields in its
// one form (see parse.go): names of printable US-ASCII without a colon,
// values without CRLF or a CR before a line end, From_ lines only first,
// a form NewHeader keeps as it is; and writing the fields out again
// ("Name: value", folds as CRLF) reads back as the same fields.
func FuzzHeaderReader(f *testing.F) {
	for _, tt := range headerCases {
		f.Add([]byte(tt.raw))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		m, err := scoring.ParseBytes(data, 64)
		if err != nil {
			return
		}
		var again strings.Builder
		mbox := true
		for _, h := range m.Headers {
			if h.Name == scoring.MboxLineField && mbox {
				if !strings.HasPrefix(strings.TrimLeft(h.Value, ">"), "From ") {
					t.Fatalf("From_ line %q", h.Value)
				}
			} else {
				mbox = false
				if n, _, ok := scoring.FieldName(h.Name + ":"); !ok || n != h.Name {
					t.Fatalf("field name %q", h.Name)
				}
			}
			if strings.Contains(h.Value, "\r\n") || strings.HasSuffix(h.Value, "\r") {
				t.Fatalf("value %q keeps a CR line end", h.Value)
			}
			if nh := scoring.NewHeader(h.Name, h.Value); nh != h {
				t.Fatalf("NewHeader changes %q to %q", h, nh)
			}
			again.WriteString(h.Name + ": " + strings.ReplaceAll(h.Value, "\n", "\r\n") + "\r\n")
		}
		again.WriteString("\r\n")
		m2, err := scoring.ParseBytes([]byte(again.String()), 64)
		if err != nil {
			t.Fatalf("written out again: %v\n%q", err, again.String())
		}
		if fmt.Sprintf("%q", fields(m2.Headers)) != fmt.Sprintf("%q", fields(m.Headers)) {
			t.Fatalf("written out again:\n got %q\nwant %q", fields(m2.Headers), fields(m.Headers))
		}
	})
}
