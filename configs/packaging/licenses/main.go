// Command licenses writes the copyright file of abusemilter's packages
// (/usr/share/doc/abusemilter/copyright, in Debian's machine-readable
// format): abusemilter's own license, then the license text of every Go
// module compiled into the product commands, and of Go itself, read from
// the module cache (go list -deps -json). It fails when a module has no
// license file, or one it does not recognise as a permissive license known
// to go with Apache-2.0, so that a new dependency cannot slip into a
// package unlicensed.
//
// Usage (from the repository root; make package runs it):
//
//	go run ./configs/packaging/licenses -o dist/pkg/copyright ./cmd/abusemilter ./cmd/abusescan ./cmd/abusectl
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

func main() {
	out := flag.String("o", "", "write the copyright file here (default: standard output)")
	flag.Parse()
	pkgs := flag.Args()
	if len(pkgs) == 0 {
		pkgs = []string{"./cmd/abusemilter", "./cmd/abusescan", "./cmd/abusectl"}
	}
	mods, err := Modules(pkgs)
	if err == nil {
		var b bytes.Buffer
		if err = Write(&b, mods); err == nil {
			if *out == "" {
				_, err = os.Stdout.Write(b.Bytes())
			} else {
				err = os.WriteFile(*out, b.Bytes(), 0o644)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "licenses: %v\n", err)
		os.Exit(1)
	}
}

// Module is a Go module compiled into the commands, with its license.
type Module struct {
	Path, Version string
	// Dir is where its source is (the module cache, or the replacement's
	// directory).
	Dir string
	// License is the SPDX name found for its license text.
	License string
	// Files are its license and notice files, relative to Dir.
	Files []string
	Texts []string
}

// listed is the part of `go list -json` read here.
type listed struct {
	Standard bool
	Module   *struct {
		Path, Version, Dir string
		Main               bool
		Replace            *struct{ Path, Version, Dir string }
	}
}

// Modules lists the modules the packages are built from (not the main
// module), plus Go itself (its runtime and standard library are compiled
// in), each with its license texts.
func Modules(pkgs []string) ([]Module, error) {
	cmd := exec.Command("go", append([]string{"list", "-deps", "-json"}, pkgs...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	cmd.Stderr = os.Stderr
	data, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	seen := make(map[string]Module)
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list output: %w", err)
		}
		if p.Standard || p.Module == nil || p.Module.Main {
			continue
		}
		m := Module{Path: p.Module.Path, Version: p.Module.Version, Dir: p.Module.Dir}
		if r := p.Module.Replace; r != nil {
			m.Dir = r.Dir
			if r.Version != "" {
				m.Version = r.Version
			} else {
				m.Version += " (patched copy in " + r.Path + ")"
			}
		}
		seen[m.Path] = m
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOROOT: %w", err)
	}
	gover, _ := exec.Command("go", "env", "GOVERSION").Output()
	mods := []Module{{Path: "Go (runtime and standard library)", Version: strings.TrimSpace(string(gover)), Dir: strings.TrimSpace(string(goroot))}}
	paths := make([]string, 0, len(seen))
	for p := range seen {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		mods = append(mods, seen[p])
	}
	var problems []string
	for i := range mods {
		if err := mods[i].readLicense(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%d module(s) without a usable license:\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	return mods, nil
}

var licenseFile = regexp.MustCompile(`(?i)^(licen[cs]e|copying|notice)([-._].*)?$`)

// readLicense finds the module's license and notice files and names the
// license.
func (m *Module) readLicense() error {
	if m.Dir == "" {
		return fmt.Errorf("%s %s: not in the module cache (run go mod download)", m.Path, m.Version)
	}
	entries, err := os.ReadDir(m.Dir)
	if err != nil {
		return fmt.Errorf("%s: %v", m.Path, err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && licenseFile.MatchString(e.Name()) && !strings.HasSuffix(e.Name(), ".go") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var kinds []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(m.Dir, n))
		if err != nil {
			return fmt.Errorf("%s: %v", m.Path, err)
		}
		text := strings.TrimSpace(strings.ReplaceAll(string(b), "\r\n", "\n"))
		m.Files = append(m.Files, n)
		m.Texts = append(m.Texts, text)
		if k := Identify(text); k != "" && !strings.HasPrefix(strings.ToLower(n), "notice") {
			kinds = append(kinds, k)
		}
	}
	if len(m.Files) == 0 {
		return fmt.Errorf("%s %s: no LICENSE or COPYING file in %s", m.Path, m.Version, m.Dir)
	}
	if len(kinds) == 0 {
		return fmt.Errorf("%s %s: license not recognised (%s): check that it goes with Apache-2.0 and teach Identify", m.Path, m.Version, strings.Join(m.Files, ", "))
	}
	m.License = strings.Join(dedupe(kinds), " and ")
	return nil
}

// Identify names a license text by SPDX identifier, for the permissive
// licenses that go with Apache-2.0; "" for anything else (a copyleft
// license among them, which must not be linked in silently).
func Identify(text string) string {
	t := strings.Join(strings.Fields(strings.ToLower(text)), " ")
	switch {
	case strings.Contains(t, "gnu general public license"), strings.Contains(t, "gnu lesser general public license"),
		strings.Contains(t, "gnu affero general public license"):
		return ""
	case strings.Contains(t, "apache license") && strings.Contains(t, "version 2.0"):
		return "Apache-2.0"
	case strings.Contains(t, "permission is hereby granted, free of charge"):
		return "MIT"
	case strings.Contains(t, "permission to use, copy, modify, and/or distribute this software for any purpose"),
		strings.Contains(t, "permission to use, copy, modify, and distribute this software for any purpose"):
		return "ISC"
	case strings.Contains(t, "redistribution and use in source and binary forms"):
		if strings.Contains(t, "neither the name") || strings.Contains(t, "names of its contributors") {
			return "BSD-3-Clause"
		}
		return "BSD-2-Clause"
	case strings.Contains(t, "mozilla public license") && strings.Contains(t, "2.0"):
		return "MPL-2.0"
	}
	return ""
}

func dedupe(s []string) []string {
	var out []string
	for _, x := range s {
		if len(out) == 0 || !containsStr(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func containsStr(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// Write writes the copyright file: abusemilter's own license (from
// LICENSE in the working directory), then one stanza per module with its
// license texts.
func Write(w io.Writer, mods []Module) error {
	own, err := os.ReadFile("LICENSE")
	if err != nil {
		return fmt.Errorf("abusemilter's own LICENSE: %w", err)
	}
	var b strings.Builder
	b.WriteString("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n")
	b.WriteString("Upstream-Name: abusemilter\n")
	b.WriteString("Source: https://github.com/abusemilter/abusemilter\n")
	b.WriteString("Comment: abusescan, abusectl and abusemilter in /usr/bin are statically linked Go\n")
	b.WriteString(" programs. Besides abusemilter's own code they contain the Go modules listed\n")
	b.WriteString(" below, each under its own license, whose text follows its stanza.\n\n")
	b.WriteString("Files: *\nCopyright: the abusemilter authors\nLicense: Apache-2.0\n")
	writeText(&b, string(own))
	for _, m := range mods {
		fmt.Fprintf(&b, "\nFiles: (compiled in) %s\n", m.Path)
		fmt.Fprintf(&b, "Copyright: the authors of %s (see the license text)\n", m.Path)
		fmt.Fprintf(&b, "License: %s\n", m.License)
		fmt.Fprintf(&b, " Module %s %s; license files: %s.\n .\n", m.Path, m.Version, strings.Join(m.Files, ", "))
		for i, text := range m.Texts {
			if i > 0 {
				b.WriteString(" .\n")
			}
			fmt.Fprintf(&b, " ---- %s ----\n .\n", m.Files[i])
			writeBody(&b, text)
		}
	}
	_, err = io.WriteString(w, b.String())
	return err
}

// writeText writes a license text as the continuation lines of a field.
func writeText(b *strings.Builder, text string) {
	writeBody(b, strings.TrimSpace(text))
}

func writeBody(b *strings.Builder, text string) {
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, " \t")
		if line == "" {
			b.WriteString(" .\n")
			continue
		}
		b.WriteString(" " + line + "\n")
	}
}
