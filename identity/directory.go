package identity

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strings"
)

// How tells how a submission was tied to an account.
type How string

// The ways a submission is matched to an account.
const (
	ByLogin        How = "login"         // a configured SASL login
	ByAddressLogin How = "address-login" // an unconfigured login that is an e-mail address
	ByNetwork      How = "network"       // an unauthenticated client in a configured network
	UnknownLogin   How = "unknown-login"
	UnknownClient  How = "unknown-client"
)

// Directory resolves submissions to accounts. It is immutable once built and
// safe for concurrent use; a config reload builds a new one.
type Directory struct {
	accounts       map[string]*Account
	logins         map[string]*Account
	networks       []NetworkAccount
	loginIsAddress bool
}

// DirectoryOptions configures NewDirectory.
type DirectoryOptions struct {
	// LoginIsAddress lets an unconfigured login that is an e-mail address
	// send as exactly that address (the default with no config at all).
	LoginIsAddress bool
}

// NewDirectory builds a directory. logins maps a SASL login to an account
// name; every account named by a login or network must be in accounts.
func NewDirectory(accounts []*Account, logins map[string]string, networks []NetworkAccount, opts DirectoryOptions) (*Directory, error) {
	d := &Directory{
		accounts:       make(map[string]*Account, len(accounts)),
		logins:         make(map[string]*Account, len(logins)),
		loginIsAddress: opts.LoginIsAddress,
	}
	for _, a := range accounts {
		if _, dup := d.accounts[a.Name]; dup {
			return nil, fmt.Errorf("account %q defined twice", a.Name)
		}
		d.accounts[a.Name] = a
	}
	for login, name := range logins {
		a, ok := d.accounts[name]
		if !ok {
			return nil, fmt.Errorf("login %q: unknown account %q", login, name)
		}
		d.logins[CanonicalLogin(login)] = a
	}
	for _, n := range networks {
		name := n.Account
		if _, ok := d.accounts[name]; !ok {
			// An account made from an address login is named by its
			// canonical form; the network may name it in another spelling.
			if _, ok := d.accounts[CanonicalLogin(name)]; !ok {
				return nil, fmt.Errorf("network %s: unknown account %q", n.Prefix, n.Account)
			}
			name = CanonicalLogin(name)
		}
		d.networks = append(d.networks, NetworkAccount{Prefix: n.Prefix.Masked(), Account: name})
	}
	return d, nil
}

// Account returns the configured account with that name, or nil.
func (d *Directory) Account(name string) *Account { return d.accounts[name] }

// Accounts returns the configured accounts sorted by name.
func (d *Directory) Accounts() []*Account {
	out := make([]*Account, 0, len(d.accounts))
	for _, a := range d.accounts {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Len returns the number of configured accounts.
func (d *Directory) Len() int { return len(d.accounts) }

// Resolve finds the account of a submission. An authenticated login wins
// over the client address. The returned account is nil when How is
// UnknownLogin or UnknownClient.
func (d *Directory) Resolve(login string, client netip.Addr) (*Account, How) {
	if login != "" {
		if a := d.logins[CanonicalLogin(login)]; a != nil {
			return a, ByLogin
		}
		if d.loginIsAddress && IsAddress(login) {
			a := &Account{Name: CanonicalLogin(login), AdHoc: true}
			a.addresses = map[string]bool{NormalizeAddress(login): true}
			return a, ByAddressLogin
		}
		return nil, UnknownLogin
	}
	if client.IsValid() {
		client = client.Unmap()
		best := -1
		var found *Account
		for _, n := range d.networks {
			if n.Prefix.Contains(client) && n.Prefix.Bits() > best {
				best, found = n.Prefix.Bits(), d.accounts[n.Account]
			}
		}
		if found != nil {
			return found, ByNetwork
		}
	}
	return nil, UnknownClient
}

// LoginMapEntry is one line of a Postfix smtpd_sender_login_maps file: a
// sender address or "@domain" (in the canonical form, CanonicalPattern)
// and the logins that may use it (as written; they are looked up by
// CanonicalLogin).
type LoginMapEntry struct {
	Sender string
	Logins []string
	Line   int
}

// ReadLoginMap parses a Postfix-style sender login map ("key value" lines,
// value a comma- or space-separated list of logins; '#' comments and blank
// lines ignored; indented lines continue the previous one).
func ReadLoginMap(r io.Reader, name string) ([]LoginMapEntry, error) {
	var out []LoginMapEntry
	var errs []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			out[len(out)-1].Logins = append(out[len(out)-1].Logins, splitLogins(line)...)
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			errs = append(errs, fmt.Sprintf("%s:%d: want \"sender login[,login]\", got %q", name, n, line))
			continue
		}
		out = append(out, LoginMapEntry{Sender: CanonicalPattern(fields[0]), Logins: splitLogins(strings.Join(fields[1:], " ")), Line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return out, nil
}

// ReadLoginMapFile reads a sender login map from a file.
func ReadLoginMapFile(path string) ([]LoginMapEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sender login map: %w", err)
	}
	defer f.Close()
	return ReadLoginMap(f, path)
}

func splitLogins(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}
