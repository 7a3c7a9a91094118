package config

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/scoring"
)

// DeskConfig configures the abuse desk's loop: held messages and what is
// done with them, the records kept in the rate store, complaints, and the
// headers that let a complaint find its account (docs/desk.md).
type DeskConfig struct {
	// Retention keeps the records of held and refused messages, and
	// complaints (default 7d).
	Retention Duration `yaml:"retention"`
	// AttributionRetention keeps the Message-ID record of every accepted
	// message, which complaints are attributed by (default 7d; 0 turns
	// these records off).
	AttributionRetention Duration `yaml:"attribution_retention"`
	// ReleaseCommand and PurgeCommand are run (argv, no shell) by the
	// milter instance that held a message, on its own host, when the desk
	// releases or purges it. Placeholders: {queue_id}, {account},
	// {instance}, {by}, {action}.
	ReleaseCommand []string `yaml:"release_command"`
	PurgeCommand   []string `yaml:"purge_command"`
	// DeliverCommand is run after a release that worked, to send the
	// message on now rather than at the MTA's next queue run (Postfix
	// moves a released message to its deferred queue); empty: none.
	DeliverCommand []string `yaml:"deliver_command"`
	// CommandTimeout bounds each run (default 30s).
	CommandTimeout Duration         `yaml:"command_timeout"`
	Complaints     ComplaintsConfig `yaml:"complaints"`
	Tracking       TrackingConfig   `yaml:"tracking"`
	Training       TrainingConfig   `yaml:"training"`
}

// TrainingConfig keeps a copy of every held message the desk releases or
// purges, as training material for the content classifier:
// `abusescan learn --spam PURGED_DIR --ham RELEASED_DIR -o MODEL`.
type TrainingConfig struct {
	// ReleasedDir and PurgedDir receive the copies (one .eml file per
	// message); empty: no copies for that decision.
	ReleasedDir string `yaml:"released_dir"`
	PurgedDir   string `yaml:"purged_dir"`
	// CopyCommand prints the held message (argv, no shell; placeholders
	// as for release_command) before it is released or purged; its
	// standard output is saved. Default: postcat -bh -q {queue_id}.
	CopyCommand []string `yaml:"copy_command"`
}

// ComplaintsConfig says what complaints count for.
type ComplaintsConfig struct {
	// Window is the window complaints are counted in (default 7d).
	Window Duration `yaml:"window"`
	// Threshold complaints within the window lock the account (0: never).
	Threshold int `yaml:"threshold"`
	// StrikeWeight is the number of strikes each complaint adds (0: none).
	StrikeWeight int `yaml:"strike_weight"`
}

// TrackingConfig selects the accounts whose accepted mail carries a
// Feedback-ID header and a tracking header, and the tracking header's key.
type TrackingConfig struct {
	// Accounts lists the account names (or "*" for every account) whose
	// mail gets the headers; empty: none.
	Accounts []string `yaml:"accounts"`
	// FeedbackID is the Feedback-ID value ("" for no Feedback-ID header);
	// {account} is replaced by the account's name. Mailbox providers'
	// feedback loops aggregate on it, e.g. "{account}:example-hosting".
	FeedbackID string `yaml:"feedback_id"`
	// Header is the tracking header's name (default X-Abuse-Tracking).
	Header string `yaml:"header"`
	// The tracking header is authenticated with a key (at least 16 bytes)
	// from a file or an environment variable, never from the config.
	KeyFile string `yaml:"key_file"`
	KeyEnv  string `yaml:"key_env"`
	// MaxAge is how long a tracking header is trusted (default 30d).
	MaxAge Duration `yaml:"max_age"`
}

// DefaultDesk returns the built-in desk settings.
func DefaultDesk() DeskConfig {
	return DeskConfig{
		Retention:            D(7 * 24 * time.Hour),
		AttributionRetention: D(7 * 24 * time.Hour),
		ReleaseCommand:       []string{"/usr/sbin/postsuper", "-H", "{queue_id}"},
		PurgeCommand:         []string{"/usr/sbin/postsuper", "-d", "{queue_id}", "hold"},
		DeliverCommand:       []string{"/usr/sbin/postqueue", "-i", "{queue_id}"},
		CommandTimeout:       D(30 * time.Second),
		Complaints:           ComplaintsConfig{Window: D(7 * 24 * time.Hour), Threshold: 5, StrikeWeight: 1},
		Tracking:             TrackingConfig{Header: "X-Abuse-Tracking", MaxAge: D(30 * 24 * time.Hour)},
		Training:             TrainingConfig{CopyCommand: []string{"/usr/sbin/postcat", "-bh", "-q", "{queue_id}"}},
	}
}

// InstanceName returns the configured instance name, or the host name.
func (c *Config) InstanceName() string {
	if c.Instance != "" {
		return c.Instance
	}
	h, _ := os.Hostname()
	return h
}

// Tracks reports whether an account's mail gets the tracking headers.
func (t TrackingConfig) Tracks(account string) bool {
	for _, a := range t.Accounts {
		if a == "*" || a == account {
			return true
		}
	}
	return false
}

// Key reads the tracking key from its file or environment variable; nil
// when neither is set.
func (t TrackingConfig) Key() ([]byte, error) {
	var key string
	switch {
	case t.KeyFile != "":
		b, err := os.ReadFile(t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("desk.tracking.key_file: %w", err)
		}
		key = strings.TrimSpace(string(b))
	case t.KeyEnv != "":
		v, ok := os.LookupEnv(t.KeyEnv)
		if !ok {
			return nil, fmt.Errorf("desk.tracking.key_env: environment variable %q is not set", t.KeyEnv)
		}
		key = strings.TrimSpace(v)
	default:
		return nil, nil
	}
	if len(key) < 16 {
		return nil, fmt.Errorf("desk.tracking: the key must be at least 16 bytes")
	}
	return []byte(key), nil
}

func (c *Config) validateDesk(e *errorList) {
	d := &c.Desk
	e.duration("desk.retention", d.Retention)
	e.duration("desk.attribution_retention", d.AttributionRetention)
	e.duration("desk.command_timeout", d.CommandTimeout)
	e.duration("desk.complaints.window", d.Complaints.Window)
	e.duration("desk.tracking.max_age", d.Tracking.MaxAge)
	if d.Retention.err == nil && d.Retention.Duration <= 0 {
		e.add("desk.retention", "must be positive")
	}
	if d.Complaints.Window.err == nil && d.Complaints.Window.Duration <= 0 {
		e.add("desk.complaints.window", "must be positive")
	}
	if d.CommandTimeout.err == nil && d.CommandTimeout.Duration <= 0 {
		e.add("desk.command_timeout", "must be positive")
	}
	for _, cmd := range []struct {
		path string
		argv []string
	}{{"desk.release_command", d.ReleaseCommand}, {"desk.purge_command", d.PurgeCommand}, {"desk.deliver_command", d.DeliverCommand}, {"desk.training.copy_command", d.Training.CopyCommand}} {
		switch {
		case len(cmd.argv) == 0 && cmd.path == "desk.deliver_command":
			// none: the MTA delivers a released message at its next queue run
		case len(cmd.argv) == 0:
			e.add(cmd.path, "must name a program")
		case !filepath.IsAbs(cmd.argv[0]):
			e.add(cmd.path, "the program %q must be an absolute path (no shell, no PATH lookup)", cmd.argv[0])
		case !strings.Contains(strings.Join(cmd.argv, " "), "{queue_id}"):
			e.add(cmd.path, "no argument holds {queue_id}")
		}
	}
	if d.Complaints.Threshold < 0 {
		e.add("desk.complaints.threshold", "must not be negative (0 turns locking by complaints off)")
	}
	if d.Complaints.StrikeWeight < 0 {
		e.add("desk.complaints.strike_weight", "must not be negative")
	}
	for _, dir := range []struct{ path, dir string }{{"desk.training.released_dir", d.Training.ReleasedDir}, {"desk.training.purged_dir", d.Training.PurgedDir}} {
		if dir.dir != "" && !filepath.IsAbs(dir.dir) {
			e.add(dir.path, "%q must be an absolute path", dir.dir)
		}
	}
	t := &d.Tracking
	if t.KeyFile != "" && t.KeyEnv != "" {
		e.add("desk.tracking.key_file", "set key_file or key_env, not both")
	}
	if len(t.Accounts) > 0 && t.KeyFile == "" && t.KeyEnv == "" {
		e.add("desk.tracking.accounts", "tracked accounts need a key: set key_file or key_env")
	}
	if t.Header == "" || strings.ContainsAny(t.Header, " :\t\r\n") {
		e.add("desk.tracking.header", "%q is not a header name", t.Header)
	}
	if strings.ContainsAny(t.FeedbackID, "\r\n") {
		e.add("desk.tracking.feedback_id", "must be one line")
	}
	for i, a := range t.Accounts {
		// (accounts may come from sender_login_maps: any name is taken)
		if strings.TrimSpace(a) == "" {
			e.add(fmt.Sprintf("desk.tracking.accounts[%d]", i), "empty account name (or \"*\" for every account)")
		}
	}
}

// ruleActions are the actions a rule or clause may be given.
var ruleActions = []string{"accept", "hold", "reject"}

// validateActions checks rules.actions and rules.hold_threshold.
func (c *Config) validateActions(e *errorList, known map[string]bool) {
	clauses := map[string]bool{string(scoring.SpamVolume): true, string(scoring.ForgedHeaders): true, string(scoring.Impersonation): true}
	for _, r := range scoring.DefaultRules() {
		clauses[string(r.Clause)] = true
	}
	names := make([]string, 0, len(c.Rules.Actions))
	for n := range c.Rules.Actions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !known[n] && !clauses[n] {
			e.add("rules.actions."+n, "unknown rule or clause %q", n)
		}
		e.oneOf("rules.actions."+n, c.Rules.Actions[n], ruleActions...)
	}
	if c.Rules.HoldThreshold < 0 {
		e.add("rules.hold_threshold", "must not be negative (0 turns it off), got %v", c.Rules.HoldThreshold)
	} else if c.Rules.HoldThreshold > 0 && c.Rules.HoldThreshold >= c.Rules.RejectThreshold {
		e.add("rules.hold_threshold", "must be below rules.reject_threshold (%v), got %v", c.Rules.RejectThreshold, c.Rules.HoldThreshold)
	}
}
