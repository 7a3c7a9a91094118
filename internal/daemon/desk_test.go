package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// TestExecutor runs the desk's commands as the daemon does: placeholders
// filled, no shell; a command that fails leaves the message failed (still
// held); postsuper that reports nothing done means the message had left the
// hold queue; the deliver command follows a release.
func TestExecutor(t *testing.T) {
	dir := t.TempDir()
	postsuper := filepath.Join(dir, "postsuper")
	// a stand-in that reports what the real one does: nothing for an id it
	// does not hold
	script := "#!/bin/sh\ncase \"$2\" in HELD*) echo \"postsuper: Released from hold: 1 message\" >&2;; esac\n"
	if err := os.WriteFile(postsuper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	delivered := filepath.Join(dir, "delivered")
	cfg := config.DefaultDesk()
	cfg.ReleaseCommand = []string{postsuper, "-H", "{queue_id}"}
	cfg.PurgeCommand = []string{"/bin/echo", "{action}", "{queue_id}", "of", "{account}", "on", "{instance}", "by", "{by}"}
	cfg.DeliverCommand = []string{"/usr/bin/touch", delivered}
	x := &executor{log: zap.NewNop()}
	x.cfg.Store(&cfg)
	req := ratelimit.DeskRequest{QueueID: "HELD1", Account: "alice; rm -rf /", Instance: "mx1", By: "oncall", Action: ratelimit.Release}
	ctx := context.Background()

	if o := x.execute(ctx, req); o.Status != ratelimit.StatusReleased || !strings.Contains(o.Detail, "Released from hold: 1 message") {
		t.Errorf("release: %+v", o)
	}
	if _, err := os.Stat(delivered); err != nil {
		t.Errorf("the deliver command did not run after the release: %v", err)
	}
	req.QueueID = "GONE1"
	if o := x.execute(ctx, req); o.Status != ratelimit.StatusNotHeld {
		t.Errorf("release of a message postsuper does not hold: %+v, want not-held", o)
	}
	req.Action = ratelimit.Purge
	if o := x.execute(ctx, req); o.Status != ratelimit.StatusPurged || strings.TrimSpace(o.Detail) != "purge GONE1 of alice; rm -rf / on mx1 by oncall" {
		t.Errorf("purge: %+v", o)
	}
	cfg2 := cfg
	cfg2.PurgeCommand = []string{"/bin/sh", "-c", "echo no such queue file; exit 3"}
	cfg2.CommandTimeout = config.D(5 * time.Second)
	x.cfg.Store(&cfg2)
	if o := x.execute(ctx, req); o.Status != ratelimit.StatusFailed || !strings.Contains(o.Detail, "no such queue file") || !strings.Contains(o.Detail, "exit status 3") {
		t.Errorf("a failing command: %+v, want failed with its output", o)
	}
}
