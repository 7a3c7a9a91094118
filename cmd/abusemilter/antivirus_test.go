package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/abusemilter/abusemilter/internal/bench/perftest"
	"github.com/abusemilter/abusemilter/internal/testutil/clamdtest"
	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

const antivirusConfigTemplate = `
listen: inet:127.0.0.1:0
session:
  shutdown_grace: 20s
identity:
  login_is_address: false
  accounts:
    alice:
      logins: [alice]
      send_as: [example.com]
limits:
  account_messages: ["100000000/1h"]
strikes:
  threshold: 0
dns:
  enabled: false
metrics:
  listen: 127.0.0.1:%d
antivirus:
  clamd: %s
  timeout: %s
  max_size: 64MiB
  on_error: %s
`

// splitMessage splits a raw message into its header fields (name, value
// without the space after the colon, folding kept) and its body.
func splitMessage(raw []byte) (fields [][2]string, body []byte) {
	head, body, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	for _, line := range strings.Split(string(head), "\r\n") {
		if (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) && len(fields) > 0 {
			fields[len(fields)-1][1] += "\r\n" + line
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		fields = append(fields, [2]string{name, strings.TrimPrefix(value, " ")})
	}
	return fields, body
}

// sendRaw sends one message from alice through a milter session and
// returns the end-of-message action. beforeBody, when set, runs after the
// first body chunk.
func sendRaw(t *testing.T, addr string, raw []byte, timeout time.Duration, afterFirstChunk func()) *gomilter.Action {
	t.Helper()
	s := testenv.MilterSession(t, addr, timeout)
	act(t, "conn")(s.Conn("client.example.net", gomilter.FamilyInet, 40000, "192.0.2.10"))
	if err := s.Macros(gomilter.CodeMail, "{auth_authen}", "alice", "{auth_type}", "PLAIN"); err != nil {
		t.Fatal(err)
	}
	act(t, "mail")(s.Mail("alice@example.com", nil))
	act(t, "rcpt")(s.Rcpt("bob@example.org", nil))
	fields, body := splitMessage(raw)
	for _, f := range fields {
		act(t, "header")(s.HeaderField(f[0], f[1]))
	}
	act(t, "eoh")(s.HeaderEnd())
	const chunk = 65535 // the largest milter body chunk
	for i := 0; len(body) > 0; i++ {
		n := min(chunk, len(body))
		a, err := s.BodyChunk(body[:n])
		if err != nil {
			t.Fatalf("body chunk: %v", err)
		}
		if a.Code != gomilter.ActContinue {
			return a
		}
		body = body[n:]
		if i == 0 && afterFirstChunk != nil {
			afterFirstChunk()
		}
	}
	_, a, err := s.End()
	if err != nil {
		t.Fatalf("end of message: %v", err)
	}
	s.Close()
	return a
}

func startAntivirusDaemon(t *testing.T, clamdAddr, timeout, onError string) (*proc, string, int) {
	t.Helper()
	metricsPort := redistest.FreePort(t)
	cfgPath := filepath.Join(t.TempDir(), "av.yaml")
	cfg := fmt.Sprintf(antivirusConfigTemplate, metricsPort, clamdAddr, timeout, onError)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startDaemon(t, "--config", cfgPath)
	return p, milterAddr(t, p), metricsPort
}

// TestBinaryAntivirusRefusesEICAR: EICAR attached, quoted-printable, in a
// zip and in a zip in a zip, and the test-specific signature, are each
// refused with 550 naming the signature, in the reply, the decision log and
// the signature metric; a clean message passes.
func TestBinaryAntivirusRefusesEICAR(t *testing.T) {
	srv := clamdtest.Start(t, clamdtest.Options{})
	p, addr, metricsPort := startAntivirusDaemon(t, srv.Address(), "10s", "defer")

	samples := clamdtest.Samples("alice@example.com", "bob@example.org")
	samples["test signature"] = clamdtest.Mail("alice@example.com", "bob@example.org", "marker",
		clamdtest.Part{Name: "report.csv", Type: "text/csv", Data: []byte("a,b\n1," + clamdtest.Marker + "\n")})
	for name, raw := range samples {
		sig := clamdtest.EICARSignature + clamdtest.Unofficial
		if name == "test signature" {
			sig = clamdtest.TestSignature + clamdtest.Unofficial
		}
		a := sendRaw(t, addr, raw, 15*time.Second, nil)
		want := "Rejected under the e-mail abuse policy (malware: VIRUS_FOUND " + sig + ")"
		if a.Code != gomilter.ActReplyCode || a.SMTPCode != 550 || !strings.Contains(a.SMTPText, want) {
			t.Errorf("%s: %c %d %q, want 550 with %q", name, a.Code, a.SMTPCode, a.SMTPText, want)
		}
		line := p.waitDecision(t, name, func(l map[string]any) bool {
			return l["stage"] == "eom" && l["virus"] == sig && strings.Contains(fmt.Sprint(l["malware"]), sig)
		})
		if line["rule"] != "VIRUS_FOUND" || line["action"] != "reject" {
			t.Errorf("%s: decision %v", name, line)
		}
	}
	clean := clamdtest.Mail("alice@example.com", "bob@example.org", "clean", clamdtest.Part{Name: "report.pdf", Type: "application/pdf", Data: []byte("%PDF-1.4\n%%EOF\n")})
	if a := sendRaw(t, addr, clean, 15*time.Second, nil); a.Code != gomilter.ActAccept {
		t.Errorf("clean message: %c %d %s", a.Code, a.SMTPCode, a.SMTPText)
	}
	metrics := scrape(t, fmt.Sprintf("127.0.0.1:%d", metricsPort))
	for name, want := range map[string]float64{
		`abusemilter_antivirus_signatures_total{signature="Eicar-Test-Signature.UNOFFICIAL"}`:    4,
		`abusemilter_antivirus_signatures_total{signature="Abusemilter.Test.Marker.UNOFFICIAL"}`: 1,
		`abusemilter_antivirus_scans_total`:                                                      6,
		`abusemilter_antivirus_infected_total`:                                                   5,
		`abusemilter_antivirus_errors_total`:                                                     0,
	} {
		if got, ok := metrics[name]; !ok || got != want {
			t.Errorf("metric %s = %v (present %v), want %v", name, got, ok, want)
		}
	}
}

// TestBinaryAntivirusBoundedMemory scans 16 messages with a clean 20 MB
// attachment at once: all pass, and the daemon's peak resident memory
// (VmHWM) stays far below what holding the messages would take (16 x 27
// MB of base64).
func TestBinaryAntivirusBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 430 MB through clamd; skipped with -short")
	}
	srv := clamdtest.Start(t, clamdtest.Options{})
	p, addr, _ := startAntivirusDaemon(t, srv.Address(), "60s", "defer")
	data := make([]byte, 20<<20)
	r := rand.NewChaCha8([32]byte{7})
	r.Read(data)
	raw := clamdtest.Mail("alice@example.com", "bob@example.org", "big", clamdtest.Part{Name: "backup.bin", Type: "application/octet-stream", Data: data})
	data = nil
	// One message first: the daemon's working set without the load.
	if a := sendRaw(t, addr, raw, 60*time.Second, nil); a.Code != gomilter.ActAccept {
		t.Fatalf("warm-up: %c %d %s; log:\n%s", a.Code, a.SMTPCode, a.SMTPText, strings.Join(p.raw, "\n"))
	}
	base, err := perftest.ReadMemory(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	actions := make([]*gomilter.Action, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			actions[i] = sendRaw(t, addr, raw, 120*time.Second, nil)
		}()
	}
	wg.Wait()
	took := time.Since(start)
	for i, a := range actions {
		if a == nil || a.Code != gomilter.ActAccept {
			t.Errorf("message %d: %+v", i, a)
		}
	}
	after, err := perftest.ReadMemory(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	whole := int64(n) * int64(len(raw))
	t.Logf("%d messages of %.1f MiB scanned at once in %s; daemon VmHWM %.1f MiB after one message, %.1f MiB after %d at once (holding them would take %.0f MiB)",
		n, mib(int64(len(raw))), took.Round(time.Millisecond), mib(base.Peak), mib(after.Peak), n, mib(whole))
	if limit := base.Peak + 64<<20; after.Peak > limit {
		t.Errorf("VmHWM %.1f MiB with %d messages at once, limit %.1f MiB (one message: %.1f MiB)", mib(after.Peak), n, mib(limit), mib(base.Peak))
	}
	p.waitCount(t, "accepted decisions", "decision", 0, n+1, func(l map[string]any) bool { return l["stage"] == "eom" && l["action"] == "accept" })
}

// TestBinaryAntivirusClamdKilled: clamd killed in the middle of a scan
// defers the message (on_error: defer) within the timeout; once clamd is
// back, the next message is scanned and refused again.
func TestBinaryAntivirusClamdKilled(t *testing.T) {
	srv := clamdtest.Start(t, clamdtest.Options{})
	timeout := 3 * time.Second
	p, addr, metricsPort := startAntivirusDaemon(t, srv.Address(), timeout.String(), "defer")
	big := make([]byte, 4<<20)
	raw := clamdtest.Mail("alice@example.com", "bob@example.org", "killed", clamdtest.Part{Name: "zeros.bin", Type: "application/octet-stream", Data: big})
	var killedAt time.Time
	a := sendRaw(t, addr, raw, 30*time.Second, func() {
		srv.Kill()
		killedAt = time.Now()
	})
	took := time.Since(killedAt)
	if a.Code != gomilter.ActReplyCode || a.SMTPCode != 451 || !strings.Contains(a.SMTPText, "(malware: ANTIVIRUS_UNAVAILABLE)") {
		t.Errorf("clamd killed mid-scan: %c %d %q, want 451 ANTIVIRUS_UNAVAILABLE", a.Code, a.SMTPCode, a.SMTPText)
	}
	if took > timeout+2*time.Second {
		t.Errorf("decided %s after the kill, timeout %s", took, timeout)
	}
	p.waitDecision(t, "deferred for clamd", func(l map[string]any) bool {
		return l["rule"] == "ANTIVIRUS_UNAVAILABLE" && strings.Contains(fmt.Sprint(l["malware"]), "clamd unavailable")
	})
	srv.Restart()
	eicar := clamdtest.Samples("alice@example.com", "bob@example.org")["zip"]
	if a := sendRaw(t, addr, eicar, 15*time.Second, nil); a.SMTPCode != 550 || !strings.Contains(a.SMTPText, "VIRUS_FOUND") {
		t.Errorf("after recovery: %c %d %q, want 550 VIRUS_FOUND", a.Code, a.SMTPCode, a.SMTPText)
	}
	if m := scrape(t, fmt.Sprintf("127.0.0.1:%d", metricsPort)); m["abusemilter_antivirus_errors_total"] != 1 {
		t.Errorf("clamd errors counted %v, want 1", m["abusemilter_antivirus_errors_total"])
	}
	t.Logf("decided %s after the kill", took.Round(time.Millisecond))
}

// TestCheckConfigPingsClamd: --check-config says clamd answers, and fails
// when it does not.
func TestCheckConfigPingsClamd(t *testing.T) {
	srv := clamdtest.Start(t, clamdtest.Options{})
	dir := t.TempDir()
	write := func(addr string) string {
		path := filepath.Join(dir, "c.yaml")
		os.WriteFile(path, []byte("antivirus:\n  clamd: "+addr+"\n  timeout: 1s\n"), 0o644)
		return path
	}
	var out, errOut bytes.Buffer
	if code := run(options{checkConfig: true, configPath: write(srv.Address())}, &out, &errOut); code != exitOK || !strings.Contains(out.String(), "answers PING (ClamAV ") {
		t.Errorf("clamd up: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run(options{checkConfig: true, configPath: write("unix:" + filepath.Join(dir, "none.sock"))}, &out, &errOut); code != exitFailed || !strings.Contains(errOut.String(), "does not answer PING") {
		t.Errorf("clamd down: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}
