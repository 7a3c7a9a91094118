package notify

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOperationsDocMatchesSchema keeps docs/operations.md honest: the
// schema table lists exactly the Event fields, and every JSON example
// decodes into an Event without unknown fields.
func TestOperationsDocMatchesSchema(t *testing.T) {
	data, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatalf("reading the operations guide: %v", err)
	}
	doc := string(data)
	_, schema, ok := strings.Cut(doc, "### Event schema")
	if !ok {
		t.Fatal("docs/operations.md has no \"### Event schema\" section")
	}
	schema, _, _ = strings.Cut(schema, "\nExamples:")
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|")
	var documented []string
	for _, m := range row.FindAllStringSubmatch(schema, -1) {
		documented = append(documented, m[1])
	}
	var fields []string
	typ := reflect.TypeFor[Event]()
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		fields = append(fields, name)
	}
	if !slices.Equal(documented, fields) {
		t.Errorf("schema table fields = %q\nEvent JSON fields   = %q", documented, fields)
	}

	examples := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllStringSubmatch(doc, -1)
	if len(examples) == 0 {
		t.Fatal("no JSON examples in docs/operations.md")
	}
	for _, ex := range examples {
		for _, line := range strings.Split(strings.TrimSpace(ex[1]), "\n") {
			dec := json.NewDecoder(strings.NewReader(line))
			dec.DisallowUnknownFields()
			var ev Event
			if err := dec.Decode(&ev); err != nil {
				t.Errorf("example %s: %v", line, err)
			} else if ev.Version != SchemaVersion || len(ev.ID) != 32 || ev.Kind == "" || ev.Time.IsZero() {
				t.Errorf("example %s lacks version, id, event or time", line)
			}
		}
	}
}
