package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// memDesk is an in-memory Desk and History for the tests: what a store
// with held mail, complaints and decision records would return.
type memDesk struct {
	mu        sync.Mutex
	held      []HeldMessage
	compl     []Complaint
	refusals  []Refusal
	sent      map[string][]int64
	released  map[string]string // id -> by
	purged    map[string]string
	lastHeldF HeldFilter
}

func newMemDesk() *memDesk {
	return &memDesk{sent: map[string][]int64{}, released: map[string]string{}, purged: map[string]string{}}
}

func (d *memDesk) Held(_ context.Context, f HeldFilter) ([]HeldMessage, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastHeldF = f
	var out []HeldMessage
	for _, m := range d.held {
		if f.Account != "" && m.Account != f.Account {
			continue
		}
		if f.Rule != "" {
			found := false
			for _, fi := range m.Findings {
				found = found || fi.Rule == f.Rule
			}
			if !found {
				continue
			}
		}
		out = append(out, m)
	}
	return out, nil
}

func (d *memDesk) HeldMessage(_ context.Context, id string) (HeldMessage, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range d.held {
		if m.ID == id {
			return m, true, nil
		}
	}
	return HeldMessage{}, false, nil
}

func (d *memDesk) act(ids []string, by string, into map[string]string, verb string) []Outcome {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Outcome
	for _, id := range ids {
		found := false
		for i, m := range d.held {
			if m.ID == id {
				d.held = append(d.held[:i], d.held[i+1:]...)
				found = true
				break
			}
		}
		if found {
			into[id] = by
			out = append(out, Outcome{ID: id, OK: true, Detail: verb})
		} else {
			out = append(out, Outcome{ID: id, Detail: "no longer on the hold queue"})
		}
	}
	return out
}

func (d *memDesk) Release(_ context.Context, ids []string, by string) ([]Outcome, error) {
	return d.act(ids, by, d.released, "released"), nil
}

func (d *memDesk) Purge(_ context.Context, ids []string, by string) ([]Outcome, error) {
	return d.act(ids, by, d.purged, "purged"), nil
}

func (d *memDesk) Complaints(_ context.Context, f ComplaintFilter) ([]Complaint, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Complaint
	for _, c := range d.compl {
		if (c.Account != "") != f.Attributed || f.Account != "" && c.Account != f.Account || c.At.Before(f.Since) {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

func (d *memDesk) Refusals(_ context.Context, f RefusalFilter) ([]Refusal, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Refusal
	for _, r := range d.refusals {
		if f.Account != "" && r.Account != f.Account || r.At.Before(f.Since) {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

func (d *memDesk) SentPerHour(_ context.Context, account string, hours int, _ time.Time) ([]int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]int64, hours)
	copy(out, d.sent[account])
	return out, nil
}

// Test users: passwords hashed at bcrypt's minimum cost to keep the tests
// fast (the server checks any cost).
const (
	opPassword     = "operator-password-1"
	viewerPassword = "viewer-password-1"
)

// fixture is a console on an in-memory store, with an operator "op" and a
// viewer "view", a settable clock and the console's log.
type fixture struct {
	t     *testing.T
	srv   *Server
	store *ratelimit.Memory
	desk  *memDesk
	logs  *observer.ObservedLogs
	users string

	mu  sync.Mutex
	now time.Time
}

var testPolicy = ratelimit.Policy{
	Limits: ratelimit.Limits{
		ratelimit.AccountMessages:   {{Limit: 10, Window: time.Hour}},
		ratelimit.AccountRecipients: {{Limit: 100, Window: 24 * time.Hour}},
		ratelimit.SenderMessages:    {{Limit: 50, Window: time.Hour}},
	},
	Strikes: ratelimit.StrikePolicy{Threshold: 3, Window: time.Hour},
}

type fixtureOpt func(*Options)

func withoutDesk() fixtureOpt { return func(o *Options) { o.Desk, o.History = nil, nil } }
func withTLS() fixtureOpt     { return func(o *Options) { o.TLS = true } }

func newFixture(t *testing.T, opts ...fixtureOpt) *fixture {
	t.Helper()
	f := &fixture{t: t, now: time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC), desk: newMemDesk()}
	f.store = ratelimit.NewMemory(testPolicy, f.clock)
	f.users = filepath.Join(t.TempDir(), "users")
	var users []User
	for _, u := range []struct {
		name, pw string
		role     Role
	}{{"op", opPassword, RoleOperator}, {"view", viewerPassword, RoleViewer}} {
		h, err := bcrypt.GenerateFromPassword([]byte(u.pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, User{Name: u.name, Role: u.role, Hash: h})
	}
	if err := WriteUsers(f.users, users); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	f.logs = logs
	o := Options{
		Admin: f.store, Policy: testPolicy, Desk: f.desk, History: f.desk, UsersFile: f.users,
		Directory: map[string]DirEntry{
			"alice": {Logins: []string{"alice@example.com", "al"}, SendAs: []string{"alice@example.com"}},
			"bob":   {Logins: []string{"bob"}, SendAs: []string{"shop.example"}},
		},
		IdleTimeout: 30 * time.Minute, Refresh: 15 * time.Second,
		LoginFailuresPerUser: 5, LoginFailuresPerAddress: 20, LoginFailureWindow: 15 * time.Minute,
		Log: zap.New(core), Now: f.clock, Version: "test",
	}
	for _, fn := range opts {
		fn(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

// browser is one client of the console: its cookies and address.
type browser struct {
	f       *fixture
	addr    string
	cookies map[string]*http.Cookie
	headers map[string]string
}

func (f *fixture) browser(addr string) *browser {
	return &browser{f: f, addr: addr, cookies: map[string]*http.Cookie{}, headers: map[string]string{}}
}

// do sends one request (form: url-encoded POST body) and keeps the
// cookies it sets.
func (b *browser) do(method, path string, form url.Values) *httptest.ResponseRecorder {
	b.f.t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	r := httptest.NewRequest(method, "http://console.test"+path, body)
	r.RemoteAddr = b.addr
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range b.headers {
		r.Header.Set(k, v)
	}
	for _, c := range b.cookies {
		r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	w := httptest.NewRecorder()
	b.f.srv.ServeHTTP(w, r)
	for _, c := range w.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	return w
}

func (b *browser) get(path string) *httptest.ResponseRecorder { return b.do(http.MethodGet, path, nil) }

var csrfRE = regexp.MustCompile(`(?:name="csrf" value|name="csrf-token" content)="([^"]+)"`)

// csrfOf finds the CSRF token in a page.
func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	return m[1]
}

// login logs in and returns the status of the POST.
func (b *browser) login(user, pw string) *httptest.ResponseRecorder {
	b.f.t.Helper()
	page := b.get("/login")
	if page.Code != http.StatusOK {
		b.f.t.Fatalf("GET /login: %d", page.Code)
	}
	return b.do(http.MethodPost, "/login", url.Values{"csrf": {csrfOf(b.f.t, page.Body.String())}, "user": {user}, "password": {pw}, "next": {"/"}})
}

func (b *browser) mustLogin(user, pw string) {
	b.f.t.Helper()
	if w := b.login(user, pw); w.Code != http.StatusSeeOther {
		b.f.t.Fatalf("login %s: %d\n%s", user, w.Code, w.Body.String())
	}
}

// token is the CSRF token of this browser's session (from the overview).
func (b *browser) token() string {
	b.f.t.Helper()
	w := b.get("/")
	if w.Code != http.StatusOK {
		b.f.t.Fatalf("GET /: %d", w.Code)
	}
	return csrfOf(b.f.t, w.Body.String())
}

// post sends a form with the session's CSRF token.
func (b *browser) post(path string, form url.Values) *httptest.ResponseRecorder {
	b.f.t.Helper()
	form.Set("csrf", b.token())
	return b.do(http.MethodPost, path, form)
}

func (f *fixture) status(s ratelimit.Subject) ratelimit.Status {
	f.t.Helper()
	st, err := f.store.Status(context.Background(), s)
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

func (f *fixture) charge(account string, n int) {
	f.t.Helper()
	for range n {
		if _, err := f.store.CheckAndCharge(context.Background(), ratelimit.Request{Account: account, Sender: account + "@example.com",
			Authenticated: true, Recipients: []string{"r@dest.example"}}); err != nil {
			f.t.Fatal(err)
		}
	}
}

type netipPrefix = netip.Prefix

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func zapUser(name string) zap.Field { return zap.String("user", name) }
