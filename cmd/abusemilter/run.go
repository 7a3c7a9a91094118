package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/daemon"
	"github.com/abusemilter/abusemilter/internal/logging"
	"github.com/abusemilter/abusemilter/internal/version"
)

// Exit codes, decided here only.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// options are the command-line flags.
type options struct {
	configPath  string
	checkConfig bool
	showVersion bool
	listen      string
	logFormat   string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("abusemilter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.configPath, "config", "", "YAML config `file` (default: built-in configuration)")
	fs.BoolVar(&o.checkConfig, "check-config", false, "validate the configuration, print a summary and exit (exit 2 on errors)")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.StringVar(&o.listen, "listen", "", "listen `address` inet:HOST:PORT or unix:/path (overrides the config's listen)")
	fs.StringVar(&o.logFormat, "log-format", "", "log `format`: auto (console on a terminal, JSON otherwise), console or json (overrides log.format)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: abusemilter [--config FILE] [--listen ADDR] [--log-format auto|console|json]\n"+
			"       abusemilter --check-config [--config FILE]\n       abusemilter --version\n\n")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\nSignals: SIGHUP reloads the config, SIGTERM/SIGINT stop gracefully.\n"+
			"Exit codes: 0 clean stop or valid config, 1 serving failed, 2 usage or config error.\n")
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q (all options are --flags)", fs.Args())
	}
	return o, nil
}

// run is the whole program; it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "abusemilter: %v\n", err)
		return exitUsage
	}
	if o.showVersion {
		fmt.Fprintf(stdout, "abusemilter %s\n", version.String())
		return exitOK
	}
	cfg, err := loadConfig(o)
	if err != nil {
		printConfigError(stderr, err)
		return exitUsage
	}
	if o.checkConfig {
		fmt.Fprintln(stdout, "config OK")
		printSummary(stdout, cfg)
		return exitOK
	}
	logger, level, err := logging.New(logging.Options{Format: cfg.Log.Format, Level: cfg.Log.Level, Output: stderr})
	if err != nil {
		fmt.Fprintf(stderr, "abusemilter: %v\n", err)
		return exitUsage
	}
	defer logger.Sync()
	restore, err := logging.RedirectStdLog(logger, "go-milter")
	if err == nil {
		defer restore()
	}
	d, err := daemon.New(cfg, daemon.Options{
		ConfigPath: o.configPath,
		Load:       func() (*config.Config, error) { return loadConfig(o) },
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

// loadConfig reads the config file (or the defaults) and applies the
// flags over it, validating the result.
func loadConfig(o options) (*config.Config, error) {
	cfg := config.Default()
	if o.configPath != "" {
		var err error
		if cfg, err = config.Load(o.configPath); err != nil {
			return nil, err
		}
	}
	return applyFlags(cfg, o)
}

// applyFlags overrides config fields with flags and validates them with the
// same rules as the file.
func applyFlags(cfg *config.Config, o options) (*config.Config, error) {
	if o.listen != "" {
		cfg.Listen = o.listen
	}
	if o.logFormat != "" {
		cfg.Log.Format = o.logFormat
	}
	if o.listen != "" || o.logFormat != "" {
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
	}
	return cfg, nil
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
	source := cfg.Path
	if source == "" {
		source = "built-in defaults"
	}
	fmt.Fprintf(w, "  source:    %s\n", source)
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
