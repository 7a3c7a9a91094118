package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/daemon"
)

// checkClamd is --check-config's look at clamd: with antivirus.clamd set,
// clamd must answer PING. It prints what it found and returns the exit
// status (exitFailed when clamd does not answer).
func checkClamd(stdout, stderr io.Writer, cfg *config.Config) int {
	a := cfg.Antivirus
	if a.Clamd == "" {
		fmt.Fprintf(stdout, "  antivirus: no clamd (attachment rules only), action %s, on error %s\n", a.Action, a.OnError)
		return exitOK
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.Timeout.Duration+time.Second)
	defer cancel()
	version, err := daemon.PingClamd(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "abusemilter: antivirus.clamd %s does not answer PING: %v\n", a.Clamd, err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "  antivirus: clamd %s answers PING (%s), max size %s, action %s, on error %s\n", a.Clamd, version, a.MaxSize, a.Action, a.OnError)
	return exitOK
}
