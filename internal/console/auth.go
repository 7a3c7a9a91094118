package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// session is one logged-in browser. Its id lives only in the HttpOnly
// cookie; csrf is written into the pages' forms.
type session struct {
	id       string
	user     string
	role     Role
	csrf     string
	proxy    bool // authenticated by the reverse proxy's header
	created  time.Time
	lastSeen time.Time
	flash    string // shown once on the next page
	flashErr bool
}

// randomToken returns 32 random bytes, base64url.
func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("console: no randomness: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// maxSessions bounds the sessions kept (a proxy-authenticated client that
// keeps no cookie makes one per request).
const maxSessions = 10000

// sessions keeps the sessions in memory: a restart logs everyone out.
type sessions struct {
	idle, lifetime time.Duration
	now            func() time.Time

	mu sync.Mutex
	m  map[string]*session
}

func (s *sessions) create(user string, role Role, proxy bool) *session {
	now := s.now()
	se := &session{id: randomToken(), user: user, role: role, csrf: randomToken(), proxy: proxy, created: now, lastSeen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(now)
	if len(s.m) >= maxSessions {
		// Past the cap the least recently used session goes.
		var oldest *session
		for _, o := range s.m {
			if oldest == nil || o.lastSeen.Before(oldest.lastSeen) {
				oldest = o
			}
		}
		delete(s.m, oldest.id)
	}
	s.m[se.id] = se
	return se
}

// get returns the live session of id and marks it used; an idle or
// too-old session is ended.
func (s *sessions) get(id string) (*session, bool) {
	if id == "" {
		return nil, false
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.m[id]
	if !ok {
		return nil, false
	}
	if now.Sub(se.lastSeen) > s.idle || now.Sub(se.created) > s.lifetime {
		delete(s.m, id)
		return nil, false
	}
	se.lastSeen = now
	return se, true
}

func (s *sessions) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// setFlash and takeFlash carry one message to the next page.
func (s *sessions) setFlash(se *session, msg string, isErr bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	se.flash, se.flashErr = msg, isErr
}

func (s *sessions) takeFlash(se *session) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg, isErr := se.flash, se.flashErr
	se.flash, se.flashErr = "", false
	return msg, isErr
}

func (s *sessions) pruneLocked(now time.Time) {
	for id, se := range s.m {
		if now.Sub(se.lastSeen) > s.idle || now.Sub(se.created) > s.lifetime {
			delete(s.m, id)
		}
	}
}

// throttle counts failed logins per key (a user name, a client address)
// within a window; a key at its maximum is refused unchecked until its
// oldest failure leaves the window.
type throttle struct {
	window time.Duration
	now    func() time.Time

	mu       sync.Mutex
	failures map[string][]time.Time
}

// maxThrottleKeys bounds the memory of the throttle: past it, keys whose
// failures all left the window are dropped first, then the oldest.
const maxThrottleKeys = 100000

func (t *throttle) recent(key string, now time.Time) []time.Time {
	f := t.failures[key]
	i := 0
	for i < len(f) && now.Sub(f[i]) >= t.window {
		i++
	}
	if i == len(f) {
		delete(t.failures, key)
		return nil
	}
	f = f[i:]
	t.failures[key] = f
	return f
}

// blocked reports whether key has max failures in the window, and when
// the next attempt will be let through.
func (t *throttle) blocked(key string, max int) (bool, time.Duration) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.recent(key, now)
	if len(f) < max {
		return false, 0
	}
	return true, t.window - now.Sub(f[len(f)-max])
}

func (t *throttle) fail(key string, max int) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.failures) >= maxThrottleKeys {
		for k := range t.failures {
			if t.recent(k, now) == nil {
				continue
			}
			if len(t.failures) >= maxThrottleKeys {
				delete(t.failures, k)
			}
		}
	}
	f := append(t.recent(key, now), now)
	if len(f) > max {
		f = f[len(f)-max:]
	}
	t.failures[key] = f
}

func (t *throttle) clear(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.failures, key)
}

// clientAddr is the address a request came from (the peer: forwarded-for
// headers are not trusted), an IPv6 address cut to its /64 so that one
// host cannot rotate through its own prefix.
func clientAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

func addrKey(a netip.Addr) string {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "a:" + p.String()
	}
	return "a:" + a.String()
}

// validToken reports whether s looks like a randomToken.
func validToken(s string) bool {
	if len(s) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

// sameToken compares two tokens in constant time; empty never matches.
func sameToken(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// proxyAuth is authentication by a trusted reverse proxy's header.
type proxyAuth struct {
	header    string
	trusted   []netip.Prefix
	operators map[string]bool
}

func (p *proxyAuth) trustedPeer(r *http.Request) bool {
	a := clientAddr(r)
	if !a.IsValid() {
		return false
	}
	for _, n := range p.trusted {
		if n.Contains(a) {
			return true
		}
	}
	return false
}
