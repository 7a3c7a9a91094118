// Package miltertest serves a milter.Server on a loopback port for the
// length of a test: the one helper that tests of the milter package, the
// daemon's assembly, the load generator and the admin CLI share.
package miltertest

import (
	"errors"
	"net"
	"testing"

	"github.com/abusemilter/abusemilter/milter"
)

// Serve serves srv on a fresh 127.0.0.1:0 listener until the test ends
// and returns the listener's address (host:port). At the end of the test
// the server is closed and Serve's result must be ErrServerClosed.
func Serve(t testing.TB, srv *milter.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("miltertest: listen on loopback: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, milter.ErrServerClosed) {
			t.Errorf("miltertest: Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}
