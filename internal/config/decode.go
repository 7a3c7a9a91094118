package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The shape check: before a document is decoded into Config, its YAML tree
// is walked against Config's Go type, found by reflection from the yaml
// struct tags (so a section added later is checked with no list to keep).
// It reports, with the field path and the line:
//   - an unknown key, naming the nearest known key ("did you mean limits?");
//   - a value of the wrong kind, naming the kind wanted ("want a number")
//     and echoing the value as written, never a Go type name;
// and it records the line of every key, so that problems found later (by
// Validate, or by the daemon's start-up check) can be given a line too.

// checkShape walks doc (a document's top node) against t and returns the
// problems found and the line of each field path.
func checkShape(doc *yaml.Node, t reflect.Type) ([]string, map[string]int) {
	w := &shapeWalker{lines: make(map[string]int)}
	w.walk(doc, t, "")
	return w.problems, w.lines
}

type shapeWalker struct {
	problems []string
	lines    map[string]int
}

func (w *shapeWalker) add(path string, line int, format string, args ...any) {
	name := path
	if name == "" {
		name = "(top level)"
	}
	if line > 0 {
		name += fmt.Sprintf(" (line %d)", line)
	}
	w.problems = append(w.problems, name+": "+fmt.Sprintf(format, args...))
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// mappingTaker is a type that parses itself from a scalar but may also be
// written as a mapping of its yaml fields (ProtectedBrand): a mapping is
// then checked like a section.
type mappingTaker interface{ takesMapping() }

var mappingTakerType = reflect.TypeOf((*mappingTaker)(nil)).Elem()

// kindName says in words what a field of type t takes.
func kindName(t reflect.Type) string {
	switch t {
	case reflect.TypeOf(Duration{}):
		return "a duration such as 30s, 10m, 1h or 7d"
	case reflect.TypeOf(ByteSize{}):
		return "a size such as 262144, 256KiB or 1MiB"
	case reflect.TypeOf(ProtectedBrand{}):
		return "a domain, or a mapping such as {domain: hsbc.com, names: [HSBC]}"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return kindName(t.Elem())
	case reflect.Struct:
		return "a section of keys (key: value lines)"
	case reflect.Map:
		return "a mapping of NAME: value entries"
	case reflect.Slice, reflect.Array:
		return "a list (- item lines, or [a, b])"
	case reflect.String:
		return "a text value"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a value"
}

// nodeWords says what a YAML node is, for "got ..." (a scalar is echoed as
// written).
func nodeWords(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section of keys"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "nothing"
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func (w *shapeWalker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if isNull(n) {
		return // an empty value leaves the default
	}
	// Types that parse themselves (durations, sizes) take a scalar; their
	// own parse errors are reported by Validate with the value as written.
	if reflect.PointerTo(t).Implements(unmarshalerType) && !(n.Kind == yaml.MappingNode && t.Implements(mappingTakerType)) {
		if n.Kind != yaml.ScalarNode {
			w.add(path, n.Line, "want %s, got %s", kindName(t), nodeWords(n))
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		w.walk(n, t.Elem(), path)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.add(path, n.Line, "want %s, got %s", kindName(t), nodeWords(n))
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			child := joinPath(path, k.Value)
			w.lines[child] = k.Line
			f, ok := fields[k.Value]
			if !ok {
				w.add(child, k.Line, "unknown key %q%s", k.Value, suggest(k.Value, fields))
				continue
			}
			w.walk(v, f.Type, child)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.add(path, n.Line, "want %s, got %s", kindName(t), nodeWords(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			child := joinPath(path, k.Value)
			w.lines[child] = k.Line
			if k.Kind != yaml.ScalarNode {
				w.add(path, k.Line, "want a name as the key, got %s", nodeWords(k))
				continue
			}
			w.walk(v, t.Elem(), child)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			w.add(path, n.Line, "want %s, got %s", kindName(t), nodeWords(n))
			return
		}
		for i, item := range n.Content {
			child := fmt.Sprintf("%s[%d]", path, i)
			w.lines[child] = item.Line
			w.walk(item, t.Elem(), child)
		}
	case reflect.Interface:
		// anything goes
	default:
		if n.Kind != yaml.ScalarNode {
			w.add(path, n.Line, "want %s, got %s", kindName(t), nodeWords(n))
			return
		}
		// Decode the scalar alone into the field's type: YAML's own rules
		// decide, the message is ours.
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.add(path, n.Line, "want %s, got %s", kindName(t), nodeWords(n))
		}
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps the yaml names of t's fields to the fields.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := make(map[string]reflect.StructField)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") && f.Type.Kind() == reflect.Struct {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f
	}
	return out
}

// KnownKeys lists the keys a section of type t takes (for messages and
// tests), sorted.
func KnownKeys(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var keys []string
	for k := range yamlFields(t) {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// suggest names the known key nearest to key: " (did you mean limits?)", or
// the known keys when none is near.
func suggest(key string, fields map[string]reflect.StructField) string {
	best, bestDist := "", -1
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	lk := strings.ToLower(key)
	for _, name := range names {
		d := editDistance(lk, name)
		if bestDist < 0 || d < bestDist {
			best, bestDist = name, d
		}
	}
	if best != "" && (bestDist <= 2 || bestDist*3 <= len(best) || strings.Contains(best, lk) && len(lk) >= 3) {
		return fmt.Sprintf(" (did you mean %s?)", best)
	}
	return fmt.Sprintf(" (known keys here: %s)", strings.Join(names, ", "))
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of neighbours each cost 1
// ("limtis" is 1 from "limits").
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// withLines adds "(line N)" to each "path: message" problem whose path (or
// the nearest enclosing path) has a known line and that has none yet.
func withLines(problems []string, lines map[string]int) []string {
	if len(lines) == 0 {
		return problems
	}
	out := make([]string, len(problems))
	for i, p := range problems {
		out[i] = p
		path, msg, ok := strings.Cut(p, ": ")
		if !ok || strings.Contains(path, " ") {
			continue
		}
		if line := lineOf(lines, path); line > 0 {
			out[i] = fmt.Sprintf("%s (line %d): %s", path, line, msg)
		}
	}
	return out
}

// lineOf finds the line of path, or of the nearest enclosing path that the
// file names.
func lineOf(lines map[string]int, path string) int {
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		cut := max(strings.LastIndexByte(path, '.'), strings.LastIndexByte(path, '['))
		if cut <= 0 {
			return 0
		}
		path = path[:cut]
	}
	return 0
}
