package identity

import (
	"net/netip"
	"strings"
	"testing"
)

func TestMaySendAs(t *testing.T) {
	a, err := NewAccount("alice", []string{"alice@example.com", "example.org", "*.corp.example", "@shop.example"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr string
		want bool
	}{
		{"alice@example.com", true},
		{"Alice+news@EXAMPLE.com", true},
		{"<alice@example.com>", true},
		{"bob@example.com", false},
		{"anyone@example.org", true},
		{"x@sub.example.org", false}, // a domain pattern covers that domain only
		{"x@mail.corp.example", true},
		{"x@corp.example", false}, // "*.corp.example" is subdomains only
		{"x@shop.example", true},
		{"", false},
		{"not-an-address", false},
		{"alice@example.com.evil.net", false},
	}
	for _, tt := range tests {
		if got := a.MaySendAs(tt.addr); got != tt.want {
			t.Errorf("MaySendAs(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if got := strings.Join(a.Domains(), ","); got != "corp.example,example.com,example.org,shop.example" {
		t.Errorf("Domains() = %s", got)
	}
}

func TestBadPatterns(t *testing.T) {
	for _, p := range []string{"", "a@", "*.", "exa mple.com", "@", "foo..com"} {
		if _, err := NewAccount("x", []string{p}); err == nil {
			t.Errorf("pattern %q accepted, want error", p)
		}
	}
}

func TestResolve(t *testing.T) {
	alice, _ := NewAccount("alice", []string{"example.com"})
	relay, _ := NewAccount("relay", []string{"relay.example"})
	local, _ := NewAccount("local", []string{"any"})
	d, err := NewDirectory([]*Account{alice, relay, local},
		map[string]string{"alice": "alice", "Alice@Example.com": "alice"},
		[]NetworkAccount{
			{Prefix: netip.MustParsePrefix("127.0.0.1/32"), Account: "local"},
			{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Account: "relay"},
			{Prefix: netip.MustParsePrefix("192.0.2.128/25"), Account: "alice"},
		}, DirectoryOptions{LoginIsAddress: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		login, client string
		account       string
		how           How
	}{
		{"alice", "203.0.113.9", "alice", ByLogin},
		{"ALICE@example.com", "", "alice", ByLogin},
		{"carol@example.net", "127.0.0.1", "carol@example.net", ByAddressLogin},
		{"carol", "127.0.0.1", "", UnknownLogin},
		{"", "127.0.0.1", "local", ByNetwork},
		{"", "::ffff:127.0.0.1", "local", ByNetwork},
		{"", "192.0.2.7", "relay", ByNetwork},
		{"", "192.0.2.200", "alice", ByNetwork}, // longest prefix wins
		{"", "198.51.100.1", "", UnknownClient},
		{"", "", "", UnknownClient},
	}
	for _, tt := range tests {
		var addr netip.Addr
		if tt.client != "" {
			addr = netip.MustParseAddr(tt.client)
		}
		a, how := d.Resolve(tt.login, addr)
		name := ""
		if a != nil {
			name = a.Name
		}
		if name != tt.account || how != tt.how {
			t.Errorf("Resolve(%q, %q) = %q %s, want %q %s", tt.login, tt.client, name, how, tt.account, tt.how)
		}
	}
	adhoc, _ := d.Resolve("carol@example.net", netip.Addr{})
	if !adhoc.MaySendAs("carol@example.net") || adhoc.MaySendAs("dave@example.net") {
		t.Error("an address login must send as exactly that address")
	}
}

func TestNewDirectoryErrors(t *testing.T) {
	a, _ := NewAccount("a", nil)
	if _, err := NewDirectory([]*Account{a}, map[string]string{"x": "nobody"}, nil, DirectoryOptions{}); err == nil || !strings.Contains(err.Error(), `unknown account "nobody"`) {
		t.Errorf("login to unknown account: err = %v", err)
	}
	if _, err := NewDirectory([]*Account{a, a}, nil, nil, DirectoryOptions{}); err == nil {
		t.Error("duplicate account accepted")
	}
}

func TestReadLoginMap(t *testing.T) {
	in := "# comment\n\nalice@example.com   alice\n@example.org bob, carol\n  dave\nbroken\n"
	got, err := ReadLoginMap(strings.NewReader(in), "map.txt")
	if err == nil || !strings.Contains(err.Error(), "map.txt:6") {
		t.Fatalf("want an error naming line 6, got %v", err)
	}
	if len(got) != 2 || got[0].Sender != "alice@example.com" || strings.Join(got[1].Logins, " ") != "bob carol dave" {
		t.Fatalf("entries = %+v", got)
	}
}

func TestNormalizeAddress(t *testing.T) {
	for in, want := range map[string]string{
		"Alice+Tag@Example.COM.": "alice@example.com",
		" <bob@x.org> ":          "bob@x.org",
		"+weird@x.org":           "+weird@x.org",
		"postmaster":             "postmaster",
	} {
		if got := NormalizeAddress(in); got != want {
			t.Errorf("NormalizeAddress(%q) = %q, want %q", in, got, want)
		}
	}
}
