package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/abusemilter/abusemilter/internal/clamd"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/logging"
	"github.com/abusemilter/abusemilter/internal/metrics"
	"github.com/abusemilter/abusemilter/internal/notify"
	"github.com/abusemilter/abusemilter/internal/sdnotify"
	"github.com/abusemilter/abusemilter/internal/version"
	"github.com/abusemilter/abusemilter/milter"
	"github.com/abusemilter/abusemilter/ratelimit"
	"github.com/abusemilter/abusemilter/scoring"
	"github.com/redis/go-redis/v9"
)

// Options are what the command line hands the daemon.
type Options struct {
	// ConfigPath is the file a SIGHUP reads again; "" when the daemon runs
	// on built-in defaults, and a reload then has nothing to do.
	ConfigPath string
	// Load reads the config again for a reload: the file with the command
	// line's overrides applied, validated.
	Load func() (*config.Config, error)
	// Logger is the daemon's log; Level changes with log.level on reload.
	Logger *zap.Logger
	Level  zap.AtomicLevel
}

// ErrServing is wrapped by the errors Serve returns when the daemon could
// not serve (the listener could not be opened, or the server stopped on its
// own), as opposed to a clean stop.
var ErrServing = errors.New("serving failed")

// Daemon is the running milter and what a reload replaces.
type Daemon struct {
	opts    Options
	log     *zap.Logger
	level   zap.AtomicLevel
	cfg     *config.Config
	limiter ratelimit.Limiter
	// resolver is the one caching DNS resolver (nil with dns.enabled false);
	// it lives as long as the process.
	resolver scoring.Resolver
	srv      *milter.Server
	// av is the clamd client (nil without antivirus.clamd); it lives as
	// long as the process.
	av       *clamd.Client
	obs      *observer
	metrics  *metrics.Metrics
	notifier *notify.Notifier
	// sd tells systemd about readiness, reloads, stopping and liveness;
	// nil (a no-op) when not started as a Type=notify service.
	sd *sdnotify.Notifier
	// listenAddr is the milter listener's address once it is up, for the
	// status line.
	listenAddr string
	// listening is set once the milter listener is up (readiness).
	listening atomic.Bool
	// lockedEvery overrides how often the locked-accounts gauge is read
	// (tests); zero is lockedEvery.
	lockedEvery time.Duration
	// desk carries out the abuse desk's release and purge requests;
	// stopDesk stops it and waits (idempotent).
	desk     *executor
	stopDesk func()
	// tracking adds the desk's headers (nil inside: no tracked account);
	// a reload replaces it.
	tracking atomic.Pointer[tracker]
}

// New builds the engine and the server from a validated config.
func New(cfg *config.Config, o Options) (*Daemon, error) {
	logger := o.Logger
	redis.SetLogger(redisLog{logger.Named("go-redis")})
	d := &Daemon{opts: o, log: logger, level: o.Level, cfg: cfg}
	d.metrics = metrics.New(metrics.BuildInfo{Version: version.Version, Commit: version.Commit})
	d.resolver = ResolverWith(cfg, d.metrics.DNSLookup)
	redact, err := logging.RedactorFor(cfg.Log.Redact, cfg.Log.RedactKeyFile)
	if err != nil {
		return nil, err
	}
	d.sd = sdnotify.FromEnv(logger.Named("sdnotify"))
	no, err := NotifyOptions(cfg.Notify)
	if err != nil {
		return nil, err
	}
	no.Logger, no.Observer = logger.Named("notify"), d.metrics
	if d.notifier, err = notify.New(no); err != nil {
		return nil, err
	}
	d.metrics.WatchNotifyQueues(d.notifier.QueueDepths)
	d.obs = &observer{log: logger, metrics: d.metrics, notifier: d.notifier, redact: redact}
	engine, limiter, err := d.build(cfg, nil)
	if err != nil {
		d.notifier.Close(context.Background())
		return nil, err
	}
	d.limiter = limiter
	d.obs.setStore(limiter, cfg.RedisFailure)
	d.metrics.WatchStore(func() metrics.StoreStats {
		st, _ := d.obs.storeStats()
		return metrics.StoreStats(st)
	})
	d.metrics.WatchSubscription(d.obs.subscribed)
	d.desk = &executor{log: logger.Named("desk"), queue: d.obs.deskQueue}
	d.desk.cfg.Store(&cfg.Desk)
	d.metrics.ConfigLoaded()
	if d.av, err = Clamd(cfg); err != nil {
		d.notifier.Close(context.Background())
		return nil, err
	}
	if d.av != nil {
		d.metrics.WatchAntivirus(func() metrics.AntivirusStats { return metrics.AntivirusStats(d.av.Stats()) })
	}
	tr, err := newTracker(cfg.Desk.Tracking)
	if err != nil {
		d.notifier.Close(context.Background())
		return nil, err
	}
	d.tracking.Store(tr)
	so := ServerOptions(cfg, engine, logger)
	so.NewBodySink = milter.MultiSink(milter.DKIMSink(d.resolver), milter.MalwareSink(MalwareStreamOptions(cfg, d.av)))
	so.Observer = d.obs
	if redact != nil {
		so.Redact = redact
	}
	so.ExtraHeaders = func(_ *scoring.Envelope, id scoring.Identity) []scoring.Header {
		return d.tracking.Load().headers(id.Name())
	}
	d.srv = milter.New(so)
	return d, nil
}

// ready is the /readyz check: the milter listens and has an engine. A rate
// store that does not answer is not "not ready": the fail mode decides.
func (d *Daemon) ready() error {
	if !d.listening.Load() {
		return errors.New("milter listener not up yet")
	}
	if d.srv.Engine() == nil {
		return errors.New("no config loaded")
	}
	return nil
}

// ServerOptions maps the config to the milter server's options.
func ServerOptions(cfg *config.Config, engine *scoring.Engine, logger *zap.Logger) milter.Options {
	return milter.Options{
		Engine:      engine,
		Logger:      logger,
		IdleTimeout: cfg.Session.IdleTimeout.Duration,
		MaxSessions: cfg.Session.MaxSessions,
		MaxPacket:   cfg.Session.MaxPacket.Bytes,
		BodySample:  cfg.Message.BodySample.Bytes,
		MaxHeaders:  cfg.Message.MaxHeaders,
		OwnHeaders:  []string{cfg.Desk.Tracking.Header},
	}
}

// build makes an engine for cfg. The old limiter (nil at start) is reused
// when the rate settings did not change, so counters survive a reload.
func (d *Daemon) build(cfg *config.Config, old ratelimit.Limiter) (*scoring.Engine, ratelimit.Limiter, error) {
	dir, err := Directory(cfg)
	if err != nil {
		return nil, nil, err
	}
	// The model file is read again on every reload.
	cs, err := Classifier(cfg)
	if err != nil {
		return nil, nil, err
	}
	if cs.Model != nil {
		d.log.Info("content classifier loaded", zap.String("model", cfg.Rules.Classifier.Model),
			zap.String("describe", cs.Model.Describe()), zap.Float64("hold_probability", cs.HoldProbability))
	}
	limiter := old
	if old == nil || !sameLimiterSettings(d.cfg, cfg) {
		if limiter, err = LimiterWith(cfg, ratelimit.Options{OnEvent: d.obs.storeEvent}); err != nil {
			return nil, nil, err
		}
	}
	return Engine(cfg, dir, timed(limiter, d.metrics), d.resolver, WithRulePanicHandler(d.obs.rulePanicked), WithClassifier(cs)), limiter, nil
}

// sameLimiterSettings reports whether two configs build the same limiter.
func sameLimiterSettings(a, b *config.Config) bool {
	return reflect.DeepEqual(Policy(a), Policy(b)) && reflect.DeepEqual(a.Redis, b.Redis) && a.InstanceName() == b.InstanceName()
}

// Serve listens, serves and handles signals until a stop. It returns nil
// after a clean stop and an error wrapping ErrServing when it could not
// serve; the error is logged already.
func (d *Daemon) Serve(signals <-chan os.Signal) error {
	lo, err := ListenOptions(d.cfg)
	if err != nil {
		return d.failed("cannot listen", err)
	}
	ln, err := milter.Listen(d.cfg.Listen, lo)
	if err != nil {
		return d.failed("cannot listen", err)
	}
	var trialLn net.Listener
	if d.cfg.Trial.Listen != "" {
		tlo := milter.ListenOptions{AllowNonLoopback: d.cfg.AllowNonLoopback}
		if tlo.SocketMode, err = config.ParseFileMode(cmp.Or(d.cfg.Trial.SocketMode, "0600")); err != nil {
			ln.Close()
			return d.failed("cannot listen for trials", err)
		}
		if trialLn, err = milter.Listen(d.cfg.Trial.Listen, tlo); err != nil {
			ln.Close()
			return d.failed("cannot listen for trials", err)
		}
	}
	msrv, err := d.metrics.Serve(d.cfg.Metrics.Listen, d.ready)
	if err != nil {
		ln.Close()
		if trialLn != nil {
			trialLn.Close()
		}
		return d.failed("cannot serve metrics", err)
	}
	defer msrv.Shutdown(context.Background())
	watchCtx, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	go d.watchLocked(watchCtx, cmp.Or(d.lockedEvery, lockedEvery))
	watchdog, stopWatchdog := d.watchdog()
	defer stopWatchdog()
	served := make(chan error, 1)
	go func() { served <- d.srv.Serve(ln) }()
	deskCtx, stopDesk := context.WithCancel(context.Background())
	deskDone := make(chan struct{})
	go func() { defer close(deskDone); d.desk.run(deskCtx) }()
	var once sync.Once
	d.stopDesk = func() { once.Do(func() { stopDesk(); <-deskDone }) }
	defer d.stopDesk()
	d.listenAddr = ln.Addr().Network() + ":" + ln.Addr().String()
	ready := []zap.Field{
		zap.String("version", version.String()),
		zap.String("listen", d.listenAddr),
		zap.String("mode", d.cfg.Mode),
		zap.String("config", d.cfg.Path),
		zap.String("metrics", msrv.Addr()),
	}
	if trialLn != nil {
		go func() {
			if err := d.srv.Serve(milter.TrialListener(trialLn)); !errors.Is(err, milter.ErrServerClosed) {
				d.log.Error("trial listener stopped", zap.Error(err))
			}
		}()
		ready = append(ready, zap.String("trial_listen", trialLn.Addr().Network()+":"+trialLn.Addr().String()))
	}
	d.listening.Store(true)
	d.log.Info("abusemilter ready", ready...)
	d.sd.Ready(d.status(""))
	for {
		select {
		case err := <-served:
			d.sd.Status("milter server stopped: " + err.Error())
			return d.failed("milter server stopped", err)
		case <-watchdog:
			// Pinged from this loop, so a loop stuck in a reload or a
			// signal is not pinged for, and systemd restarts it.
			if d.ready() == nil {
				d.sd.Watchdog()
			}
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				d.sd.Reloading("reloading " + cmp.Or(d.opts.ConfigPath, "(no config file: nothing to reload)"))
				if err := d.reload(); err != nil {
					first, _, _ := strings.Cut(err.Error(), "\n")
					d.sd.Ready(d.status("reload failed, running config kept (see the log): " + first))
				} else {
					d.sd.Ready(d.status(""))
				}
				continue
			}
			d.sd.Stopping("stopping on " + signalName(sig) + ", letting open sessions finish")
			return d.stop(sig, served)
		}
	}
}

// watchdog returns a channel that ticks every half of systemd's watchdog
// timeout ($WATCHDOG_USEC), or nil (never ticks) when no watchdog is
// asked of this process, and the function that stops it.
func (d *Daemon) watchdog() (<-chan time.Time, func()) {
	if d.sd == nil {
		return nil, func() {}
	}
	every, ok, err := sdnotify.WatchdogInterval()
	if err != nil {
		d.log.Warn("systemd watchdog not armed", zap.Error(err))
	}
	if !ok {
		return nil, func() {}
	}
	t := time.NewTicker(every)
	return t.C, t.Stop
}

// signalName is "SIGTERM" where sig.String() says "terminated".
func signalName(sig os.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return sig.String()
}

// status is the one-line state shown by systemctl status, with note
// appended when not empty.
func (d *Daemon) status(note string) string {
	s := "serving milter on " + d.listenAddr + ", mode " + d.cfg.Mode
	if note != "" {
		s += "; " + note
	}
	return s
}

// stop shuts down gracefully within the configured grace.
func (d *Daemon) stop(sig os.Signal, served <-chan error) error {
	grace := d.cfg.Session.ShutdownGrace.Duration
	d.log.Info("stopping", zap.String("signal", sig.String()), zap.Duration("grace", grace))
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := d.srv.Shutdown(ctx)
	if serr := <-served; !errors.Is(serr, milter.ErrServerClosed) {
		d.log.Warn("listener: " + serr.Error())
	}
	if err != nil {
		d.log.Warn("sessions still in a message after the grace period were closed", zap.Error(err))
	}
	if d.av != nil {
		d.av.Close()
	}
	d.stopDesk()
	if cerr := d.limiter.Close(); cerr != nil {
		d.log.Warn("closing the rate store", zap.Error(cerr))
	}
	nctx, ncancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ncancel()
	if nerr := d.notifier.Close(nctx); nerr != nil {
		d.log.Warn("notifications still queued at exit were dropped", zap.Error(nerr))
	}
	d.log.Info("stopped")
	return nil
}

// failed logs why the daemon cannot serve and returns that as an error
// wrapping ErrServing.
func (d *Daemon) failed(what string, err error) error {
	d.log.Error(what + ": " + err.Error())
	return fmt.Errorf("%w: %s: %w", ErrServing, what, err)
}

// reload reads the config file again and swaps the engine. A broken config
// is logged with all its problems and the running one stays; the error
// returned is the reason, for the status line.
func (d *Daemon) reload() error {
	// The audit log is reopened on every SIGHUP, whether the config then
	// loads or not: log rotation relies on it.
	if err := d.notifier.Reopen(); err != nil {
		d.log.Warn("reopening the audit log", zap.Error(err))
	}
	if d.opts.ConfigPath == "" {
		d.log.Info("SIGHUP: no config file given, nothing to reload")
		return nil
	}
	cfg, err := d.opts.Load()
	if err != nil {
		fields := []zap.Field{zap.String("config", d.opts.ConfigPath)}
		var ce *config.Error
		if errors.As(err, &ce) {
			fields = append(fields, zap.Strings("problems", ce.Problems))
		} else {
			fields = append(fields, zap.Error(err))
		}
		// A warning (priority 4 in the journal): the daemon still serves.
		d.log.Warn("config reload failed, keeping the running config", fields...)
		d.metrics.ConfigReloaded(err)
		return err
	}
	tr, err := newTracker(cfg.Desk.Tracking)
	var engine *scoring.Engine
	var limiter ratelimit.Limiter
	if err == nil {
		engine, limiter, err = d.build(cfg, d.limiter)
	}
	if err != nil {
		d.log.Warn("config reload failed, keeping the running config", zap.String("config", d.opts.ConfigPath), zap.Error(err))
		d.metrics.ConfigReloaded(err)
		return err
	}
	d.tracking.Store(tr)
	d.metrics.ConfigReloaded(nil)
	d.obs.setStore(limiter, cfg.RedisFailure)
	kept := limiter == d.limiter
	if !kept {
		old := d.limiter
		// Messages in flight may still use the old limiter through their engine.
		time.AfterFunc(d.cfg.Session.ShutdownGrace.Duration+milter.DefaultCheckTimeout, func() { old.Close() })
	}
	for _, change := range restartOnly(d.cfg, cfg) {
		d.log.Warn("config change needs a restart to apply", zap.String("field", change))
	}
	if cfg.Log.Level != d.cfg.Log.Level {
		if err := logging.SetLevel(d.level, cfg.Log.Level); err != nil {
			d.log.Warn("log level: " + err.Error())
		}
	}
	d.cfg, d.limiter = cfg, limiter
	d.desk.cfg.Store(&cfg.Desk)
	d.srv.SetEngine(engine)
	d.log.Info("config reloaded", zap.String("config", cfg.Path), zap.String("mode", cfg.Mode), zap.Bool("rate_counters_kept", kept))
	return nil
}

// restartOnly lists changed settings that a reload cannot apply.
func restartOnly(old, cfg *config.Config) []string {
	var out []string
	if old.Listen != cfg.Listen || old.AllowNonLoopback != cfg.AllowNonLoopback || old.Socket != cfg.Socket {
		out = append(out, "listen")
	}
	if !reflect.DeepEqual(old.Session, cfg.Session) {
		out = append(out, "session")
	}
	if !reflect.DeepEqual(old.Message, cfg.Message) {
		out = append(out, "message")
	}
	if old.Log.Format != cfg.Log.Format {
		out = append(out, "log.format")
	}
	if old.Log.Redact != cfg.Log.Redact || old.Log.RedactKeyFile != cfg.Log.RedactKeyFile {
		out = append(out, "log.redact")
	}
	if old.Trial != cfg.Trial {
		out = append(out, "trial")
	}
	if !reflect.DeepEqual(old.DNS, cfg.DNS) {
		out = append(out, "dns")
	}
	if old.Metrics != cfg.Metrics {
		out = append(out, "metrics")
	}
	if !reflect.DeepEqual(old.Notify, cfg.Notify) {
		out = append(out, "notify")
	}
	out = append(out, antivirusRestartOnly(old.Antivirus, cfg.Antivirus)...)
	return out
}
