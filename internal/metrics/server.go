package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultListen is the default address of the metrics and health listener.
const DefaultListen = "127.0.0.1:9357"

// Readiness reports whether the daemon can take mail: nil when ready,
// otherwise an error whose text (short, one line, no secrets) is served
// with the 503. The daemon's function checks that the milter listener is
// up, a configuration is loaded and the rate store is reachable or its fail
// mode is active. It is called once per /readyz request and must not block
// for long.
type Readiness func() error

// Handler returns the HTTP handler serving /metrics, /healthz and /readyz.
// A nil ready means always ready.
func (m *Metrics) Handler(ready Readiness) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		Registry:            m.registry, // counts promhttp's own errors
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				plain(w, http.StatusServiceUnavailable, "not ready: "+oneLine(err.Error()))
				return
			}
		}
		plain(w, http.StatusOK, "ready")
	})
	return mux
}

func plain(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, text)
}

// oneLine keeps a reason on one bounded line.
func oneLine(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if r == '\n' || r == '\r' {
			r = ' '
		}
		out = append(out, r)
		if len(out) >= 300 {
			break
		}
	}
	return string(out)
}

// Server is the metrics and health HTTP server on its own listener.
type Server struct {
	http     *http.Server
	listener net.Listener
	done     chan struct{} // closed when Serve has returned
	serveErr error         // Serve's error, readable once done is closed
}

// Serve listens on addr (host:port) and serves Handler(ready) in the
// background. An empty addr turns the server off: Serve returns a nil
// *Server, whose Addr and Shutdown are safe no-ops.
func (m *Metrics) Serve(addr string, ready Readiness) (*Server, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener on %q: %w", addr, err)
	}
	s := &Server{
		http: &http.Server{
			Handler:           m.Handler(ready),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    16 << 10,
		},
		listener: ln,
		done:     make(chan struct{}),
	}
	go func() {
		err := s.http.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.serveErr = err
		close(s.done)
	}()
	return s, nil
}

// Addr returns the address the server listens on ("" for a nil server),
// e.g. to learn the port chosen for "127.0.0.1:0".
func (s *Server) Addr() string {
	if s == nil {
		return ""
	}
	return s.listener.Addr().String()
}

// Shutdown stops accepting connections and waits, until ctx ends, for
// in-flight requests; then it closes whatever is left.
func (s *Server) Shutdown(ctx context.Context) error {
	if s == nil {
		return nil
	}
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.http.Close()
	}
	<-s.done
	if s.serveErr != nil && err == nil {
		err = fmt.Errorf("metrics server: %w", s.serveErr)
	}
	return err
}
