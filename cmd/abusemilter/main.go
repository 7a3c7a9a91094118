// Command abusemilter is the outbound mail-abuse milter daemon: it serves
// the milter protocol to Postfix or Sendmail, checks every message the
// provider's customers send against the e-mail abuse policy, reloads its
// configuration on SIGHUP and stops gracefully on SIGTERM.
//
// Usage:
//
//	abusemilter [--config FILE] [--listen ADDR] [--log-format auto|console|json]
//	abusemilter --check-config [--config FILE]
//	abusemilter --version
//
// Exit codes (decided in run.go only): 0 after a clean stop or a
// successful check; 1 when serving fails (the listener cannot be opened,
// the engine cannot be built); 2 for usage and configuration errors.
package main

import (
	"os"

	"github.com/abusemilter/abusemilter/internal/cli"
)

func main() {
	os.Exit(cli.Execute(newRootCommand(os.Stdout, os.Stderr), os.Args[1:]))
}
