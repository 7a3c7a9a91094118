package milter_test

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/abusemilter/abusemilter/milter"
)

// TestSocketNeverWiderThanMode: under a umask of 000 a freshly bound socket
// would be 0777 until it is chmod-ed; a watcher that stats the path while
// Listen runs must never see a mode other than the configured one.
func TestSocketNeverWiderThanMode(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "milter.sock")
	const mode = 0o600
	var stop atomic.Bool
	var wider atomic.Uint32
	var seen atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			if fi, err := os.Lstat(path); err == nil {
				seen.Add(1)
				if fi.Mode().Perm() != mode {
					wider.Store(uint32(fi.Mode().Perm()))
				}
			}
		}
	})
	for range 300 {
		ln, err := milter.Listen("unix:"+path, milter.ListenOptions{SocketMode: mode})
		if err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
		ln.Close()
		if wider.Load() != 0 {
			break
		}
	}
	stop.Store(true)
	wg.Wait()
	if m := wider.Load(); m != 0 {
		t.Fatalf("the socket existed with mode %o before it got %o (the umask's mode, open to others)", m, mode)
	}
	t.Logf("socket seen %d times, never wider than %o", seen.Load(), mode)
}
