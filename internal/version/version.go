// Package version holds the build's version, set at link time:
//
//	go build -ldflags "-X github.com/abusemilter/abusemilter/internal/version.Version=1.2.3 \
//	  -X github.com/abusemilter/abusemilter/internal/version.Commit=abc1234"
package version

// Version is the release version; "dev" for untagged builds.
var Version = "dev"

// Commit is the source commit the binary was built from; empty when unknown.
var Commit = ""

// String returns "VERSION" or "VERSION (COMMIT)".
func String() string {
	if Commit == "" {
		return Version
	}
	return Version + " (" + Commit + ")"
}
