package milter

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	gomilter "github.com/emersion/go-milter"
	"go.uber.org/zap"

	"github.com/abusemilter/abusemilter/scoring"
)

// Defaults for Options fields left zero.
const (
	DefaultIdleTimeout  = 10 * time.Minute
	DefaultMaxSessions  = 1000
	DefaultMaxPacket    = 1 << 20
	DefaultBodySample   = 256 << 10
	DefaultMaxHeaders   = 1000
	DefaultHeaderBytes  = 1 << 20
	DefaultCheckTimeout = 10 * time.Second
	// overflowIdle bounds how long a session refused for the session cap may
	// stay open.
	overflowIdle = 30 * time.Second
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("milter server closed")

// Options configures a Server. Zero fields take the defaults above.
type Options struct {
	// Engine decides; it can be replaced later with SetEngine.
	Engine *scoring.Engine
	// Logger receives one line per decision and session events; nil: no logs.
	Logger *zap.Logger
	// IdleTimeout closes a session that sends nothing for this long.
	IdleTimeout time.Duration
	// MaxSessions caps concurrent sessions; sessions past it get a tempfail.
	MaxSessions int
	// MaxPacket caps the declared length of one milter packet. go-milter
	// v0.5.0 refuses packets over 1 MiB itself, so larger values have no
	// effect.
	MaxPacket int64
	// BodySample is how much of each body is kept for the rules.
	BodySample int64
	// MaxHeaders and HeaderBytes bound the headers kept per message; headers
	// past them are counted but not kept.
	MaxHeaders  int
	HeaderBytes int
	// CheckTimeout bounds the end-of-message check (rules, DNS, rate store).
	CheckTimeout time.Duration
	// NewBodySink, when set, is called at MAIL FROM of every message; the
	// sink then receives the headers and every body chunk as they stream in
	// (for example to a DKIM verifier) and is finished before the engine
	// checks the message. It may return nil to skip a message.
	NewBodySink func(env *scoring.Envelope) BodySink
	// Observer, when set, is told of every decision and session (metrics).
	Observer Observer
	// Redact, when set, rewrites the e-mail addresses of the decision log
	// (log.redact: addresses); nil logs them as they are.
	Redact Redactor
	// ExtraHeaders, when set, is asked at end of message for header fields
	// to add to a message that is accepted or held (the desk's Feedback-ID
	// and tracking header).
	ExtraHeaders func(env *scoring.Envelope, id scoring.Identity) []scoring.Header
	// OwnHeaders names more headers that the milter writes (the tracking
	// header): a copy the client sent is removed from every message, like
	// X-Abuse-Verdict and X-Abuse-Findings, so that it cannot pass another
	// account's header off as its own.
	OwnHeaders []string
}

// Redactor hides the local parts of e-mail addresses in log lines
// (*logging.Redactor).
type Redactor interface {
	// Address rewrites one address (a string without "@" is kept).
	Address(s string) string
	// Text rewrites every address inside free text.
	Text(s string) string
}

// Observer is told what the server does, for metrics and notifications.
// Its methods are called on the session's goroutine and must not block.
type Observer interface {
	// Decision is called once per logged decision: at most once per
	// message and stage (see DecisionEvent).
	Decision(ev DecisionEvent)
	SessionOpened()
	SessionClosed()
	// SessionRefused counts a connection past the session cap.
	SessionRefused()
}

// nopObserver is the Observer when none is set.
type nopObserver struct{}

func (nopObserver) Decision(DecisionEvent) {}
func (nopObserver) SessionOpened()         {}
func (nopObserver) SessionClosed()         {}
func (nopObserver) SessionRefused()        {}

// BodySink streams a whole message to a consumer that needs more than the
// body sample, such as a DKIM verifier. Calls come from one goroutine.
type BodySink interface {
	// Header receives each header field with value as it stands after the
	// colon in the message, leading whitespace and folding included (folded
	// lines may end in "\n" alone, as Postfix and Sendmail send them). This
	// is exact when the MTA negotiated SMFIP_HDR_LEADSPC; otherwise the MTA
	// removed one space after the colon and the value has one space put
	// back, which is right unless the field had no space there.
	Header(name, value string)
	// Write receives each body chunk, in order.
	Write(chunk []byte) (int, error)
	// Finish is called at end of message, before the engine; it may add to
	// msg (e.g. msg.DKIM). ctx carries no deadline: a sink bounds its own
	// waits, and the check's deadline (Options.CheckTimeout) starts after.
	Finish(ctx context.Context, env *scoring.Envelope, msg *scoring.Message)
	// Abort is called when the message ends without end of message.
	Abort()
}

// Stats are counters of a server's sessions.
type Stats struct {
	Active           int   // sessions being served
	Overflow         int   // sessions being refused for the session cap
	OversizedPackets int64 // sessions closed for a packet over MaxPacket
	IdleTimeouts     int64 // sessions closed for idleness
	Refused          int64 // sessions refused for the session cap
}

// Server is the abuse milter: a go-milter server wrapped with session
// limits, an atomically replaceable engine and graceful shutdown.
type Server struct {
	opts Options
	// ownHeaders are the canonical names of the headers removed from the
	// client's message: X-Abuse-Verdict, X-Abuse-Findings, Options.OwnHeaders.
	ownHeaders []string
	log        *zap.Logger
	engine     atomic.Pointer[scoring.Engine]

	main     *gomilter.Server
	mainLn   *chanListener
	spill    *gomilter.Server
	spillLn  *chanListener
	startLib sync.Once

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*sessionConn]bool // value: overflow session
	active    int
	overflow  int
	closing   bool
	done      chan struct{} // closed when closing and no sessions are left
	nextID    uint64

	stats struct {
		oversized    atomic.Int64
		idleTimeouts atomic.Int64
		refused      atomic.Int64
	}
}

// New builds a server; call Serve to start it.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	if opts.Redact == nil {
		opts.Redact = noRedact{}
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.MaxPacket <= 0 {
		opts.MaxPacket = DefaultMaxPacket
	}
	if opts.MaxPacket > 1<<32-1 {
		opts.MaxPacket = 1<<32 - 1
	}
	if opts.BodySample <= 0 {
		opts.BodySample = DefaultBodySample
	}
	if opts.MaxHeaders <= 0 {
		opts.MaxHeaders = DefaultMaxHeaders
	}
	if opts.HeaderBytes <= 0 {
		opts.HeaderBytes = DefaultHeaderBytes
	}
	if opts.CheckTimeout <= 0 {
		opts.CheckTimeout = DefaultCheckTimeout
	}
	s := &Server{
		opts:       opts,
		ownHeaders: append([]string{HeaderVerdict, HeaderFindings}, opts.OwnHeaders...),
		log:        opts.Logger,
		listeners:  make(map[net.Listener]struct{}),
		sessions:   make(map[*sessionConn]bool),
		done:       make(chan struct{}),
	}
	if opts.Engine != nil {
		s.engine.Store(opts.Engine)
	}
	s.mainLn = newChanListener()
	// The actions and protocol options asked for are chosen per session
	// from the MTA's offer: see backend.Negotiate and Protocol.
	s.main = &gomilter.Server{
		NewMilter: func() gomilter.Milter { return s.newBackend(s.mainLn.takePending()) },
		Actions:   Actions,
		Protocol:  Protocol,
		SymList:   SymList(),
	}
	s.spillLn = newChanListener()
	s.spill = &gomilter.Server{
		NewMilter: func() gomilter.Milter { s.spillLn.takePending(); return tempfailMilter{} },
	}
	return s
}

// Actions are the modifications the milter may ask for: its own headers
// (X-Abuse-* in monitor mode, removal of client-sent copies), quarantine
// (a held message goes to the MTA's hold queue) and the macro lists of
// SymList.
const Actions = gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine | gomilter.OptSetSymList

// Protocol is what the milter asks the MTA for, stage by stage; the session
// asks for it within the MTA's offer (go-milter's negotiation, and
// sessionConn's, limit it to what the MTA offered). An MTA of protocol
// version 6 (Postfix 2.6 and later, Sendmail 8.14 and later) offers all of
// it; an older one gets every stage with a reply, as before.
//
//	stage            what the milter does there          asked for
//	CONNECT, HELO    records the client, never refuses   no reply (NR_CONN, NR_HELO)
//	MAIL FROM        early refusal (unknown login,       reply
//	                 locked or over-limit account)
//	RCPT TO          per-message recipient cap           reply
//	DATA             nothing                             not sent (NODATA)
//	unknown command  nothing                             not sent (NOUNKNOWN)
//	each header      kept for the rules, the DKIM sink   no reply (NR_HDR)
//	end of headers   nothing                             not sent (NOEOH)
//	each body chunk  sample kept, DKIM sink              no reply (NR_BODY)
//	end of message   the decision                        reply
//
// So Postfix writes a whole message's headers and body in one go and waits
// only for MAIL, each RCPT and the end of message: 2 + recipients round
// trips per message instead of about 22. A stage whose callback must refuse
// keeps its reply; a callback that never refuses gets none. The body stage
// is kept (with no reply): the URL rules read the body sample, the DKIM
// sink and (with an antivirus) a scanner stream it.
//
// SMFIP_HDR_LEADSPC: the MTA sends header values exactly as in the message,
// leading whitespace included, so that the DKIM sink can rebuild the bytes a
// c=simple/... signer hashed (RFC 6376 §3.4.1). An MTA that does not offer
// it (Postfix with milter_protocol below 6, Sendmail before 8.14) drops one
// space after the colon, as always: header values are then handled as
// before, simple header canonicalization cannot be verified (the field is
// rebuilt with one space after the colon, a guess), and relaxed still
// verifies.
const Protocol = gomilter.OptHeaderLeadingSpace |
	gomilter.OptNoConnReply | gomilter.OptNoHeloReply |
	gomilter.OptNoHeaderReply | gomilter.OptNoBodyReply |
	gomilter.OptNoData | gomilter.OptNoUnknown | gomilter.OptNoEOH

// SymList is the macro list per stage the milter asks the MTA for: only
// the macros it reads (applyMacros). Postfix uses a milter's list for a
// stage when it is not empty and its own milter_*_macros otherwise, and
// sends the macros of a stage even when the stage itself is skipped, so
// every stage is listed:
//   - connect and HELO: the client ({client_name} is "unknown" where the
//     CONNECT command says "[addr]");
//   - MAIL FROM: the SASL login and the client again (the early refusal
//     logs them);
//   - RCPT TO, DATA, end of headers (header fields come with its macros)
//     and end of message: the queue id "i", which Postfix assigns at the
//     first accepted recipient.
func SymList() map[gomilter.Stage][]string {
	conn := []string{"{client_addr}", "{client_name}"}
	login := []string{"{auth_type}", "{auth_authen}"}
	queueID := []string{"i"}
	return map[gomilter.Stage][]string{
		gomilter.StageConnect:  conn,
		gomilter.StageHelo:     conn,
		gomilter.StageMailFrom: slices.Concat(login, conn, queueID),
		gomilter.StageRcptTo:   queueID,
		gomilter.StageData:     queueID,
		gomilter.StageEOH:      queueID,
		gomilter.StageEOM:      queueID,
	}
}

// SetEngine replaces the engine for messages that start from now on;
// messages in progress keep the engine they started with.
func (s *Server) SetEngine(e *scoring.Engine) { s.engine.Store(e) }

// Engine returns the current engine.
func (s *Server) Engine() *scoring.Engine { return s.engine.Load() }

// Stats returns the session counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Active: s.active, Overflow: s.overflow,
		OversizedPackets: s.stats.oversized.Load(),
		IdleTimeouts:     s.stats.idleTimeouts.Load(),
		Refused:          s.stats.refused.Load(),
	}
}

// Serve accepts sessions on ln until Shutdown or Close, and returns
// ErrServerClosed then (or the listener's error).
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	_, trial := ln.(trialListener) // trial.go
	s.startLib.Do(func() {
		go s.main.Serve(s.mainLn)
		go s.spill.Serve(s.spillLn)
	})
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			if isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accepting milter connection", zap.Error(err), zap.Duration("retry_in", backoff))
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.dispatch(withQuickAck(conn), trial)
	}
}

// isTemporary reports whether an accept error is worth retrying (EMFILE,
// ECONNABORTED and alike report themselves as temporary).
func isTemporary(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// dispatch hands a new connection to the milter, or to the tempfail milter
// when the session cap is reached. trial is set for a connection accepted
// on a TrialListener.
func (s *Server) dispatch(conn net.Conn, trial bool) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.nextID++
	id := s.nextID
	overflow := s.active >= s.opts.MaxSessions
	if overflow && s.overflow >= s.opts.MaxSessions {
		s.mu.Unlock()
		s.stats.refused.Add(1)
		s.opts.Observer.SessionRefused()
		s.log.Warn("milter session cap reached twice over, closing connection", zap.Int("max_sessions", s.opts.MaxSessions))
		conn.Close()
		return
	}
	log := s.log.With(zap.Uint64("session", id))
	idle := s.opts.IdleTimeout
	if overflow {
		idle = min(idle, overflowIdle)
	}
	sc := &sessionConn{Conn: conn, srv: s, log: log, idle: idle, maxPacket: uint32(s.opts.MaxPacket), trialListener: trial}
	s.sessions[sc] = overflow
	if overflow {
		s.overflow++
	} else {
		s.active++
	}
	s.mu.Unlock()
	if overflow {
		s.stats.refused.Add(1)
		s.opts.Observer.SessionRefused()
		log.Warn("milter session cap reached, answering tempfail", zap.Int("max_sessions", s.opts.MaxSessions))
		s.spillLn.push(sc)
		return
	}
	s.opts.Observer.SessionOpened()
	s.mainLn.push(sc)
}

// sessionDone unregisters a closed session.
func (s *Server) sessionDone(c *sessionConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	overflow, ok := s.sessions[c]
	if !ok {
		return
	}
	delete(s.sessions, c)
	if overflow {
		s.overflow--
	} else {
		s.active--
		s.opts.Observer.SessionClosed()
	}
	s.checkDone()
}

// checkDone closes done once the server is closing and idle. s.mu is held.
func (s *Server) checkDone() {
	if s.closing && len(s.sessions) == 0 {
		select {
		case <-s.done:
		default:
			close(s.done)
		}
	}
}

// Shutdown stops accepting, closes sessions waiting between messages at
// once, lets sessions in the middle of a message finish it, and returns when
// all sessions are gone. When ctx ends first, the remaining sessions are
// closed and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	inMessage := 0
	for c := range s.sessions {
		c.drain()
		c.mu.Lock()
		if c.inMessage {
			inMessage++
		}
		c.mu.Unlock()
	}
	s.checkDone()
	s.mu.Unlock()
	if inMessage > 0 {
		s.log.Info("waiting for messages in progress", zap.Int("sessions", inMessage))
	}
	defer s.closeLib()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.closeSessions()
		return ctx.Err()
	}
}

// Close stops at once: listeners and every session are closed.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.checkDone()
	s.mu.Unlock()
	s.closeSessions()
	s.closeLib()
	return nil
}

func (s *Server) closeSessions() {
	s.mu.Lock()
	conns := make([]*sessionConn, 0, len(s.sessions))
	for c := range s.sessions {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (s *Server) closeLib() {
	s.mainLn.Close()
	s.spillLn.Close()
}

// chanListener feeds connections accepted by Server.Serve to a go-milter
// server. go-milter calls NewMilter right after Accept, in the same
// goroutine, so the last accepted connection is handed to the new backend
// through pending.
type chanListener struct {
	conns   chan *sessionConn
	closed  chan struct{}
	once    sync.Once
	mu      sync.Mutex
	pending *sessionConn
}

func newChanListener() *chanListener {
	return &chanListener{conns: make(chan *sessionConn), closed: make(chan struct{})}
}

func (l *chanListener) push(c *sessionConn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

// Accept implements net.Listener.
func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		l.mu.Lock()
		l.pending = c
		l.mu.Unlock()
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) takePending() *sessionConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.pending
	l.pending = nil
	return c
}

// Close implements net.Listener.
func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// Addr implements net.Listener.
func (l *chanListener) Addr() net.Addr {
	return &net.UnixAddr{Name: "abusemilter-internal", Net: "unix"}
}
