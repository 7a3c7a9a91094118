package classifier

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/scoring"
)

var trainingDate = time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)

func parse(t testing.TB, raw string) *scoring.Message {
	t.Helper()
	m, err := scoring.ParseBytes([]byte(raw), sampleCap)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// smallSet is a made-up training set: ham about meetings and code,
// spam about prizes with links to one shady domain.
func smallSet(t testing.TB) (ham, spam []*scoring.Message) {
	for i := range 20 {
		ham = append(ham, parse(t, fmt.Sprintf("From: Alice <alice@example.org>\nSubject: meeting notes %d\nContent-Type: text/plain\n\nHi Bob, the build of release %d passed; the review is on Thursday.\n", i, i)))
		spam = append(spam, parse(t, fmt.Sprintf("From: Winner Desk <promo@prize%d.example>\nSubject: You WON a prize %d\nContent-Type: text/html\n\n<html><b>Claim your FREE prize now</b> <a href=\"http://claim.shady.example/win?id=%d\">click here</a></html>\n", i, i, i)))
	}
	return ham, spam
}

func trainSmall(t testing.TB) *Model {
	t.Helper()
	ham, spam := smallSet(t)
	tr, err := NewTrainer(1 << 12)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ham {
		tr.Add(ham[i], false)
		tr.Add(spam[i], true)
	}
	m, err := tr.Train(TrainOptions{Date: trainingDate, HoldOut: 4})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTrainSeparatesAndSummarises(t *testing.T) {
	m := trainSmall(t)
	s := m.Summary()
	if s.Ham != 20 || s.Spam != 20 || s.Trained != "2026-12-02" || s.Buckets != 1<<12 || s.Tokenizer != TokenizerVersion {
		t.Errorf("summary %+v", s)
	}
	if s.HeldOut == nil || s.HeldOut.Ham+s.HeldOut.Spam != 10 {
		t.Errorf("held-out evaluation %+v, want 10 messages (every 4th of 40)", s.HeldOut)
	}
	if s.Training.Accuracy() != 1 {
		t.Errorf("training set: %v", s.Training)
	}
	spam := parse(t, "From: Lucky <x@prize99.example>\nSubject: You WON a FREE prize\n\n<a href=\"http://claim.shady.example/win\">Claim your prize</a>\n")
	ham := parse(t, "From: Alice <alice@example.org>\nSubject: meeting notes\n\nBob, the review of the build is on Thursday.\n")
	if p := m.SpamProbability(spam); p < DefaultHoldProbability {
		t.Errorf("unseen spam: probability %.3f, want at least %v", p, DefaultHoldProbability)
	}
	if p := m.SpamProbability(ham); p > 0.1 {
		t.Errorf("unseen ham: probability %.3f, want at most 0.1", p)
	}
	if got, want := m.Describe(), "model trained 2026-12-02 on 20 ham / 20 spam"; got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
}

// TestTrainDeterministic: the same messages in the same order give the
// same model bytes.
func TestTrainDeterministic(t *testing.T) {
	a, b := trainSmall(t).Marshal(), trainSmall(t).Marshal()
	if !bytes.Equal(a, b) {
		t.Fatal("two trainings on the same messages gave different model files")
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	m := trainSmall(t)
	path := filepath.Join(t.TempDir(), "model")
	if err := os.WriteFile(path, m.Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Marshal(), m.Marshal()) {
		t.Error("a loaded model marshals to other bytes")
	}
	ham, _ := smallSet(t)
	if a, b := m.SpamProbability(ham[0]), got.SpamProbability(ham[0]); a != b {
		t.Errorf("probability %v before saving, %v after loading", a, b)
	}
}

// reseal recomputes the checksum of a model file changed by a test.
func reseal(data []byte) []byte {
	body := data[:len(data)-4]
	return binary.LittleEndian.AppendUint32(bytes.Clone(body), crc32.Checksum(body, crcTable))
}

// withHeader rewrites a model file's JSON header.
func withHeader(t *testing.T, data []byte, edit func(string) string) []byte {
	hlen := binary.LittleEndian.Uint32(data[len(magic)+4:])
	start := len(magic) + 8
	header := edit(string(data[start : start+int(hlen)]))
	var out []byte
	out = append(out, data[:len(magic)+4]...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(header)))
	out = append(out, header...)
	out = append(out, data[start+int(hlen):]...)
	return reseal(out)
}

func TestLoadRejectsBadFiles(t *testing.T) {
	good := trainSmall(t).Marshal()
	flip := func(i int) []byte { d := bytes.Clone(good); d[i] ^= 0x40; return d }
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "bad magic"},
		{"not a model", []byte("From: x\n\nhello\n"), "bad magic"},
		{"truncated header", good[:len(magic)+6], "truncated header"},
		{"truncated weights", good[:len(good)-100], "truncated or trailing data"},
		{"trailing bytes", append(bytes.Clone(good), 0), "truncated or trailing data"},
		{"flipped weight bit", flip(len(good) - 50), "checksum"},
		{"wrong version", reseal(func() []byte { d := bytes.Clone(good); d[len(magic)] = 9; return d }()), "format version 9, want 1"},
		{"wrong tokenizer", withHeader(t, good, func(h string) string {
			return strings.Replace(h, `"tokenizer":1`, `"tokenizer":7`, 1)
		}), "tokenizer version 7"},
		{"bucket count mismatch", withHeader(t, good, func(h string) string {
			return strings.Replace(h, `"buckets":4096`, `"buckets":8192`, 1)
		}), "header says 8192 buckets, file has 4096 weights"},
		{"hold probability out of range", withHeader(t, good, func(h string) string {
			return strings.Replace(h, `"hold_probability":0.9`, `"hold_probability":1.5`, 1)
		}), "hold probability 1.5"},
		{"unknown header field", withHeader(t, good, func(h string) string {
			return strings.Replace(h, `{`, `{"surprise":1,`, 1)
		}), "header: json: unknown field"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
			if err := os.WriteFile(path, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatal("loaded")
			}
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "model "+path+": ") {
				t.Errorf("error %q, want one naming %s, saying %q and wrapping ErrFormat", err, path, c.want)
			}
		})
	}
	missing := filepath.Join(dir, "missing")
	if _, err := Load(missing); err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: error %v", err)
	}
}

func TestTrainNeedsBothClasses(t *testing.T) {
	ham, _ := smallSet(t)
	tr, _ := NewTrainer(0)
	tr.Add(ham[0], false)
	if _, err := tr.Train(TrainOptions{}); !errors.Is(err, ErrNoExamples) {
		t.Errorf("training on ham only: %v, want ErrNoExamples", err)
	}
	if _, err := NewTrainer(1000); err == nil {
		t.Error("1000 buckets (not a power of two) accepted")
	}
}

// TestSpamProbabilityConcurrent: one model serves many sessions at once
// (run with -race); each gets the probability it gets alone.
func TestSpamProbabilityConcurrent(t *testing.T) {
	m := trainSmall(t)
	ham, spam := smallSet(t)
	msgs := append(ham, spam...)
	want := make([]float64, len(msgs))
	for i, msg := range msgs {
		want[i] = m.SpamProbability(msg)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8*len(msgs))
	for g := range 8 {
		wg.Go(func() {
			for k := range len(msgs) {
				i := (k + g) % len(msgs)
				if got := m.SpamProbability(msgs[i]); got != want[i] {
					errs <- fmt.Sprintf("message %d: %v concurrently, %v alone", i, got, want[i])
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
