package clamdtest

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"mime/quotedprintable"
	"strings"
)

// Part is one attachment of a test message.
type Part struct {
	Name     string // file name ("" for none)
	Type     string // media type, e.g. application/zip
	Encoding string // base64 (default), quoted-printable or 7bit
	Data     []byte
}

// Mail builds a multipart/mixed message from from to to with a short text
// body and the attachments, with CRLF line ends.
func Mail(from, to, subject string, parts ...Part) []byte {
	var b bytes.Buffer
	b.WriteString("From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\n")
	b.WriteString("Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.com>\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_part\"\r\n\r\n")
	b.WriteString("--=_part\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease find the files attached.\r\n")
	for _, p := range parts {
		b.WriteString("--=_part\r\nContent-Type: " + p.Type)
		if p.Name != "" {
			b.WriteString("; name=\"" + p.Name + "\"\r\nContent-Disposition: attachment; filename=\"" + p.Name + "\"")
		}
		enc := p.Encoding
		if enc == "" {
			enc = "base64"
		}
		b.WriteString("\r\nContent-Transfer-Encoding: " + enc + "\r\n\r\n")
		switch enc {
		case "base64":
			writeBase64(&b, p.Data)
		case "quoted-printable":
			w := quotedprintable.NewWriter(&b)
			w.Write(p.Data)
			w.Close()
			b.WriteString("\r\n")
		default:
			b.Write(p.Data)
			b.WriteString("\r\n")
		}
	}
	b.WriteString("--=_part--\r\n")
	return b.Bytes()
}

// writeBase64 writes data base64-encoded in lines of 76 characters.
func writeBase64(b *bytes.Buffer, data []byte) {
	line := make([]byte, 76)
	for len(data) > 0 {
		n := min(len(data), 57)
		base64.StdEncoding.Encode(line, data[:n])
		b.Write(line[:base64.StdEncoding.EncodedLen(n)])
		b.WriteString("\r\n")
		data = data[n:]
	}
}

// Zip builds a zip archive of name, content pairs.
func Zip(files ...string) []byte {
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	for i := 0; i+1 < len(files); i += 2 {
		f, _ := w.Create(files[i])
		f.Write([]byte(files[i+1]))
	}
	w.Close()
	return b.Bytes()
}

// Samples are the messages with EICAR that every antivirus path must
// refuse, by name: attached (base64), quoted-printable, in a zip, in a zip
// in a zip. The names inside are harmless so that only clamd decides.
func Samples(from, to string) map[string][]byte {
	return map[string][]byte{
		"attachment":       Mail(from, to, "eicar attached", Part{Name: "readme.txt", Type: "text/plain", Data: []byte(EICAR)}),
		"quoted-printable": Mail(from, to, "eicar qp", Part{Name: "notes.txt", Type: "text/plain", Encoding: "quoted-printable", Data: []byte(EICAR)}),
		"zip":              Mail(from, to, "eicar zip", Part{Name: "files.zip", Type: "application/zip", Data: Zip("readme.txt", EICAR)}),
		"zip in zip":       Mail(from, to, "eicar zip zip", Part{Name: "outer.zip", Type: "application/zip", Data: Zip("inner.zip", string(Zip("readme.txt", EICAR)))}),
	}
}
