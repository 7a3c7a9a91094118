package console

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// Role is what a console user may do.
type Role string

// The roles: a viewer reads every page; an operator also acts (lock,
// unlock, reset, override, exempt, release, purge).
const (
	RoleViewer   Role = "viewer"
	RoleOperator Role = "operator"
)

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	switch Role(s) {
	case RoleViewer, RoleOperator:
		return Role(s), nil
	}
	return "", fmt.Errorf("role %q: want viewer or operator", s)
}

// User is one line of the users file.
type User struct {
	Name string
	Role Role
	Hash []byte // bcrypt
}

// BcryptCost is the cost of new password hashes.
const BcryptCost = 12

// HashCost is the cost HashPassword uses: BcryptCost, lowered by tests
// only (a cost-12 hash takes seconds under the race detector).
var HashCost = BcryptCost

// MinPasswordLength is the shortest password "abusectl user" accepts.
const MinPasswordLength = 12

var userNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// ValidUserName checks a console user name: letters, digits and . _ @ -,
// at most 64, starting with a letter or digit.
func ValidUserName(name string) error {
	if !userNameRE.MatchString(name) {
		return fmt.Errorf("user name %q: want 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", name)
	}
	return nil
}

// CheckPassword refuses a password too short or not valid text.
func CheckPassword(pw string) error {
	if !utf8.ValidString(pw) || strings.ContainsAny(pw, "\x00\r\n") {
		return errors.New("the password must be one line of text")
	}
	if utf8.RuneCountInString(pw) < MinPasswordLength {
		return fmt.Errorf("the password must have at least %d characters", MinPasswordLength)
	}
	if len(pw) > 72 {
		return errors.New("the password must have at most 72 bytes (bcrypt's limit)")
	}
	return nil
}

// HashPassword returns the bcrypt hash of a password.
func HashPassword(pw string) ([]byte, error) {
	if err := CheckPassword(pw); err != nil {
		return nil, err
	}
	return bcrypt.GenerateFromPassword([]byte(pw), HashCost)
}

// ReadUsers reads a users file: one "name:role:hash" line per user; blank
// lines and lines starting with '#' are skipped. A missing file is an
// empty list.
func ReadUsers(path string) ([]User, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseUsers(data, path)
}

func parseUsers(data []byte, path string) ([]User, error) {
	var out []User
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("%s:%d: want name:role:hash", path, n)
		}
		if err := ValidUserName(parts[0]); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		role, err := ParseRole(parts[1])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		if _, err := bcrypt.Cost([]byte(parts[2])); err != nil {
			return nil, fmt.Errorf("%s:%d: user %s: not a bcrypt hash", path, n, parts[0])
		}
		if seen[parts[0]] {
			return nil, fmt.Errorf("%s:%d: user %s listed twice", path, n, parts[0])
		}
		seen[parts[0]] = true
		out = append(out, User{Name: parts[0], Role: role, Hash: []byte(parts[2])})
	}
	return out, sc.Err()
}

// WriteUsers replaces the users file atomically (a temporary file renamed
// over it), mode 0600, sorted by name.
func WriteUsers(path string, users []User) error {
	sort.Slice(users, func(i, j int) bool { return users[i].Name < users[j].Name })
	var b bytes.Buffer
	b.WriteString("# abusemilter console users: name:role:bcrypt-hash (managed by abusectl user)\n")
	for _, u := range users {
		fmt.Fprintf(&b, "%s:%s:%s\n", u.Name, u.Role, u.Hash)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".console-users-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// userFile is the users file as the server sees it: read again whenever
// its modification time or size changes, so that "abusectl user" takes
// effect without a restart (a removed user's sessions end at their next
// request).
type userFile struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	users   map[string]User
	err     error
	dummy   []byte
}

func (f *userFile) lookup(name string) (User, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := os.Stat(f.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		f.users, f.err, f.modTime, f.size = nil, nil, time.Time{}, -1
	case err != nil:
		return User{}, false, err
	case f.users == nil && f.err == nil || !st.ModTime().Equal(f.modTime) || st.Size() != f.size:
		list, err := ReadUsers(f.path)
		f.modTime, f.size, f.err = st.ModTime(), st.Size(), err
		f.users = map[string]User{}
		for _, u := range list {
			f.users[u.Name] = u
		}
	}
	if f.err != nil {
		return User{}, false, f.err
	}
	u, ok := f.users[name]
	return u, ok, nil
}

// dummyFor returns a hash to compare against when the user does not
// exist, at the highest cost of the file's hashes, so that an unknown name
// takes as long as a wrong password.
func (f *userFile) dummyFor() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	cost := 0
	for _, u := range f.users {
		if c, err := bcrypt.Cost(u.Hash); err == nil && c > cost {
			cost = c
		}
	}
	if cost == 0 {
		cost = BcryptCost
	}
	if c, _ := bcrypt.Cost(f.dummy); c != cost {
		f.dummy, _ = bcrypt.GenerateFromPassword([]byte("not a password of anyone"), cost)
	}
	return f.dummy
}

// authenticate checks a name and password against the file.
func (f *userFile) authenticate(name, pw string) (User, bool, error) {
	u, ok, err := f.lookup(name)
	if err != nil {
		return User{}, false, err
	}
	if !ok {
		_ = bcrypt.CompareHashAndPassword(f.dummyFor(), []byte(pw))
		return User{}, false, nil
	}
	if bcrypt.CompareHashAndPassword(u.Hash, []byte(pw)) != nil {
		return User{}, false, nil
	}
	return u, true, nil
}
