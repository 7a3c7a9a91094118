package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/clamdtest"
	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

// TestEndToEndPostfixAntivirus runs the daemon with a real clamd behind a
// real Postfix: every EICAR sample is refused at end of data naming the
// signature, an executable attachment is refused by the attachment rules
// (no clamd needed), and a clean message with an attachment is delivered.
func TestEndToEndPostfixAntivirus(t *testing.T) {
	testenv.RequireTool(t, "postfix")
	testenv.RequireRoot(t, "Postfix's master starts as root")
	srv := clamdtest.Start(t, clamdtest.Options{})
	cfg := e2eConfig + fmt.Sprintf("antivirus:\n  clamd: %s\n  timeout: 10s\n", srv.Address())
	p := startDaemon(t, "--config", writeConfig(t, t.TempDir(), cfg))
	addr := milterAddr(t, p)
	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		SMTPDMilter:          "inet:" + addr,
		MilterDefaultAction:  "tempfail",
		MilterCommandTimeout: 10 * time.Second,
		MilterContentTimeout: 30 * time.Second,
		RelayTo:              sink.Addr(),
	})
	send := func(t *testing.T, data []byte) testenv.SMTPReply {
		t.Helper()
		s := testenv.DialSMTP(t, pf.Addr(), "client.test")
		defer s.Close()
		if r := s.XClient(t, "LOGIN=alice ADDR=203.0.113.10"); r.Code != 220 {
			t.Fatalf("XCLIENT reply %v", r)
		}
		return s.Send(t, testenv.SMTPTransaction{From: "alice@example.com", To: []string{"bob@example.org"}, Data: data}).End
	}
	sig := clamdtest.EICARSignature + clamdtest.Unofficial
	for name, data := range clamdtest.Samples("alice@example.com", "bob@example.org") {
		t.Run("EICAR "+name, func(t *testing.T) {
			end := send(t, data)
			want := "5.7.1 Rejected under the e-mail abuse policy (malware: VIRUS_FOUND " + sig + ")"
			if end.Code != 550 || !strings.Contains(end.String(), want) {
				t.Fatalf("end of data %v, want 550 %s", end, want)
			}
		})
	}
	pf.WaitLog(t, regexp.MustCompile(`milter-reject: END-OF-MESSAGE .*5\.7\.1 Rejected under the e-mail abuse policy \(malware: VIRUS_FOUND Eicar-Test-Signature\.UNOFFICIAL\)`), e2eWait)

	t.Run("executable attachment", func(t *testing.T) {
		exe := clamdtest.Mail("alice@example.com", "bob@example.org", "e2e-exe",
			clamdtest.Part{Name: "invoice.pdf.exe", Type: "application/octet-stream", Data: []byte("MZ not really")})
		end := send(t, exe)
		if end.Code != 550 || !strings.Contains(end.String(), "(malware: ATTACH_") {
			t.Fatalf("end of data %v, want 550 malware: ATTACH_...", end)
		}
	})
	t.Run("clean attachment is delivered", func(t *testing.T) {
		clean := clamdtest.Mail("alice@example.com", "bob@example.org", "e2e-av-clean",
			clamdtest.Part{Name: "figures.zip", Type: "application/zip", Data: clamdtest.Zip("q3.csv", "region,total\nnorth,12\n")})
		if end := send(t, clean); end.Code != 250 {
			t.Fatalf("end of data %v, want 250", end)
		}
		sink.WaitFor(t, e2eWait, "the clean message", func(m testenv.SinkMessage) bool { return m.Header("Subject") == "e2e-av-clean" })
	})
	if t.Failed() {
		t.Logf("postfix log:\n%s", pf.Log())
	}
}
