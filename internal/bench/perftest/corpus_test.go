package perftest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/abusemilter/abusemilter/internal/bench/loadgen"
	"github.com/abusemilter/abusemilter/internal/config"
)

// A corpus spread over accounts gets a config in which each account owns
// the domains its messages are sent as, list mail makes a forwarder, and
// the production-shaped limits are there.
func TestCorpusConfigOwnsItsMail(t *testing.T) {
	dir := t.TempDir()
	for name, msg := range map[string]string{
		"1.eml": "From: Ann <ann@one.example>\nTo: x@dest.example\nSubject: a\n\nhello\n",
		"2.eml": "From: bob@two.example\nSender: list-admin@lists.example\nList-Id: <l.lists.example>\nTo: y@dest.example\n\nhi\n",
		"3.eml": "From: carol@three.example\nTo: z@dest.example\n\nhey\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(msg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pool, err := loadgen.LoadCorpus(dir, loadgen.CorpusOptions{Accounts: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Messages in name order, accounts in turn: 1 and 3 by account 0, 2 by account 1.
	if pool[0].Login != loadgen.CorpusLogin(0) || pool[1].Login != loadgen.CorpusLogin(1) || pool[2].Login != loadgen.CorpusLogin(0) {
		t.Fatalf("logins %q %q %q, want accounts 0, 1, 0", pool[0].Login, pool[1].Login, pool[2].Login)
	}
	data, err := Config(ConfigOptions{Listen: "inet:127.0.0.1:7357", Corpus: pool, ProductionLimits: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data, "generated")
	if err != nil {
		t.Fatalf("generated config does not load: %v\n%s", err, data)
	}
	a1, a2 := cfg.Identity.Accounts["corpus1"], cfg.Identity.Accounts["corpus2"]
	if !contains(a1.Logins, loadgen.CorpusLogin(0)) || !contains(a1.SendAs, "one.example") || !contains(a1.SendAs, "three.example") || a1.Forwarder {
		t.Errorf("corpus1 = %+v, want login 0 owning one.example and three.example, not a forwarder", a1)
	}
	if !contains(a2.SendAs, "two.example") || !contains(a2.SendAs, "lists.example") || !a2.Forwarder {
		t.Errorf("corpus2 = %+v, want two.example and lists.example, a forwarder", a2)
	}
	if len(cfg.Limits.AccountMessages) != 2 || len(cfg.Limits.AccountNewRecipients) != 1 {
		t.Errorf("limits %+v, want two message windows and new recipients", cfg.Limits)
	}
}
