package loadgen

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/emersion/go-milter"
)

// LocalServer is a go-milter server running in this process on a loopback
// port or a unix socket in a fresh temporary directory.
type LocalServer struct {
	Target Target // where clients reach it
	ln     net.Listener
	dir    string
	done   chan error
}

// NewNoOpServer returns a go-milter server whose milter accepts every message
// (milter.NoOpMilter) and that negotiates what a header-adding policy milter
// negotiates: the add/change header actions and a macro list per stage, so
// that a ceiling measured with it includes the same negotiation.
func NewNoOpServer() *milter.Server {
	return &milter.Server{
		NewMilter: func() milter.Milter { return milter.NoOpMilter{} },
		Actions:   milter.OptAddHeader | milter.OptChangeHeader | milter.OptSetSymList,
		SymList: map[milter.Stage][]string{
			milter.StageConnect:  {"j", "{daemon_name}", "{client_addr}", "{client_name}"},
			milter.StageHelo:     {"{client_addr}", "{client_name}"},
			milter.StageMailFrom: {"i", "{auth_type}", "{auth_authen}", "{client_addr}", "{client_name}", "{mail_addr}"},
			milter.StageRcptTo:   {"i", "{auth_authen}", "{rcpt_addr}"},
			milter.StageEOH:      {"i", "{auth_authen}"},
			milter.StageEOM:      {"i", "{auth_authen}", "{client_addr}"},
		},
	}
}

// StartNoOp starts NewNoOpServer on network "tcp" (127.0.0.1, a free port)
// or "unix".
func StartNoOp(network string) (*LocalServer, error) {
	return StartServer(network, NewNoOpServer())
}

// StartServer serves srv on network "tcp" (127.0.0.1, a free port) or
// "unix" (a socket in a new temporary directory) until Close.
func StartServer(network string, srv *milter.Server) (*LocalServer, error) {
	s := &LocalServer{done: make(chan error, 1)}
	var err error
	switch network {
	case "tcp":
		s.ln, err = net.Listen("tcp", "127.0.0.1:0")
	case "unix":
		s.dir, err = os.MkdirTemp("", "milterload-")
		if err != nil {
			return nil, fmt.Errorf("start milter server: %w", err)
		}
		s.ln, err = net.Listen("unix", filepath.Join(s.dir, "milter.sock"))
	default:
		return nil, fmt.Errorf("start milter server: network %q: want tcp or unix", network)
	}
	if err != nil {
		s.removeDir()
		return nil, fmt.Errorf("start milter server: %w", err)
	}
	s.Target = Target{Network: network, Address: s.ln.Addr().String()}
	go func() { s.done <- srv.Serve(s.ln) }()
	return s, nil
}

// Close stops accepting connections and waits for the accept loop to end.
// Sessions in progress end when their clients hang up. (It closes the
// listener itself: milter.Server.Close races with Serve.)
func (s *LocalServer) Close() error {
	err := s.ln.Close()
	serveErr := <-s.done
	s.removeDir()
	if errors.Is(serveErr, net.ErrClosed) {
		serveErr = nil
	}
	return errors.Join(err, serveErr)
}

func (s *LocalServer) removeDir() {
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
