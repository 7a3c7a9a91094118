package config_test

import (
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/internal/config"
)

// TestDeskConfig: the hold settings and the desk section are validated with
// their field paths, and valid ones load.
func TestDeskConfig(t *testing.T) {
	ok := `
strikes:
  lock_action: hold
rules:
  hold_threshold: 6
  actions:
    URL_RAW_IP: hold
    impersonation: reject
    DATE_OLD: accept
instance: mx1
desk:
  retention: 3d
  release_command: [/usr/bin/sudo, -n, /usr/sbin/postsuper, -H, "{queue_id}"]
  deliver_command: []
  complaints: {threshold: 0, strike_weight: 0}
  tracking:
    accounts: ["*"]
    key_env: HOME
`
	c, err := config.Parse([]byte(ok), "ok.yaml")
	if err != nil {
		t.Fatalf("valid desk config refused:\n%v", err)
	}
	if c.InstanceName() != "mx1" || !c.Desk.Tracking.Tracks("anyone") || c.Desk.Retention.Hours() != 72 {
		t.Errorf("loaded %+v", c.Desk)
	}
	bad := `
rules:
  reject_threshold: 10
  hold_threshold: 10
  actions:
    NO_SUCH_RULE: hold
    URL_RAW_IP: defer
desk:
  retention: 0s
  release_command: [postsuper, -H, "{queue_id}"]
  purge_command: [/usr/sbin/postsuper, -d, ALL]
  complaints: {threshold: -1}
  tracking:
    accounts: [alice]
    header: "X Bad"
`
	_, err = config.Parse([]byte(bad), "bad.yaml")
	if err == nil {
		t.Fatal("invalid desk config accepted")
	}
	for _, want := range []string{
		"rules.hold_threshold: must be below rules.reject_threshold",
		`rules.actions.NO_SUCH_RULE: unknown rule or clause "NO_SUCH_RULE"`,
		`rules.actions.URL_RAW_IP: "defer" is not one of accept, hold, reject`,
		"desk.retention: must be positive",
		`desk.release_command: the program "postsuper" must be an absolute path`,
		"desk.purge_command: no argument holds {queue_id}",
		"desk.complaints.threshold: must not be negative",
		"desk.tracking.accounts: tracked accounts need a key",
		`desk.tracking.header: "X Bad" is not a header name`,
	} {
		if !strings.Contains(withoutLines(err), want) {
			t.Errorf("missing problem %q in:\n%v", want, err)
		}
	}
}
