// Package redistest starts real redis-server processes for tests: a single
// node, a Cluster of masters, a master with a replica and a Sentinel, or a
// TLS-only node. Every server listens on a free loopback port (never 6379),
// keeps no data on disk and is killed when the test ends.
package redistest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readyTimeout bounds waiting for a server to answer.
const readyTimeout = 20 * time.Second

// Binary returns the path of a tool, or skips the test (fails under
// ABUSEMILTER_REQUIRE_TOOLS=1) when it is missing.
func Binary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("ABUSEMILTER_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s is missing: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

// Server is one redis-server process.
type Server struct {
	Port   int
	Dir    string
	args   []string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process has exited
	t      testing.TB
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// FreePort returns a loopback port that is free now, and whose cluster bus
// port (port+10000) is free too.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port == 6379 || port+10000 > 65535 {
			continue
		}
		if bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000)); err == nil {
			bus.Close()
			return port
		}
	}
	t.Fatalf("no free port pair found")
	return 0
}

// Start starts a redis-server on a free port with extra arguments and waits
// until it answers PING.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	s := &Server{Port: FreePort(t), Dir: t.TempDir(), t: t}
	s.args = append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(s.Port), "--save", "", "--appendonly", "no",
		"--dir", s.Dir, "--protected-mode", "no", "--loglevel", "warning"}, extra...)
	s.start()
	t.Cleanup(s.Kill)
	s.WaitReady()
	return s
}

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command(Binary(s.t, "redis-server"), s.args...)
	s.cmd.Dir = s.Dir
	logf, err := os.OpenFile(filepath.Join(s.Dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatalf("redis log: %v", err)
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	exited, cmd := make(chan struct{}), s.cmd
	s.exited = exited
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
}

// WaitReady waits until the server answers PING.
func (s *Server) WaitReady() {
	s.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		out, err := s.Do("PING")
		if (err == nil && strings.Contains(out, "PONG")) || (err != nil && strings.Contains(err.Error(), "NOAUTH")) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on port %d did not answer within %s", s.Port, readyTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server at once (SIGKILL: it saves nothing).
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// Restart starts the server again on the same port, empty.
func (s *Server) Restart() {
	s.t.Helper()
	s.start()
	s.WaitReady()
}

// Do sends one command over a plain RESP connection and returns the raw
// reply text (tests only).
func (s *Server) Do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	return readReply(r)
}

// readReply reads one RESP2 reply as text (arrays joined by newlines).
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := ioReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, _ := strconv.Atoi(line[1:])
		parts := make([]string, 0, max(n, 0))
		for range n {
			p, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

func ioReadFull(r *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Info returns one field of INFO section.
func (s *Server) Info(section, field string) string {
	out, err := s.Do("INFO", section)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && k == field {
			return v
		}
	}
	return ""
}

// WaitFor is testenv.WaitFor, kept here for the many Redis tests that call it.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, timeout, what, cond)
}

// StartCluster starts n masters with cluster mode on, joins them with
// redis-cli --cluster create and waits until every node reports the cluster
// ok.
func StartCluster(t testing.TB, n int) []*Server {
	t.Helper()
	cli := Binary(t, "redis-cli")
	nodes := make([]*Server, n)
	args := []string{"--cluster", "create"}
	for i := range nodes {
		nodes[i] = Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		args = append(args, nodes[i].Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, s := range nodes {
		WaitFor(t, readyTimeout, "cluster_state:ok on "+s.Addr(), func() bool {
			out, err := s.Do("CLUSTER", "INFO")
			return err == nil && strings.Contains(out, "cluster_state:ok")
		})
	}
	return nodes
}

// Sentinel is a master, a replica and one sentinel watching them.
type Sentinel struct {
	Master, Replica, Sentinel *Server
	MasterName                string
}

// StartSentinel starts a master, a replica of it and a sentinel (quorum 1)
// and waits until the sentinel knows the replica.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	m := Start(t)
	r := Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(m.Port))
	WaitFor(t, readyTimeout, "replica in sync", func() bool {
		return r.Info("replication", "master_link_status") == "up"
	})
	sport := FreePort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\n"+
		"sentinel monitor am 127.0.0.1 %d 1\nsentinel down-after-milliseconds am 1000\n"+
		"sentinel failover-timeout am 5000\nsentinel parallel-syncs am 1\n", sport, dir, m.Port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatalf("write sentinel config: %v", err)
	}
	s := &Server{Port: sport, Dir: dir, t: t, args: []string{conf, "--sentinel"}}
	s.start()
	t.Cleanup(s.Kill)
	s.WaitReady()
	WaitFor(t, readyTimeout, "sentinel to see the replica", func() bool {
		out, err := s.Do("SENTINEL", "REPLICAS", "am")
		return err == nil && strings.Contains(out, strconv.Itoa(r.Port))
	})
	return &Sentinel{Master: m, Replica: r, Sentinel: s, MasterName: "am"}
}

// StartTLS starts a TLS-only server with a throwaway self-signed
// certificate and returns a client configuration that trusts it. It skips
// the test when this redis-server build has no TLS support.
func StartTLS(t testing.TB) (*Server, *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM, pool := selfSigned(t)
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	s := &Server{Port: port, Dir: dir, t: t, args: []string{"--bind", "127.0.0.1", "--port", "0", "--tls-port", strconv.Itoa(port),
		"--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", cert, "--tls-auth-clients", "no",
		"--save", "", "--appendonly", "no", "--dir", dir, "--loglevel", "warning"}}
	s.start()
	t.Cleanup(s.Kill)
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	deadline := time.Now().Add(readyTimeout)
	for {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", s.Addr(), cfg)
		if err == nil {
			c.Close()
			return s, cfg
		}
		exited := false
		select {
		case <-s.exited:
			exited = true
		default:
		}
		if exited || time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			if exited && strings.Contains(strings.ToLower(string(log)), "tls") {
				// A build feature, not a missing tool: skip even in CI.
				t.Skipf("this redis-server build has no TLS support: %s", log)
			}
			t.Fatalf("TLS redis-server on port %d did not answer: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// selfSigned makes a throwaway certificate for 127.0.0.1.
func selfSigned(t testing.TB) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redistest"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), pool
}

// Addrs returns the host:port of each server, as Cluster seed nodes.
func Addrs(servers []*Server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.Addr()
	}
	return out
}
