package daemon

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/abusemilter/abusemilter/internal/config"
)

// TestDirectoryCanonical: the directory the daemon builds from a config
// finds logins, send_as patterns, sender-login-map entries and network
// accounts whichever IDNA spelling the config and the submission use, and
// the engine's customer domains and the policy's sender overrides are
// canonical.
func TestDirectoryCanonical(t *testing.T) {
	dir := t.TempDir()
	loginMap := filepath.Join(dir, "sender_login")
	if err := os.WriteFile(loginMap, []byte("@Bücher.example  ZOË@hé.example\nshop@xn--bcher-kva.example  mjl@xn--h-bga.mox.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse([]byte(`
identity:
  sender_login_maps: [`+loginMap+`]
  networks:
    - {network: 192.0.2.0/24, account: mjl}
  accounts:
    mjl:
      logins: [MJL@hé.mox.example]
      send_as: [xn--h-bga.mox.example.]
limits:
  senders:
    "news@hé.example": {sender_messages: ["5/1h"]}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Directory(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		login, client, account string
		may, mayNot            []string
	}{
		{"mjl@xn--h-bga.mox.example", "", "mjl", []string{"x@hé.mox.example", "shop@bücher.example", "SHOP@XN--BCHER-KVA.example."}, []string{"x@bücher.example"}},
		{"mjl@HÉ.mox.example.", "", "mjl", []string{"x@xn--h-bga.mox.example"}, nil},
		{"zoë@xn--h-bga.example", "", "zoë@xn--h-bga.example", []string{"anyone@bücher.example", "anyone@xn--bcher-kva.example"}, []string{"x@hé.example"}},
		{"", "192.0.2.7", "mjl", []string{"x@HÉ.MOX.EXAMPLE", "shop@bücher.example"}, []string{"x@bücher.example"}},
	} {
		var client netip.Addr
		if tt.client != "" {
			client = netip.MustParseAddr(tt.client)
		}
		a, how := d.Resolve(tt.login, client)
		if a == nil || a.Name != tt.account {
			t.Errorf("Resolve(%q, %q) = %v %s, want %s", tt.login, tt.client, a, how, tt.account)
			continue
		}
		for _, addr := range tt.may {
			if !a.MaySendAs(addr) {
				t.Errorf("%s may not send as %q", tt.account, addr)
			}
		}
		for _, addr := range tt.mayNot {
			if a.MaySendAs(addr) {
				t.Errorf("%s may send as %q", tt.account, addr)
			}
		}
	}
	if _, ok := Policy(c).SenderOverrides["news@xn--h-bga.example"]; !ok {
		t.Errorf("sender overrides %v, want the canonical address", Policy(c).SenderOverrides)
	}
}
