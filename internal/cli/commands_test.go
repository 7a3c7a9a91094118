package cli_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// commands are the four built commands of the module.
var commands = []string{"abusemilter", "abusescan", "abusectl", "milterload"}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// built builds every command once per test binary, into a temporary
// directory, and returns the path of name.
func built(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "abusemilter-cli-test-")
		if buildErr != nil {
			return
		}
		args := []string{"build", "-o", binDir + "/"}
		for _, c := range commands {
			args = append(args, "github.com/abusemilter/abusemilter/cmd/"+c)
		}
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			buildErr = errors.New(err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("building the commands: %v", buildErr)
	}
	return filepath.Join(binDir, name)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// runBinary runs a built command with no config around it and returns its
// exit code and output.
func runBinary(t *testing.T, bin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "ABUSEMILTER_CONFIG=", "NO_COLOR=1")
	cmd.Dir = t.TempDir()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return code, out.String(), errOut.String()
}

// TestEveryCommandSpeaksTheSameCLI runs each built command the ways a
// postmaster would and holds them to one behaviour.
func TestEveryCommandSpeaksTheSameCLI(t *testing.T) {
	for _, name := range commands {
		t.Run(name, func(t *testing.T) {
			bin := built(t, name)
			for _, args := range [][]string{{"--help"}, {"help", "completion"}, {"completion", "--help"}} {
				code, out, errOut := runBinary(t, bin, args...)
				if code != 0 || errOut != "" || !strings.Contains(out, "Usage:") {
					t.Errorf("%s %v: exit %d, stderr %q, stdout %.80q: want exit 0 and the help on stdout", name, args, code, errOut, out)
				}
			}
			if code, out, _ := runBinary(t, bin, "--help"); code == 0 && !strings.Contains(out, "Exit") {
				t.Errorf("%s --help does not document its exit codes:\n%s", name, out)
			}
			code, out, errOut := runBinary(t, bin, "--version")
			if code != 0 || !strings.HasPrefix(out, name+" ") || strings.Count(out, "\n") != 1 {
				t.Errorf("%s --version: exit %d, stdout %q, stderr %q", name, code, out, errOut)
			}
			code, out, errOut = runBinary(t, bin, "--no-such-flag")
			lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
			if code != 2 || out != "" || len(lines) > 2 || !strings.Contains(lines[0], "--no-such-flag") {
				t.Errorf("%s --no-such-flag: exit %d, stdout %q, stderr %q: want exit 2 and at most two lines naming the flag", name, code, out, errOut)
			}
			// A flag after an argument is read as a flag.
			_, withDesc, _ := runBinary(t, bin, "completion", "bash")
			code, noDesc, errOut := runBinary(t, bin, "completion", "bash", "--no-descriptions")
			if code != 0 || errOut != "" || noDesc == withDesc || !strings.Contains(noDesc, "__start_"+name) {
				t.Errorf("%s completion bash --no-descriptions: exit %d, stderr %q: the flag after the argument was not applied", name, code, errOut)
			}
		})
	}
}

// TestCompletionScripts generates the bash, zsh and fish scripts of every
// command from its command tree; bash parses its own.
func TestCompletionScripts(t *testing.T) {
	bash, bashErr := exec.LookPath("bash")
	for _, name := range commands {
		bin := built(t, name)
		for _, shell := range []string{"bash", "zsh", "fish"} {
			code, script, errOut := runBinary(t, bin, "completion", shell)
			if code != 0 || errOut != "" || !strings.Contains(script, name) || len(script) < 500 {
				t.Errorf("%s completion %s: exit %d, %d bytes, stderr %q", name, shell, code, len(script), errOut)
				continue
			}
			if shell != "bash" {
				continue
			}
			if bashErr != nil {
				t.Logf("bash not installed: %s's bash script not parsed", name)
				continue
			}
			path := filepath.Join(t.TempDir(), name+".bash")
			if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(bash, "-n", path).CombinedOutput(); err != nil {
				t.Errorf("bash -n on %s's completion script: %v\n%s", name, err, out)
			}
		}
		// The scripts ask the command itself: subcommands and the values
		// of enumerated flags come from the one command tree.
		code, out, _ := runBinary(t, bin, "__complete", "")
		if code != 0 || !strings.Contains(out, "completion") {
			t.Errorf("%s __complete \"\": exit %d, %q: the subcommands are not offered", name, code, out)
		}
	}
	for name, args := range map[string][]string{
		"abusemilter": {"__complete", "--log-format", ""},
		"abusescan":   {"__complete", "--format", ""},
	} {
		code, out, _ := runBinary(t, built(t, name), args...)
		if code != 0 || !strings.Contains(out, "json") {
			t.Errorf("%s %v: exit %d, %q: the enumerated values are not offered", name, args, code, out)
		}
	}
}

// TestManPages writes the man pages of every command from its tree.
func TestManPages(t *testing.T) {
	for _, name := range commands {
		dir := t.TempDir()
		code, _, errOut := runBinary(t, built(t, name), "man", dir)
		if code != 0 {
			t.Fatalf("%s man: exit %d, %s", name, code, errOut)
		}
		page, err := os.ReadFile(filepath.Join(dir, name+".1"))
		if err != nil {
			t.Fatalf("%s man: %v", name, err)
		}
		if !bytes.Contains(page, []byte(".TH \""+strings.ToUpper(name)+"\" \"1\"")) || !bytes.Contains(page, []byte(".SH OPTIONS")) {
			t.Errorf("%s.1 is not a man page with options:\n%.300s", name, page)
		}
	}
}
