package attachment_test

import (
	"bytes"
	"testing"

	"github.com/abusemilter/abusemilter/attachment"
)

// BenchmarkInspect measures the inspection of a message with a text body
// and a 1 MiB zip of PDFs and text (bytes/s of raw message).
func BenchmarkInspect(b *testing.B) {
	text := bytes.Repeat([]byte("quarterly figures, region north, total 12\n"), 25000)
	msg := message(attached("report.zip", "application/zip", zipOf(b, "a.pdf", pdf(), "b.txt", text)), attached("c.pdf", "application/pdf", pdf()))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		r := attachment.Inspect(bytes.NewReader(msg), attachment.Limits{})
		if r.Files != 4 {
			b.Fatalf("files %d", r.Files)
		}
	}
}

// BenchmarkInspectPlain measures a message without attachments, the
// common case: what every message pays.
func BenchmarkInspectPlain(b *testing.B) {
	msg := []byte("From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\nContent-Type: text/plain\r\n\r\n" + string(bytes.Repeat([]byte("Hello Bob, see you tomorrow.\r\n"), 300)))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		attachment.Inspect(bytes.NewReader(msg), attachment.Limits{})
	}
}
