package milter_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/milter"
)

func TestListenInet(t *testing.T) {
	ln, err := milter.Listen("inet:127.0.0.1:0", milter.ListenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	for _, spec := range []string{"inet:0.0.0.0:0", "inet:[::]:0", "inet:192.0.2.1:7357"} {
		if _, err := milter.Listen(spec, milter.ListenOptions{}); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("Listen(%q) = %v, want a loopback refusal", spec, err)
		}
	}
	ln, err = milter.Listen("inet:0.0.0.0:0", milter.ListenOptions{AllowNonLoopback: true})
	if err != nil {
		t.Fatalf("with allow_non_loopback: %v", err)
	}
	ln.Close()
	for _, spec := range []string{"127.0.0.1:7357", "inet:127.0.0.1", "unix:relative.sock", "tcpx:1:2"} {
		if _, err := milter.Listen(spec, milter.ListenOptions{}); err == nil || !strings.Contains(err.Error(), spec) {
			t.Errorf("Listen(%q) = %v, want an error naming the input", spec, err)
		}
	}
}

func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "milter.sock")
	ln, err := milter.Listen("unix:"+path, milter.ListenOptions{SocketMode: 0o640, SocketGroup: "0"})
	if err != nil {
		if os.Getuid() != 0 && strings.Contains(err.Error(), "group") {
			t.Skip("cannot chown to group 0 as non-root")
		}
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Fatalf("socket mode %o, want 0640 whatever the umask", fi.Mode().Perm())
	}
	// A live socket is not removed.
	if _, err := milter.Listen("unix:"+path, milter.ListenOptions{}); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second Listen on a live socket = %v", err)
	}
	// A stale one (its listener gone, the file left behind) is.
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket file missing: %v", err)
	}
	ln, err = milter.Listen("unix:"+path, milter.ListenOptions{})
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()
	// A regular file is never removed.
	file := filepath.Join(dir, "not-a-socket")
	os.WriteFile(file, []byte("data"), 0o600)
	if _, err := milter.Listen("unix:"+file, milter.ListenOptions{}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a regular file = %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "data" {
		t.Fatal("the regular file was touched")
	}
}
