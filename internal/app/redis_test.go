package app_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/app"
	"github.com/abusemilter/abusemilter/internal/config"
)

func TestRedisOptions(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rc := &config.RedisConfig{URL: "redis://127.0.0.1:6390/2", Username: "milter", PasswordFile: pw, KeyPrefix: "x:", Timeout: config.D(time.Second)}
	ro, err := app.RedisOptions(rc)
	if err != nil {
		t.Fatal(err)
	}
	if ro.URL != rc.URL || ro.Username != "milter" || ro.Password != "s3cret" || ro.KeyPrefix != "x:" || ro.Timeout != time.Second {
		t.Errorf("options = %+v", ro)
	}

	t.Setenv("ABUSECTL_TEST_PW", "from-env")
	ro, err = app.RedisOptions(&config.RedisConfig{Addrs: []string{"a:1", "b:2"}, Cluster: true, PasswordEnv: "ABUSECTL_TEST_PW"})
	if err != nil || ro.Password != "from-env" || !ro.Cluster || len(ro.Addrs) != 2 {
		t.Errorf("env password: %+v, %v", ro, err)
	}

	if _, err := app.RedisOptions(&config.RedisConfig{URL: "redis://x:1", PasswordEnv: "ABUSECTL_TEST_UNSET_VARIABLE"}); err == nil || !strings.Contains(err.Error(), "ABUSECTL_TEST_UNSET_VARIABLE") {
		t.Errorf("unset variable: %v", err)
	}
	if _, err := app.RedisOptions(&config.RedisConfig{URL: "redis://x:1", PasswordFile: filepath.Join(t.TempDir(), "missing")}); err == nil || !strings.Contains(err.Error(), "redis.password_file") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := app.RedisOptions(nil); err == nil || !strings.Contains(err.Error(), "embedded") {
		t.Errorf("no redis section: %v", err)
	}
}
