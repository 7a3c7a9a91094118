package attachment

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"strings"
)

// gzip inspects the file a gzip stream holds (a tar archive for .tgz).
func (in *inspector) gzip(f file, r io.Reader) {
	raw := &byteCounter{br: bufio.NewReaderSize(r, 16<<10)}
	zr, err := gzip.NewReader(raw)
	if err != nil {
		return
	}
	name := zr.Name
	if name == "" {
		base := baseName(f.name)
		switch lower := strings.ToLower(base); {
		case strings.HasSuffix(lower, ".tgz"):
			name = base[:len(base)-4] + ".tar"
		case strings.HasSuffix(lower, ".gz"):
			name = base[:len(base)-3]
		default:
			name = "(gzip content)"
		}
	}
	sub := file{name: name, path: f.path + "/" + name, depth: f.depth + 1}
	in.entries++
	if in.entries > in.lim.MaxEntries {
		in.stop = errEntries
		in.limit(errEntries, f.path)
		return
	}
	c := in.counted(zr, sub)
	c.raw = raw
	in.file(sub, c)
}

// tar inspects the entries of a tar archive.
func (in *inspector) tar(f file, r io.Reader) {
	tr := tar.NewReader(r)
	for in.check() == nil {
		h, err := tr.Next()
		if err != nil {
			return
		}
		in.entries++
		if in.entries > in.lim.MaxEntries {
			in.stop = errEntries
			in.limit(errEntries, f.path)
			return
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA {
			in.checkName(file{name: h.Name, path: f.path + "/" + h.Name, depth: f.depth + 1})
			continue
		}
		in.file(file{name: h.Name, path: f.path + "/" + h.Name, depth: f.depth + 1}, tr)
		if in.stop != nil {
			return
		}
	}
}

// vbaMarker is "_VBA_PROJECT" in UTF-16LE, as OLE2 directory entries name
// the VBA project stream (Word's Macros/VBA/_VBA_PROJECT, Excel's
// _VBA_PROJECT_CUR storage).
var vbaMarker = []byte("_\x00V\x00B\x00A\x00_\x00P\x00R\x00O\x00J\x00E\x00C\x00T\x00")

// hasVBA reads an OLE2 compound file to its end and reports whether its
// directory names a VBA project.
func hasVBA(r io.Reader) bool {
	return scan(r, func(window []byte) bool { return bytes.Contains(window, vbaMarker) })
}

// scan reads r in chunks and calls found on each chunk with the tail of the
// one before it, so that a pattern split between reads is seen; it stops
// early when found says so.
func scan(r io.Reader, found func(window []byte) bool) bool {
	const keep = 1024
	buf := make([]byte, keep+32<<10)
	carry := 0
	for {
		n, err := r.Read(buf[carry:])
		if n > 0 {
			if found(buf[:carry+n]) {
				return true
			}
			total := carry + n
			carry = min(keep, total)
			copy(buf, buf[total-carry:total])
		}
		if err != nil {
			return false
		}
	}
}

// html reports an HTML file with a form that sends what is typed into it
// somewhere: a form with method="post", an action to a web address, or a
// password field.
func (in *inspector) html(f file, r io.Reader) {
	var form, post, action, password bool
	scan(r, func(w []byte) bool {
		l := bytes.ToLower(w)
		for i := 0; ; {
			j := bytes.Index(l[i:], []byte("<form"))
			if j < 0 {
				break
			}
			form = true
			tag := l[i+j:]
			if end := bytes.IndexByte(tag, '>'); end >= 0 {
				tag = tag[:end]
			}
			t := bytes.ReplaceAll(bytes.ReplaceAll(bytes.ReplaceAll(tag, []byte(" "), nil), []byte("\""), nil), []byte("'"), nil)
			post = post || bytes.Contains(t, []byte("method=post"))
			action = action || bytes.Contains(t, []byte("action=http")) || bytes.Contains(t, []byte("action=//"))
			i += j + 5
		}
		if !password {
			t := bytes.ReplaceAll(bytes.ReplaceAll(bytes.ReplaceAll(l, []byte(" "), nil), []byte("\""), nil), []byte("'"), nil)
			password = bytes.Contains(t, []byte("type=password"))
		}
		return form && (post || action || password)
	})
	if form && (post || action || password) {
		var why []string
		if post {
			why = append(why, "method post")
		}
		if action {
			why = append(why, "action to a web address")
		}
		if password {
			why = append(why, "a password field")
		}
		in.report.add(HTMLForm, f.path, "form with %s", strings.Join(why, ", "))
	}
}
