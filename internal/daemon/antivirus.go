package daemon

import (
	"context"
	"fmt"

	"github.com/abusemilter/abusemilter/attachment"
	"github.com/abusemilter/abusemilter/internal/clamd"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/scoring"
)

// Clamd builds the clamd client of the antivirus section, nil when
// antivirus.clamd is empty. It does not connect.
func Clamd(cfg *config.Config) (*clamd.Client, error) {
	a := cfg.Antivirus
	if a.Clamd == "" {
		return nil, nil
	}
	c, err := clamd.New(clamd.Options{Address: a.Clamd, Timeout: a.Timeout.Duration, MaxSize: a.MaxSize.Bytes})
	if err != nil {
		return nil, fmt.Errorf("antivirus.clamd: %w", err)
	}
	return c, nil
}

// PingClamd asks the configured clamd for PONG and its version (for
// --check-config); "" and no error when no clamd is configured.
func PingClamd(ctx context.Context, cfg *config.Config) (version string, err error) {
	c, err := Clamd(cfg)
	if c == nil || err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.Ping(ctx); err != nil {
		return "", err
	}
	return c.Version(ctx)
}

// InspectLimits are the attachment inspection's limits of the config.
func InspectLimits(cfg *config.Config) attachment.Limits {
	in := cfg.Antivirus.Inspect
	return attachment.Limits{
		MaxDepth: in.MaxDepth, MaxEntries: in.MaxEntries,
		MaxExpanded: in.MaxExpanded.Bytes, MaxTime: in.MaxTime.Duration,
	}
}

// MalwareStreamOptions are the options of the malware stream every message
// goes through: the config's inspection limits and, when not nil, clamd.
func MalwareStreamOptions(cfg *config.Config, c *clamd.Client) scoring.MalwareStreamOptions {
	o := scoring.MalwareStreamOptions{Limits: InspectLimits(cfg)}
	if c != nil {
		o.Antivirus = clamdScanner{c}
	}
	return o
}

// malwareOptions maps antivirus.action and on_error to engine options.
func malwareOptions(a config.AntivirusConfig) scoring.MalwareOptions {
	mo := scoring.MalwareOptions{Action: scoring.Reject, OnError: action(a.OnError)}
	switch a.Action {
	case "defer":
		mo.Action = scoring.Defer
	case "hold":
		mo.Action = scoring.Hold
	}
	return mo
}

// clamdScanner adapts the clamd client to scoring.Antivirus.
type clamdScanner struct{ c *clamd.Client }

func (s clamdScanner) NewScan(ctx context.Context) (scoring.AntivirusScan, error) {
	sc, err := s.c.NewScan(ctx)
	if err != nil {
		return nil, err
	}
	return clamdScan{sc}, nil
}

type clamdScan struct{ s *clamd.Scan }

func (s clamdScan) Write(p []byte) (int, error) { return s.s.Write(p) }
func (s clamdScan) Close()                      { s.s.Close() }

func (s clamdScan) Finish(ctx context.Context) (scoring.AntivirusResult, error) {
	res, err := s.s.Finish(ctx)
	return scoring.AntivirusResult{Signature: res.Signature, Scanned: res.Scanned, Truncated: res.Truncated}, err
}

// antivirusRestartOnly names the antivirus settings a reload cannot apply:
// the clamd client and the body sink are built once. action and on_error
// are engine options and do apply.
func antivirusRestartOnly(old, cfg config.AntivirusConfig) []string {
	oi, ni := old.Inspect, cfg.Inspect
	if old.Clamd != cfg.Clamd || old.Timeout.Duration != cfg.Timeout.Duration || old.MaxSize.Bytes != cfg.MaxSize.Bytes ||
		oi.MaxDepth != ni.MaxDepth || oi.MaxEntries != ni.MaxEntries || oi.MaxExpanded.Bytes != ni.MaxExpanded.Bytes || oi.MaxTime.Duration != ni.MaxTime.Duration {
		return []string{"antivirus (clamd, timeout, max_size, inspect)"}
	}
	return nil
}

// virusFound counts the signature of a message clamd found a virus in.
func (o *observer) virusFound(v scoring.Verdict) {
	for _, f := range v.Findings {
		if f.Rule == scoring.RuleVirusFound {
			o.metrics.VirusFound(f.Reason)
		}
	}
}
