package attachment

import (
	"bytes"
	"encoding/binary"
	"io"
	"path"
	"strings"
	"unicode/utf8"
)

// file is one attachment or archive entry being looked at.
type file struct {
	name     string // as given: a part's file name, an entry's path in its archive
	path     string // for reports: "outer.zip/inner.zip/entry"
	declared string // the declared media type; "" for archive entries
	depth    int    // archives around it: 0 for a MIME part
	csize    int64  // compressed size when known, else 0 (bomb ratio)
}

// kind is what a file's content is, from its magic bytes.
type kind struct {
	class string // one of the class* constants
	what  string // e.g. "MZ executable", "zip archive"
}

// Content classes.
const (
	classUnknown = ""
	classExe     = "executable"
	classArchive = "archive"
	classPDF     = "pdf"
	classOffice  = "office"
	classImage   = "image"
	classHTML    = "html"
	classText    = "text"
)

// archive kinds this package opens; the others are reported as such.
const (
	kindZip  = "zip archive"
	kindGzip = "gzip archive"
	kindTar  = "tar archive"
	kindOLE  = "OLE2 compound file"
)

// sniff tells a file's kind from its first bytes.
func sniff(b []byte) kind {
	at := func(off int, sig string) bool {
		return len(b) >= off+len(sig) && string(b[off:off+len(sig)]) == sig
	}
	switch {
	case at(0, "MZ"):
		return kind{classExe, "MZ executable"}
	case at(0, "\x7fELF"):
		return kind{classExe, "ELF executable"}
	case at(0, "\xfe\xed\xfa\xce"), at(0, "\xfe\xed\xfa\xcf"), at(0, "\xce\xfa\xed\xfe"), at(0, "\xcf\xfa\xed\xfe"):
		return kind{classExe, "Mach-O executable"}
	case at(0, "L\x00\x00\x00\x01\x14\x02\x00"):
		return kind{classExe, "Windows shortcut (LNK)"}
	case at(0x8001, "CD001"), at(0x8801, "CD001"), at(0x9001, "CD001"):
		return kind{classExe, "ISO 9660 disk image"}
	case at(0, "PK\x03\x04"), at(0, "PK\x05\x06"), at(0, "PK\x07\x08"):
		return kind{classArchive, kindZip}
	case at(0, "\x1f\x8b"):
		return kind{classArchive, kindGzip}
	case at(257, "ustar"):
		return kind{classArchive, kindTar}
	case at(0, "Rar!\x1a\x07"):
		return kind{classArchive, "rar archive"}
	case at(0, "7z\xbc\xaf\x27\x1c"):
		return kind{classArchive, "7z archive"}
	case at(0, "MSCF"):
		return kind{classArchive, "cab archive"}
	case at(0, "\xfd7zXZ\x00"):
		return kind{classArchive, "xz archive"}
	case at(0, "BZh") && len(b) > 3 && b[3] >= '1' && b[3] <= '9':
		return kind{classArchive, "bzip2 archive"}
	case at(7, "**ACE**"):
		return kind{classArchive, "ace archive"}
	case at(0, "\x60\xea"):
		return kind{classArchive, "arj archive"}
	case at(0, "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
		return kind{classOffice, kindOLE}
	case bytes.Contains(b[:min(len(b), 1024)], []byte("%PDF-")):
		return kind{classPDF, "PDF document"}
	case at(0, "\x89PNG\r\n\x1a\n"):
		return kind{classImage, "PNG image"}
	case at(0, "\xff\xd8\xff"):
		return kind{classImage, "JPEG image"}
	case at(0, "GIF87a"), at(0, "GIF89a"):
		return kind{classImage, "GIF image"}
	case looksHTML(b):
		return kind{classHTML, "HTML document"}
	}
	return kind{}
}

// looksHTML reports whether b starts (after white space, a BOM or
// comments) like an HTML document.
func looksHTML(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	b = bytes.TrimLeft(b, " \t\r\n")
	head := bytes.ToLower(b[:min(len(b), 512)])
	for _, p := range []string{"<!doctype html", "<html", "<head", "<body", "<form", "<script", "<meta", "<!--"} {
		if bytes.HasPrefix(head, []byte(p)) {
			return true
		}
	}
	return false
}

// declaredClass is the class a media type or file extension promises;
// classUnknown for generic types (application/octet-stream).
func declaredClass(mediaType, ext string) string {
	switch mt := mediaType; {
	case mt == "application/pdf":
		return classPDF
	case strings.HasPrefix(mt, "image/"):
		return classImage
	case mt == "application/msword", strings.HasPrefix(mt, "application/vnd.ms-excel"),
		strings.HasPrefix(mt, "application/vnd.ms-powerpoint"), strings.HasPrefix(mt, "application/vnd.openxmlformats-officedocument."),
		strings.HasPrefix(mt, "application/vnd.ms-word"), strings.HasPrefix(mt, "application/vnd.oasis.opendocument."):
		return classOffice
	case mt == "application/zip", mt == "application/x-zip-compressed", mt == "application/gzip", mt == "application/x-gzip",
		mt == "application/x-tar", mt == "application/vnd.rar", mt == "application/x-rar-compressed", mt == "application/x-7z-compressed":
		return classArchive
	case mt == "text/plain", mt == "text/csv":
		return classText
	case mt == "text/html":
		return classHTML
	}
	switch ext {
	case "pdf":
		return classPDF
	case "jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "webp":
		return classImage
	case "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "odp", "rtf":
		return classOffice
	case "zip", "gz", "tgz", "tar", "rar", "7z":
		return classArchive
	case "txt", "csv", "log":
		return classText
	case "htm", "html":
		return classHTML
	}
	return classUnknown
}

// mismatch reports whether content of class got contradicts a declared
// class: a document, image or text that is really something else.
// Harmless pairs are left out (an OOXML document is a zip; HTML sent as
// text).
func mismatch(declared, got string) bool {
	if got == classUnknown || declared == got {
		return false
	}
	switch declared {
	case classPDF, classImage, classText, classOffice:
	default:
		return false
	}
	if declared == classOffice && got == classArchive || declared == classText && got == classHTML {
		return false
	}
	return true
}

// dangerous lists the extensions of executables, scripts, installers,
// shortcuts and disk images that run (or mount and run) on a click.
var dangerous = setOf(
	"exe", "scr", "com", "pif", "cpl", "dll", "msi", "msp", "mst", "msc", "msix", "appx", "appxbundle",
	"js", "jse", "vbs", "vbe", "vb", "wsf", "wsh", "wsc", "sct", "hta", "ps1", "ps1xml", "ps2", "psc1", "psm1",
	"bat", "cmd", "reg", "inf", "scf", "lnk", "chm", "jar", "jnlp", "gadget", "application", "appref-ms",
	"iso", "img", "vhd", "vhdx", "apk", "xll", "settingcontent-ms",
)

// decoys are extensions a double-extension name shows to look harmless.
var decoys = setOf(
	"pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "rtf", "odt", "txt", "csv", "jpg", "jpeg", "png", "gif",
	"bmp", "zip", "rar", "mp3", "mp4", "avi", "mov", "wav", "htm", "html", "xml", "eml", "msg",
)

func setOf(s ...string) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, v := range s {
		m[v] = true
	}
	return m
}

// bidiControls are the Unicode controls that reorder how a name displays
// (U+202E RIGHT-TO-LEFT OVERRIDE makes "x\u202Efdp.exe" read "xexe.pdf").
func isBidiControl(r rune) bool {
	return r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 || r == 0x200e || r == 0x200f || r == 0x061c
}

// baseName is the last element of a path written with / or \.
func baseName(name string) string {
	return path.Base(strings.ReplaceAll(name, "\\", "/"))
}

// extensions returns a cleaned file name's extensions, lowercase, last
// first, and whether white space pads the name before its last dot.
// Windows ignores trailing dots and spaces, so they are removed first.
func extensions(name string) (exts []string, padded bool) {
	clean := strings.Map(func(r rune) rune {
		if isBidiControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, baseName(name))
	clean = strings.ToLower(strings.TrimRight(clean, ". \t"))
	parts := strings.Split(clean, ".")
	if len(parts) < 2 {
		return nil, false
	}
	stem := parts[len(parts)-2]
	padded = strings.HasSuffix(stem, "   ") || strings.Contains(stem, "\t") || strings.HasSuffix(stem, "___")
	for i := len(parts) - 1; i >= 1; i-- {
		exts = append(exts, strings.TrimSpace(parts[i]))
	}
	return exts, padded
}

// checkName reports what a file's name alone gives away.
func (in *inspector) checkName(f file) {
	if f.name == "" {
		return
	}
	if strings.IndexFunc(f.name, isBidiControl) >= 0 {
		in.report.add(BidiName, f.path, "bidi control character in the name (shown as %q)", strings.Map(func(r rune) rune {
			if isBidiControl(r) {
				return -1
			}
			return r
		}, baseName(f.name)))
	}
	exts, padded := extensions(f.name)
	if len(exts) == 0 || !dangerous[exts[0]] {
		return
	}
	id := Executable
	if f.depth > 0 {
		id = ArchiveExecutable
	}
	in.report.add(id, f.path, ".%s by name", exts[0])
	if len(exts) >= 2 && (decoys[exts[1]] || padded) {
		in.report.add(DoubleExtension, f.path, ".%s.%s", exts[1], exts[0])
	} else if padded {
		in.report.add(DoubleExtension, f.path, "white space before .%s", exts[0])
	}
}

// peExecutable reports whether an MZ file has a PE (or NE, LE) header
// where its DOS header says, so that a text that happens to begin with
// "MZ" is not taken for a program. A header pointer past the sniffed
// bytes (but within 64 KiB) cannot be checked and counts.
func peExecutable(b []byte) bool {
	if len(b) < 0x40 {
		return false
	}
	off := int(binary.LittleEndian.Uint32(b[0x3c:]))
	if off < 0x40 || off > 0x10000 {
		return false
	}
	if off+4 > len(b) {
		return len(b) == SniffBytes
	}
	return string(b[off:off+4]) == "PE\x00\x00" || string(b[off:off+2]) == "NE" || string(b[off:off+2]) == "LE"
}

// file inspects one attachment or archive entry read from r.
func (in *inspector) file(f file, r io.Reader) {
	if in.check() != nil {
		return
	}
	in.report.Files++
	in.checkName(f)
	buf := in.sniffBuffer(f.depth)
	n, err := io.ReadFull(r, buf)
	head := buf[:n]
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return
	}
	k := sniff(head)
	if k.class == classExe && k.what == "MZ executable" && !peExecutable(head) {
		k = kind{}
	}
	exts, _ := extensions(f.name)
	ext := ""
	if len(exts) > 0 {
		ext = exts[0]
	}
	if k.class == classExe {
		id := Executable
		if f.depth > 0 {
			id = ArchiveExecutable
		}
		if !in.report.hasAt(id, f.path) {
			in.report.add(id, f.path, "%s by content", k.what)
		}
	}
	decl := declaredClass(f.declared, ext)
	if f.declared != "" && declaredClass(f.declared, "") == classUnknown {
		decl = declaredClass("", ext) // application/octet-stream: the name says what it is
	}
	if mismatch(decl, k.class) {
		what := f.declared
		if what == "" || declaredClass(f.declared, "") == classUnknown {
			what = "." + ext
		}
		in.report.add(TypeMismatch, f.path, "%s declared %s", k.what, what)
	}
	body := io.MultiReader(bytes.NewReader(head), r)
	switch k.what {
	case kindZip, kindGzip, kindTar:
		if f.depth >= in.lim.MaxDepth {
			in.limit(errDepth, f.path)
			return
		}
		switch k.what {
		case kindZip:
			in.zip(f, body)
		case kindGzip:
			in.gzip(f, body)
		case kindTar:
			in.tar(f, body)
		}
	case kindOLE:
		if hasVBA(body) {
			in.report.add(OfficeMacro, f.path, "VBA project in an OLE2 document")
		}
	case "HTML document":
		in.html(f, body)
	default:
		if k.class == classArchive {
			in.report.add(ArchiveUninspected, f.path, "%s: not opened, its content was not inspected", k.what)
		} else if k.class == classUnknown && (ext == "htm" || ext == "html" || ext == "xhtml" || ext == "shtml" || f.declared == "text/html") {
			in.html(f, body)
		}
	}
}

// sniffBuffer returns the reusable sniff buffer of a nesting level.
func (in *inspector) sniffBuffer(depth int) []byte {
	for len(in.bufs) <= depth {
		in.bufs = append(in.bufs, nil)
	}
	if in.bufs[depth] == nil {
		in.bufs[depth] = make([]byte, SniffBytes)
	}
	return in.bufs[depth]
}

// hasAt reports whether a finding with the ID is recorded for the path.
func (r *Report) hasAt(id, p string) bool {
	for _, f := range r.Findings {
		if f.ID == id && f.Path == p {
			return true
		}
	}
	return false
}
