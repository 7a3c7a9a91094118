package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/internal/console"
	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

// runUserCmd runs "abusectl user ..." with stdin (hashing at bcrypt's
// lowest cost: cost 12 takes seconds under the race detector).
func runUserCmd(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	old := console.HashCost
	console.HashCost = bcrypt.MinCost
	defer func() { console.HashCost = old }()
	var out, errOut bytes.Buffer
	root := newRootCommand(deps{now: time.Now, user: testUser}, &out, &errOut)
	root.SetContext(context.Background())
	root.SetIn(strings.NewReader(stdin))
	code := cli.Execute(root, args)
	return out.String(), errOut.String(), code
}

func TestUserCommands(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	uf := []string{"--users-file", path}
	user := func(stdin string, args ...string) (string, string, int) {
		return runUserCmd(t, stdin, append(append([]string{"user"}, args...), uf...)...)
	}
	if out, errOut, code := user("a-long-password-1\n", "add", "alice", "--role", "operator"); code != exitOK || !strings.Contains(out, "added alice (operator)") {
		t.Fatalf("add: %d %q %q", code, out, errOut)
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("bobs-long-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := user("", "add", "bob", "--password-file", pwFile); code != exitOK {
		t.Fatalf("add bob from a file: %d %q", code, errOut)
	}
	users, err := console.ReadUsers(path)
	if err != nil || len(users) != 2 || users[0].Role != console.RoleOperator || users[1].Role != console.RoleViewer {
		t.Fatalf("the file: %+v %v", users, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), "a-long-password-1") || strings.Contains(string(data), "bobs-long-password") {
		t.Errorf("a password is in the file")
	}
	for _, c := range []struct {
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"a-long-password-1\n", []string{"add", "alice"}, exitFailed, "exists already"},
		{"short\n", []string{"add", "carol"}, exitUsage, "at least 12 characters"},
		{"a-long-password-1\n", []string{"add", "bad name"}, exitUsage, "user name"},
		{"a-long-password-1\n", []string{"add", "carol", "--role", "admin"}, exitUsage, "viewer or operator"},
		{"", []string{"remove", "nobody"}, exitFailed, "no user nobody"},
		{"", []string{"passwd", "nobody"}, exitFailed, "no user nobody"},
		{"", []string{"frob"}, exitUsage, "want add, passwd, remove or list"},
		{"", []string{"add"}, exitUsage, "one NAME"},
	} {
		_, errOut, code := user(c.stdin, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("user %v: exit %d %q, want %d and %q", c.args, code, errOut, c.code, c.want)
		}
	}
	before, _ := os.ReadFile(path)
	if _, errOut, code := user("another-long-password\n", "passwd", "bob"); code != exitOK {
		t.Fatalf("passwd: %d %q", code, errOut)
	}
	after, _ := os.ReadFile(path)
	if bytes.Equal(before, after) {
		t.Errorf("passwd changed nothing")
	}
	if _, _, code := user("", "remove", "alice"); code != exitOK {
		t.Fatalf("remove: %d", code)
	}
	out, _, code := user("", "list", "--json")
	var v userListJSON
	if code != exitOK || json.Unmarshal([]byte(out), &v) != nil || len(v.Users) != 1 || v.Users[0] != (userJSON{"bob", "viewer"}) {
		t.Errorf("list --json: %d %s", code, out)
	}
	if strings.Contains(out, "$2a$") {
		t.Errorf("list shows hashes")
	}
}

// serveFixture is a redis and a config with a console user.
func serveFixture(t *testing.T) (cfg, users string) {
	t.Helper()
	rs := redistest.Start(t)
	users = filepath.Join(t.TempDir(), "users")
	cfg = writeConfig(t, testConfig+"console:\n  listen: 127.0.0.1:0\n  users_file: %s\n", rs.Addr(), users)
	if _, errOut, code := runUserCmd(t, "console-password-1\n", "user", "add", "op", "--role", "operator", "--config", cfg); code != exitOK {
		t.Fatalf("user add: %s", errOut)
	}
	return cfg, users
}

var consoleURL = regexp.MustCompile(`(https?)://(\S+?)/ `)

// startServe runs "abusectl serve" until the test ends and returns its
// base URL.
func startServe(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut testenv.SyncBuffer
	root := newRootCommand(deps{now: time.Now, user: testUser}, &out, &errOut)
	ctx, cancel := context.WithCancel(context.Background())
	root.SetContext(ctx)
	done := make(chan int, 1)
	go func() { done <- cli.Execute(root, append(args, "--log-format", "json")) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("serve exited %d after the interrupt: %s", code, errOut.String())
			}
		case <-time.After(10 * time.Second):
			t.Errorf("serve did not stop")
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := consoleURL.FindStringSubmatch(out.String()); m != nil {
			return m[1] + "://" + m[2]
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d: %s", code, errOut.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not start: %s %s", out.String(), errOut.String())
	return ""
}

func TestServeRefusals(t *testing.T) {
	cfg, _ := serveFixture(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "0.0.0.0:0"}, "not a loopback address"},
		{[]string{"--listen", "192.0.2.1:8443", "--tls-cert", "/x.pem"}, "tls_cert and tls_key go together"},
		{[]string{"--users-file", filepath.Join(t.TempDir(), "none")}, "abusectl user add"},
		{[]string{"--listen", "nope"}, "want HOST:PORT"},
	} {
		_, errOut, code := runCmd(t, append([]string{"--config", cfg, "serve"}, c.args...)...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("serve %v: exit %d %q, want 2 and %q", c.args, code, errOut, c.want)
		}
	}
	// Explicitly allowed, plain HTTP on every address (reached here by
	// loopback).
	base := startServe(t, "--config", cfg, "serve", "--listen", "0.0.0.0:0", "--allow-insecure-non-loopback")
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	resp, err := http.Get("http://127.0.0.1:" + port + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET /login: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestServeTLS(t *testing.T) {
	cfg, _ := serveFixture(t)
	certFile, keyFile, pool := selfSigned(t)
	base := startServe(t, "--config", cfg, "serve", "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("not HTTPS: %s", base)
	}
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("no HSTS")
	}
	var found bool
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-abusedesk-login" {
			found = true
			if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
				t.Errorf("cookie %+v", c)
			}
		}
	}
	if !found {
		t.Errorf("no __Host- cookie: %v", resp.Cookies())
	}
	// Plain HTTP to the TLS port gets nothing useful.
	plain, err := http.Get(strings.Replace(base, "https://", "http://", 1) + "/login")
	if err == nil {
		plain.Body.Close()
		if plain.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP served the login page")
		}
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "console test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
