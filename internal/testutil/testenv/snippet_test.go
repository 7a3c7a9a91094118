package testenv

import (
	"bufio"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// readSnippet returns the "name = value" settings of a main.cf snippet;
// with commented, also the settings in "#name = value" lines.
func readSnippet(t *testing.T, path string, commented bool) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("read snippet: %v", err)
	}
	defer f.Close()
	settings := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if commented {
			if !strings.HasPrefix(line, "#") || strings.HasPrefix(line, "# ") || strings.HasPrefix(line, "#\t") {
				continue
			}
			line = line[1:]
		} else if strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok || strings.ContainsAny(strings.TrimSpace(name), " \t") || strings.TrimSpace(name) == "" {
			continue
		}
		settings[strings.TrimSpace(name)] = strings.TrimSpace(value)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read snippet: %v", err)
	}
	return settings
}

// TestShippedPostfixSnippet runs Postfix with the settings of
// configs/postfix/main.cf.snippet (its inet form, then its unix-socket
// form), the milter address swapped for the test milter's, and checks that
// both SMTP and sendmail-command mail reach the milter.
func TestShippedPostfixSnippet(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "configs", "postfix", "main.cf.snippet")
	const shippedInet = "inet:127.0.0.1:7357"

	t.Run("inet", func(t *testing.T) {
		settings := readSnippet(t, path, false)
		for _, name := range []string{"smtpd_milters", "non_smtpd_milters"} {
			if !strings.Contains(settings[name], shippedInet) {
				t.Fatalf("%s: %s = %q does not name %s", path, name, settings[name], shippedInet)
			}
		}
		tm := startTestMilter(t)
		for name, value := range settings {
			settings[name] = strings.ReplaceAll(value, shippedInet, tm.Addr())
		}
		checkSnippetInstance(t, tm, settings, nil)
	})

	t.Run("unix socket under the queue directory", func(t *testing.T) {
		settings := readSnippet(t, path, true)
		value := settings["smtpd_milters"]
		if value == "" || settings["non_smtpd_milters"] != value {
			t.Fatalf("%s: commented unix-socket lines missing or different: %q", path, settings)
		}
		sock := strings.TrimPrefix(strings.Fields(strings.Trim(value, "{ "))[0], "unix:")
		sock = strings.TrimSuffix(sock, ",")
		if filepath.IsAbs(sock) {
			t.Fatalf("snippet's socket %q should be relative to the queue directory", sock)
		}
		checkSnippetInstance(t, nil, settings, func(t *testing.T, pf *Postfix) *testMilter {
			// What the postmaster does: a directory under the queue
			// directory that Postfix's group may enter, a socket it may use.
			dir := filepath.Join(pf.QueueDir, filepath.Dir(sock))
			postfixGID, err := lookupGID("postfix")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(dir, 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(dir, 0, postfixGID); err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("unix", filepath.Join(pf.QueueDir, sock))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(filepath.Join(pf.QueueDir, sock), 0, postfixGID); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(pf.QueueDir, sock), 0o660); err != nil {
				t.Fatal(err)
			}
			return serveTestMilter(t, ln)
		})
	})
}

// checkSnippetInstance starts Postfix with settings, then (when tm is nil)
// the milter from startMilter, and sends one SMTP and one sendmail-command
// message that the milter must reject.
func checkSnippetInstance(t *testing.T, tm *testMilter, settings map[string]string, startMilter func(*testing.T, *Postfix) *testMilter) {
	t.Helper()
	if _, err := user.Lookup("postfix"); err != nil {
		Unavailable(t, "test needs the postfix user: %v", err)
	}
	sink := StartSink(t)
	pf := StartPostfix(t, PostfixOptions{RelayTo: sink.Addr(), ExtraMainCF: settings})
	if tm == nil {
		tm = startMilter(t, pf)
	}
	res := Swaks(t, SwaksOptions{Server: pf.Addr(), From: "reject-snippet@example.com", To: []string{"bob@example.org"}})
	if got := res.EndOfDataReply(); got != testReplyReject {
		t.Errorf("SMTP: end-of-data reply %q, want %q:\n%s", got, testReplyReject, res.Transcript)
	}
	if out, err := pf.Sendmail(t, "snippet-local@mta.test", []string{"bob@example.org"}, []byte("Subject: snippet\n\nx\n")); err != nil {
		t.Fatalf("sendmail: %v\n%s", err, out)
	}
	e := tm.waitEvent(t, "eom", "snippet-local@mta.test")
	if e.Macros["{client_addr}"] != "127.0.0.1" {
		t.Errorf("sendmail command: {client_addr}=%q, want 127.0.0.1", e.Macros["{client_addr}"])
	}
	sink.WaitFor(t, waitTimeout, "the sendmail-command message", func(m SinkMessage) bool { return m.Header("Subject") == "snippet" })
	if strings.Contains(pf.Log(), "warning: connect to Milter service") {
		t.Errorf("postfix could not reach the milter:\n%s", pf.Log())
	}
}
