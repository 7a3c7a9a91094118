package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// topOptions are the options of "abusectl top".
type topOptions struct {
	Env    *env
	By     string // messages, recipients or strikes
	Window time.Duration
	N      int
	JSON   bool
	// MaxTime bounds the whole ranking (the store's own default for an
	// admin call is 10s, short for millions of keys on a loaded server).
	MaxTime time.Duration
}

func newTopCommand(g *globalOptions) *cobra.Command {
	o := topOptions{Window: time.Hour, N: 20, MaxTime: 2 * time.Minute}
	cmd := &cobra.Command{
		Use:   "top [--by messages|recipients|strikes] [--window 1h] [-n 20] [--json]",
		Short: "rank the busiest accounts, senders and clients now",
		Long: `Ranks subjects by what they did within the window: messages (accounts,
senders and clients), recipients (accounts) or strikes (accounts, counted
over the window given). It walks the store with SCAN (never KEYS), on every
master of a Cluster, so it is safe on a busy production Redis; a million
counters take a few seconds.`,
		Example: `  abusectl top
  abusectl top --by recipients --window 10m -n 5
  abusectl top --by strikes --window 1d --json`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, e *env, out io.Writer) error {
				o.Env = e
				return runTop(ctx, o, out)
			})
		},
	}
	cli.EnumVar(cmd, &o.By, "by", string(ratelimit.TopMessages), "rank by what",
		string(ratelimit.TopMessages), string(ratelimit.TopRecipients), string(ratelimit.TopStrikes))
	cli.DurationVar(cmd.Flags(), &o.Window, "window", o.Window, "count within this long before now")
	cmd.Flags().IntVarP(&o.N, "number", "n", o.N, "show the top N (0: all)")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON (fields in docs/abusectl.md)")
	cli.DurationVar(cmd.Flags(), &o.MaxTime, "max-time", o.MaxTime, "give up when the ranking takes longer than this")
	return cmd
}

// serverTop is a store that ranks on the server (the Redis store:
// ratelimit/admin_ctl.go), which a million keys need to finish in seconds.
type serverTop interface {
	TopOnServer(ctx context.Context, by ratelimit.TopBy, window time.Duration, n int) ([]ratelimit.TopEntry, error)
}

// topJSON is the --json output of top.
type topJSON struct {
	By            string         `json:"by"`
	WindowSeconds int64          `json:"window_seconds"`
	Entries       []topEntryJSON `json:"entries"`
}

type topEntryJSON struct {
	Rank    int    `json:"rank"`
	Subject string `json:"subject"`
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Count   int64  `json:"count"`
}

func runTop(ctx context.Context, o topOptions, out io.Writer) error {
	by := ratelimit.TopBy(o.By)
	switch by {
	case ratelimit.TopMessages, ratelimit.TopRecipients, ratelimit.TopStrikes:
	default:
		return cli.Usagef("--by %q: want messages, recipients or strikes", o.By)
	}
	if o.Window < time.Second {
		return cli.Usagef("--window %s: want at least 1s", o.Window)
	}
	if o.N < 0 {
		return cli.Usagef("-n %d: want 0 (all) or more", o.N)
	}
	admin, err := o.Env.store(ctx)
	if err != nil {
		return err
	}
	if o.MaxTime <= 0 {
		o.MaxTime = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.MaxTime)
	defer cancel()
	var entries []ratelimit.TopEntry
	if st, ok := admin.(serverTop); ok {
		entries, err = st.TopOnServer(ctx, by, o.Window, o.N)
		if err != nil && oldRedisScript(err) {
			// Redis before 7 has no script flags: rank on the client.
			entries, err = admin.Top(ctx, by, o.Window, o.N)
		}
	} else {
		entries, err = admin.Top(ctx, by, o.Window, o.N)
	}
	if err != nil {
		return o.Env.storeError(err)
	}
	v := topJSON{By: o.By, WindowSeconds: seconds(o.Window), Entries: []topEntryJSON{}}
	for i, en := range entries {
		v.Entries = append(v.Entries, topEntryJSON{Rank: i + 1, Subject: en.Subject.String(),
			Kind: string(en.Subject.Kind), Name: en.Subject.Name, Count: en.Count})
	}
	if o.JSON {
		return writeJSON(out, v)
	}
	if len(v.Entries) == 0 {
		_, err := fmt.Fprintf(out, "nothing counted by %s in the last %s\n", o.By, short(o.Window))
		return err
	}
	var t table
	t.header("RANK", "SUBJECT", fmt.Sprintf("%s (%s)", strings.ToUpper(o.By), short(o.Window)))
	for _, en := range v.Entries {
		t.add(plain, fmt.Sprint(en.Rank), en.Subject, fmt.Sprint(en.Count))
	}
	return t.write(out, "", o.Env.color)
}

// oldRedisScript reports whether err is a Redis before 7 refusing the
// script flags ("#!lua flags=...") of the server-side ranking.
func oldRedisScript(err error) bool {
	m := err.Error()
	return strings.Contains(m, "compiling script") || strings.Contains(m, "shebang")
}
