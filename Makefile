# abusemilter build, test and release.
#
#   make build      all binaries under ./cmd/... into bin/
#   make man        man pages of the product commands into man/
#   make completion bash, zsh and fish completion scripts into completion/
#   make test       go test -race ./...
#   make vet        go vet ./...
#   make fmt-check  fail if any file needs gofmt
#   make release    static linux/amd64 and linux/arm64 archives in dist/,
#                   with SHA256SUMS: the product commands (abusemilter,
#                   abusescan, abusectl; not the load generator), LICENSE,
#                   CHANGELOG, README, docs/, configs/, man pages and
#                   completions
#   make package    .deb and .rpm packages for linux/amd64 and linux/arm64 in
#                   dist/, built with nfpm (a tool pinned in go.mod):
#                   binaries, systemd unit, sysusers.d and tmpfiles.d files,
#                   /etc/abusemilter/abusemilter.yaml as a configuration file,
#                   man pages, completions, docs, examples, logrotate, and a
#                   copyright file with every compiled-in module's license
#                   (PKG_ARCHES=amd64 PKG_FORMATS=deb narrows it)
#   make clean      remove bin/ and dist/
#   make bench-postfix  messages/s through a test Postfix on loopback with
#                   no milter, a no-op milter, abusemilter (embedded store
#                   and Redis) and the ratios (as root; BENCH_ARGS adds
#                   -postfix.rounds=3, -postfix.messages=... and so on)
#
# VERSION and COMMIT are stamped into internal/version; override them on
# the command line (make release VERSION=v1.2.0) when building outside git.

MODULE    := github.com/abusemilter/abusemilter
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# Archive timestamps come from the last commit, so that a release is
# reproducible byte for byte.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
PLATFORMS ?= linux/amd64 linux/arm64

LDFLAGS := -X $(MODULE)/internal/version.Version=$(VERSION) \
           -X $(MODULE)/internal/version.Commit=$(COMMIT)
# Static binaries: no libc, and Go's own DNS resolver (no netlink), which
# is what the systemd unit's RestrictAddressFamilies allows.
export CGO_ENABLED := 0

# The commands a release ships; milterload is a development tool.
PRODUCT := abusemilter abusescan abusectl
# Files shipped next to the binaries in a release archive, so that the
# README's links work inside it.
DIST_EXTRA := LICENSE README.md CHANGELOG.md docs configs

# Packages: the version without its v; anything that does not start with a
# digit (an untagged tree) becomes 0.0.0+git.HASH, and a '-' (git describe)
# a '+', which both dpkg and rpm accept.
PKG_ARCHES  ?= amd64 arm64
PKG_FORMATS ?= deb rpm
PKG_VERSION ?= $(shell v=$$(echo '$(VERSION)' | sed -e 's/^v//' -e 's/-/+/g'); case "$$v" in ([0-9]*) ;; (*) v="0.0.0+git.$$v" ;; esac; echo "$$v")
NFPM        := $(GO) tool nfpm

.PHONY: all build man completion test vet fmt-check release package clean bench-postfix

all: fmt-check vet test build

build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

# Man pages and completion scripts come from each command's own command
# tree (cobra), so they never drift from the flags.
man: build
	@rm -rf man && mkdir -p man
	@for c in $(PRODUCT); do bin/$$c man man || exit 1; done
	@ls man

completion: build
	@rm -rf completion && mkdir -p completion/bash completion/zsh completion/fish
	@for c in $(PRODUCT); do \
		bin/$$c completion bash > completion/bash/$$c && \
		bin/$$c completion zsh > completion/zsh/_$$c && \
		bin/$$c completion fish > completion/fish/$$c.fish || exit 1; \
	done

test:
	CGO_ENABLED=1 $(GO) test -race ./...

vet:
	$(GO) vet ./...

fmt-check:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './vendor/*'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

release: man completion
	@rm -f dist/*.tar.gz dist/SHA256SUMS && mkdir -p dist
	@set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		name=abusemilter-$(VERSION)-$$os-$$arch; \
		echo "building $$name"; \
		mkdir -p dist/$$name; \
		for c in $(PRODUCT); do \
			GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o dist/$$name/ ./cmd/$$c; \
		done; \
		cp -R $(DIST_EXTRA) man completion dist/$$name/; \
		find dist/$$name -name '*_test.go' -delete; \
		tar --sort=name --mtime=@$(SOURCE_DATE_EPOCH) --owner=0 --group=0 --numeric-owner \
			-C dist -cf - $$name | gzip -9n > dist/$$name.tar.gz; \
		rm -rf dist/$$name; \
	done
	cd dist && sha256sum *.tar.gz > SHA256SUMS
	@cat dist/SHA256SUMS

package: man completion
	@rm -rf dist/pkg && mkdir -p dist/pkg/man
	@for f in man/*.1; do gzip -9n < $$f > dist/pkg/man/$$(basename $$f).gz; done
	$(GO) run ./configs/packaging/licenses -o dist/pkg/copyright $(addprefix ./cmd/,$(PRODUCT))
	@set -e; for arch in $(PKG_ARCHES); do \
		rm -rf dist/pkg/bin && mkdir -p dist/pkg/bin; \
		for c in $(PRODUCT); do \
			GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o dist/pkg/bin/ ./cmd/$$c; \
		done; \
		for fmt in $(PKG_FORMATS); do \
			PKG_ARCH=$$arch PKG_VERSION='$(PKG_VERSION)' SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) \
				$(NFPM) package --config configs/packaging/nfpm.yaml --packager $$fmt --target dist/; \
		done; \
	done
	@rm -rf dist/pkg/bin

clean:
	rm -rf bin dist man completion

# A measurement, not a test: see internal/bench/postfixbench.
bench-postfix:
	CGO_ENABLED=1 $(GO) test -count=1 -timeout 60m -run TestPostfixThroughput -v ./internal/bench/postfixbench/ -args -postfix.bench $(BENCH_ARGS)
