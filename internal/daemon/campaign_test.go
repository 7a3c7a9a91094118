package daemon_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/daemon"
	"github.com/abusemilter/abusemilter/internal/logging"
	"github.com/abusemilter/abusemilter/internal/testutil/campaigntest"
	"github.com/abusemilter/abusemilter/internal/testutil/miltertest"
	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
	"github.com/abusemilter/abusemilter/milter"
)

// campaignConfig: six accounts and a forwarder; the body threshold 5
// accounts with the action hold, the link-domain threshold 6.
const campaignConfig = `
listen: inet:127.0.0.1:0
dns:
  enabled: false
redis:
%s
  key_prefix: "%s"
  timeout: 5s
identity:
  accounts:
    acct0: {logins: [acct0], send_as: [acct0.example]}
    acct1: {logins: [acct1], send_as: [acct1.example]}
    acct2: {logins: [acct2], send_as: [acct2.example]}
    acct3: {logins: [acct3], send_as: [acct3.example]}
    acct4: {logins: [acct4], send_as: [acct4.example]}
    acct5: {logins: [acct5], send_as: [acct5.example]}
    relay: {logins: [relay], send_as: [any], forwarder: true}
rules:
  actions:
    CAMPAIGN_MULTI_ACCOUNT: hold
  campaigns:
    enabled: true
    body: {accounts: 5, window: 1h}
    link_domain: {accounts: 6, window: 1h}
`

// campaignMilter is one milter built as the daemon builds it, with its
// decision log.
type campaignMilter struct {
	addr string
	log  *testenv.SyncBuffer
}

// startCampaignMilter serves the daemon's engine over the config's store
// on 127.0.0.1:0, logging decisions as the daemon does.
func startCampaignMilter(t *testing.T, cfg *config.Config) campaignMilter {
	t.Helper()
	dir, err := daemon.Directory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lim, err := daemon.Limiter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lim.Close() })
	buf := &testenv.SyncBuffer{}
	logger, _, err := logging.New(logging.Options{Output: buf, Level: "info"})
	if err != nil {
		t.Fatal(err)
	}
	opts := daemon.ServerOptions(cfg, daemon.Engine(cfg, dir, lim, nil), logger)
	opts.CheckTimeout = 10 * time.Second // generous: the test machine is shared
	return campaignMilter{addr: miltertest.Serve(t, milter.New(opts)), log: buf}
}

// outcome is what a milter made of one message.
type outcome struct {
	held  bool     // quarantined (Postfix's hold queue)
	rules []string // the decision line's rule IDs
	line  map[string]any
}

var campaignSeq int

// send submits one message as login over a fresh session and returns the
// outcome, with the decision line the milter logged for it.
func (m campaignMilter) send(t *testing.T, login, from, rcpt, ctype, body string) outcome {
	t.Helper()
	campaignSeq++
	mid := fmt.Sprintf("<campaign-%d@%s>", campaignSeq, strings.SplitN(from, "@", 2)[1])
	s := testenv.MilterSession(t, m.addr, 10*time.Second)
	defer s.Close()
	cont := func(stage string) func(*gomilter.Action, error) {
		return func(a *gomilter.Action, err error) {
			t.Helper()
			if err != nil || a.Code != gomilter.ActContinue {
				t.Fatalf("%s: %v %+v", stage, err, a)
			}
		}
	}
	if err := s.Macros(gomilter.CodeConn, "{client_addr}", "192.0.2.10", "{client_name}", "client.example.net"); err != nil {
		t.Fatal(err)
	}
	cont("connect")(s.Conn("client.example.net", gomilter.FamilyInet, 40000, "192.0.2.10"))
	cont("helo")(s.Helo("client.example.net"))
	if err := s.Macros(gomilter.CodeMail, "{mail_addr}", from, "{auth_authen}", login, "{auth_type}", "PLAIN", "{client_addr}", "192.0.2.10"); err != nil {
		t.Fatal(err)
	}
	cont("mail")(s.Mail(from, nil))
	if err := s.Macros(gomilter.CodeRcpt, "{rcpt_addr}", rcpt, "i", "QID"); err != nil {
		t.Fatal(err)
	}
	cont("rcpt")(s.Rcpt(rcpt, nil))
	for _, h := range [][2]string{{"From", from}, {"To", rcpt}, {"Subject", "Spring clearance"}, {"Date", time.Now().Format(time.RFC1123Z)},
		{"Message-Id", mid}, {"MIME-Version", "1.0"}, {"Content-Type", ctype}} {
		cont("header " + h[0])(s.HeaderField(h[0], h[1]))
	}
	cont("eoh")(s.HeaderEnd())
	mods, end, err := s.BodyReadFrom(strings.NewReader(body))
	if err != nil {
		t.Fatalf("end of message: %v", err)
	}
	_ = s.Abort()
	if end.Code != gomilter.ActAccept && end.Code != gomilter.ActContinue {
		t.Fatalf("end of message refused: %+v", end)
	}
	var o outcome
	for _, mod := range mods {
		o.held = o.held || mod.Code == gomilter.ActQuarantine
	}
	sc := bufio.NewScanner(strings.NewReader(m.log.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["stage"] == "eom" && line["message_id"] == mid {
			o.line = line
			rules, _ := line["rules"].([]any)
			for _, r := range rules {
				o.rules = append(o.rules, fmt.Sprint(r))
			}
		}
	}
	if o.line == nil {
		t.Fatalf("no decision line for %s in:\n%s", mid, m.log.String())
	}
	return o
}

// TestCampaignAcrossMilters is the campaign scenario through two milters
// built as the daemon builds them, sharing one real store: the same body,
// greeting and tracking links per recipient, from six accounts sent
// alternately through both milters: the first four are accepted, the
// fifth and sixth flagged (CAMPAIGN_MULTI_ACCOUNT, held); the sixth also
// reaches the link-domain threshold. A forwarder resubmitting the campaign
// is never counted nor flagged, and different bodies from the same
// accounts are not flagged. On a single redis-server and on a Cluster.
func TestCampaignAcrossMilters(t *testing.T) {
	for _, store := range []struct {
		name  string
		redis func(t *testing.T) string
	}{
		{"single", func(t *testing.T) string { return "  url: redis://" + redistest.Start(t).Addr() }},
		{"cluster", func(t *testing.T) string {
			return "  addrs: [" + strings.Join(redistest.Addrs(redistest.StartCluster(t, 3)), ", ") + "]\n  cluster: true"
		}},
	} {
		t.Run(store.name, func(t *testing.T) {
			cfg, err := config.Parse(fmt.Appendf(nil, campaignConfig, store.redis(t), "cmp-"+store.name+":"), "campaign.yaml")
			if err != nil {
				t.Fatal(err)
			}
			milters := []campaignMilter{startCampaignMilter(t, cfg), startCampaignMilter(t, cfg)}
			names := []string{"Maria", "John Smith", "Ngozi", "Kim", "Aleksandra", "Bob"}
			for i := range 6 {
				m := milters[i%2]
				rcpt := fmt.Sprintf("rcpt%d@dest.example", i)
				token := fmt.Sprintf("t%dk%08x", i, i*2654435761)
				// The forwarder first: its copies are not counted.
				fw := m.send(t, "relay", "news@lists.example", rcpt, campaigntest.ContentType, campaigntest.Campaign(names[i], token+"f", rcpt))
				if fw.held || slices.ContainsFunc(fw.rules, func(r string) bool { return strings.HasPrefix(r, "CAMPAIGN_") }) {
					t.Fatalf("forwarder copy %d: held %v, rules %v", i, fw.held, fw.rules)
				}
				acct := fmt.Sprintf("acct%d", i)
				o := m.send(t, acct, acct+"@"+acct+".example", rcpt, campaigntest.ContentType, campaigntest.Campaign(names[i], token, rcpt))
				flagged := i >= 4
				if got := slices.Contains(o.rules, "CAMPAIGN_MULTI_ACCOUNT"); got != flagged || o.held != flagged {
					t.Fatalf("copy %d from %s: rules %v, held %v; want flagged and held %v\n%v", i+1, acct, o.rules, o.held, flagged, o.line)
				}
				if got := slices.Contains(o.rules, "CAMPAIGN_LINK_DOMAIN"); got != (i == 5) {
					t.Fatalf("copy %d from %s: rules %v; want CAMPAIGN_LINK_DOMAIN only on the sixth", i+1, acct, o.rules)
				}
				if flagged && (o.line["action"] != "hold" || o.line["rule"] != "CAMPAIGN_MULTI_ACCOUNT") {
					t.Fatalf("copy %d: decision %v", i+1, o.line)
				}
				if o.line["campaign_error"] != nil {
					t.Fatalf("copy %d: campaign error %v", i+1, o.line["campaign_error"])
				}
			}
			// Different bodies from the same accounts: not flagged.
			for i := range 6 {
				acct := fmt.Sprintf("acct%d", i)
				o := milters[(i+1)%2].send(t, acct, acct+"@"+acct+".example", "other@dest.example", "text/plain; charset=utf-8", campaigntest.Distinct(i))
				if o.held || len(o.rules) != 0 {
					t.Fatalf("a different body from %s: held %v, rules %v", acct, o.held, o.rules)
				}
			}
		})
	}
}
