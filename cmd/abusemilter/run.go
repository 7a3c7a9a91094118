package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/daemon"
	"github.com/abusemilter/abusemilter/internal/logging"
	"github.com/abusemilter/abusemilter/internal/version"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

// Exit codes, decided here only (see the root command's help).
const (
	exitOK     = cli.ExitOK
	exitFailed = cli.ExitFailed
	exitUsage  = cli.ExitUsage
)

// options are the command-line flags.
type options struct {
	configPath  string
	checkConfig bool
	json        bool
	listen      string
	logFormat   string
	// lookup finds $ABUSEMILTER_CONFIG and the default path (tests supply
	// their own).
	lookup config.Lookup
}

// lookup finds $ABUSEMILTER_CONFIG and the default config path; the
// in-process tests replace it so that the host's files do not matter.
var lookup = config.SystemLookup

// newRootCommand is the abusemilter command tree.
func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	var o options
	root := &cobra.Command{
		Use:   "abusemilter",
		Short: "Outbound mail-abuse milter for Postfix and Sendmail",
		Long: `abusemilter serves the milter protocol to Postfix or Sendmail and checks
every message the provider's customers send against the e-mail abuse policy.
The configuration is --config FILE, else $ABUSEMILTER_CONFIG, else
/etc/abusemilter/abusemilter.yaml when it exists, else the built-in
defaults (enforce mode, the embedded rate store, listening on
inet:127.0.0.1:7357); the first log line and --check-config say which.

--check-config builds everything the daemon builds at start (the identity
directory and sender-login maps, password and token files, the on-lock
command, listen addresses, TLS files, the rules) without serving, and lists
every problem with its field path and line. The start runs the same check:
a configuration error ends it with exit status 2, which the systemd unit
does not restart. --check-config --json prints the effective configuration
(defaults filled in, secrets redacted).

Signals: SIGHUP reloads the config, SIGTERM and SIGINT stop gracefully.

Exit codes:
  0  clean stop, or a valid config with --check-config
  1  serving failed (the listener could not be opened, the port is taken),
     or with --check-config the configured clamd (antivirus.clamd) does not answer
  2  usage or configuration error (from --check-config and at start alike)`,
		Example: `  abusemilter --config /etc/abusemilter/abusemilter.yaml
  abusemilter --check-config
  abusemilter --check-config --json --config /etc/abusemilter/abusemilter.yaml`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return cli.Usagef("unexpected arguments %q (all options are --flags)\nRun 'abusemilter --help' for usage.", args)
			}
			return nil
		},
		RunE: func(c *cobra.Command, _ []string) error {
			if o.json && !o.checkConfig {
				return cli.Usagef("--json goes with --check-config")
			}
			return cli.Silent(run(o, stdout, stderr))
		},
	}
	o.lookup = lookup()
	f := root.Flags()
	f.StringVar(&o.configPath, "config", "", "YAML config `file` (default: $ABUSEMILTER_CONFIG, else "+config.DefaultPath+" when it exists, else built-in defaults)")
	f.BoolVar(&o.checkConfig, "check-config", false, "check the configuration as the start does, print a summary and exit (exit 2 on errors)")
	f.BoolVar(&o.json, "json", false, "with --check-config: print the effective configuration as JSON (defaults filled in, secrets redacted)")
	f.StringVar(&o.listen, "listen", "", "listen `address` inet:HOST:PORT or unix:/path (overrides the config's listen)")
	cli.EnumVar(root, &o.logFormat, "log-format", "", "log format: auto is console on a terminal, JSON otherwise (overrides log.format)", "auto", "console", "json")
	cli.Setup(root, stdout, stderr)
	return root
}

// run is the daemon's whole life; it returns the exit code.
func run(o options, stdout, stderr io.Writer) int {
	src := config.Resolve(o.configPath, o.lookup)
	cfg, err := loadConfig(o, src)
	if err != nil {
		printConfigError(stderr, err)
		return exitUsage
	}
	if o.checkConfig {
		if o.json {
			data, err := cfg.EffectiveJSON()
			if err != nil {
				fmt.Fprintf(stderr, "abusemilter: %v\n", err)
				return exitFailed
			}
			fmt.Fprintf(stdout, "{\n  \"source\": %q,\n  \"config\": %s\n}\n", src.String(), strings.ReplaceAll(string(data), "\n", "\n  "))
			return exitOK
		}
		fmt.Fprintf(stdout, "config OK: %s\n", src)
		printSummary(stdout, cfg)
		return checkClamd(stdout, stderr, cfg)
	}
	// The mail path's lines (milter's "decision", one per message, and the
	// debug "message aborted") are buffered and written every
	// logging.DefaultFlushInterval; any other line is written at once with
	// them. The deferred Sync writes the rest when the daemon stops
	// (SIGTERM); a reload (SIGHUP) keeps the writer.
	logger, level, err := logging.New(logging.Options{Format: cfg.Log.Format, Level: cfg.Log.Level, Output: stderr,
		FlushInterval: logging.DefaultFlushInterval, Buffered: []string{"decision", "message aborted"}})
	if err != nil {
		fmt.Fprintf(stderr, "abusemilter: %v\n", err)
		return exitUsage
	}
	defer logger.Sync()
	logger.Info("abusemilter starting", zap.String("version", version.String()), zap.String("config", src.String()))
	restore, err := logging.RedirectStdLog(logger, "go-milter")
	if err == nil {
		defer restore()
	}
	d, err := daemon.New(cfg, daemon.Options{
		ConfigPath: src.Path,
		Load:       func() (*config.Config, error) { return loadConfig(o, src) },
		Logger:     logger,
		Level:      level,
	})
	if err != nil {
		logger.Error("cannot start: " + err.Error())
		return exitFailed
	}
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	if err := d.Serve(signals); err != nil {
		return exitFailed
	}
	return exitOK
}

// loadConfig reads the config the source names (or the defaults), applies
// the flags over it, validates the result and checks it as the start does
// (daemon.Check): every error it returns is a configuration error.
// Problems of the file and of the check are reported together, once each.
func loadConfig(o options, src config.Source) (*config.Config, error) {
	cfg, err := src.LoadAll()
	if cfg == nil {
		return nil, err
	}
	applyFlags(cfg, o)
	if o.listen != "" || o.logFormat != "" {
		err = config.Merge(cfg.Path, err, cfg.Validate())
	}
	if err = config.Merge(cfg.Path, err, daemon.Check(cfg)); err != nil {
		return nil, err
	}
	return cfg, nil
}

// applyFlags overrides config fields with flags (validated with the same
// rules as the file by loadConfig).
func applyFlags(cfg *config.Config, o options) {
	if o.listen != "" {
		cfg.Listen = o.listen
	}
	if o.logFormat != "" {
		cfg.Log.Format = o.logFormat
	}
}

// printConfigError prints every problem of a config, one per line.
func printConfigError(w io.Writer, err error) {
	var ce *config.Error
	if errors.As(err, &ce) {
		name := ce.Path
		if name == "" {
			name = "config"
		}
		fmt.Fprintf(w, "abusemilter: %s: %d problem(s):\n", name, len(ce.Problems))
		for _, p := range ce.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
		return
	}
	fmt.Fprintf(w, "abusemilter: %v\n", err)
}

// printSummary prints what the config does, without secrets.
func printSummary(w io.Writer, cfg *config.Config) {
	fmt.Fprintf(w, "  mode:      %s\n", cfg.Mode)
	fmt.Fprintf(w, "  listen:    %s\n", cfg.Listen)
	accounts := make([]string, 0, len(cfg.Identity.Accounts))
	for name := range cfg.Identity.Accounts {
		accounts = append(accounts, name)
	}
	sort.Strings(accounts)
	// A provider may have tens of thousands of accounts: name a few.
	const named = 10
	list := strings.Join(accounts[:min(len(accounts), named)], ", ")
	if len(accounts) > named {
		list += fmt.Sprintf(", ... %d more", len(accounts)-named)
	}
	fmt.Fprintf(w, "  accounts:  %d (%s), networks: %d, sender login maps: %d\n",
		len(accounts), list, len(cfg.Identity.Networks), len(cfg.Identity.SenderLoginMaps))
	fmt.Fprintf(w, "  unknown:   login %s, client %s\n", cfg.Identity.UnknownLogin, cfg.Identity.UnknownClient)
	fmt.Fprintf(w, "  limits:    %d recipients/message, account messages %s\n",
		cfg.Limits.MaxRecipientsPerMessage, strings.Join(cfg.Limits.AccountMessages, ", "))
	fmt.Fprintf(w, "  store:     %s (on failure: %s)\n", storeSummary(cfg), cfg.RedisFailure)
	fmt.Fprintf(w, "  sessions:  max %d, idle timeout %s, max packet %s, shutdown grace %s\n",
		cfg.Session.MaxSessions, cfg.Session.IdleTimeout.Duration, cfg.Session.MaxPacket, cfg.Session.ShutdownGrace.Duration)
	fmt.Fprintf(w, "  message:   body sample %s, max headers %d\n", cfg.Message.BodySample, cfg.Message.MaxHeaders)
}

// storeSummary names the rate store without credentials.
func storeSummary(cfg *config.Config) string {
	r := cfg.Redis
	if r == nil {
		return "in-memory"
	}
	var where string
	switch {
	case r.URL != "":
		if u, err := url.Parse(r.URL); err == nil {
			where = u.Scheme + "://" + u.Host + u.Path
		} else {
			where = "(unparseable url)"
		}
	default:
		where = strings.Join(r.Addrs, ",")
	}
	kind := "redis"
	if r.MasterName != "" {
		kind = "redis sentinel " + r.MasterName
	} else if r.Cluster {
		kind = "redis cluster"
	}
	return kind + " " + where
}
