package milter

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ListenOptions says how to open the listening socket.
type ListenOptions struct {
	// AllowNonLoopback must be set to listen on a non-loopback inet address.
	AllowNonLoopback bool
	// SocketMode is applied to a unix socket with chmod (not left to the
	// umask); zero means 0660.
	SocketMode os.FileMode
	// SocketGroup, when set, is applied to a unix socket with chown.
	SocketGroup string
}

// Listen opens "inet:HOST:PORT" or "unix:/path". A stale unix socket file
// (one nobody listens on) is removed first; a path that is not a socket, or
// a socket another process serves, is an error.
func Listen(spec string, opts ListenOptions) (net.Listener, error) {
	network, addr, err := ParseListenAddr(spec)
	if err != nil {
		return nil, err
	}
	if network == "tcp" {
		if !opts.AllowNonLoopback && !IsLoopback(addr) {
			return nil, fmt.Errorf("listen %q: not a loopback address; allow_non_loopback must be set to listen on it", spec)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen %q: %w", spec, err)
		}
		return ln, nil
	}
	return listenUnix(spec, addr, opts)
}

func listenUnix(spec, path string, opts ListenOptions) (net.Listener, error) {
	if err := removeStaleSocket(path); err != nil {
		return nil, fmt.Errorf("listen %q: %w", spec, err)
	}
	mode := opts.SocketMode
	if mode == 0 {
		mode = 0o660
	}
	ln, err := listenUnixMode(path, mode)
	if err != nil {
		return nil, fmt.Errorf("listen %q: %w", spec, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen %q: setting socket mode %o: %w", spec, mode, err)
	}
	if opts.SocketGroup != "" {
		gid, err := lookupGroup(opts.SocketGroup)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen %q: %w", spec, err)
		}
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen %q: setting socket group %q: %w", spec, opts.SocketGroup, err)
		}
	}
	return ln, nil
}

// umaskMu serialises the umask changes of listenUnixMode within this process.
var umaskMu sync.Mutex

// listenUnixMode binds a unix socket that is never more open than mode:
// bind creates the file with the process umask's permissions (0777 under
// umask 000), so the umask is narrowed to mode for the bind itself instead
// of leaving a window before the chmod. The umask is process-wide; other
// files created in that instant get at most mode too.
func listenUnixMode(path string, mode os.FileMode) (net.Listener, error) {
	umaskMu.Lock()
	defer umaskMu.Unlock()
	old := syscall.Umask(0o777 &^ int(mode.Perm()))
	defer syscall.Umask(old)
	return net.Listen("unix", path)
}

// lookupGroup resolves a group name or numeric id.
func lookupGroup(name string) (int, error) {
	if gid, err := strconv.Atoi(name); err == nil {
		return gid, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("socket group %q: %w", name, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("socket group %q: gid %q is not a number", name, g.Gid)
	}
	return gid, nil
}

// removeStaleSocket removes a unix socket file left behind by a process
// that is gone.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%q exists and is not a socket; not removing it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%q: another process is listening on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("%q: checking whether the socket is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale socket: %w", err)
	}
	return nil
}

// ParseListenAddr splits "inet:HOST:PORT" or "unix:/path" into a Go network
// ("tcp" or "unix") and address.
func ParseListenAddr(spec string) (network, addr string, err error) {
	kind, rest, ok := strings.Cut(spec, ":")
	switch {
	case !ok:
		return "", "", fmt.Errorf("listen address %q: want inet:HOST:PORT or unix:/path", spec)
	case kind == "inet" || kind == "inet6" || kind == "tcp":
		if _, _, err := net.SplitHostPort(rest); err != nil {
			return "", "", fmt.Errorf("listen address %q: want inet:HOST:PORT: %w", spec, err)
		}
		return "tcp", rest, nil
	case kind == "unix" || kind == "local":
		if !strings.HasPrefix(rest, "/") {
			return "", "", fmt.Errorf("listen address %q: unix socket path must be absolute", spec)
		}
		return "unix", rest, nil
	}
	return "", "", fmt.Errorf("listen address %q: unknown kind %q (want inet or unix)", spec, kind)
}

// IsLoopback reports whether host:port names a loopback host.
func IsLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
