package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
	"github.com/abusemilter/abusemilter/milter"
)

// e2eNegotiationConfig: a relay on 127.0.0.1 mapped to "shop" by network
// (neither MTA needs XCLIENT then), debug logging for the negotiation line.
const e2eNegotiationConfig = `
listen: inet:127.0.0.1:0
log:
  level: debug
dns:
  enabled: false
identity:
  networks:
    - {network: 127.0.0.1/32, account: shop}
  accounts:
    shop:
      send_as: [shop.example]
`

// Both real MTAs agree to every protocol option abusemilter asks for (no
// reply to connect, HELO, headers and body chunks; no DATA, end of headers
// or unknown commands; header values with their leading space), and a
// message goes through them with the decision as before. The behaviour of
// every stage under these options is what the other end-to-end tests check.
func TestEndToEndNegotiatesNoReplyStages(t *testing.T) {
	testenv.RequireTool(t, "swaks")
	want := fmt.Sprintf("0x%x", uint32(milter.Protocol))
	for _, mta := range []string{"postfix", "sendmail"} {
		t.Run(mta, func(t *testing.T) {
			p := startDaemon(t, "--config", writeConfig(t, t.TempDir(), e2eNegotiationConfig))
			addr := milterAddr(t, p)
			port := addr[strings.LastIndexByte(addr, ':')+1:]
			sink := testenv.StartSink(t)
			var server string
			if mta == "postfix" {
				server = testenv.StartPostfix(t, testenv.PostfixOptions{SMTPDMilter: "inet:127.0.0.1:" + port, RelayTo: sink.Addr()}).Addr()
			} else {
				testenv.RequireRoot(t, "Sendmail runs in its own mount and UTS namespace")
				server = testenv.StartSendmail(t, testenv.SendmailOptions{MilterSocket: "inet:" + port + "@127.0.0.1", RelayTo: sink.Addr()}).Addr()
			}
			res := testenv.Swaks(t, testenv.SwaksOptions{Server: server, From: "orders@shop.example", To: []string{"bob@example.org"},
				Headers: []string{"From: Shop <orders@shop.example>", "Subject: negotiated-" + mta}})
			if res.ExitCode != testenv.SwaksOK {
				t.Fatalf("swaks exit %d:\n%s", res.ExitCode, res.Transcript)
			}
			sink.WaitFor(t, e2eWait, "the message", func(m testenv.SinkMessage) bool { return m.Header("Subject") == "negotiated-"+mta })
			line, _ := p.waitLog(t, "milter options negotiated", 0)
			if line["agreed"] != want {
				t.Fatalf("%s agreed %v (offered %v), want %s", mta, line["agreed"], line["offered"], want)
			}
			p.waitDecision(t, mta+" accept", func(l map[string]any) bool {
				return l["account"] == "shop" && l["stage"] == "eom" && l["action"] == "accept"
			})
		})
	}
}
