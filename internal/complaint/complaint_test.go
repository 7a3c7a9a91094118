package complaint_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/complaint"
)

const samples = "../../testdata/complaints"

// TestParseSamples reads every sample of testdata/complaints and checks
// what it says about the original.
func TestParseSamples(t *testing.T) {
	cases := []struct {
		file, typ, messageID, tracking, original string
	}{
		{"arf-rfc5965.eml", "abuse", "arf-5965-original@example.com", "", "attached"},
		{"arf-provider.eml", "abuse", "newsletter-2026-11-27.0042@example.com", "", "attached"},
		{"dsn.eml", "dsn", "dsn-original-77@bob.example", "", "attached"},
		{"forwarded-attached.eml", "forwarded", "prize-4711@example.com", "", "attached"},
		{"forwarded-inline.eml", "forwarded", "invoice-overdue-9@bob.example", "", "inline"},
		{"tracking-only.eml", "fraud", "", "v1.Y2Fyb2w.1795167000.qRBPY5gu1BI1pIp5Bf7qeA", "attached"},
		{"forged-tracking.eml", "abuse", "", "v1.Y2Fyb2w.1795167000.Tgj7hkCLCAq4DLogtGKNDQ", "attached"},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join(samples, c.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, err := complaint.Parse(f, "X-Abuse-Tracking")
			if err != nil {
				t.Fatal(err)
			}
			if r.Type != c.typ || r.MessageID != c.messageID || r.Tracking != c.tracking || r.Original != c.original {
				t.Errorf("got type %q, Message-ID %q, tracking %q, original %q; want %q, %q, %q, %q",
					r.Type, r.MessageID, r.Tracking, r.Original, c.typ, c.messageID, c.tracking, c.original)
			}
			if r.ID == "" || r.Reporter == "" {
				t.Errorf("no report id or reporter: %+v", r)
			}
		})
	}
	t.Run("the attached original is kept whole (not the headers alone)", func(t *testing.T) {
		for file, wantOriginal := range map[string]bool{"arf-provider.eml": true, "arf-rfc5965.eml": true, "dsn.eml": false, "forwarded-inline.eml": false} {
			f, _ := os.Open(filepath.Join(samples, file))
			r, err := complaint.Parse(f, "X-Abuse-Tracking")
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if got := r.OriginalMessage != nil; got != wantOriginal {
				t.Errorf("%s: original message kept %v, want %v", file, got, wantOriginal)
				continue
			}
			if wantOriginal && !strings.Contains(string(r.OriginalMessage), r.MessageID) {
				t.Errorf("%s: the kept original does not carry its Message-ID %q:\n%s", file, r.MessageID, r.OriginalMessage)
			}
		}
	})
	t.Run("provider's encoded Subject is decoded", func(t *testing.T) {
		f, _ := os.Open(filepath.Join(samples, "arf-provider.eml"))
		defer f.Close()
		r, _ := complaint.Parse(f, "X-Abuse-Tracking")
		if r.Subject != "Black Friday – 50% off" {
			t.Errorf("subject %q", r.Subject)
		}
	})
	for _, garbage := range []string{"garbage.txt"} {
		f, _ := os.Open(filepath.Join(samples, garbage))
		if _, err := complaint.Parse(f, "X-Abuse-Tracking"); !errors.Is(err, complaint.ErrNotMail) {
			t.Errorf("%s: %v, want ErrNotMail", garbage, err)
		}
		f.Close()
	}
	if _, err := complaint.Parse(strings.NewReader(""), "X-Abuse-Tracking"); !errors.Is(err, complaint.ErrNotMail) {
		t.Errorf("empty input: %v, want ErrNotMail", err)
	}
}

// TestTracking: a value made with the key verifies to its account and
// time; another key's, an altered one, an expired one and a malformed one
// do not.
func TestTracking(t *testing.T) {
	key := []byte("complaint-test-key-0123456789abcdef")
	at := time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)
	v := complaint.Track(key, "carol", at)
	acct, when, err := complaint.Verify(key, v, at.Add(time.Hour), 30*24*time.Hour)
	if err != nil || acct != "carol" || !when.Equal(at) {
		t.Fatalf("Verify(%q) = %q, %v, %v", v, acct, when, err)
	}
	altered := strings.Replace(v, "Y2Fyb2w", "YWxpY2U", 1) // carol -> alice
	checks := map[string]error{
		complaint.Track([]byte("another-key-of-sixteen-bytes"), "carol", at): complaint.ErrTrackingForged,
		altered:          complaint.ErrTrackingForged,
		"v1.Y2Fyb2w.x.y": complaint.ErrTrackingMalformed,
		"hello":          complaint.ErrTrackingMalformed,
	}
	for val, want := range checks {
		if _, _, err := complaint.Verify(key, val, at, time.Hour); !errors.Is(err, want) {
			t.Errorf("Verify(%q) = %v, want %v", val, err, want)
		}
	}
	if _, _, err := complaint.Verify(key, v, at.Add(31*24*time.Hour), 30*24*time.Hour); !errors.Is(err, complaint.ErrTrackingExpired) {
		t.Errorf("31 days later: %v, want expired", err)
	}
}
