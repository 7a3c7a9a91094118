package attachment_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"mime/quotedprintable"
	"strings"
	"testing"
)

// part is one MIME part of a test message.
type part struct {
	ctype       string // Content-Type value
	disposition string // Content-Disposition value; "" for none
	encoding    string // base64, quoted-printable or "" (raw)
	body        []byte
}

// message builds a multipart/mixed message with a text body and the parts.
func message(parts ...part) []byte {
	var b bytes.Buffer
	b.WriteString("From: alice@example.com\r\nTo: bob@example.org\r\nSubject: files\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: multipart/mixed; boundary=\"=-b1\"\r\n\r\npreamble\r\n")
	b.WriteString("--=-b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, see attached.\r\n")
	for _, p := range parts {
		b.WriteString("--=-b1\r\nContent-Type: " + p.ctype + "\r\n")
		if p.disposition != "" {
			b.WriteString("Content-Disposition: " + p.disposition + "\r\n")
		}
		if p.encoding != "" {
			b.WriteString("Content-Transfer-Encoding: " + p.encoding + "\r\n")
		}
		b.WriteString("\r\n")
		switch p.encoding {
		case "base64":
			enc := base64.StdEncoding.EncodeToString(p.body)
			for len(enc) > 76 {
				b.WriteString(enc[:76] + "\r\n")
				enc = enc[76:]
			}
			b.WriteString(enc + "\r\n")
		case "quoted-printable":
			w := quotedprintable.NewWriter(&b)
			w.Write(p.body)
			w.Close()
			b.WriteString("\r\n")
		default:
			b.Write(p.body)
			b.WriteString("\r\n")
		}
	}
	b.WriteString("--=-b1--\r\n")
	return b.Bytes()
}

// attached is a base64 attachment named name with media type ctype.
func attached(name, ctype string, body []byte) part {
	return part{ctype: ctype + "; name=\"" + name + "\"", disposition: "attachment; filename=\"" + name + "\"", encoding: "base64", body: body}
}

// pe is the start of a Windows PE executable.
func pe() []byte {
	b := make([]byte, 256)
	copy(b, "MZ")
	b[0x3c] = 0x80
	copy(b[0x80:], "PE\x00\x00")
	return b
}

// zipOf builds a zip archive of name/content pairs (deflated).
func zipOf(t testing.TB, files ...any) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	for i := 0; i < len(files); i += 2 {
		f, err := w.Create(files[i].(string))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(files[i+1].([]byte)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// storedZipOf builds a zip whose entries are stored with their sizes in
// the local headers, as Info-ZIP writes them.
func storedZipOf(t testing.TB, files ...any) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	for i := 0; i < len(files); i += 2 {
		data := files[i+1].([]byte)
		h := &zip.FileHeader{Name: files[i].(string), Method: zip.Store, CompressedSize64: uint64(len(data)), UncompressedSize64: uint64(len(data))}
		h.CRC32 = crc(data)
		f, err := w.CreateRaw(h)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// tgzOf builds a gzip-compressed tar archive.
func tgzOf(t testing.TB, files ...any) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for i := 0; i < len(files); i += 2 {
		data := files[i+1].([]byte)
		if err := tw.WriteHeader(&tar.Header{Name: files[i].(string), Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	tw.Close()
	zw.Close()
	return b.Bytes()
}

// ole builds the start of an OLE2 compound file whose directory names the
// given streams (UTF-16LE), enough for the macro check.
func ole(names ...string) []byte {
	b := []byte("\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
	b = append(b, make([]byte, 504)...)
	for _, n := range names {
		entry := make([]byte, 128)
		for i, r := range n {
			entry[2*i] = byte(r)
		}
		b = append(b, entry...)
	}
	return append(b, make([]byte, 2048)...)
}

// pdf is a small real PDF document.
func pdf() []byte {
	return []byte(`%PDF-1.4
1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj
2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj
3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >> endobj
xref
0 4
0000000000 65535 f 
0000000009 00000 n 
0000000058 00000 n 
0000000115 00000 n 
trailer << /Size 4 /Root 1 0 R >>
startxref
186
%%EOF
`)
}

// ids lists a report's finding IDs, sorted and unique, for comparisons.
func ids(fs []string) string {
	seen := map[string]bool{}
	var out []string
	for _, f := range fs {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	sortStrings(out)
	return strings.Join(out, ",")
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

var _ = fmt.Sprint

// gz gzips data.
func gz(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// streamedZipOf builds a zip of stored entries as streaming writers do:
// sizes only in the data descriptor after each entry (Go's zip.Writer
// sets flag bit 3 for every file).
func streamedZipOf(t testing.TB, files ...any) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	for i := 0; i < len(files); i += 2 {
		f, err := w.CreateHeader(&zip.FileHeader{Name: files[i].(string), Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		f.Write(files[i+1].([]byte))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
