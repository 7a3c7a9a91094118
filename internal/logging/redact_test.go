package logging

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestRedactorHashesLocalParts(t *testing.T) {
	r := NewRedactor([]byte("k1"))
	a := r.Address("Alice@Example.com")
	if !regexp.MustCompile(`^~[0-9a-f]{16}@Example\.com$`).MatchString(a) {
		t.Fatalf("Address = %q, want ~HASH@Example.com", a)
	}
	if b := r.Address("alice@example.com"); b[:17] != a[:17] {
		t.Errorf("case changes the hash: %q vs %q", a, b)
	}
	if b := r.Address("alice@example.org"); b[:17] == a[:17] {
		t.Errorf("the same local part at another domain must hash differently: %q, %q", a, b)
	}
	if b := NewRedactor([]byte("k2")).Address("alice@example.com"); b[:17] == a[:17] {
		t.Errorf("another key must give another hash")
	}
	if got := r.Address("alice"); got != "alice" {
		t.Errorf("a login without @ is kept: %q", got)
	}
	text := r.Text("From domain other.example of ceo@other.example is not owned; see also bob.smith+tag@x.example.org.")
	if strings.Contains(text, "ceo@") || strings.Contains(text, "bob.smith") || !strings.Contains(text, "@other.example is not owned") {
		t.Errorf("Text = %q", text)
	}
	var none *Redactor
	if none.Address("a@b.example") != "a@b.example" || none.Text("a@b.example") != "a@b.example" {
		t.Error("a nil Redactor must change nothing")
	}
}

func TestRedactorFor(t *testing.T) {
	if r, err := RedactorFor("none", ""); r != nil || err != nil {
		t.Fatalf("none: %v %v", r, err)
	}
	key := filepath.Join(t.TempDir(), "key")
	os.WriteFile(key, []byte("secret\n"), 0o600)
	r1, err := RedactorFor("addresses", key)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Address("a@b.example") != NewRedactor([]byte("secret")).Address("a@b.example") {
		t.Error("the key file's content (without its newline) must be the key")
	}
	r2, _ := RedactorFor("addresses", "")
	r3, _ := RedactorFor("addresses", "")
	if r2.Address("a@b.example") == r3.Address("a@b.example") {
		t.Error("without a key file each start must get its own random key")
	}
	if _, err := RedactorFor("addresses", filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing key file must be an error")
	}
}
