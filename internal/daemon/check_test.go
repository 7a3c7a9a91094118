package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/internal/config"
)

// TestCheckDefaultAndExample: the built-in defaults and the shipped example
// config pass the start-up check on any host.
func TestCheckDefaultAndExample(t *testing.T) {
	if err := Check(config.Default()); err != nil {
		t.Errorf("the defaults: %v", err)
	}
	cfg, err := config.Load(filepath.Join("..", "..", "configs", "abusemilter.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(cfg); err != nil {
		t.Errorf("the example config: %v", err)
	}
}

// TestCheckReportsEveryProblem: the check goes on after the first problem
// and names each with its field path and line.
func TestCheckReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	doc := `identity:
  sender_login_maps: [` + dir + `/missing]
  accounts:
    carol:
      send_as: ["not an address!", "ok.example"]
notify:
  on_lock_command: [` + dir + `/hook]
  webhooks:
    - url: https://hooks.example.com/x
      token_file: ` + dir + `/token
listen: unix:` + dir + `/nodir/abusemilter.sock
`
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	err = Check(cfg)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"identity.sender_login_maps[0] (line 2): " + dir + "/missing does not exist",
		`identity.accounts.carol.send_as[0] (line 5): send_as pattern "not an address!"`,
		"notify.on_lock_command (line 7): the program " + dir + "/hook does not exist",
		"notify.webhooks[0].token_file (line 10): " + dir + "/token does not exist",
		"listen (line 11): \"unix:" + dir + "/nodir/abusemilter.sock\": the socket directory " + dir + "/nodir does not exist",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("lacks %q:\n%v", want, err)
		}
	}
}
