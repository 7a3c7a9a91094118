package logging

import (
	"bytes"
	"encoding/json"
	"log"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestFormatsStayOneLine(t *testing.T) {
	for _, format := range []string{"json", "console", "auto"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			lg, _, err := New(Options{Format: format, Output: &buf})
			if err != nil {
				t.Fatal(err)
			}
			lg.Info("decision", zap.String("mail_from", "a@example.com\r\nINJECTED: yes\n"))
			out := buf.String()
			if strings.Count(out, "\n") != 1 || strings.Contains(out, "\r") || strings.Contains(out, "\nINJECTED") {
				t.Fatalf("%s output is not one line: %q", format, out)
			}
			if format != "console" {
				var m map[string]any
				if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
					t.Fatalf("auto on a non-terminal must be JSON: %v: %q", err, out)
				}
				if m["mail_from"] != "a@example.com\r\nINJECTED: yes\n" {
					t.Fatalf("value not kept: %q", m["mail_from"])
				}
			}
		})
	}
}

func TestLevelsAndErrors(t *testing.T) {
	var buf bytes.Buffer
	lg, level, err := New(Options{Format: "json", Level: "warn", Output: &buf})
	if err != nil {
		t.Fatal(err)
	}
	lg.Info("hidden")
	if buf.Len() != 0 {
		t.Fatalf("info logged at warn level: %q", buf.String())
	}
	if err := SetLevel(level, "debug"); err != nil {
		t.Fatal(err)
	}
	lg.Debug("shown")
	if !strings.Contains(buf.String(), "shown") {
		t.Fatal("level change not applied")
	}
	if _, _, err := New(Options{Format: "xml"}); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Fatalf("bad format: %v", err)
	}
	if _, _, err := New(Options{Level: "loud"}); err == nil || !strings.Contains(err.Error(), `"loud"`) {
		t.Fatalf("bad level: %v", err)
	}
}

func TestRedirectStdLog(t *testing.T) {
	var buf bytes.Buffer
	lg, _, _ := New(Options{Format: "json", Output: &buf})
	restore, err := RedirectStdLog(lg, "go-milter")
	if err != nil {
		t.Fatal(err)
	}
	log.Printf("panic handling command: %v\nstack line", "boom")
	restore()
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("std log line not redirected as JSON: %q", buf.String())
	}
	if m["logger"] != "go-milter" || m["level"] != "warn" || !strings.Contains(m["msg"].(string), "boom") {
		t.Fatalf("redirected line: %v", m)
	}
}
