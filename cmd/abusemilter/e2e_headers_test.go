package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

// TestEndToEndPostfixMonitorHeaders checks, through a real Postfix that
// negotiates SMFIP_HDR_LEADSPC (header values with their leading
// whitespace), what monitor mode writes into the message: the verdict
// header with exactly one space after the colon, the client's own
// X-Abuse-* headers removed, and the rules still reading the From value
// (a forged From is recognised as forged).
func TestEndToEndPostfixMonitorHeaders(t *testing.T) {
	testenv.RequireTool(t, "postfix")
	testenv.RequireTool(t, "swaks")
	testenv.RequireRoot(t, "Postfix's master starts as root")

	p := startDaemon(t, "--config", writeConfig(t, t.TempDir(), "mode: monitor\n"+e2eConfig))
	addr := milterAddr(t, p)
	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		SMTPDMilter:          "inet:" + addr,
		MilterDefaultAction:  "tempfail",
		MilterCommandTimeout: 10 * time.Second,
		MilterContentTimeout: 20 * time.Second,
		RelayTo:              sink.Addr(),
	})
	res := testenv.Swaks(t, testenv.SwaksOptions{
		Server: pf.Addr(), From: "alice@example.com", To: []string{"bob@example.org"},
		XClientLogin: "alice", XClientAddr: "203.0.113.10",
		Headers: []string{
			"From:  Chief Executive <ceo@other-company.example>",
			"Subject:\te2e-monitor-headers",
			"X-Abuse-Verdict: accept (written by the client)",
		},
		Body: "Hello.\n",
	})
	if res.ExitCode != testenv.SwaksOK || !strings.HasPrefix(res.EndOfDataReply(), "250 ") {
		t.Fatalf("monitor mode: swaks exit %d, end of data %q, want 250:\n%s", res.ExitCode, res.EndOfDataReply(), res.Transcript)
	}
	m := sink.WaitFor(t, e2eWait, "the monitored message", func(m testenv.SinkMessage) bool {
		return strings.Contains(m.Header("Subject"), "e2e-monitor-headers")
	})
	head, _, _ := bytes.Cut(m.Data, []byte("\r\n\r\n"))
	var verdicts []string
	for _, line := range strings.Split(string(head), "\r\n") {
		if strings.HasPrefix(strings.ToLower(line), "x-abuse-verdict:") {
			verdicts = append(verdicts, line)
		}
	}
	if len(verdicts) != 1 || !strings.HasPrefix(verdicts[0], "X-Abuse-Verdict: reject") || strings.HasPrefix(verdicts[0], "X-Abuse-Verdict:  ") {
		t.Fatalf("X-Abuse-Verdict lines %q, want exactly one, \"X-Abuse-Verdict: reject ...\" with one space:\n%s", verdicts, head)
	}
	if !strings.Contains(verdicts[0], "FROM_DOMAIN_NOT_OWNED") {
		t.Errorf("verdict %q does not name FROM_DOMAIN_NOT_OWNED: the rules did not read the From value", verdicts[0])
	}
	if !bytes.Contains(head, []byte("\r\nSubject:\te2e-monitor-headers")) && !bytes.HasPrefix(head, []byte("Subject:\te2e-monitor-headers")) {
		t.Errorf("the client's Subject field changed on its way through:\n%s", head)
	}
}
