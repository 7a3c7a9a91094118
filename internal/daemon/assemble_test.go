package daemon

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/config"
)

func TestOverrides(t *testing.T) {
	c, err := config.Parse([]byte(`
mode: monitor
session:
  idle_timeout: 2m
message:
  body_sample: 64KiB
identity:
  accounts:
    alice:
      logins: [alice]
      send_as: [example.com]
      limits:
        account_messages: [20/10m, 500/24h]
limits:
  account_messages: [100/1h]
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != "monitor" || c.Session.IdleTimeout.Duration != 2*time.Minute || c.Message.BodySample.Bytes != 64<<10 {
		t.Errorf("overrides not applied: %+v", c)
	}
	// Keys the file does not name keep their defaults.
	if c.Session.MaxSessions != 1000 || c.Identity.Accounts["local"].SendAs[0] != "any" {
		t.Errorf("a partial section lost its defaults")
	}
	p := Policy(c)
	if got := p.RatesFor("account_messages", "alice", ""); len(got) != 2 || got[1].Window != 24*time.Hour {
		t.Errorf("alice's override = %v", got)
	}
	if got := p.RatesFor("account_messages", "bob", ""); len(got) != 1 || got[0].Limit != 100 {
		t.Errorf("default rate = %v", got)
	}
}

func TestRedisStoreOptions(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse([]byte("redis:\n  addrs: [127.0.0.1:7000, 127.0.0.1:7001]\n  master_name: mymaster\n  password_file: "+pw+"\n  timeout: 150ms\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ro, err := StoreOptions(c.Redis)
	if err != nil {
		t.Fatal(err)
	}
	if ro.Password != "from-file" || ro.MasterName != "mymaster" || ro.KeyPrefix != "am:" || ro.Timeout != 150*time.Millisecond || ro.TLS != nil {
		t.Fatalf("options %+v", ro)
	}
	t.Setenv("AM_TEST_REDIS_PW", "from-env")
	c, err = config.Parse([]byte("redis:\n  url: rediss://redis.example:6380\n  password_env: AM_TEST_REDIS_PW\n  key_prefix: \"x:\"\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ro, err = StoreOptions(c.Redis)
	if err != nil || ro.Password != "from-env" || ro.TLS == nil || ro.TLS.ServerName != "redis.example" || ro.Timeout != 200*time.Millisecond || ro.KeyPrefix != "x:" {
		t.Fatalf("options %+v %v", ro, err)
	}
}
