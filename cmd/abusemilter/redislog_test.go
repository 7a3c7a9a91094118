package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"

	gomilter "github.com/emersion/go-milter"
)

// TestRedisDownLogsStayJSON: with Redis unreachable, go-redis's own
// complaints go through the structured log too, so every stderr line is
// one JSON object and the fail mode is visible in the decision line.
func TestRedisDownLogsStayJSON(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now
	cfg := writeConfig(t, t.TempDir(), fmt.Sprintf(`
listen: inet:127.0.0.1:0
dns:
  enabled: false
redis:
  url: redis://%s/0
  timeout: 100ms
identity:
  accounts:
    alice:
      logins: [alice]
      send_as: [example.com]
`, dead))
	p := startDaemon(t, "--config", cfg)
	addr := milterAddr(t, p)
	for i := range 12 {
		if a := sendAs(t, addr, "alice", "alice@example.com", fmt.Sprintf("<down%d@example.com>", i)); a.Code != gomilter.ActAccept {
			t.Fatalf("message %d with Redis down: %q %d %s, want accept (redis_failure: accept)", i, a.Code, a.SMTPCode, a.SMTPText)
		}
	}
	p.waitDecision(t, "a fail-mode decision", func(l map[string]any) bool { return l["limiter_error"] != nil })
	p.waitDecision(t, "go-redis's dial failure, routed", func(map[string]any) bool {
		for _, l := range p.lines {
			if l["logger"] == "go-redis" && strings.Contains(fmt.Sprint(l["msg"]), "failed to dial") {
				return true
			}
		}
		return false
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, line := range p.raw {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("stderr line is not one JSON object: %q", line)
		}
	}
}
