package scoring_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/scoring"
)

// parseBoth parses data with ParseBytes and with ParseMessage and fails
// when they disagree.
func parseBoth(t *testing.T, data []byte, bodyCap int64) *scoring.Message {
	t.Helper()
	inMemory, err1 := scoring.ParseBytes(bytes.Clone(data), bodyCap)
	streamed, err2 := scoring.ParseMessage(bytes.NewReader(data), bodyCap)
	if !errors.Is(err1, err2) && (err1 == nil || err2 == nil || err1.Error() != err2.Error()) {
		t.Fatalf("errors differ on %.200q: ParseBytes %v, ParseMessage %v", data, err1, err2)
	}
	if err1 != nil {
		return nil
	}
	if len(inMemory.Body) == 0 && len(streamed.Body) == 0 {
		inMemory.Body, streamed.Body = nil, nil
	}
	if !reflect.DeepEqual(inMemory, streamed) {
		t.Fatalf("results differ on %.200q:\nParseBytes   %+v\nParseMessage %+v", data, summary(inMemory), summary(streamed))
	}
	return inMemory
}

func summary(m *scoring.Message) string {
	var b strings.Builder
	for _, h := range m.Headers {
		fmt.Fprintf(&b, "%.40q=%.60q(%d) ", h.Name, h.Value, len(h.Value))
	}
	fmt.Fprintf(&b, "body %.60q size %d truncated %v", m.Body, m.BodySize, m.BodyTruncated)
	return b.String()
}

// parserCases are inputs at the parsers' edges.
func parserCases() [][]byte {
	long := strings.Repeat("x", scoring.MaxHeaderLine+10)
	var huge strings.Builder
	huge.WriteString("From: a@example.com\n")
	for huge.Len() <= scoring.MaxHeaderSection {
		huge.WriteString("X-Filler: " + strings.Repeat("b", 1000) + "\r\n")
	}
	huge.WriteString("X-After: dropped\n\nthe body")
	cases := []string{
		"From: a@example.com\r\nSubject: hi\r\n\tthere\r\n\r\nbody\r\n",
		"From a@example.com Fri Nov 20 10:00:00 2026\nFrom: a@example.com\n\nbody",
		"From a@example.com Fri Nov 20 10:00:00 2026\n\tcontinued\nFrom: a@example.com\n\nbody",
		"From a@example.com Fri Nov 20 10:00:00 2026\n\nbody only",
		"\tleading continuation\nFrom: a@example.com\n\nbody",
		"From: a@example.com\nthis is body text\nmore",
		"Subject: x", "Subject: x\r", "Subject: x\n\r", "Subject : x\n\nbody", ": no name\n", "", "\n\nbody",
		"From: a@example.com\nX-Long: " + long + "\r\n\tfolded " + long + "\nSubject: after\n\nbody",
		"From: a@example.com\nX-Long: " + long, huge.String(),
		"From: a@example.com\nX-Edge: " + strings.Repeat("y", 4096-len("X-Edge: ")-1) + "\r\nSubject: s\r\n\r\nb",
		"From: a@example.com\nX-Edge: " + strings.Repeat("y", 4096-len("X-Edge: ")) + "\r\nSubject: s\r\n\r\nb",
		"From: a@example.com\n\n" + strings.Repeat("body line\n", 100),
	}
	out := make([][]byte, len(cases))
	for i, c := range cases {
		out[i] = []byte(c)
	}
	return out
}

// TestParseBytesAgreesWithParseMessage: the streaming parser is ParseBytes
// over what it read, so both give the same message for every input.
func TestParseBytesAgreesWithParseMessage(t *testing.T) {
	for _, data := range parserCases() {
		for _, bodyCap := range []int64{0, 5, 64 << 10} {
			parseBoth(t, data, bodyCap)
		}
	}
	m := parseBoth(t, parserCases()[len(parserCases())-6], 100)
	lines := strings.Split(m.Get("X-Long"), "\n")
	if len(m.Headers) != 3 || len(lines) != 2 || len(lines[0]) > scoring.MaxHeaderLine || len(lines[1]) > scoring.MaxHeaderLine || m.Get("Subject") != "after" || string(m.Body) != "body" {
		t.Errorf("long line: %s", summary(m))
	}
	if m := parseBoth(t, parserCases()[len(parserCases())-4], 100); m.Get("X-After") != "" || string(m.Body) != "the body" {
		t.Errorf("huge section: X-After %q, body %q", m.Get("X-After"), m.Body)
	}
	// The malformed messages, and every message of the corpus when there
	// is one.
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "malformed", "*.eml"))
	if len(files) == 0 {
		t.Fatal("no testdata/malformed/*.eml")
	}
	if root := os.Getenv("ABUSEMILTER_CORPUS"); root != "" {
		corpus, _ := filepath.Glob(filepath.Join(root, "*", "*", "*"))
		files = append(files, corpus...)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		parseBoth(t, data, 64<<10)
	}
}

// FuzzParseBytes checks the two parsers agree on arbitrary input.
func FuzzParseBytes(f *testing.F) {
	for _, c := range parserCases() {
		if len(c) < 10000 {
			f.Add(c, int64(16))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, bodyCap int64) {
		parseBoth(t, data, bodyCap%100000)
	})
}

// TestParseDateAgreesWithNetMail: the fast path gives what net/mail gives.
func TestParseDateAgreesWithNetMail(t *testing.T) {
	for _, v := range []string{
		"Thu, 22 Aug 2002 10:00:00 -0700", " Thu, 22 Aug 2002 10:00:00 -0700 (PDT)", "Thu, 2 Aug 2002 10:00:00 +0000",
		"22 Aug 2002 17:00:00 +0000", "Thu, 22 Aug 02 10:00:00 -0700", "Thu, 22 Aug 2002 10:00 GMT",
		"Thu,\n\t22 Aug 2002 10:00:00 -0700", "Xyz, 22 Aug 2002 10:00:00 -0700", "Thu, 31 Feb 2002 10:00:00 -0700",
		"Thu, 22 Aug 2002 10:00:00 -0700 trailing", "Thu, 22 Aug 2002 10:00:00 -0700 (PDT) (x)", "Thu, 22 Aug 2002 10:00:00 -0700 (P(D)T)",
		"Thu, 22 Aug 2002 10:00:00 -0700 (PDT", "Thu, 22 Aug 2002 10:00:00 -0700 (a\\)", "Thu, 22 Aug 2002 10:00:00 (PDT) -0700", "Thu, 22 Aug 2002 10:00:00 -0700 x (PDT)", "Thu, 22 Aug 2002 25:00:00 -0700", "", "yesterday",
	} {
		got, err := scoring.ParseDate(v)
		want, werr := mail.ParseDate(strings.TrimSpace(strings.ReplaceAll(v, "\n", "")))
		if (err == nil) != (werr == nil) || !got.Equal(want) || got.Location().String() != want.Location().String() {
			t.Errorf("ParseDate(%q) = %v, %v; net/mail %v, %v", v, got, err, want, werr)
		}
	}
}
