package main

import (
	"strings"
	"testing"
)

// TestEveryModuleLicensed: every module compiled into the product
// commands has a license file that Identify knows (permissive, goes with
// Apache-2.0), and the copyright file holds each text.
func TestEveryModuleLicensed(t *testing.T) {
	t.Chdir("../../..")
	mods, err := Modules([]string{"./cmd/abusemilter", "./cmd/abusescan", "./cmd/abusectl"})
	if err != nil {
		t.Fatal(err)
	}
	byPath := make(map[string]Module)
	for _, m := range mods {
		byPath[m.Path] = m
	}
	for path, want := range map[string]string{
		"github.com/spf13/cobra":        "Apache-2.0",
		"github.com/redis/go-redis/v9":  "BSD-2-Clause",
		"go.uber.org/zap":               "MIT",
		"golang.org/x/net":              "BSD-3-Clause",
		"github.com/emersion/go-milter": "BSD-2-Clause",
	} {
		if got := byPath[path].License; got != want {
			t.Errorf("%s: license %q, want %q", path, got, want)
		}
	}
	if _, ok := byPath["github.com/goreleaser/nfpm/v2"]; ok {
		t.Errorf("the packaging tool is listed as compiled in")
	}
	var b strings.Builder
	if err := Write(&b, mods); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.HasPrefix(out, "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n") ||
		!strings.Contains(out, "\nFiles: *\nCopyright: the abusemilter authors\nLicense: Apache-2.0\n") {
		t.Errorf("header:\n%s", out[:min(len(out), 600)])
	}
	for _, m := range mods {
		if !strings.Contains(out, "Files: (compiled in) "+m.Path+"\n") {
			t.Errorf("no stanza for %s", m.Path)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" && line != "" {
			t.Fatalf("a white-space-only line breaks the format: %q", line)
		}
	}
}

func TestIdentify(t *testing.T) {
	for text, want := range map[string]string{
		"Apache License\nVersion 2.0, January 2004":                                                        "Apache-2.0",
		"Permission is hereby granted, free of charge, to any person":                                      "MIT",
		"Redistribution and use in source and binary forms ... Neither the name of Google":                 "BSD-3-Clause",
		"Redistribution and use in source and binary forms, with or without modification":                  "BSD-2-Clause",
		"GNU GENERAL PUBLIC LICENSE Version 3 ... Redistribution and use in source and binary forms":       "",
		"Permission to use, copy, modify, and/or distribute this software for any purpose with or without": "ISC",
		"All rights reserved.": "",
	} {
		if got := Identify(text); got != want {
			t.Errorf("Identify(%q) = %q, want %q", text, got, want)
		}
	}
}
