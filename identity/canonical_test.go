package identity

import (
	"net/netip"
	"strings"
	"testing"
)

// TestCanonicalDomain: the Unicode and punycode spellings of a domain, its
// case and a trailing dot give one form.
func TestCanonicalDomain(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"example.com", "example.com"},
		{"Example.COM.", "example.com"},
		{" example.com ", "example.com"},
		{"hé.mox.example", "xn--h-bga.mox.example"},
		{"HÉ.Mox.Example.", "xn--h-bga.mox.example"},
		{"xn--h-bga.mox.example", "xn--h-bga.mox.example"},
		{"XN--H-BGA.MOX.EXAMPLE", "xn--h-bga.mox.example"},
		{"xn--h-bga.mox.example.", "xn--h-bga.mox.example"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"BÜCHER.example", "xn--bcher-kva.example"},
		{"faß.de", "xn--fa-hia.de"}, // non-transitional: ß stays ß
		{"пример.рф", "xn--e1afmkfd.xn--p1ai"},
		{"under_score.example", "under_score.example"}, // IDNA refuses it: kept lowercased
		{"xn--zz.example", "xn--zz.example"},           // invalid punycode: kept
		{"", ""},
	} {
		if got := CanonicalDomain(tt.in); got != tt.want {
			t.Errorf("CanonicalDomain(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := UnicodeDomain("XN--H-BGA.mox.example."); got != "hé.mox.example" {
		t.Errorf("UnicodeDomain = %q", got)
	}
}

// TestCanonicalForms: addresses, logins and patterns in every spelling
// meet in one form.
func TestCanonicalForms(t *testing.T) {
	for _, tt := range []struct {
		f        func(string) string
		name     string
		in, want string
	}{
		{CanonicalAddress, "address", "Mjl@Hé.Mox.Example.", "mjl@xn--h-bga.mox.example"},
		{CanonicalAddress, "address", "<mjl+tag@xn--h-bga.mox.example>", "mjl+tag@xn--h-bga.mox.example"},
		{CanonicalAddress, "address", "postmaster", "postmaster"},
		{NormalizeAddress, "normalized", "Mjl+News@HÉ.mox.example.", "mjl@xn--h-bga.mox.example"},
		{NormalizeAddress, "normalized", "mjl@xn--h-bga.mox.example", "mjl@xn--h-bga.mox.example"},
		{CanonicalLogin, "login", "MJL@hé.mox.example", "mjl@xn--h-bga.mox.example"},
		{CanonicalLogin, "login", " Alice ", "alice"},
		{CanonicalPattern, "pattern", "Hé.Mox.Example", "xn--h-bga.mox.example"},
		{CanonicalPattern, "pattern", "*.hé.example.", "*.xn--h-bga.example"},
		{CanonicalPattern, "pattern", ".hé.example", ".xn--h-bga.example"},
		{CanonicalPattern, "pattern", "@HÉ.example", "@xn--h-bga.example"},
		{CanonicalPattern, "pattern", "Mjl@hé.example", "mjl@xn--h-bga.example"},
		{CanonicalPattern, "pattern", "ANY", "any"},
	} {
		if got := tt.f(tt.in); got != tt.want {
			t.Errorf("%s(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
}

// spellings are the four ways one IDN address is written.
var spellings = []string{
	"mjl@hé.mox.example", "mjl@xn--h-bga.mox.example", "MJL@HÉ.MOX.EXAMPLE.", "mjl@XN--H-BGA.mox.example.",
}

// TestCanonicalSendAs: an account whose send_as names the domain, the
// subtree or the address in either spelling may use the address in any
// spelling, and owns the domain in any spelling; a foreign domain in
// either spelling is not its own.
func TestCanonicalSendAs(t *testing.T) {
	for _, pattern := range []string{
		"hé.mox.example", "xn--h-bga.mox.example", "HÉ.mox.example.",
		"@hé.mox.example", "@xn--h-bga.mox.example",
		"*.mox.example",
		"mjl@hé.mox.example", "mjl@xn--h-bga.mox.example",
	} {
		a, err := NewAccount("mjl", []string{pattern})
		if err != nil {
			t.Fatalf("send_as %q: %v", pattern, err)
		}
		for _, addr := range spellings {
			if !a.MaySendAs(addr) {
				t.Errorf("send_as %q: MaySendAs(%q) = false", pattern, addr)
			}
		}
		for _, foreign := range []string{"mjl@hè.mox.example", "mjl@xn--h-cga.mox.example", "mjl@other.example"} {
			if strings.HasPrefix(pattern, "*.") && strings.HasSuffix(foreign, ".mox.example") {
				continue // the whole subtree is the account's
			}
			if a.MaySendAs(foreign) {
				t.Errorf("send_as %q: MaySendAs(%q) = true", pattern, foreign)
			}
		}
		if !strings.Contains(pattern, "@") || strings.HasPrefix(pattern, "@") {
			for _, d := range []string{"hé.mox.example", "xn--h-bga.mox.example", "HÉ.MOX.EXAMPLE."} {
				if !a.OwnsDomain(d) {
					t.Errorf("send_as %q: OwnsDomain(%q) = false", pattern, d)
				}
			}
		}
		if got := strings.Join(a.Domains(), ","); got != "xn--h-bga.mox.example" && got != "mox.example" {
			t.Errorf("send_as %q: Domains() = %q, want the canonical domain", pattern, got)
		}
	}
}

// TestCanonicalDirectory: logins (configured, from an address, in the
// sender login map) and the accounts networks name are found in either
// spelling, and an address login's ad-hoc account has one name.
func TestCanonicalDirectory(t *testing.T) {
	mjl, _ := NewAccount("mjl", []string{"hé.mox.example"})
	byMap, _ := NewAccount("zoë@xn--h-bga.example", nil)
	d, err := NewDirectory([]*Account{mjl, byMap},
		map[string]string{"mjl@hé.mox.example": "mjl", "zoë@xn--h-bga.example": "zoë@xn--h-bga.example"},
		[]NetworkAccount{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Account: "ZOË@hé.example"}},
		DirectoryOptions{LoginIsAddress: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, login := range spellings {
		a, how := d.Resolve(login, netip.Addr{})
		if a != mjl || how != ByLogin {
			t.Errorf("Resolve(%q) = %v %s, want account mjl by login", login, a, how)
		}
	}
	for _, login := range []string{"zoë@hé.example", "ZOË@xn--h-bga.example."} {
		if a, _ := d.Resolve(login, netip.Addr{}); a == nil || a.Name != "zoë@xn--h-bga.example" {
			t.Errorf("Resolve(%q) = %v, want the account of the map's login", login, a)
		}
	}
	if a, how := d.Resolve("", netip.MustParseAddr("192.0.2.9")); a == nil || a.Name != "zoë@xn--h-bga.example" || how != ByNetwork {
		t.Errorf("network account = %v %s", a, how)
	}
	names := map[string]bool{}
	for _, login := range []string{"carol@bücher.example", "Carol@XN--BCHER-KVA.example."} {
		a, how := d.Resolve(login, netip.Addr{})
		if a == nil || how != ByAddressLogin {
			t.Fatalf("Resolve(%q) = %v %s", login, a, how)
		}
		names[a.Name] = true
		for _, from := range []string{"carol@bücher.example", "carol@xn--bcher-kva.example"} {
			if !a.MaySendAs(from) {
				t.Errorf("address login %q may not send as %q", login, from)
			}
		}
	}
	if len(names) != 1 || !names["carol@xn--bcher-kva.example"] {
		t.Errorf("ad-hoc account names %v, want one canonical name", names)
	}
}

// TestCanonicalLoginMap: a sender login map's keys are canonical.
func TestCanonicalLoginMap(t *testing.T) {
	got, err := ReadLoginMap(strings.NewReader("Mjl@HÉ.example mjl\n@hé.example. shop\nxn--BCHER-kva.example books\n"), "map")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"mjl@xn--h-bga.example", "@xn--h-bga.example", "xn--bcher-kva.example"}
	for i, w := range want {
		if got[i].Sender != w {
			t.Errorf("line %d: sender %q, want %q", i+1, got[i].Sender, w)
		}
	}
}
