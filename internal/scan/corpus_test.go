package scan

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

// corpusClasses finds the ham/, hard-ham/ and spam/ folders of the public
// corpus under $ABUSEMILTER_CORPUS (directly or one level down).
func corpusClasses(tb testing.TB) map[string]string {
	tb.Helper()
	root := testenv.Corpus(tb)
	out := make(map[string]string)
	for _, class := range []string{"ham", "hard-ham", "spam"} {
		matches, _ := filepath.Glob(filepath.Join(root, class))
		more, _ := filepath.Glob(filepath.Join(root, "*", class))
		matches = append(matches, more...)
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.IsDir() {
				out[class] = m
				break
			}
		}
		if out[class] == "" {
			tb.Fatalf("corpus %q has no %s/ folder", root, class)
		}
	}
	return out
}

func countFiles(tb testing.TB, dir string) int {
	tb.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestCorpus scans the public corpus as other people's mail, received
// (--account-from-sender --as-received --now received): every message
// parses, and no ham or hard-ham message is rejected.
func TestCorpus(t *testing.T) {
	classes := corpusClasses(t)
	for _, class := range []string{"ham", "hard-ham", "spam"} {
		dir := classes[class]
		o := options{Options: Options{AccountFromSender: true, AsReceived: true, Now: "received", Format: "json",
			FailOn: "never", Jobs: 2, Inputs: []string{dir}}}
		r := runScan(t, o)
		if r.code != exitOK {
			t.Errorf("%s: exit %d: %s", class, r.code, r.stderr)
		}
		files := countFiles(t, dir)
		s := r.summary
		if s.Messages != files || s.Unreadable != 0 || len(s.Problems) != 0 {
			t.Errorf("%s: %d messages of %d files, %d unreadable, problems %v\n%s", class, s.Messages, files, s.Unreadable, s.Problems, r.stderr)
		}
		t.Logf("corpus %-8s %5d messages: %5d accepted, %4d deferred, %4d rejected; top rules %v",
			class, s.Messages, s.Accepted, s.Deferred, s.Rejected, s.TopRules)
		if class == "spam" {
			continue
		}
		if s.Rejected != 0 {
			for _, m := range r.messages {
				if m.Verdict == "reject" {
					t.Errorf("%s: %s rejected: %s %+v", class, m.File, m.Rules, m.Findings)
				}
			}
		}
	}
}

// benchMbox writes an mbox of about size bytes made of corpus messages (or
// synthetic ones without a corpus) and returns its path, size and count.
func benchMbox(b *testing.B, size int64) (string, int64, int) {
	b.Helper()
	var msgs [][]byte
	if root := os.Getenv("ABUSEMILTER_CORPUS"); root != "" {
		for _, dir := range corpusClasses(b) {
			_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					if data, err := os.ReadFile(p); err == nil {
						msgs = append(msgs, data)
					}
				}
				return nil
			})
		}
		sort.Slice(msgs, func(i, j int) bool { return bytes.Compare(msgs[i], msgs[j]) < 0 })
	}
	if len(msgs) == 0 {
		for i := range 500 {
			body := strings.Repeat(fmt.Sprintf("Line %d of a synthetic message body, about as long as mail lines are.\n", i), 80)
			msgs = append(msgs, fmt.Appendf(nil, "Received: from mx%d.example.org by mx.example.net; Fri, 20 Nov 2026 10:%02d:00 +0000\nFrom: Sender %d <s%d@example.org>\nTo: r%d@example.net\nSubject: message %d\nDate: Fri, 20 Nov 2026 10:%02d:00 +0000\nMessage-ID: <%d@example.org>\n\n%s",
				i, i%60, i, i, i, i, i%60, i, body))
		}
	}
	path := filepath.Join(b.TempDir(), "bench.mbox")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var written int64
	n := 0
	for written < size {
		m := msgs[n%len(msgs)]
		k, _ := fmt.Fprintf(w, "From bench@example.org Fri Nov 20 10:00:00 2026\n")
		written += int64(k)
		for _, line := range bytes.SplitAfter(m, []byte("\n")) {
			if bytes.HasPrefix(line, []byte("From ")) {
				w.WriteByte('>')
				written++
			}
			k, _ := w.Write(line)
			written += int64(k)
		}
		if !bytes.HasSuffix(m, []byte("\n")) {
			w.WriteByte('\n')
			written++
		}
		w.WriteByte('\n')
		written++
		n++
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path, written, n
}

// BenchmarkScan scans a generated ~200 MB mbox of corpus-shaped messages
// with 1 and 2 workers, as other people's received mail, JSON report.
func BenchmarkScan(b *testing.B) {
	path, size, n := benchMbox(b, 200<<20)
	for _, jobs := range []int{1, 2} {
		b.Run(fmt.Sprintf("j%d", jobs), func(b *testing.B) {
			b.SetBytes(size)
			o := Options{AccountFromSender: true, AsReceived: true, Now: "received", Format: "json",
				FailOn: "never", Jobs: jobs, Inputs: []string{path}}
			s, err := New(config.Default(), o)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			for range b.N {
				if _, err := s.Run(context.Background(), io.Discard, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
			elapsed, cpu := time.Since(start), cpuTime()-cpu0
			b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "msgs/s")
			// CPU time per message does not depend on how busy the machine
			// is; 1e6/cpu-us/msg is the rate one free core would reach.
			b.ReportMetric(float64(cpu.Microseconds())/float64(n*b.N), "cpu-us/msg")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
