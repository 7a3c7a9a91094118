package milter_test

import (
	"strings"
	"testing"

	gomilter "github.com/emersion/go-milter"

	"github.com/abusemilter/abusemilter/milter"
)

// BenchmarkMessage measures one whole transaction (MAIL, one RCPT, three
// headers, a small body, end of message, abort) over loopback TCP on one
// connection, with the in-memory limiter and the default rules.
func BenchmarkMessage(b *testing.B) {
	cfg := strings.Replace(baseConfig, `["100/1h"]`, `["100000000/1h"]`, 1)
	h := start(b, milter.Options{Engine: newEngine(b, cfg)})
	c := gomilter.NewClientWithOptions("tcp", h.addr, gomilter.ClientOptions{ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader})
	s, err := c.Session()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Conn("client.example.net", gomilter.FamilyInet, 40000, "192.0.2.10"); err != nil {
		b.Fatal(err)
	}
	m := alice("alice@example.com", "bob@example.org")
	b.ReportAllocs()
	for b.Loop() {
		s.Macros(gomilter.CodeMail, m.mailMacros()...)
		s.Mail(m.from, nil)
		s.Rcpt(m.rcpts[0], nil)
		for _, hd := range m.headers {
			s.HeaderField(hd[0], hd[1])
		}
		s.HeaderEnd()
		_, a, err := s.BodyReadFrom(strings.NewReader(m.body))
		if err != nil || a.Code != gomilter.ActAccept {
			b.Fatalf("end: %v %+v", err, a)
		}
		s.Abort()
	}
}
