package attachment_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/attachment"
)

// FuzzInspect feeds arbitrary messages to the inspection: it must neither
// panic (the inspector recovers, and says so in Incomplete) nor exceed its
// limits.
func FuzzInspect(f *testing.F) {
	f.Add(message(attached("a.zip", "application/zip", zipOf(f, "b.exe", pe(), "c.zip", zipOf(f, "d.js", []byte("x"))))))
	f.Add(message(attached("a.tgz", "application/gzip", tgzOf(f, "x.bat", []byte("x")))))
	f.Add(message(attached("s.zip", "application/zip", streamedZipOf(f, "a.txt", []byte("PK\x07\x08"), "b.txt", pe()))))
	f.Add(message(attached("d.doc", "application/msword", ole("_VBA_PROJECT"))))
	f.Add(message(part{ctype: "text/html; name=x.htm", body: []byte("<form method=post><input type=password>")}))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: application/zip\r\n\r\nPK\x03\x04"))
	lim := attachment.Limits{MaxDepth: 3, MaxEntries: 50, MaxExpanded: 4 << 20, MaxTime: time.Second}
	f.Fuzz(func(t *testing.T, msg []byte) {
		r := attachment.Inspect(bytes.NewReader(msg), lim)
		if strings.HasPrefix(r.Incomplete, "inspection stopped") {
			t.Fatalf("inspection panicked: %s", r.Incomplete)
		}
		if r.Expanded > lim.MaxExpanded {
			t.Fatalf("expanded %d past the limit", r.Expanded)
		}
	})
}
