package attachment_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/attachment"
)

// TestRules runs each attachment check on a message that fires it and on
// near misses that must not.
func TestRules(t *testing.T) {
	docx := func(t testing.TB, macro bool) []byte {
		files := []any{
			"[Content_Types].xml", []byte(`<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>`),
			"_rels/.rels", []byte(`<Relationships/>`),
			"word/document.xml", []byte(`<w:document><w:body><w:p><w:r><w:t>Quarterly report</w:t></w:r></w:p></w:body></w:document>`),
		}
		if macro {
			files = append(files, "word/vbaProject.bin", ole("_VBA_PROJECT", "dir"))
		}
		return zipOf(t, files...)
	}
	encryptedZip := func(t testing.TB) []byte {
		z := storedZipOf(t, "secret.pdf", pdf())
		// Set the "encrypted" flag bit in the local and central headers.
		z[6] |= 1
		i := bytes.Index(z, []byte("PK\x01\x02"))
		z[i+8] |= 1
		return z
	}
	htmlForm := []byte(`<!DOCTYPE html><html><body><h1>Sign in to your mailbox</h1>
<form method="POST" action="https://collect.example.net/login.php"><input type="email" name="u"><input type="password" name="p"></form></body></html>`)
	htmlPlain := []byte(`<!DOCTYPE html><html><body><h1>Invoice 2026-114</h1><table><tr><td>Hosting</td><td>10 EUR</td></tr></table></body></html>`)
	iso := make([]byte, 0x9000)
	copy(iso[0x8001:], "CD001")

	tests := []struct {
		name string
		msg  []byte
		want string // sorted finding IDs
	}{
		{"exe by name and content", message(attached("setup.exe", "application/octet-stream", pe())), "ATTACH_EXECUTABLE"},
		{"script by name", message(attached("rechnung.js", "application/javascript", []byte("var x = new ActiveXObject('WScript.Shell');"))), "ATTACH_EXECUTABLE"},
		{"exe disguised as pdf", message(attached("invoice.pdf", "application/pdf", pe())), "ATTACH_EXECUTABLE,ATTACH_TYPE_MISMATCH"},
		{"double extension", message(attached("invoice.pdf.exe", "application/octet-stream", pe())), "ATTACH_DOUBLE_EXTENSION,ATTACH_EXECUTABLE"},
		{"padded double extension", message(attached("invoice.pdf          .scr", "application/octet-stream", []byte("x"))), "ATTACH_DOUBLE_EXTENSION,ATTACH_EXECUTABLE"},
		{"right-to-left override, RFC 2231", message(part{
			ctype: "application/octet-stream", encoding: "base64", body: []byte("x"),
			disposition: "attachment; filename*=UTF-8''invoice%E2%80%AEfdp.scr",
		}), "ATTACH_BIDI_NAME,ATTACH_EXECUTABLE"},
		{"encoded-word name", message(part{
			ctype: "application/octet-stream; name=\"=?UTF-8?B?UmVjaG51bmcuanM=?=\"", encoding: "base64", body: []byte("x"),
		}), "ATTACH_EXECUTABLE"},
		{"RFC 2231 continuations", message(part{
			ctype: "application/octet-stream", encoding: "base64", body: []byte("x"),
			disposition: "attachment; filename*0*=UTF-8''fac; filename*1=\"ture.vbs\"",
		}), "ATTACH_EXECUTABLE"},
		{"exe content quoted-printable, unnamed", message(part{ctype: "application/octet-stream", encoding: "quoted-printable", body: pe()}), "ATTACH_EXECUTABLE"},
		{"shortcut by content", message(attached("photo.jpg", "image/jpeg", append([]byte("L\x00\x00\x00\x01\x14\x02\x00"), make([]byte, 64)...))), "ATTACH_EXECUTABLE,ATTACH_TYPE_MISMATCH"},
		{"disk image by content", message(attached("scan.dat", "application/octet-stream", iso)), "ATTACH_EXECUTABLE"},
		{"zip holding an exe", message(attached("docs.zip", "application/zip", zipOf(t, "docs/readme.txt", []byte("hi"), "docs/setup.exe", pe()))), "ARCHIVE_EXECUTABLE"},
		{"zip in zip holding a script", message(attached("outer.zip", "application/zip", zipOf(t, "inner.zip", zipOf(t, "run.vbs", []byte("MsgBox 1"))))), "ARCHIVE_EXECUTABLE"},
		{"stored zip, exe by content", message(attached("photos.zip", "application/zip", storedZipOf(t, "img001.jpg", pe()))), "ARCHIVE_EXECUTABLE,ATTACH_TYPE_MISMATCH"},
		{"stored entries behind data descriptors", message(attached("mixed.zip", "application/zip", streamedZipOf(t, "a.txt", []byte("PK and P and PK\x07\x08 inside"), "b.pdf", pdf(), "last.txt", pe()))), "ARCHIVE_EXECUTABLE,ATTACH_TYPE_MISMATCH"},
		{"tar.gz holding a batch file", message(attached("backup.tar.gz", "application/gzip", tgzOf(t, "tools/install.bat", []byte("@echo off")))), "ARCHIVE_EXECUTABLE"},
		{"gzip of an exe", message(attached("update.exe.gz", "application/gzip", gz(t, pe()))), "ARCHIVE_EXECUTABLE"},
		{"encrypted zip", message(attached("secret.zip", "application/zip", encryptedZip(t))), "ARCHIVE_ENCRYPTED"},
		{"rar archive", message(attached("files.rar", "application/vnd.rar", []byte("Rar!\x1a\x07\x01\x00rest"))), "ARCHIVE_UNINSPECTED"},
		{"docm with macros", message(attached("report.docm", "application/vnd.ms-word.document.macroEnabled.12", docx(t, true))), "ATTACH_OFFICE_MACRO"},
		{"OLE doc with macros", message(attached("report.doc", "application/msword", ole("Root Entry", "Macros", "VBA", "_VBA_PROJECT"))), "ATTACH_OFFICE_MACRO"},
		{"zipped OLE doc with macros", message(attached("report.zip", "application/zip", zipOf(t, "report.xls", ole("_VBA_PROJECT_CUR")))), "ATTACH_OFFICE_MACRO"},
		{"HTML attachment posting a form", message(attached("login.html", "text/html", htmlForm)), "ATTACH_HTML_FORM"},
		{"HTML form inside a zip", message(attached("secure.zip", "application/zip", zipOf(t, "view.htm", htmlForm))), "ATTACH_HTML_FORM"},

		// Near misses.
		{"exe named in text", message(part{ctype: "text/plain; charset=utf-8", body: []byte("Run setup.exe from the share, then invoice.pdf.exe is gone.")}), ""},
		{"installer link in text", message(part{ctype: "text/html; charset=utf-8", body: []byte(`<p>Download the signed installer: <a href="https://downloads.example.com/app/setup.exe">setup.exe</a></p><form method="post" action="https://example.com/unsubscribe"><input type="submit"></form>`)}), ""},
		{"real PDF", message(attached("invoice.pdf", "application/pdf", pdf())), ""},
		{"PDF sent as octet-stream", message(attached("invoice.pdf", "application/octet-stream", pdf())), ""},
		{"DOCX without macros", message(attached("report.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", docx(t, false))), ""},
		{"zip of PDFs", message(attached("invoices.zip", "application/zip", zipOf(t, "2026/jan.pdf", pdf(), "2026/feb.pdf", pdf()))), ""},
		{"tar.gz of text", message(attached("logs.tar.gz", "application/gzip", tgzOf(t, "app.log", []byte("started\n"), "notes.txt", []byte("see setup.exe")))), ""},
		{"text beginning with MZ", message(attached("bio.txt", "text/plain", []byte("MZ (Mary Zed) was born in 1970 and wrote three books about sailing.\n"))), ""},
		{"PNG named jpg", message(attached("photo.jpg", "image/jpeg", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"))), ""},
		{"dotted name", message(attached("report.v2.final.pdf", "application/pdf", pdf())), ""},
		{"HTML attachment without a form", message(attached("invoice.html", "text/html", htmlPlain)), ""},
		{"OLE doc without macros", message(attached("old.doc", "application/msword", ole("Root Entry", "WordDocument", "1Table"))), ""},
		{"archive name with gz", message(attached("site.tar.gz", "application/gzip", tgzOf(t, "index.php", []byte("<?php echo 1;")))), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, mode := range []string{"inspect", "stream"} {
				var r *attachment.Report
				if mode == "inspect" {
					r = attachment.Inspect(bytes.NewReader(tc.msg), attachment.Limits{})
				} else {
					s := attachment.NewStream(attachment.Limits{})
					for b := tc.msg; len(b) > 0; {
						n := min(len(b), 777)
						if _, err := s.Write(b[:n]); err != nil {
							t.Fatal(err)
						}
						b = b[n:]
					}
					r = s.Finish()
				}
				var got []string
				for _, f := range r.Findings {
					got = append(got, f.ID)
				}
				if g := ids(got); g != tc.want {
					t.Errorf("%s: findings %q, want %q (%v; incomplete %q)", mode, g, tc.want, r.Findings, r.Incomplete)
				}
			}
		})
	}
}

// TestFindingPaths checks that findings name the file, inside archives too.
func TestFindingPaths(t *testing.T) {
	msg := message(attached("outer.zip", "application/zip", zipOf(t, "inner.zip", zipOf(t, "deep/run.vbs", []byte("x")))))
	r := attachment.Inspect(bytes.NewReader(msg), attachment.Limits{})
	if d := r.Describe(attachment.ArchiveExecutable); !strings.Contains(d, "outer.zip/inner.zip/deep/run.vbs") {
		t.Errorf("describe %q does not name the nested entry", d)
	}
}
