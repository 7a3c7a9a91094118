package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// RequireToolsEnv is the environment variable that turns a missing tool
// from a skipped test into a failed one. CI sets it to "1".
const RequireToolsEnv = "ABUSEMILTER_REQUIRE_TOOLS"

// toolDirs are searched after $PATH: MTA binaries live in sbin directories
// that a non-root PATH often lacks.
var toolDirs = []string{"/usr/sbin", "/sbin", "/usr/lib/postfix/sbin"}

// ToolsRequired reports whether missing tools must fail tests instead of
// skipping them (ABUSEMILTER_REQUIRE_TOOLS=1).
func ToolsRequired() bool {
	return os.Getenv(RequireToolsEnv) == "1"
}

// Unavailable stops the test because something it needs is missing: it
// skips with the message, or fails when ABUSEMILTER_REQUIRE_TOOLS=1.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if ToolsRequired() {
		t.Fatalf("%s (%s=1, so this is a failure, not a skip)", msg, RequireToolsEnv)
	}
	t.Skipf("%s (set %s=1 to make this a failure)", msg, RequireToolsEnv)
}

// LookTool returns the absolute path of an executable, searching $PATH and
// then the usual sbin directories.
func LookTool(name string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		return path, nil
	}
	for _, dir := range toolDirs {
		path := filepath.Join(dir, name)
		if info, err := os.Stat(path); err == nil && !info.IsDir() && info.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", fmt.Errorf("executable %q not found in $PATH or %v", name, toolDirs)
}

// RequireTool returns the path of the executable name, or stops the test
// (skip, or fail under ABUSEMILTER_REQUIRE_TOOLS=1) when it is not installed.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := LookTool(name)
	if err != nil {
		Unavailable(t, "test needs %q: %v", name, err)
	}
	return path
}

// RequireRoot stops the test unless it runs as root: a real MTA switches
// to its own mail_owner user and cannot be started otherwise.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "test needs root: %s", why)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// port is released before returning, so a program started next can bind it;
// another process could in principle take it first.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port on 127.0.0.1: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns "127.0.0.1:PORT" for a port from FreePort.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// WaitFor polls cond every few milliseconds until it holds, failing the
// test with what after timeout: the way tests wait for something another
// goroutine or process does, instead of sleeping a guessed time.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// CorpusEnv names the folder of the shared real-mail corpus (its
// spamassassin/{ham,hard-ham,spam} folders); .ci/run sets it.
const CorpusEnv = "ABUSEMILTER_CORPUS"

// Corpus returns the corpus folder, or stops the test when CorpusEnv is
// not set: a skip, or a failure under ABUSEMILTER_REQUIRE_TOOLS=1.
func Corpus(t testing.TB) string {
	t.Helper()
	root := os.Getenv(CorpusEnv)
	if root == "" {
		Unavailable(t, "%s is not set: the test reads the shared real-mail corpus", CorpusEnv)
	}
	return root
}
