package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// style is how a table row or a line is coloured on a terminal.
type style int

const (
	plain style = iota
	bad         // locked, exhausted: red
	warn        // nearly used up, exempt: yellow
	good        // ok: green
	dim         // headers and notes: faint
)

func (s style) paint(text string, color bool) string {
	if !color || s == plain {
		return text
	}
	code := map[style]string{bad: "31", warn: "33", good: "32", dim: "2"}[s]
	return "\x1b[" + code + "m" + text + "\x1b[0m"
}

// table is an aligned table whose rows may be coloured as a whole, so that
// escape codes never disturb the alignment.
type table struct {
	rows   [][]string
	styles []style
}

func (t *table) header(cells ...string) { t.add(dim, cells...) }

func (t *table) add(s style, cells ...string) {
	t.rows = append(t.rows, cells)
	t.styles = append(t.styles, s)
}

// write prints the table, each line starting with indent.
func (t *table) write(out io.Writer, indent string, color bool) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 8, 2, ' ', 0)
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	for i, l := range lines {
		l = strings.TrimRight(l, " ")
		if _, err := fmt.Fprintln(out, indent+t.styles[i].paint(l, color)); err != nil {
			return err
		}
	}
	return nil
}

// writeJSON prints v as indented JSON.
func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// jsonTime is an RFC 3339 UTC time, or null when zero.
func jsonTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339)
	return &s
}

// seconds rounds a duration up to whole seconds.
func seconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// clock formats an absolute time for tables.
func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// short writes a duration compactly, rounded to seconds: 45s, 12m3s, 2h5m,
// 3d4h.
func short(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	s := seconds(d)
	switch {
	case s < 60:
		return strconv.FormatInt(s, 10) + "s"
	case s < 3600:
		return join2(s/60, "m", s%60, "s")
	case s < 86400:
		return join2(s/3600, "h", s%3600/60, "m")
	}
	return join2(s/86400, "d", s%86400/3600, "h")
}

func join2(a int64, ua string, b int64, ub string) string {
	out := strconv.FormatInt(a, 10) + ua
	if b > 0 {
		out += strconv.FormatInt(b, 10) + ub
	}
	return out
}

// ago writes how long before now t was.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return short(now.Sub(t)) + " ago"
}

// until writes when t comes, or "until removed" when zero.
func untilText(now, t time.Time) string {
	if t.IsZero() {
		return "until removed"
	}
	return "until " + clock(t) + " (in " + short(t.Sub(now)) + ")"
}
