package main

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/identity"
	"github.com/abusemilter/abusemilter/milter"
	"github.com/abusemilter/abusemilter/scoring"
)

// engineView is what the engine was handed for one message behind a real
// MTA: the envelope and the header fields, exactly as milter passed them
// to scoring.Engine.CheckMessage.
type engineView struct {
	Env     scoring.Envelope
	Headers []scoring.Header
}

// viewRecorder is an in-process abusemilter (package milter over a
// scoring.Engine) whose body sink records, at end of message, the
// envelope and message the engine is about to judge. Its engine has no
// rules and accepts every message; the MTA relays it to its next hop.
type viewRecorder struct {
	mu    sync.Mutex
	views map[string]engineView // by envelope sender
	addr  string
}

type viewSink struct {
	r *viewRecorder
}

func (viewSink) Header(string, string)       {}
func (viewSink) Write(p []byte) (int, error) { return len(p), nil }
func (viewSink) Abort()                      {}
func (s viewSink) Finish(_ context.Context, env *scoring.Envelope, msg *scoring.Message) {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.views[env.MailFrom] = engineView{Env: *env, Headers: append([]scoring.Header(nil), msg.Headers...)}
}

// startViewRecorder serves the recording milter on a loopback port until
// the test ends.
func startViewRecorder(t *testing.T) *viewRecorder {
	t.Helper()
	any, _ := identity.NewAccount("relay", []string{"any"})
	dir, err := identity.NewDirectory([]*identity.Account{any}, nil,
		[]identity.NetworkAccount{{Prefix: netip.MustParsePrefix("127.0.0.0/8"), Account: "relay"}},
		identity.DirectoryOptions{LoginIsAddress: true})
	if err != nil {
		t.Fatal(err)
	}
	engine := scoring.NewEngine(dir, nil, scoring.Options{Rules: []scoring.Rule{}})
	r := &viewRecorder{views: make(map[string]engineView)}
	srv := milter.New(milter.Options{
		Engine:      engine,
		NewBodySink: func(*scoring.Envelope) milter.BodySink { return viewSink{r} },
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	r.addr = ln.Addr().String()
	return r
}

// view returns the recorded view of the message sent with envelope
// sender from.
func (r *viewRecorder) view(from string) (engineView, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.views[from]
	return v, ok
}
