package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/abusemilter/abusemilter/internal/config"
)

// exampleFile is the commented example config shipped to postmasters.
var exampleFile = filepath.Join("..", "..", "configs", "abusemilter.yaml")

// TestExampleConfigIsDefault loads configs/abusemilter.yaml and checks that,
// with its commented-out examples left commented, it is valid and equal to
// Default() in every field (compared through their YAML form, so that
// "60m" and "1h" are equal and unexported parse details are not).
func TestExampleConfigIsDefault(t *testing.T) {
	got, err := config.Load(exampleFile)
	if err != nil {
		t.Fatalf("the example config does not load:\n%v", err)
	}
	got.Path = ""

	gotFlat, err := flattenYAML(got)
	if err != nil {
		t.Fatal(err)
	}
	wantFlat, err := flattenYAML(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffFlat(gotFlat, wantFlat) {
		t.Errorf("%s: %s", exampleFile, d)
	}
}

// TestExampleConfigListsEveryKey fails when a key of Config is missing from
// configs/abusemilter.yaml, and when the example names a key Config does
// not have (a typo, or a key that was removed), so the example cannot go
// stale.
//
// The keys of Config are the yaml tags of its struct fields, found
// recursively: through pointers (redis), slices (identity.networks,
// notify.webhooks: the keys of one element) and maps. A map's entries are
// written "*" (identity.accounts.*.send_as), and a map itself must show at
// least one example entry (rules.scores.*). Types that parse themselves
// (durations, sizes) are values, not sections.
//
// The keys of the example are those of its YAML, plus those of
// commented-out lines: a comment line whose text after "# " is a block-style
// "key:" or "- key:" line at the indentation it would have with the "# "
// deleted (so deleting "# " enables it). Prose comments are told apart by
// their form: where Config has a struct, only lowercase snake_case words
// followed by ':' count as keys, so prose must not begin with such a word;
// where it has a map, any key counts.
func TestExampleConfigListsEveryKey(t *testing.T) {
	data, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatalf("reading the example config: %v", err)
	}
	root := reflect.TypeOf(config.Config{})
	want := configKeys(root)

	have := make(map[string]bool)
	add := func(path []string, line int) {
		norm, err := normalizeKey(root, path)
		if err != nil {
			t.Errorf("%s:%d: %s: %v", exampleFile, line, strings.Join(path, "."), err)
			return
		}
		have[norm] = true
	}
	if err := liveKeys(data, add); err != nil {
		t.Fatalf("parsing %s: %v", exampleFile, err)
	}
	commentedKeys(root, data, add)

	var missing []string
	for k := range want {
		if !have[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	for _, k := range missing {
		t.Errorf("%s does not list %q: add it with its default and a comment (or as a commented-out \"# key:\" line in an optional section)", exampleFile, k)
	}
	if len(want) < 50 {
		t.Errorf("found only %d keys in config.Config; the reflection walk is broken", len(want))
	}
}

// TestCommentedKeyRule checks the rule that reads commented-out keys on a
// small document, so that a broken scanner cannot make the test above pass.
func TestCommentedKeyRule(t *testing.T) {
	doc := `# Prose at the top: not a key.
mode: enforce
# redis:
#   url: redis://127.0.0.1:6379/0
#   tls:
#     ca_file: /etc/ca.pem
# Sentinel (prose, with a colon):
identity:
  accounts:
    local:
      send_as: [any]
    # alice:
    #   logins: [alice]
    #   limits:
    #     account_messages: [10/1h]
  networks: []
  # - network: 192.0.2.0/28
  #   account: alice
limits:
  senders: {}
  # senders:
  #   News@Example.com:
  #     sender_messages: [5/1h]
rules:
  # Default: prose again.
  # scores:
  #   FROM_DOMAIN_NOT_OWNED: 3
`
	root := reflect.TypeOf(config.Config{})
	var got []string
	var bad []string
	commentedKeys(root, []byte(doc), func(path []string, line int) {
		norm, err := normalizeKey(root, path)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%d:%s", line, strings.Join(path, ".")))
			return
		}
		got = append(got, norm)
	})
	// Live keys are reported too: they give the commented ones their place.
	want := []string{
		"mode", "redis", "redis.url", "redis.tls", "redis.tls.ca_file",
		"identity", "identity.accounts", "identity.accounts.*", "identity.accounts.*.send_as",
		"identity.accounts.*.logins", "identity.accounts.*.limits", "identity.accounts.*.limits.*",
		"identity.networks", "identity.networks.network", "identity.networks.account",
		"limits", "limits.senders", "limits.senders.*", "limits.senders.*.*",
		"rules", "rules.scores", "rules.scores.*",
	}
	sort.Strings(want)
	got = uniq(got)
	sort.Strings(got)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("keys read from the document:\n got  %q\n want %q", got, want)
	}
	if len(bad) > 0 {
		t.Errorf("keys the rule should not have taken (prose read as keys?): %q", bad)
	}

	// A misspelt commented-out key is reported.
	var unknown []string
	commentedKeys(root, []byte("# redis:\n#   pasword_file: /x\n"), func(path []string, _ int) {
		if _, err := normalizeKey(root, path); err != nil {
			unknown = append(unknown, strings.Join(path, "."))
		}
	})
	if !reflect.DeepEqual(unknown, []string{"redis.pasword_file"}) {
		t.Errorf("misspelt commented key: got %q, want [redis.pasword_file]", unknown)
	}
}

func uniq(s []string) []string {
	seen := make(map[string]bool, len(s))
	out := s[:0:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// flattenYAML marshals v to YAML and flattens the result to "path" -> value
// lines, so that two configs can be compared field by field.
func flattenYAML(v any) (map[string]string, error) {
	data, err := yaml.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshalling %T: %w", v, err)
	}
	var tree any
	if err := yaml.Unmarshal(data, &tree); err != nil {
		return nil, fmt.Errorf("reading back %T: %w", v, err)
	}
	out := make(map[string]string)
	var walk func(prefix string, n any)
	walk = func(prefix string, n any) {
		switch n := n.(type) {
		case map[string]any:
			if len(n) == 0 {
				out[prefix] = "{}"
			}
			for k, v := range n {
				walk(strings.TrimPrefix(prefix+"."+k, "."), v)
			}
		case []any:
			if len(n) == 0 {
				out[prefix] = "[]"
			}
			for i, v := range n {
				walk(fmt.Sprintf("%s[%d]", prefix, i), v)
			}
		default:
			out[prefix] = fmt.Sprintf("%#v", n)
		}
	}
	walk("", tree)
	return out, nil
}

// diffFlat lists the paths whose values differ, sorted.
func diffFlat(got, want map[string]string) []string {
	var out []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			out = append(out, fmt.Sprintf("%s: missing, default is %s", k, w))
		} else if g != w {
			out = append(out, fmt.Sprintf("%s: the example gives %s, the default is %s", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("%s: the example sets %s, the default has nothing", k, g))
		}
	}
	sort.Strings(out)
	return out
}

// yamlName returns the YAML key of a struct field, false for fields that
// are not in YAML.
func yamlName(f reflect.StructField) (string, bool) {
	if !f.IsExported() {
		return "", false
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return "", false
	case "":
		return strings.ToLower(f.Name), true
	}
	return name, true
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// container strips pointers and slices down to the type whose keys a YAML
// mapping at that place would hold.
func container(t reflect.Type) reflect.Type {
	for {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array:
			t = t.Elem()
		default:
			return t
		}
	}
}

// isValue reports whether t is written as a YAML value (no keys below it).
func isValue(t reflect.Type) bool {
	if reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		return true
	}
	k := t.Kind()
	return k != reflect.Struct && k != reflect.Map
}

// configKeys returns every key path of a config type (see
// TestExampleConfigListsEveryKey for the form).
func configKeys(root reflect.Type) map[string]bool {
	keys := make(map[string]bool)
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		t = container(t)
		if isValue(t) {
			return
		}
		join := func(k string) string {
			if prefix == "" {
				return k
			}
			return prefix + "." + k
		}
		if t.Kind() == reflect.Map {
			p := join("*")
			keys[p] = true
			walk(p, t.Elem())
			return
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, ok := yamlName(f)
			if !ok {
				continue
			}
			p := join(name)
			keys[p] = true
			walk(p, f.Type)
		}
	}
	walk("", root)
	return keys
}

// normalizeKey checks a key path against the config type and returns it
// with map entries written "*".
func normalizeKey(root reflect.Type, path []string) (string, error) {
	t := root
	out := make([]string, 0, len(path))
	for i, seg := range path {
		t = container(t)
		switch {
		case isValue(t):
			return "", fmt.Errorf("%q is under %q, which is a value, not a section", seg, strings.Join(path[:i], "."))
		case t.Kind() == reflect.Map:
			out = append(out, "*")
			t = t.Elem()
		default:
			f, ok := fieldByYAMLName(t, seg)
			if !ok {
				return "", fmt.Errorf("config has no key %q here", seg)
			}
			out = append(out, seg)
			t = f.Type
		}
	}
	return strings.Join(out, "."), nil
}

func fieldByYAMLName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if n, ok := yamlName(t.Field(i)); ok && n == name {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// liveKeys reports every key path of the YAML document (flow style
// included).
func liveKeys(data []byte, add func(path []string, line int)) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	var walk func(path []string, n *yaml.Node)
	walk = func(path []string, n *yaml.Node) {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(path, c)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := append(append([]string(nil), path...), n.Content[i].Value)
				add(p, n.Content[i].Line)
				walk(p, n.Content[i+1])
			}
		}
	}
	walk(nil, &doc)
	return nil
}

// keyLine matches a block-style "key:" or "- key:" line; the key may be
// quoted.
var keyLine = regexp.MustCompile(`^( *)(- +)?("[^"]*"|'[^']*'|[^\s#'"\[\]{},&*!|>%@` + "`" + `-][^\s:]*):(?:\s|$)`)

// snakeKey is the form of every struct key of Config.
var snakeKey = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// keyAt is one key line found by scanKeys.
type keyAt struct {
	line      int // 0-based
	path      []string
	commented bool
}

// scanKeys reads the document line by line, commented-out lines
// uncommented (see TestExampleConfigListsEveryKey for the rule), and
// returns each key line with its path. Live lines are read too: they give
// the commented lines their place.
func scanKeys(root reflect.Type, data []byte) []keyAt {
	type level struct {
		indent int
		key    string
	}
	var stack []level
	var out []keyAt
	for n, line := range strings.Split(string(data), "\n") {
		line, commented := uncomment(line)
		if !commented && strings.HasPrefix(strings.TrimLeft(line, " "), "#") {
			continue
		}
		m := keyLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		indent := len(m[1]) + len(m[2])
		key := strings.Trim(m[3], `"'`)
		parents := stack
		for len(parents) > 0 && parents[len(parents)-1].indent >= indent {
			parents = parents[:len(parents)-1]
		}
		path := make([]string, 0, len(parents)+1)
		for _, l := range parents {
			path = append(path, l.key)
		}
		// Where Config has a struct, only snake_case words are keys; other
		// "Word:" lines are prose.
		if !underMap(root, path) && !snakeKey.MatchString(key) {
			continue
		}
		path = append(path, key)
		out = append(out, keyAt{line: n, path: path, commented: commented})
		stack = append(parents, level{indent, key})
	}
	return out
}

// commentedKeys reports every key of the document, live and commented out,
// with its path and 1-based line.
func commentedKeys(root reflect.Type, data []byte, add func(path []string, line int)) {
	for _, k := range scanKeys(root, data) {
		add(k.path, k.line+1)
	}
}

// underMap reports whether keys below path are map entries.
func underMap(root reflect.Type, path []string) bool {
	t := root
	for _, seg := range path {
		t = container(t)
		switch {
		case isValue(t):
			return false
		case t.Kind() == reflect.Map:
			t = t.Elem()
		default:
			f, ok := fieldByYAMLName(t, seg)
			if !ok {
				return false
			}
			t = f.Type
		}
	}
	t = container(t)
	return !isValue(t) && t.Kind() == reflect.Map
}

// TestExampleCommentedBlocksLoad enables the commented-out examples of
// configs/abusemilter.yaml (deleting their "# ", and the live keys they
// stand in for) and loads the result, so that a postmaster who uncomments
// an example gets a valid configuration. Examples may refer to each other
// (a network of the example account), so they are enabled together;
// alternatives for the same key (the Redis single-node, Sentinel and Cluster
// examples) are enabled one per round. Problems that only a real host can
// fix (a file named in the example that does not exist here) are allowed.
func TestExampleCommentedBlocksLoad(t *testing.T) {
	data, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatalf("reading the example config: %v", err)
	}
	t.Setenv("ABUSEMILTER_REDIS_PASSWORD", "example")
	lines := strings.Split(string(data), "\n")
	blocks := commentedBlocks(reflect.TypeOf(config.Config{}), lines)
	if len(blocks) < 10 {
		t.Fatalf("found only %d commented-out examples; the block finder is broken", len(blocks))
	}
	// Alternatives: blocks for the same keys at the same indentation.
	groups := make(map[string][]block)
	var order []string
	rounds := 1
	for _, b := range blocks {
		g := fmt.Sprintf("%d:%s:%s", b.indent, strings.Join(b.keys, ","), strings.TrimSpace(lines[b.start]))
		if len(b.keys) > 0 {
			g = fmt.Sprintf("%d:%s", b.indent, strings.Join(b.keys, ","))
		}
		if _, seen := groups[g]; !seen {
			order = append(order, g)
		}
		groups[g] = append(groups[g], b)
		rounds = max(rounds, len(groups[g]))
	}
	if rounds < 3 {
		t.Errorf("found %d alternatives for one key; want the three Redis examples", rounds)
	}
	for r := 0; r < rounds; r++ {
		var enabled []block
		var names []string
		for _, g := range order {
			alt := groups[g]
			b := alt[r%len(alt)]
			enabled = append(enabled, b)
			names = append(names, strconv.Itoa(b.start+1))
		}
		name := fmt.Sprintf("round %d (examples at lines %s)", r+1, strings.Join(names, ", "))
		doc := []byte(strings.Join(enableBlocks(lines, enabled), "\n"))
		c, err := config.Parse(doc, exampleFile)
		if err == nil {
			if c.Redis == nil {
				t.Errorf("%s: no Redis example was enabled", name)
			}
			continue
		}
		var ce *config.Error
		if !errorsAs(err, &ce) {
			t.Errorf("%s: enabled, the examples do not load: %v", name, err)
			continue
		}
		for _, p := range ce.Problems {
			if !strings.Contains(p, "no such file or directory") && !strings.Contains(p, "does not exist") {
				t.Errorf("%s: enabled, the examples do not load: %s", name, p)
			}
		}
	}
}

func errorsAs(err error, target **config.Error) bool {
	ce, ok := err.(*config.Error)
	if ok {
		*target = ce
	}
	return ok
}

// block is a commented-out example: lines start..end-1, whose first line
// is a key at indent.
type block struct {
	start, end int
	indent     int
	keys       []string // the keys at indent
}

// uncomment returns a comment line with its "# " deleted, and whether the
// line was a "# " comment.
func uncomment(line string) (string, bool) {
	trimmed := strings.TrimLeft(line, " ")
	if !strings.HasPrefix(trimmed, "# ") {
		return line, false
	}
	return line[:len(line)-len(trimmed)] + trimmed[2:], true
}

func indentOf(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }

// commentedBlocks finds the commented-out examples: a run of comment lines
// that starts with a commented-out key (as scanKeys finds them) and goes on
// while its lines are indented deeper, or are commented-out keys at the same
// indentation.
func commentedBlocks(root reflect.Type, lines []string) []block {
	isKey := make(map[int]bool)
	for _, k := range scanKeys(root, []byte(strings.Join(lines, "\n"))) {
		if k.commented {
			isKey[k.line] = true
		}
	}
	var out []block
	for i := 0; i < len(lines); i++ {
		if !isKey[i] {
			continue
		}
		u, _ := uncomment(lines[i])
		m := keyLine.FindStringSubmatch(u)
		b := block{start: i, indent: len(m[1])}
		if m[2] == "" {
			b.keys = append(b.keys, strings.Trim(m[3], `"'`))
		}
		j := i + 1
		for ; j < len(lines); j++ {
			u, ok := uncomment(lines[j])
			if !ok {
				break
			}
			if indentOf(u) > b.indent {
				continue
			}
			if !isKey[j] || indentOf(u) != b.indent {
				break
			}
			if m := keyLine.FindStringSubmatch(u); m[2] == "" {
				b.keys = append(b.keys, strings.Trim(m[3], `"'`))
			}
		}
		b.end = j
		out = append(out, b)
		i = j - 1
	}
	return out
}

// enableBlocks returns the lines with the blocks uncommented and the live
// keys they stand in for (same key, same indentation, same parent) removed.
func enableBlocks(lines []string, blocks []block) []string {
	drop := make(map[int]bool)
	enable := make(map[int]bool)
	for _, b := range blocks {
		for i := b.start; i < b.end; i++ {
			enable[i] = true
		}
		for i := range liveSiblings(lines, b) {
			drop[i] = true
		}
	}
	var out []string
	for i, l := range lines {
		switch {
		case drop[i]:
		case enable[i]:
			u, _ := uncomment(l)
			out = append(out, u)
		default:
			out = append(out, l)
		}
	}
	return out
}

// liveSiblings returns the live lines a block replaces: keys of the block at
// its indentation, with their children, in the same parent.
func liveSiblings(lines []string, b block) map[int]bool {
	drop := make(map[int]bool)
	replaces := make(map[string]bool)
	for _, k := range b.keys {
		replaces[k] = true
	}
	live := func(i int) (string, bool) {
		t := strings.TrimSpace(lines[i])
		if t == "" || strings.HasPrefix(t, "#") {
			return "", false
		}
		return lines[i], true
	}
	dropSibling := func(i int) {
		drop[i] = true
		for j := i + 1; j < len(lines); j++ {
			l, ok := live(j)
			if !ok {
				continue
			}
			if indentOf(l) <= b.indent {
				return
			}
			drop[j] = true
		}
	}
	for _, dir := range []int{-1, 1} {
		i := b.start - 1
		if dir == 1 {
			i = b.end
		}
		for ; i >= 0 && i < len(lines); i += dir {
			l, ok := live(i)
			if !ok {
				continue
			}
			if indentOf(l) < b.indent {
				break
			}
			m := keyLine.FindStringSubmatch(l)
			if m != nil && m[2] == "" && len(m[1]) == b.indent && replaces[strings.Trim(m[3], `"'`)] {
				dropSibling(i)
			}
		}
	}
	return drop
}
