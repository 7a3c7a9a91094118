package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/console"
	"github.com/abusemilter/abusemilter/internal/logging"
	"github.com/abusemilter/abusemilter/internal/version"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// serveOptions are the options of "abusectl serve"; each flag given
// replaces the config's console section.
type serveOptions struct {
	Env                      *env
	Listen                   string
	TLSCert, TLSKey          string
	AllowInsecureNonLoopback bool
	UsersFile                string
	LogFormat                string

	// ready, when set, gets the address the console listens on (tests).
	ready func(addr string)
	log   io.Writer
}

func newServeCommand(g *globalOptions) *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve [--listen HOST:PORT] [--tls-cert FILE --tls-key FILE] [--users-file FILE]",
		Short: "serve the abuse desk console, a web interface on the same store",
		Long: `Serves the abuse desk console (docs/console.md): the overview of locked
accounts, accounts close to a limit, held mail and complaints; account
search and pages; the held queue, complaints and the audit log; and the
actions lock, unlock, reset, override, exempt, release and purge, audited
with the console user's name.

The console section of the config says where and how (flags replace it):
loopback by default (127.0.0.1:8357); HTTPS when a certificate and key are
given; a non-loopback address without TLS is refused unless
--allow-insecure-non-loopback. Users and roles (viewer, operator) come
from the users file ("abusectl user add"), or from a trusted reverse
proxy's header (console.proxy). It runs until interrupted.`,
		Example: `  abusectl serve
  abusectl serve --listen 0.0.0.0:8443 --tls-cert /etc/abusemilter/console.crt --tls-key /etc/abusemilter/console.key`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, e *env, out io.Writer) error {
				o.Env = e
				if o.log == nil {
					o.log = cmd.ErrOrStderr()
				}
				return runServe(ctx, cmd, o, out)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Listen, "listen", "", "HOST:PORT to serve on (default console.listen, 127.0.0.1:8357)")
	f.StringVar(&o.TLSCert, "tls-cert", "", "PEM certificate: serve HTTPS (with --tls-key)")
	f.StringVar(&o.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	f.BoolVar(&o.AllowInsecureNonLoopback, "allow-insecure-non-loopback", false, "serve plain HTTP on a non-loopback address (behind a TLS proxy only)")
	f.StringVar(&o.UsersFile, "users-file", "", "the users file (default console.users_file)")
	cli.EnumVar(cmd, &o.LogFormat, "log-format", "auto", "log format on stderr", "auto", "console", "json")
	must(cmd.MarkFlagFilename("tls-cert", "pem", "crt"))
	must(cmd.MarkFlagFilename("tls-key", "pem", "key"))
	must(cmd.MarkFlagFilename("users-file"))
	return cmd
}

// consoleSection is the config's console section with the flags applied,
// validated as the config validates it.
func consoleSection(cmd *cobra.Command, o serveOptions, cfg *config.Config) (config.ConsoleConfig, error) {
	c := config.DefaultConsole()
	if cfg != nil {
		c = cfg.Console
	}
	fl := cmd.Flags()
	if fl.Changed("listen") {
		c.Listen = o.Listen
	}
	if fl.Changed("tls-cert") {
		c.TLSCert = o.TLSCert
	}
	if fl.Changed("tls-key") {
		c.TLSKey = o.TLSKey
	}
	if fl.Changed("allow-insecure-non-loopback") {
		c.AllowInsecureNonLoopback = o.AllowInsecureNonLoopback
	}
	if fl.Changed("users-file") {
		abs, err := filepath.Abs(o.UsersFile)
		if err != nil {
			return c, cli.Usagef("--users-file: %v", err)
		}
		c.UsersFile = abs
	}
	if err := config.ValidateConsole(c); err != nil {
		return c, cli.Usagef("%v", err)
	}
	return c, nil
}

// deskFor returns the console's held queue, complaints and decision
// records, and per-hour sending: console.StoreDesk, the store's desk and
// history API, as abusectl held, release, purge, complaints and why use it.
var deskFor = func(admin ratelimit.Admin) (console.Desk, console.History) {
	d := console.NewStoreDesk(admin)
	return d, d
}

func runServe(ctx context.Context, cmd *cobra.Command, o serveOptions, out io.Writer) error {
	// The store first: serve needs the config's redis section like every
	// other command, and answers early when it is unreachable.
	admin, err := o.Env.store(ctx)
	if err != nil {
		return err
	}
	c, err := consoleSection(cmd, o, o.Env.cfg)
	if err != nil {
		return err
	}
	if c.Proxy.Header == "" {
		users, err := console.ReadUsers(c.UsersFile)
		if err != nil {
			return configError(fmt.Errorf("console users file: %w", err))
		}
		if len(users) == 0 {
			return configError(fmt.Errorf("no console user in %s: add one with \"abusectl user add NAME --role operator\" (or set console.proxy)", c.UsersFile))
		}
	}
	log, _, err := logging.New(logging.Options{Format: o.LogFormat, Output: o.log})
	if err != nil {
		return configError(err)
	}
	defer log.Sync() //nolint:errcheck
	dir := map[string]console.DirEntry{}
	if cfg := o.Env.cfg; cfg != nil {
		for name, a := range cfg.Identity.Accounts {
			dir[name] = console.DirEntry{Logins: a.Logins, SendAs: a.SendAs}
		}
	}
	desk, history := deskFor(admin)
	srv, err := console.New(console.Options{
		Admin: admin, Policy: o.Env.policy, Directory: dir, Desk: desk, History: history,
		UsersFile: c.UsersFile, ProxyHeader: c.Proxy.Header, ProxyTrusted: c.TrustedProxies(), ProxyOperators: c.Proxy.Operators,
		TLS: c.TLS(), IdleTimeout: c.IdleTimeout.Duration, SessionLifetime: c.SessionLifetime.Duration, Refresh: c.Refresh.Duration,
		LoginFailuresPerUser: c.LoginFailuresPerUser, LoginFailuresPerAddress: c.LoginFailuresPerAddress,
		LoginFailureWindow: c.LoginFailureWindow.Duration, Log: log, Now: o.Env.now, Version: version.Version,
	})
	if err != nil {
		return configError(err)
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	scheme := "http"
	if c.TLS() {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return configError(fmt.Errorf("console TLS certificate: %w", err))
		}
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		scheme = "https"
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	addr := ln.Addr().String()
	auth := "users file " + c.UsersFile
	if c.Proxy.Header != "" {
		auth = "proxy header " + c.Proxy.Header
	}
	log.Info("console listening", zap.String("url", scheme+"://"+addr+"/"), zap.String("auth", auth), zap.String("store", o.Env.where))
	if _, err := fmt.Fprintf(out, "abuse desk console on %s://%s/ (%s)\n", scheme, addr, auth); err != nil {
		return err
	}
	if o.ready != nil {
		o.ready(addr)
	}
	errc := make(chan error, 1)
	go func() {
		if hs.TLSConfig != nil {
			errc <- hs.ServeTLS(ln, "", "")
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("console: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	log.Info("console stopped")
	return nil
}
