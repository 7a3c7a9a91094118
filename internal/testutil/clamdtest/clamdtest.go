// Package clamdtest starts real clamd processes (Debian's clamav-daemon)
// for tests: each listens on a private unix socket in a directory of its
// own and loads only a signature database the package writes itself (the
// EICAR test file's hash and a test-specific body signature), so that
// nothing is downloaded and no system clamd or freshclam is involved. The
// process is killed when the test ends.
package clamdtest

import (
	"bufio"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

// EICAR is the EICAR anti-virus test file (68 bytes).
const EICAR = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// Marker is a byte string the test signature TestSignature matches
// anywhere in a file.
const Marker = "ABUSEMILTER-CLAMD-TEST-MARKER-5a1e"

// Signature names as clamd reports them (it adds ".UNOFFICIAL" to
// signatures that are not from ClamAV's own databases).
const (
	EICARSignature = "Eicar-Test-Signature"
	TestSignature  = "Abusemilter.Test.Marker"
	Unofficial     = ".UNOFFICIAL"
)

// readyTimeout bounds clamd's start (loading the two signatures is quick;
// the engine's own start-up is not).
const readyTimeout = 60 * time.Second

// Server is one clamd process.
type Server struct {
	Dir    string
	Socket string
	conf   string
	bin    string
	cmd    *exec.Cmd
	exited chan struct{}
	t      testing.TB
}

// Address is the server's address in the config's form: "unix:/path".
func (s *Server) Address() string { return "unix:" + s.Socket }

// Options tune a Server.
type Options struct {
	// StreamMaxLength is clamd's cap on an INSTREAM stream (default 100M).
	StreamMaxLength string
}

// Start writes a config and a signature database and starts clamd. The
// test is skipped (failed under ABUSEMILTER_REQUIRE_TOOLS=1) without clamd.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := testenv.RequireTool(t, "clamd")
	if opts.StreamMaxLength == "" {
		opts.StreamMaxLength = "100M"
	}
	// A short path: unix socket names are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "clamdtest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum([]byte(EICAR))
	files := map[string]string{
		// MD5:size:name (clamav signatures(5), .hdb).
		"eicar.hdb": fmt.Sprintf("%s:%d:%s\n", hex.EncodeToString(sum[:]), len(EICAR), EICARSignature),
		// Name:TargetType:Offset:HexSignature (.ndb): the marker, and the
		// EICAR string, anywhere (the hash alone misses EICAR when a
		// decoder hands clamd the file with a line end added).
		"test.ndb": fmt.Sprintf("%s:0:*:%s\n%s:0:*:%s\n", TestSignature, hex.EncodeToString([]byte(Marker)),
			EICARSignature, hex.EncodeToString([]byte(EICAR))),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(db, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{Dir: dir, Socket: filepath.Join(dir, "clamd.sock"), conf: filepath.Join(dir, "clamd.conf"), bin: bin, t: t}
	conf := strings.Join([]string{
		"LocalSocket " + s.Socket,
		"LocalSocketMode 666",
		"DatabaseDirectory " + db,
		"TemporaryDirectory " + dir,
		"LogFile " + filepath.Join(dir, "clamd.log"),
		"Foreground yes",
		"StreamMaxLength " + opts.StreamMaxLength,
		"MaxThreads 20",
		"SelfCheck 3600",
		"Bytecode no",
	}, "\n") + "\n"
	if os.Geteuid() == 0 {
		// clamd would switch to the clamav user, which may not read dir.
		conf += "User root\n"
	}
	if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s.start()
	t.Cleanup(s.Kill)
	return s
}

// start runs clamd and waits until it answers PING.
func (s *Server) start() {
	s.t.Helper()
	os.Remove(s.Socket)
	s.cmd = exec.Command(s.bin, "--config-file="+s.conf)
	out, err := os.Create(filepath.Join(s.Dir, "clamd.out"))
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting clamd: %v", err)
	}
	exited, cmd := make(chan struct{}), s.cmd
	s.exited = exited
	go func() { _ = cmd.Wait(); out.Close(); close(exited) }()
	deadline := time.Now().Add(readyTimeout)
	for {
		if Ping(s.Socket) == nil {
			return
		}
		select {
		case <-exited:
			s.t.Fatalf("clamd exited at start:\n%s", s.Log())
		case <-time.After(50 * time.Millisecond): // poll interval while waiting for the socket
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("clamd did not answer PING within %s:\n%s", readyTimeout, s.Log())
		}
	}
}

// Ping sends PING to a clamd socket and expects PONG.
func Ping(socket string) error {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("nPING\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// PID is the running clamd's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Kill kills clamd (SIGKILL) and waits for it to exit.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// Restart starts clamd again on the same socket after Kill.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// Log returns clamd's log and output so far.
func (s *Server) Log() string {
	var b strings.Builder
	for _, name := range []string{"clamd.log", "clamd.out"} {
		data, _ := os.ReadFile(filepath.Join(s.Dir, name))
		b.Write(data)
	}
	return b.String()
}
