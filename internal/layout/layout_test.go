package layout

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/abusemilter/abusemilter"

// pkg is what `go list -json` says of one package.
type pkg struct {
	ImportPath string
	Name       string
	Imports    []string // direct, product code only (not tests)
	Deps       []string // transitive
	Doc        string
	GoFiles    []string
}

// listModule lists every package of the module with its imports.
func listModule(t *testing.T) map[string]pkg {
	t.Helper()
	touchSources(t)
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[strings.TrimPrefix(p.ImportPath, module+"/")] = p
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// touchSources stats every Go file of the module, so that go test's cache
// keys this test's result on them: the graph comes from a go list child
// process, whose reads the cache does not see.
func touchSources(t *testing.T) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			_, err = os.Stat(path)
		}
		return err
	})
	if err != nil {
		t.Fatalf("walking the module's sources: %v", err)
	}
}

// ours returns the module's packages among paths, without the module prefix.
func ours(paths []string) []string {
	var out []string
	for _, p := range paths {
		if rest, ok := strings.CutPrefix(p, module+"/"); ok {
			out = append(out, rest)
		}
	}
	return out
}

func isTestSupport(p string) bool {
	return strings.HasPrefix(p, "internal/testutil/") || strings.HasPrefix(p, "internal/bench/")
}

func TestImportGraph(t *testing.T) {
	pkgs := listModule(t)
	for _, name := range []string{"identity", "scoring", "ratelimit", "milter", "internal/daemon", "internal/config"} {
		if _, ok := pkgs[name]; !ok {
			t.Fatalf("package %s is missing from the layout", name)
		}
	}
	if deps := ours(pkgs["identity"].Deps); len(deps) > 0 {
		t.Errorf("identity must be the leaf, but it imports %v", deps)
	}
	for _, name := range []string{"scoring", "ratelimit"} {
		for _, d := range ours(pkgs[name].Deps) {
			if strings.HasPrefix(d, "internal/") {
				t.Errorf("%s imports %s: the engine's parts import nothing under internal/", name, d)
			}
		}
	}
	for name, p := range pkgs {
		deps := ours(p.Deps)
		if !isTestSupport(name) && name != "cmd/milterload" {
			for _, d := range deps {
				if isTestSupport(d) {
					t.Errorf("product package %s imports test or benchmark support %s", name, d)
				}
			}
		}
		if !strings.HasPrefix(name, "cmd/") && slices.ContainsFunc(deps, func(d string) bool { return strings.HasPrefix(d, "cmd/") }) {
			t.Errorf("%s imports a command", name)
		}
		if slices.Contains(ours(p.Imports), "milter") && !strings.HasPrefix(name, "cmd/") &&
			name != "internal/daemon" && !isTestSupport(name) {
			t.Errorf("%s imports milter/: only the daemon's assembly, the commands and test support may", name)
		}
		if len(p.GoFiles) > 0 && strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no doc comment saying what it owns", name)
		}
	}
}
