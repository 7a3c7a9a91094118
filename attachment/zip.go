package attachment

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"io"
	"strings"
)

// Zip record signatures (APPNOTE.TXT 6.3).
const (
	sigLocal      = "PK\x03\x04"
	sigCentral    = "PK\x01\x02"
	sigEnd        = "PK\x05\x06"
	sigEnd64      = "PK\x06\x06"
	sigLocator64  = "PK\x06\x07"
	sigDescriptor = "PK\x07\x08"
)

// zipEntry is what a local or central header says of an entry.
type zipEntry struct {
	name       string
	flags      uint16
	method     uint16
	csize      uint64
	usize      uint64
	descriptor bool // sizes follow the data (flag bit 3)
}

func (e zipEntry) encrypted() bool { return e.flags&1 != 0 }

// zip reads a zip archive front to back, as it streams: local headers and
// their data, then the central directory (whose names are checked too,
// since a crafted archive may show other names there). Nothing is kept but
// the names seen, and each entry is inspected as it decompresses.
func (in *inspector) zip(f file, r io.Reader) {
	br := bufio.NewReaderSize(r, 16<<10)
	seen := make(map[string]bool)
	encrypted := false
	ooxml := false
	var names []string // for the OOXML check, the first few
	entry := func(e zipEntry) bool {
		in.entries++
		if in.entries > in.lim.MaxEntries {
			in.stop = errEntries
			in.limit(errEntries, f.path)
			return false
		}
		if e.encrypted() && !encrypted {
			encrypted = true
			in.report.add(ArchiveEncrypted, f.path, "encrypted entries (first: %q): their content cannot be inspected", e.name)
		}
		if e.name == "[Content_Types].xml" {
			ooxml = true
		}
		if len(names) < 64 {
			names = append(names, e.name)
		}
		return true
	}
	for in.check() == nil {
		sig, err := br.Peek(4)
		if err != nil {
			break
		}
		switch string(sig) {
		case sigLocal:
			e, err := readLocal(br)
			if err != nil || !entry(e) {
				goto done
			}
			seen[e.name] = true
			if !in.zipData(f, e, br) {
				goto done
			}
		case sigCentral:
			e, err := readCentral(br)
			if err != nil {
				goto done
			}
			if !seen[e.name] {
				// Only in the central directory: what unzip tools show.
				seen[e.name] = true
				if !entry(e) {
					goto done
				}
				in.checkName(file{name: e.name, path: f.path + "/" + e.name, depth: f.depth + 1})
			}
		case sigDescriptor:
			if _, err := br.Discard(16); err != nil {
				goto done
			}
		default:
			// The end records, or something this reader does not follow.
			goto done
		}
	}
done:
	if ooxml {
		for _, n := range names {
			if strings.EqualFold(baseName(n), "vbaProject.bin") {
				in.report.add(OfficeMacro, f.path, "VBA project (%s) in an Office Open XML document", n)
				break
			}
		}
	}
}

// readLocal reads a local file header and its name and extra field.
func readLocal(br *bufio.Reader) (zipEntry, error) {
	var h [30]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return zipEntry{}, err
	}
	e := zipEntry{
		flags: binary.LittleEndian.Uint16(h[6:]), method: binary.LittleEndian.Uint16(h[8:]),
		csize: uint64(binary.LittleEndian.Uint32(h[18:])), usize: uint64(binary.LittleEndian.Uint32(h[22:])),
	}
	e.descriptor = e.flags&8 != 0
	nameLen, extraLen := int(binary.LittleEndian.Uint16(h[26:])), int(binary.LittleEndian.Uint16(h[28:]))
	name := make([]byte, nameLen)
	if _, err := io.ReadFull(br, name); err != nil {
		return e, err
	}
	extra := make([]byte, extraLen)
	if _, err := io.ReadFull(br, extra); err != nil {
		return e, err
	}
	e.name = string(name)
	zip64Sizes(&e, extra)
	return e, nil
}

// readCentral reads a central directory header with its variable fields.
func readCentral(br *bufio.Reader) (zipEntry, error) {
	var h [46]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return zipEntry{}, err
	}
	e := zipEntry{
		flags: binary.LittleEndian.Uint16(h[8:]), method: binary.LittleEndian.Uint16(h[10:]),
		csize: uint64(binary.LittleEndian.Uint32(h[20:])), usize: uint64(binary.LittleEndian.Uint32(h[24:])),
	}
	nameLen := int(binary.LittleEndian.Uint16(h[28:]))
	rest := int(binary.LittleEndian.Uint16(h[30:])) + int(binary.LittleEndian.Uint16(h[32:]))
	name := make([]byte, nameLen)
	if _, err := io.ReadFull(br, name); err != nil {
		return e, err
	}
	if _, err := br.Discard(rest); err != nil {
		return e, err
	}
	e.name = string(name)
	return e, nil
}

// zip64Sizes reads the sizes of a zip64 extra field when the header's are
// 0xFFFFFFFF.
func zip64Sizes(e *zipEntry, extra []byte) {
	for len(extra) >= 4 {
		id, size := binary.LittleEndian.Uint16(extra), int(binary.LittleEndian.Uint16(extra[2:]))
		extra = extra[4:]
		if size > len(extra) {
			return
		}
		if id == 1 {
			d := extra[:size]
			if e.usize == 0xffffffff && len(d) >= 8 {
				e.usize, d = binary.LittleEndian.Uint64(d), d[8:]
			}
			if e.csize == 0xffffffff && len(d) >= 8 {
				e.csize = binary.LittleEndian.Uint64(d)
			}
		}
		extra = extra[size:]
	}
}

// zipData inspects an entry's data and leaves br after it (and after its
// data descriptor). It returns false when the archive cannot be followed
// further (an entry whose end cannot be found, a limit).
func (in *inspector) zipData(f file, e zipEntry, br *bufio.Reader) bool {
	sub := file{name: e.name, path: f.path + "/" + e.name, depth: f.depth + 1, csize: int64(e.csize)}
	if strings.HasSuffix(e.name, "/") && e.csize == 0 && !e.descriptor {
		return true // a directory
	}
	if e.descriptor {
		sub.csize = 0
	}
	if !e.descriptor && e.usize > uint64(max(in.lim.MaxExpanded-in.report.Expanded, 0)) {
		// Declared larger than what is left of the budget: not
		// decompressed; its name was checked, and the entries after it
		// still are.
		if e.csize > 0 && e.usize/e.csize > bombRatio {
			in.report.add(ArchiveBomb, sub.path, "declares %d bytes from %d compressed (ratio %d)", e.usize, e.csize, e.usize/e.csize)
		}
		in.limit(errExpanded, sub.path)
		in.checkName(sub)
		return in.skip(io.LimitReader(br, int64(e.csize)), sub.path)
	}
	known := !e.descriptor || e.csize > 0 && e.method != 0 && e.method != 8
	var raw io.Reader = br
	if known {
		raw = io.LimitReader(br, int64(e.csize))
	}
	var data io.Reader
	var rawCount *byteCounter
	switch {
	case e.encrypted():
		data = nil
	case e.method == 0 && known:
		data = raw
	case e.method == 0:
		data = &descriptorReader{br: br}
	case e.method == 8 && known:
		data = flate.NewReader(raw)
	case e.method == 8:
		// The compressed size is unknown until the end: count what the
		// decompressor consumes, for the bomb ratio.
		bc := &byteCounter{br: br}
		data, rawCount = flate.NewReader(bc), bc
	}
	if data == nil {
		// Encrypted, or a method this reader cannot decompress: the name
		// was checked; skip the data when its size is known.
		if e.descriptor {
			return false
		}
		return in.skip(raw, sub.path)
	}
	counted := in.counted(data, sub)
	counted.raw = rawCount
	in.file(sub, counted)
	if in.stop != nil {
		return false
	}
	if known {
		// Skip what is left without decompressing it.
		if !in.skip(raw, sub.path) {
			return false
		}
	} else {
		// The end is only found by decompressing to it.
		if _, err := io.Copy(io.Discard, counted); err != nil || in.stop != nil {
			return false
		}
	}
	if e.descriptor {
		return skipDescriptor(br) == nil
	}
	return true
}

// skip reads r to its end without looking at it, within the time limit;
// it reports whether r ended normally.
func (in *inspector) skip(r io.Reader, path string) bool {
	if in.skipBuf == nil {
		in.skipBuf = make([]byte, 32<<10)
	}
	buf := in.skipBuf
	for {
		if err := in.check(); err != nil {
			in.limit(err, path)
			return false
		}
		_, err := r.Read(buf)
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// skipDescriptor skips a data descriptor: an optional signature, the
// CRC-32 and two sizes of 4 (or, zip64, 8) bytes.
func skipDescriptor(br *bufio.Reader) error {
	if sig, err := br.Peek(4); err == nil && string(sig) == sigDescriptor {
		br.Discard(4)
	}
	if _, err := br.Discard(12); err != nil {
		return err
	}
	if next, err := br.Peek(4); err == nil && !isZipSig(next) {
		if more, err := br.Peek(12); err == nil && isZipSig(more[8:]) {
			_, err := br.Discard(8)
			return err
		}
	}
	return nil
}

func isZipSig(b []byte) bool {
	return len(b) >= 4 && b[0] == 'P' && b[1] == 'K' && (b[2] == 1 || b[2] == 3 || b[2] == 5 || b[2] == 6)
}

// descriptorReader reads a stored entry whose size is only in the data
// descriptor that follows it: it ends where a descriptor signature is
// followed by a compressed size equal to the bytes read so far.
type descriptorReader struct {
	br   *bufio.Reader
	n    uint64
	done bool
}

func (d *descriptorReader) Read(p []byte) (int, error) {
	if d.done {
		return 0, io.EOF
	}
	k := 0
	for k < len(p) {
		b, err := d.br.Peek(16)
		if len(b) >= 12 && string(b[:4]) == sigDescriptor && uint64(binary.LittleEndian.Uint32(b[8:])) == d.n {
			d.done = true
			break
		}
		if len(b) == 0 {
			if k == 0 {
				return 0, errOrEOF(err)
			}
			break
		}
		// Copy up to the next 'P' (a possible signature) in one go.
		avail := d.br.Buffered()
		if avail == 0 {
			avail = 1
		}
		chunk, _ := d.br.Peek(min(avail, len(p)-k))
		m := bytes.IndexByte(chunk[1:], 'P') + 1
		if m <= 0 {
			m = len(chunk)
		}
		copy(p[k:], chunk[:m])
		d.br.Discard(m)
		k += m
		d.n += uint64(m)
	}
	if k == 0 && d.done {
		return 0, io.EOF
	}
	return k, nil
}

func errOrEOF(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// countingReader counts decompressed bytes against the message's budget,
// checks the time limit, and spots bombs (an entry expanding beyond
// bombRatio times its compressed size).
type countingReader struct {
	in   *inspector
	r    io.Reader
	f    file
	n    int64
	bomb bool
	// raw, when set, counts the compressed bytes consumed (the size is
	// not known in advance).
	raw *byteCounter
}

// byteCounter counts the bytes read through it; it is an io.ByteReader so
// that flate reads exactly the compressed stream and no further.
type byteCounter struct {
	br *bufio.Reader
	n  int64
}

func (b *byteCounter) Read(p []byte) (int, error) {
	n, err := b.br.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *byteCounter) ReadByte() (byte, error) {
	c, err := b.br.ReadByte()
	if err == nil {
		b.n++
	}
	return c, err
}

// counted wraps a decompressed stream.
func (in *inspector) counted(r io.Reader, f file) *countingReader {
	return &countingReader{in: in, r: r, f: f}
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.in.stop != nil {
		return 0, c.in.stop
	}
	if err := c.in.check(); err != nil {
		c.in.limit(err, c.f.path)
		return 0, err
	}
	room := c.in.lim.MaxExpanded - c.in.report.Expanded
	if room <= 0 {
		c.in.stop = errExpanded
		c.in.limit(errExpanded, c.f.path)
		return 0, errExpanded
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.in.report.Expanded += int64(n)
	csize := c.f.csize
	if c.raw != nil {
		csize = max(c.raw.n, 1)
	}
	if !c.bomb && csize > 0 && c.n >= bombMin && c.n/csize > bombRatio {
		c.bomb = true
		c.in.report.add(ArchiveBomb, c.f.path, "expanded past %d bytes from %d compressed", c.n, csize)
		c.in.stop = errExpanded
		c.in.limit(errExpanded, c.f.path)
		return n, errExpanded
	}
	return n, err
}
