package testenv

import (
	"regexp"
	"strings"
	"testing"
)

// TestPostfixInstancesAndDefaultAction runs two Postfix instances at once,
// each with its own sink and a milter address where nothing listens: the
// one with default_action=tempfail must refuse with 4xx, the one with
// default_action=accept must deliver, and neither may see the other's mail.
func TestPostfixInstancesAndDefaultAction(t *testing.T) {
	deadMilter := "inet:" + FreeAddr(t) // nothing listens here
	tempfailSink, acceptSink := StartSink(t), StartSink(t)
	tempfail := StartPostfix(t, PostfixOptions{SMTPDMilter: deadMilter, NonSMTPDMilter: deadMilter, MilterDefaultAction: "tempfail", RelayTo: tempfailSink.Addr()})
	accept := StartPostfix(t, PostfixOptions{SMTPDMilter: deadMilter, MilterDefaultAction: "accept", RelayTo: acceptSink.Addr()})
	if tempfail.Addr() == accept.Addr() || tempfail.QueueDir == accept.QueueDir {
		t.Fatalf("instances share an address or queue: %s %s", tempfail.QueueDir, accept.QueueDir)
	}

	res := Swaks(t, SwaksOptions{Server: tempfail.Addr(), From: "a@example.com", To: []string{"b@example.org"}})
	if res.ExitCode == SwaksOK {
		t.Fatalf("milter unreachable with default_action=tempfail, yet swaks succeeded:\n%s", res.Transcript)
	}
	errs := res.ErrorReplies()
	if len(errs) == 0 || !strings.HasPrefix(errs[0], "451 4.") {
		t.Errorf("error replies %q, want a 451 4.x.x", errs)
	}

	// The sendmail command's message waits in the maildrop queue.
	if out, err := tempfail.Sendmail(t, "local@mta.test", []string{"b@example.org"}, []byte("Subject: waits\n\nx\n")); err != nil {
		t.Fatalf("sendmail: %v\n%s", err, out)
	}
	tempfail.WaitLog(t, regexp.MustCompile(`milter-reject: CONNECT from localhost\[127\.0\.0\.1\]: 4\.7\.1 .*from=<local@mta\.test>`), waitTimeout)
	if ids := tempfail.QueueIDs(t); len(ids) != 1 {
		t.Errorf("tempfail instance's queue holds %q, want the one message", ids)
	}

	res = Swaks(t, SwaksOptions{Server: accept.Addr(), From: "a@example.com", To: []string{"b@example.org"}, Headers: []string{"Subject: fail-open"}})
	if res.ExitCode != SwaksOK {
		t.Fatalf("milter unreachable with default_action=accept: swaks exit %d:\n%s", res.ExitCode, res.Transcript)
	}
	acceptSink.WaitFor(t, waitTimeout, "Subject fail-open", func(m SinkMessage) bool { return m.Header("Subject") == "fail-open" })
	if n := len(tempfailSink.Messages()); n != 0 {
		t.Errorf("tempfail instance's sink got %d message(s), want 0", n)
	}
	if log := accept.Log(); !strings.Contains(log, deadMilter[len("inet:"):]) {
		t.Errorf("accept instance's log does not mention the unreachable milter %s:\n%s", deadMilter, log)
	}
}
