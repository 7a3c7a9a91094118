package clamd_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/clamd"
	"github.com/abusemilter/abusemilter/internal/testutil/clamdtest"
)

// scan streams data to clamd in chunks of n bytes.
func scan(t *testing.T, c *clamd.Client, data []byte, n int) (clamd.Result, error) {
	t.Helper()
	s, err := c.NewScan(context.Background())
	if err != nil {
		return clamd.Result{}, err
	}
	for len(data) > 0 {
		k := min(n, len(data))
		s.Write(data[:k])
		data = data[k:]
	}
	return s.Finish(context.Background())
}

func TestVerdicts(t *testing.T) {
	srv := clamdtest.Start(t, clamdtest.Options{})
	c, err := clamd.New(clamd.Options{Address: srv.Address(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if v, err := c.Version(context.Background()); err != nil || !strings.HasPrefix(v, "ClamAV ") {
		t.Fatalf("version %q, %v", v, err)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"eicar", []byte(clamdtest.EICAR), clamdtest.EICARSignature + clamdtest.Unofficial},
		{"marker", []byte("some text " + clamdtest.Marker + " more"), clamdtest.TestSignature + clamdtest.Unofficial},
		{"clean", bytes.Repeat([]byte("clean text\n"), 10000), ""},
	}
	// Twice over: the second round runs on pooled connections.
	for round := range 2 {
		for _, tc := range tests {
			res, err := scan(t, c, tc.data, 7)
			if err != nil {
				t.Fatalf("round %d %s: %v", round, tc.name, err)
			}
			if res.Signature != tc.want {
				t.Errorf("round %d %s: signature %q, want %q", round, tc.name, res.Signature, tc.want)
			}
			if res.Scanned != int64(len(tc.data)) || res.Truncated {
				t.Errorf("round %d %s: scanned %d of %d, truncated %v", round, tc.name, res.Scanned, len(tc.data), res.Truncated)
			}
		}
	}
	st := c.Stats()
	if st.Scans != 6 || st.Found != 4 || st.Errors != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestMaxSize(t *testing.T) {
	srv := clamdtest.Start(t, clamdtest.Options{})
	c, err := clamd.New(clamd.Options{Address: srv.Address(), MaxSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := append(bytes.Repeat([]byte("x"), 2048), clamdtest.Marker...)
	res, err := scan(t, c, data, 300)
	if err != nil {
		t.Fatal(err)
	}
	if res.Signature != "" || !res.Truncated || res.Scanned != 1024 {
		t.Errorf("result %+v: want clean, truncated at 1024", res)
	}
	res, err = scan(t, c, []byte(clamdtest.Marker), 300)
	if err != nil || res.Signature == "" || res.Truncated {
		t.Errorf("short stream: %+v %v", res, err)
	}
}

// TestFailures: clamd killed in the middle of a scan, clamd stopped (slow),
// clamd gone: each scan ends with ErrUnavailable within the timeout, the
// breaker opens and fails fast, and once clamd is back scans recover.
func TestFailures(t *testing.T) {
	srv := clamdtest.Start(t, clamdtest.Options{})
	timeout := 2 * time.Second
	c, err := clamd.New(clamd.Options{Address: srv.Address(), Timeout: timeout, BreakerFailures: 2, BreakerProbe: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Killed mid-scan.
	s, err := c.NewScan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s.Write(bytes.Repeat([]byte("a"), 64<<10))
	srv.Kill()
	start := time.Now()
	for range 32 {
		s.Write(bytes.Repeat([]byte("b"), 64<<10))
	}
	_, err = s.Finish(context.Background())
	if !errors.Is(err, clamd.ErrUnavailable) {
		t.Fatalf("killed mid-scan: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > timeout+time.Second {
		t.Errorf("killed mid-scan decided after %s (timeout %s)", took, timeout)
	}

	// Gone: the next failure opens the breaker, then it fails fast.
	if _, err := scan(t, c, []byte("x"), 1); !errors.Is(err, clamd.ErrUnavailable) {
		t.Fatalf("clamd gone: %v", err)
	}
	if !c.Stats().BreakerOpen {
		t.Fatalf("breaker not open after 2 failures: %+v", c.Stats())
	}
	start = time.Now()
	if _, err := c.NewScan(context.Background()); !errors.Is(err, clamd.ErrUnavailable) || time.Since(start) > 50*time.Millisecond {
		t.Fatalf("open breaker: %v after %s", err, time.Since(start))
	}

	// Back: a probe after BreakerProbe succeeds and closes the breaker.
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := scan(t, c, []byte(clamdtest.EICAR), 10)
		if err == nil {
			if res.Signature == "" {
				t.Fatal("EICAR not found after recovery")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // retry interval while the breaker probes
	}
	if c.Stats().BreakerOpen {
		t.Error("breaker still open after a successful scan")
	}

	// Slow: clamd stopped (SIGSTOP) while a verdict is awaited.
	s, err = c.NewScan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("hello"))
	if err := syscall.Kill(srv.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(srv.PID(), syscall.SIGCONT) })
	start = time.Now()
	_, err = s.Finish(context.Background())
	took := time.Since(start)
	syscall.Kill(srv.PID(), syscall.SIGCONT)
	if !errors.Is(err, clamd.ErrUnavailable) {
		t.Fatalf("stopped clamd: %v", err)
	}
	if took < timeout/2 || took > timeout+time.Second {
		t.Errorf("stopped clamd decided after %s, timeout %s", took, timeout)
	}
	t.Logf("stats %+v", c.Stats())
}

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct{ in, network, addr string }{
		{"unix:/run/clamav/clamd.ctl", "unix", "/run/clamav/clamd.ctl"},
		{"tcp:127.0.0.1:3310", "tcp", "127.0.0.1:3310"},
		{"tcp:[::1]:3310", "tcp", "[::1]:3310"},
		{"unix:relative", "", ""},
		{"tcp:host", "", ""},
		{"/run/clamav/clamd.ctl", "", ""},
	} {
		n, a, err := clamd.ParseAddress(tc.in)
		if n != tc.network || a != tc.addr || (err == nil) != (tc.network != "") {
			t.Errorf("ParseAddress(%q) = %q, %q, %v", tc.in, n, a, err)
		}
	}
}

// TestStreamMaxLengthMismatch: max_size above clamd's StreamMaxLength is a
// configuration error the client names; it does not open the breaker.
func TestStreamMaxLengthMismatch(t *testing.T) {
	srv := clamdtest.Start(t, clamdtest.Options{StreamMaxLength: "1M"})
	c, err := clamd.New(clamd.Options{Address: srv.Address(), MaxSize: 8 << 20, BreakerFailures: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 {
		_, err := scan(t, c, bytes.Repeat([]byte("y"), 3<<20), 64<<10)
		if !errors.Is(err, clamd.ErrStreamTooLong) || !errors.Is(err, clamd.ErrUnavailable) {
			t.Fatalf("stream past StreamMaxLength: %v", err)
		}
	}
	if c.Stats().BreakerOpen {
		t.Error("a configuration mismatch opened the breaker")
	}
	if res, err := scan(t, c, []byte(clamdtest.EICAR), 10); err != nil || res.Signature == "" {
		t.Errorf("a short message after: %+v %v", res, err)
	}
}
