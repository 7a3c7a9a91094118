package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/abusemilter/abusemilter/ratelimit"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// DirEntry is what the config says of one account, for search by login
// and address.
type DirEntry struct {
	Logins []string
	SendAs []string
}

// Options configure a Server.
type Options struct {
	// Admin is the store's admin API, the one abusectl uses.
	Admin ratelimit.Admin
	// Policy is the config's limits, strikes and exemptions.
	Policy ratelimit.Policy
	// Directory lists the configured accounts by name.
	Directory map[string]DirEntry
	// Desk and History are the held queue, complaints and decision records,
	// and per-hour sending; nil: Unavailable.
	Desk    Desk
	History History

	// UsersFile is the users file (users and roles with bcrypt hashes).
	UsersFile string
	// ProxyHeader, when set, authenticates by a trusted reverse proxy
	// instead: requests must come from ProxyTrusted, and ProxyOperators
	// get the operator role.
	ProxyHeader    string
	ProxyTrusted   []netip.Prefix
	ProxyOperators []string

	// TLS: the console is served over HTTPS (cookies are Secure and
	// __Host- prefixed, HSTS is sent).
	TLS bool

	IdleTimeout             time.Duration
	SessionLifetime         time.Duration
	Refresh                 time.Duration
	LoginFailuresPerUser    int
	LoginFailuresPerAddress int
	LoginFailureWindow      time.Duration

	Log     *zap.Logger
	Now     func() time.Time
	Version string
}

// Server is the console's HTTP handler.
type Server struct {
	o        Options
	desk     Desk
	history  History
	users    *userFile
	proxy    *proxyAuth
	sessions *sessions
	throttle *throttle
	log      *zap.Logger
	pages    map[string]*template.Template
	handler  http.Handler

	overviewMu   sync.Mutex
	overviewAt   time.Time
	overviewData *overviewData
}

// The cookies: the session, and the login form's token (before a session
// exists). Under TLS they carry the __Host- prefix, which browsers accept
// only with Secure, Path=/ and no Domain.
const (
	sessionCookie = "abusedesk"
	loginCookie   = "abusedesk-login"
)

// New builds a Server.
func New(o Options) (*Server, error) {
	if o.Admin == nil {
		return nil, errors.New("console: no admin store")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 30 * time.Minute
	}
	if o.SessionLifetime < o.IdleTimeout {
		o.SessionLifetime = max(12*time.Hour, o.IdleTimeout)
	}
	if o.LoginFailuresPerUser <= 0 {
		o.LoginFailuresPerUser = 5
	}
	if o.LoginFailuresPerAddress <= 0 {
		o.LoginFailuresPerAddress = 20
	}
	if o.LoginFailureWindow <= 0 {
		o.LoginFailureWindow = 15 * time.Minute
	}
	s := &Server{
		o: o, desk: o.Desk, history: o.History, log: o.Log,
		sessions: &sessions{idle: o.IdleTimeout, lifetime: o.SessionLifetime, now: o.Now, m: map[string]*session{}},
		throttle: &throttle{window: o.LoginFailureWindow, now: o.Now, failures: map[string][]time.Time{}},
	}
	if s.desk == nil {
		s.desk = Unavailable{}
	}
	if s.history == nil {
		s.history = Unavailable{}
	}
	switch {
	case o.ProxyHeader != "":
		if len(o.ProxyTrusted) == 0 {
			return nil, errors.New("console: proxy authentication needs the trusted proxies' addresses")
		}
		p := &proxyAuth{header: o.ProxyHeader, trusted: o.ProxyTrusted, operators: map[string]bool{}}
		for _, n := range o.ProxyOperators {
			p.operators[n] = true
		}
		s.proxy = p
	case o.UsersFile != "":
		s.users = &userFile{path: o.UsersFile}
	default:
		return nil, errors.New("console: no users file and no proxy authentication: nobody could log in")
	}
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	s.handler = s.routes()
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) cookieName(base string) string {
	if s.o.TLS {
		return "__Host-" + base
	}
	return base
}

// routes lays out the console: pages by GET, actions by POST.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(http.FileServerFS(static))))
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=86400")
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.loginSubmit)
	mux.Handle("POST /logout", s.authed(s.logout, true, false))

	mux.Handle("GET /{$}", s.authed(s.overviewPage, false, false))
	mux.Handle("GET /live", s.authed(s.overviewLive, false, false))
	mux.Handle("GET /search", s.authed(s.searchPage, false, false))
	mux.Handle("GET /account", s.authed(s.accountPage, false, false))
	mux.Handle("POST /account/{action}", s.authed(s.accountAction, true, true))
	mux.Handle("GET /held", s.authed(s.heldPage, false, false))
	mux.Handle("GET /held/message", s.authed(s.heldMessagePage, false, false))
	mux.Handle("POST /held/{action}", s.authed(s.heldAction, true, true))
	mux.Handle("GET /complaints", s.authed(s.complaintsPage, false, false))
	mux.Handle("GET /audit", s.authed(s.auditPage, false, false))
	mux.Handle("/", s.authed(s.notFound, false, false))

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.forbidden(w, r, nil, "cross-origin request refused")
	}))
	return s.securityHeaders(cop.Handler(limitBody(mux)))
}

// staticHandler lets the embedded assets be cached for a while (they have
// no secrets and change only with the binary).
func staticHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=300")
		h.ServeHTTP(w, r)
	})
}

// contentSecurityPolicy allows scripts, styles, images and fetches from the
// console itself only: no inline script or style, no frames, no foreign
// form target.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func (s *Server) securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
		h.Set("Cache-Control", "no-store")
		if s.o.TLS {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

// limitBody bounds request bodies (forms are small).
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		next.ServeHTTP(w, r)
	})
}

type ctxKey struct{}

func sessionOf(r *http.Request) *session {
	se, _ := r.Context().Value(ctxKey{}).(*session)
	return se
}

// authed wraps a handler: anonymous requests get the login page (or, for
// the overview's background fetch, 401); state-changing ones need the
// session's CSRF token, and operator ones the operator role.
func (s *Server) authed(h http.HandlerFunc, changes, operator bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		se, ok := s.session(w, r)
		if !ok {
			if s.proxy != nil {
				s.forbidden(w, r, nil, "not authenticated by the trusted proxy")
				return
			}
			if r.URL.Path == "/live" {
				http.Error(w, "login required", http.StatusUnauthorized)
				return
			}
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		if changes {
			if err := r.ParseForm(); err != nil {
				s.badRequest(w, r, se, "unreadable form")
				return
			}
			tok := r.PostForm.Get("csrf")
			if tok == "" {
				tok = r.Header.Get("X-CSRF-Token")
			}
			if !sameToken(tok, se.csrf) {
				s.log.Warn("console: request without a valid CSRF token refused",
					zap.String("user", se.user), zap.String("path", r.URL.Path), zap.String("client", clientAddr(r).String()))
				s.forbidden(w, r, se, "the form's security token is missing or stale: reload the page and try again")
				return
			}
		}
		if operator && se.role != RoleOperator {
			s.log.Warn("console: action refused to a viewer", zap.String("user", se.user), zap.String("path", r.URL.Path))
			s.forbidden(w, r, se, "your role ("+string(se.role)+") may look but not act: ask for the operator role")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, se)))
	})
}

// session finds the request's session: by cookie, or by the trusted
// proxy's header (a new session for a new user, so that its pages carry a
// CSRF token like any other).
func (s *Server) session(w http.ResponseWriter, r *http.Request) (*session, bool) {
	var se *session
	if c, err := r.Cookie(s.cookieName(sessionCookie)); err == nil {
		se, _ = s.sessions.get(c.Value)
	}
	if s.proxy != nil {
		if !s.proxy.trustedPeer(r) {
			return nil, false
		}
		name := r.Header.Get(s.proxy.header)
		if ValidUserName(name) != nil {
			return nil, false
		}
		role := RoleViewer
		if s.proxy.operators[name] {
			role = RoleOperator
		}
		if se != nil && se.user == name && se.role == role && se.proxy {
			return se, true
		}
		if se != nil {
			s.sessions.delete(se.id)
		}
		se = s.sessions.create(name, role, true)
		s.setSessionCookie(w, se)
		return se, true
	}
	if se == nil {
		return nil, false
	}
	// The users file decides: a removed user or a changed role ends the
	// session at its next request.
	u, ok, err := s.users.lookup(se.user)
	if err != nil || !ok || u.Role != se.role {
		s.sessions.delete(se.id)
		return nil, false
	}
	return se, true
}

func (s *Server) setSessionCookie(w http.ResponseWriter, se *session) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(sessionCookie), Value: se.id, Path: "/",
		HttpOnly: true, Secure: s.o.TLS, SameSite: http.SameSiteStrictMode,
	})
}

func (s *Server) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(name), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.o.TLS, SameSite: http.SameSiteStrictMode,
	})
}

// loginView is the login page's data.
type loginView struct {
	frame
	Next  string
	User  string
	Error string
	Retry string
}

// safeNext keeps a post-login target on this site: a local path only.
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.ContainsAny(next, "\r\n\\") || len(next) > 1000 {
		return "/"
	}
	return next
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if s.proxy != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if se, ok := s.session(w, r); ok && se != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.renderLogin(w, r, http.StatusOK, loginView{Next: safeNext(r.URL.Query().Get("next"))})
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, v loginView) {
	// One token per browser, kept while it is there: another login page
	// (a second tab, a redirected background request) must not make the
	// first one's form stale.
	tok := randomToken()
	if c, err := r.Cookie(s.cookieName(loginCookie)); err == nil && validToken(c.Value) {
		tok = c.Value
	}
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(loginCookie), Value: tok, Path: "/", MaxAge: 3600,
		HttpOnly: true, Secure: s.o.TLS, SameSite: http.SameSiteStrictMode,
	})
	v.frame = frame{Title: "Log in", CSRF: tok, Version: s.o.Version}
	s.renderStatus(w, r, status, "login", v)
}

func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request) {
	if s.proxy != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if err := r.ParseForm(); err != nil {
		s.badRequest(w, r, nil, "unreadable form")
		return
	}
	c, err := r.Cookie(s.cookieName(loginCookie))
	if err != nil || !sameToken(c.Value, r.PostForm.Get("csrf")) {
		s.forbidden(w, r, nil, "the login form's security token is missing or stale: reload the page and try again")
		return
	}
	name, pw := r.PostForm.Get("user"), r.PostForm.Get("password")
	next := safeNext(r.PostForm.Get("next"))
	addr := clientAddr(r)
	view := loginView{Next: next, User: name}
	if ValidUserName(name) != nil || pw == "" || len(pw) > 1024 {
		view.User = ""
		view.Error = "Wrong user name or password."
		s.renderLogin(w, r, http.StatusUnauthorized, view)
		return
	}
	userKey, aKey := "u:"+name, addrKey(addr)
	bu, waitU := s.throttle.blocked(userKey, s.o.LoginFailuresPerUser)
	ba, waitA := s.throttle.blocked(aKey, s.o.LoginFailuresPerAddress)
	if bu || ba {
		wait := max(waitU, waitA)
		s.log.Warn("console: login throttled", zap.String("client", addr.String()),
			zap.Bool("per_user", bu), zap.Bool("per_address", ba))
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		view.Error = "Too many failed logins: wait and try again."
		view.Retry = roundUp(wait).String()
		s.renderLogin(w, r, http.StatusTooManyRequests, view)
		return
	}
	u, ok, err := s.users.authenticate(name, pw)
	if err != nil {
		s.log.Error("console: users file unreadable", zap.Error(err))
		view.Error = "The users file cannot be read: see the console's log."
		s.renderLogin(w, r, http.StatusInternalServerError, view)
		return
	}
	if !ok {
		s.throttle.fail(userKey, s.o.LoginFailuresPerUser)
		s.throttle.fail(aKey, s.o.LoginFailuresPerAddress)
		// A name that is no user is not logged: it may be a password typed
		// into the wrong field.
		logged := zap.String("user", name)
		if _, known, _ := s.users.lookup(name); !known {
			logged = zap.String("user", "(unknown)")
		}
		s.log.Warn("console: login failed", logged, zap.String("client", addr.String()))
		view.Error = "Wrong user name or password."
		s.renderLogin(w, r, http.StatusUnauthorized, view)
		return
	}
	s.throttle.clear(userKey)
	if c, err := r.Cookie(s.cookieName(sessionCookie)); err == nil {
		s.sessions.delete(c.Value)
	}
	se := s.sessions.create(u.Name, u.Role, false)
	s.setSessionCookie(w, se)
	s.clearCookie(w, loginCookie)
	s.log.Info("console: login", zap.String("user", u.Name), zap.String("role", string(u.Role)), zap.String("client", addr.String()))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func roundUp(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Second
	}
	return d.Truncate(time.Second) + time.Second
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	se := sessionOf(r)
	s.sessions.delete(se.id)
	s.clearCookie(w, sessionCookie)
	s.log.Info("console: logout", zap.String("user", se.user))
	if se.proxy {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// by is the name recorded in the audit log for a console user.
func by(se *session) string { return se.user + " (console)" }

// render writes a page with status 200.
func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, data any) {
	s.renderStatus(w, r, http.StatusOK, name, data)
}

func (s *Server) renderStatus(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	t, ok := s.pages[name]
	if !ok {
		panic("console: no page " + name)
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "page", data); err != nil {
		s.log.Error("console: rendering a page", zap.String("page", name), zap.Error(err))
		http.Error(w, "internal error: see the console's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// errorView is the data of the error page.
type errorView struct {
	frame
	Status  int
	Message string
}

func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, se *session, status int, msg string) {
	v := errorView{Status: status, Message: msg}
	v.frame = s.frameFor(r, se, "", http.StatusText(status))
	s.renderStatus(w, r, status, "error", v)
}

func (s *Server) forbidden(w http.ResponseWriter, r *http.Request, se *session, msg string) {
	s.errorPage(w, r, se, http.StatusForbidden, msg)
}

func (s *Server) badRequest(w http.ResponseWriter, r *http.Request, se *session, msg string) {
	s.errorPage(w, r, se, http.StatusBadRequest, msg)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.errorPage(w, r, sessionOf(r), http.StatusNotFound, "no such page")
}

// storeFailed reports a store error on a page (logged; the page names no
// server, address or credential).
func (s *Server) storeFailed(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("console: store error", zap.String("path", r.URL.Path), zap.Error(err))
	s.errorPage(w, r, sessionOf(r), http.StatusBadGateway, "the store did not answer: see the console's log")
}

// frame is what every page's layout shows.
type frame struct {
	Title    string
	Nav      string
	User     string
	Role     Role
	CanAct   bool
	CSRF     string
	Flash    string
	FlashErr bool
	Version  string
	LoggedIn bool
	Proxy    bool
}

func (s *Server) frameFor(r *http.Request, se *session, nav, title string) frame {
	f := frame{Title: title, Nav: nav, Version: s.o.Version}
	if se != nil {
		f.User, f.Role, f.CanAct, f.CSRF, f.LoggedIn, f.Proxy = se.user, se.role, se.role == RoleOperator, se.csrf, true, se.proxy
		f.Flash, f.FlashErr = s.sessions.takeFlash(se)
	}
	return f
}
