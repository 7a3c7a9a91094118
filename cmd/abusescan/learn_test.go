package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/classifier"
)

// writeMessages writes n made-up messages of a kind into a new directory
// (as the desk's training copies are: one .eml per message).
func writeMessages(t *testing.T, spam bool, n int) string {
	t.Helper()
	dir := t.TempDir()
	for i := range n {
		msg := fmt.Sprintf("From: Alice <alice@example.com>\nSubject: meeting notes %d\n\nBob, the build passed; the review is on Thursday.\n", i)
		if spam {
			msg = fmt.Sprintf("From: Prize Desk <promo@prize.example>\nSubject: You WON %d\n\n<b>Claim your FREE prize</b> http://claim.shady.example/win\n", i)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("20261202T0930%02d-Q%d.eml", i, i)), []byte(msg), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLearnWritesModel(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1796169600") // 2026-12-02
	spam, ham := writeMessages(t, true, 12), writeMessages(t, false, 15)
	out := filepath.Join(t.TempDir(), "classifier.model")
	o := execute(t, scanInputs, "learn", "--spam", spam, "--ham", ham, "-o", out, "--bucket-bits", "12")
	if o.code != exitOK {
		t.Fatalf("exit %d\n%s%s", o.code, o.stdout, o.stderr)
	}
	for _, want := range []string{"trained 2026-12-02 on 15 ham / 12 spam", "training set at p >= 0.9: 15 ham, 0.00% flagged; 12 spam, 100.0% flagged", "held out (every 5th message)"} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, o.stdout)
		}
	}
	if !strings.Contains(o.stderr, "--spam "+spam+": 12 messages") {
		t.Errorf("stderr %q", o.stderr)
	}
	m, err := classifier.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if s := m.Summary(); s.Ham != 15 || s.Spam != 12 || s.Buckets != 1<<12 {
		t.Errorf("model summary %+v", s)
	}
	first, _ := os.ReadFile(out)
	if o := execute(t, scanInputs, "learn", "--spam", spam, "--ham", ham, "-o", out, "--bucket-bits", "12"); o.code != exitOK {
		t.Fatalf("second run: exit %d\n%s", o.code, o.stderr)
	}
	if second, _ := os.ReadFile(out); !bytes.Equal(first, second) {
		t.Error("the same inputs gave another model file")
	}
}

func TestLearnErrors(t *testing.T) {
	spam, empty := writeMessages(t, true, 3), t.TempDir()
	missing := filepath.Join(empty, "missing")
	out := filepath.Join(t.TempDir(), "m")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"learn", "--spam", spam, "-o", out}, "both --spam and --ham are needed"},
		{[]string{"learn", "--spam", spam, "--ham", spam}, `required flag(s) "output" not set`},
		{[]string{"learn", "--spam", spam, "--ham", empty, "-o", out}, "--ham " + empty + ": no message found"},
		{[]string{"learn", "--spam", missing, "--ham", spam, "-o", out}, "--spam " + missing + ": stat " + missing + ": no such file or directory"},
		{[]string{"learn", "--spam", spam, "--ham", spam, "-o", out, "--hold-probability", "1"}, "--hold-probability 1: want between 0 and 1"},
		{[]string{"learn", "--spam", spam, "--ham", spam, "-o", filepath.Join(missing, "m")}, "write " + filepath.Join(missing, "m")},
	} {
		o := execute(t, scanInputs, c.args...)
		if o.code != exitUsage || !strings.Contains(o.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, o.code, o.stderr, c.want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed run wrote the model")
	}
}

// TestLearnUnwrapsComplaints: an ARF report given as --spam is learnt as
// the original it carries, not as the report around it.
func TestLearnUnwrapsComplaints(t *testing.T) {
	arf, err := os.ReadFile("../../testdata/complaints/arf-provider.eml")
	if err != nil {
		t.Fatal(err)
	}
	if got := reportedOriginal(arf); bytes.Equal(got, arf) || !bytes.Contains(got, []byte("Message-ID: <newsletter-2026-11-27.0042@example.com>")) ||
		bytes.Contains(got, []byte("feedback-report")) {
		t.Errorf("the original taken from the report:\n%s", got)
	}
	plain := []byte("From: a@example.com\nSubject: hi\n\nhello\n")
	if got := reportedOriginal(plain); !bytes.Equal(got, plain) {
		t.Errorf("a plain message changed: %q", got)
	}
}

// TestScanWithLearntModel: a scan loads rules.classifier.model as the
// daemon does; the model learnt from the folders holds their spam.
func TestScanWithLearntModel(t *testing.T) {
	spam, ham := writeMessages(t, true, 12), writeMessages(t, false, 15)
	dir := t.TempDir()
	model := filepath.Join(dir, "classifier.model")
	if o := execute(t, scanInputs, "learn", "--spam", spam, "--ham", ham, "-o", model, "--bucket-bits", "12"); o.code != exitOK {
		t.Fatalf("learn: exit %d\n%s", o.code, o.stderr)
	}
	cfg := filepath.Join(dir, "abusemilter.yaml")
	if err := os.WriteFile(cfg, []byte("rules:\n  classifier:\n    model: "+model+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	scan := func(input string) outcome {
		return execute(t, scanInputs, "--config", cfg, "--account-from-sender", "--format", "json", "--no-progress", "-j", "1", input)
	}
	o := scan(spam)
	if o.code != exitOK || strings.Count(o.stdout, `"rule":"CONTENT_CLASSIFIER"`) < 12 || !strings.Contains(o.stdout, `"verdict":"hold"`) {
		t.Errorf("spam folder: exit %d, want 0 (hold is below --fail-on reject) and every message held by CONTENT_CLASSIFIER:\n%s%s", o.code, o.stdout, o.stderr)
	}
	if o := scan(ham); o.code != exitOK || strings.Contains(o.stdout, "CONTENT_CLASSIFIER") {
		t.Errorf("ham folder: exit %d, CONTENT_CLASSIFIER found:\n%s", o.code, o.stdout)
	}
	if err := os.WriteFile(model, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if o := scan(spam); o.code != exitUsage || !strings.Contains(o.stderr, "model "+model+": bad magic") {
		t.Errorf("a broken model: exit %d, stderr %q; want 2 naming the file", o.code, o.stderr)
	}
}
