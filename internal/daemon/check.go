package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/abusemilter/abusemilter/identity"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// Check builds, without serving, everything the daemon builds at start
// from a validated config, and reports every problem at once as a
// *config.Error (nil when there is none): the identity directory (each
// account's send_as, each sender-login map), the Redis password and TLS
// files, the webhook tokens, the on-lock command's program, the audit log's
// directory, the desk's training folders, the listen addresses (host,
// socket directory, socket group), the content classifier's model, and the
// rule settings. `abusemilter --check-config`, the start and every
// reload run it, so a config the check accepts is one the daemon starts
// with, and one it refuses ends the start with exit status 2.
//
// It connects to nothing: an unreachable Redis or webhook receiver is a
// runtime condition (the fail mode decides), not a configuration error.
func Check(cfg *config.Config) error {
	var problems []string
	add := func(path, format string, args ...any) {
		problems = append(problems, cfg.Problem(path, format, args...))
	}
	dirOK := checkIdentity(cfg, add)
	checkNotify(cfg, add)
	checkTraining(cfg, add)
	checkListen(cfg, add)
	limiterOK := true
	if cfg.Redis != nil {
		r, err := RedisStore(cfg, ratelimit.Options{})
		if err != nil {
			limiterOK = false
			path, msg := splitPath(err.Error(), "redis")
			add(path, "%s", msg)
		} else {
			r.Close()
		}
	}
	if _, err := Classifier(cfg); err != nil {
		path, msg := splitPath(err.Error(), "rules.classifier.model")
		add(path, "%s", msg)
	}
	if dirOK && limiterOK && len(problems) == 0 {
		// The rule settings: the engine the daemon would serve with, over
		// the directory and an in-memory store (the Redis one is checked
		// above; building the engine over it changes nothing).
		dir, err := Directory(cfg)
		if err != nil {
			add("identity", "%v", err)
		} else {
			lim := ratelimit.NewMemoryOptions(Policy(cfg), nil, ratelimit.Options{})
			if e := Engine(cfg, dir, lim, nil); e == nil {
				add("rules", "the rule engine could not be built")
			}
			lim.Close()
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return &config.Error{Path: cfg.Path, Problems: problems}
}

// splitPath splits "redis.password_file: open ...: no such file" into its
// field path and message; an error without a path goes under def.
func splitPath(s, def string) (string, string) {
	if p, msg, ok := strings.Cut(s, ": "); ok && !strings.ContainsAny(p, " /") {
		return p, msg
	}
	return def, s
}

// checkIdentity checks every account's send_as patterns and every
// sender-login map, then builds the directory; it reports whether the
// directory could be built.
func checkIdentity(cfg *config.Config, add func(path, format string, args ...any)) bool {
	ok := true
	ic := cfg.Identity
	for _, name := range sortedKeys(ic.Accounts) {
		scratch := &identity.Account{Name: name}
		for i, p := range ic.Accounts[name].SendAs {
			if err := scratch.AddSendAs(p); err != nil {
				ok = false
				add(fmt.Sprintf("identity.accounts.%s.send_as[%d]", name, i), "%s",
					strings.TrimPrefix(err.Error(), fmt.Sprintf("account %q: ", name)))
			}
		}
	}
	for i, path := range ic.SenderLoginMaps {
		field := fmt.Sprintf("identity.sender_login_maps[%d]", i)
		entries, err := identity.ReadLoginMapFile(path)
		if err != nil {
			ok = false
			add(field, "%s", config.FileProblem(path, err))
			continue
		}
		scratch := &identity.Account{Name: "map"}
		for _, en := range entries {
			if err := scratch.AddSendAs(en.Sender); err != nil {
				ok = false
				add(field, "%s:%d: sender %q is not an address, @domain or domain", path, en.Line, en.Sender)
			}
		}
	}
	if ok {
		if _, err := Directory(cfg); err != nil {
			add("identity", "%v", err)
			return false
		}
	}
	return ok
}

// checkNotify checks the webhook tokens, the on-lock command's program and
// the audit log's directory.
func checkNotify(cfg *config.Config, add func(path, format string, args ...any)) {
	n := cfg.Notify
	for i, w := range n.Webhooks {
		if _, err := w.Token(); err != nil {
			field := fmt.Sprintf("notify.webhooks[%d].token_file", i)
			msg := err.Error()
			if w.TokenEnv != "" {
				field = fmt.Sprintf("notify.webhooks[%d].token_env", i)
			} else {
				var pe *fs.PathError
				if errors.As(err, &pe) {
					msg = config.FileProblem(w.TokenFile, err)
				}
			}
			add(field, "%s", msg)
		}
	}
	if len(n.OnLockCommand) > 0 {
		prog := n.OnLockCommand[0]
		switch info, err := os.Stat(prog); {
		case err != nil:
			add("notify.on_lock_command", "the program %s", config.FileProblem(prog, err))
		case info.IsDir():
			add("notify.on_lock_command", "the program %q is a directory", prog)
		case info.Mode()&0o111 == 0:
			add("notify.on_lock_command", "the program %q is not executable", prog)
		}
	}
	if n.AuditLog != "" {
		dir := filepath.Dir(n.AuditLog)
		if info, err := os.Stat(dir); err != nil {
			add("notify.audit_log", "the directory of the audit log: %s", config.FileProblem(dir, err))
		} else if !info.IsDir() {
			add("notify.audit_log", "%q is not a directory", dir)
		} else if info, err := os.Stat(n.AuditLog); err == nil && info.IsDir() {
			add("notify.audit_log", "%q is a directory, not a file", n.AuditLog)
		}
	}
}

// checkTraining checks that the folders of the desk's training copies
// are directories.
func checkTraining(cfg *config.Config, add func(path, format string, args ...any)) {
	t := cfg.Desk.Training
	for _, d := range []struct{ path, dir string }{{"desk.training.released_dir", t.ReleasedDir}, {"desk.training.purged_dir", t.PurgedDir}} {
		if d.dir == "" {
			continue
		}
		if info, err := os.Stat(d.dir); err != nil {
			add(d.path, "%s", config.FileProblem(d.dir, err))
		} else if !info.IsDir() {
			add(d.path, "%q is not a directory", d.dir)
		}
	}
}

// checkListen checks what opening the listeners needs from the host: a
// host name that resolves, a unix socket's directory and group.
func checkListen(cfg *config.Config, add func(path, format string, args ...any)) {
	network, addr, err := config.ParseListen(cfg.Listen)
	if err != nil {
		add("listen", "%v", err)
		return
	}
	switch network {
	case "tcp":
		if _, err := net.ResolveTCPAddr("tcp", addr); err != nil {
			add("listen", "%q: %v", cfg.Listen, err)
		}
	case "unix":
		dir := filepath.Dir(addr)
		if info, err := os.Stat(dir); err != nil {
			add("listen", "%q: the socket directory %s", cfg.Listen, config.FileProblem(dir, err))
		} else if !info.IsDir() {
			add("listen", "%q: %s is not a directory", cfg.Listen, dir)
		}
		if info, err := os.Lstat(addr); err == nil && info.Mode()&fs.ModeSocket == 0 {
			add("listen", "%q: %s exists and is not a socket (it is never replaced)", cfg.Listen, addr)
		}
		if g := cfg.Socket.Group; g != "" {
			if _, err := lookupGroup(g); err != nil {
				add("socket.group", "%v", err)
			}
		}
	}
	if _, err := ListenOptions(cfg); err != nil {
		add("socket.mode", "%v", err)
	}
	if cfg.Metrics.Listen != "" {
		if _, err := net.ResolveTCPAddr("tcp", cfg.Metrics.Listen); err != nil {
			add("metrics.listen", "%q: %v", cfg.Metrics.Listen, err)
		}
	}
}

// lookupGroup finds a group by name or number.
func lookupGroup(name string) (*user.Group, error) {
	if _, err := strconv.Atoi(name); err == nil {
		if g, err := user.LookupGroupId(name); err == nil {
			return g, nil
		}
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return nil, fmt.Errorf("group %q does not exist on this host", name)
	}
	return g, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
