package perftest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/bench/loadgen"
	"github.com/abusemilter/abusemilter/internal/config"
)

func TestConfigOwnsGeneratedMail(t *testing.T) {
	data, err := Config(ConfigOptions{Customers: 50, Listen: "inet:127.0.0.1:7357", RedisURL: "redis://127.0.0.1:6390"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data, "generated")
	if err != nil {
		t.Fatalf("generated config does not load: %v\n%s", err, data)
	}
	if cfg.Redis == nil || cfg.Redis.URL != "redis://127.0.0.1:6390" {
		t.Errorf("redis = %+v, want the given url", cfg.Redis)
	}
	if cfg.DNS.Enabled {
		t.Error("DNS is on; measurements must not use the network")
	}
	for _, a := range []int{0, 1, 2, 77, 149} {
		login, domain := loadgen.AccountLogin(a), loadgen.AccountDomain(a)
		name := fmt.Sprintf("customer%d", a/loadgen.UsersPerCustomer+1)
		acct, ok := cfg.Identity.Accounts[name]
		if !ok {
			t.Fatalf("no account %q for login %q", name, login)
		}
		if !contains(acct.Logins, login) || !contains(acct.SendAs, domain) {
			t.Errorf("account %q = %+v, want login %q and domain %q", name, acct, login, domain)
		}
	}
	if _, ok := cfg.Identity.Accounts["customer51"]; ok {
		t.Error("account customer51 exists, want 50 customers")
	}
}

func TestConfigRejectsBadOptions(t *testing.T) {
	for _, opts := range []ConfigOptions{{Listen: "inet:127.0.0.1:1"}, {Customers: 1}, {Customers: 1, Listen: "a\"b"}} {
		if _, err := Config(opts); err == nil {
			t.Errorf("Config(%+v) gave no error", opts)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestReadMemoryOfSelf(t *testing.T) {
	m, err := ReadMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.Peak < m.RSS {
		t.Errorf("memory = %+v, want 0 < RSS <= peak", m)
	}
	if _, err := ReadMemory(-1); err == nil {
		t.Error("no error for process -1")
	}
}

func TestGauge(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# HELP go_goroutines x\ngo_goroutines_extra 9\ngo_goroutines 42\nother{a=\"b\"} 1\n")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String() + "/metrics"
	v, err := Gauge(context.Background(), url, "go_goroutines")
	if err != nil || v != 42 {
		t.Errorf("Gauge = %v, %v; want 42", v, err)
	}
	if _, err := Gauge(context.Background(), url, "missing"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing metric: err = %v", err)
	}
}

func TestReadCPUOfSelf(t *testing.T) {
	before, err := ReadCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for {
		for i := range 1_000_000 {
			x += i
		}
		after, err := ReadCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time stayed at %v after 5 s of work (%d)", before, x)
		}
	}
}

func TestOpenFilesOfSelf(t *testing.T) {
	before, err := OpenFiles(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	after, err := OpenFiles(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after != before+1 {
		t.Errorf("open files %d after opening one more, want %d", after, before+1)
	}
}

func TestSessionsCountsConnectionsOnThePort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	count := func() int {
		n, err := Sessions(os.Getpid(), port)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("%d sessions before any connection, want 0 (the listener does not count)", n)
	}
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// The accepted side has the listener's port; the client side does not.
	if n := count(); n != 1 {
		t.Errorf("%d sessions with one accepted connection, want 1", n)
	}
	client.Close()
	server.Close()
	if n := count(); n != 0 {
		t.Errorf("%d sessions after closing, want 0", n)
	}
}
