package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	zapobserver "go.uber.org/zap/zaptest/observer"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// TestExecutor runs the desk's commands as the daemon does: placeholders
// filled, no shell; a command that fails leaves the message failed (still
// held); postsuper that reports nothing done means the message had left the
// hold queue; the deliver command follows a release.
func TestExecutor(t *testing.T) {
	dir := t.TempDir()
	postsuper := filepath.Join(dir, "postsuper")
	// a stand-in that reports what the real one does: nothing for an id it
	// does not hold
	script := "#!/bin/sh\ncase \"$2\" in HELD*) echo \"postsuper: Released from hold: 1 message\" >&2;; esac\n"
	if err := os.WriteFile(postsuper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	delivered := filepath.Join(dir, "delivered")
	cfg := config.DefaultDesk()
	cfg.ReleaseCommand = []string{postsuper, "-H", "{queue_id}"}
	cfg.PurgeCommand = []string{"/bin/echo", "{action}", "{queue_id}", "of", "{account}", "on", "{instance}", "by", "{by}"}
	cfg.DeliverCommand = []string{"/usr/bin/touch", delivered}
	x := &executor{log: zap.NewNop()}
	x.cfg.Store(&cfg)
	req := ratelimit.DeskRequest{QueueID: "HELD1", Account: "alice; rm -rf /", Instance: "mx1", By: "oncall", Action: ratelimit.Release}
	ctx := context.Background()

	if o := x.execute(ctx, req); o.Status != ratelimit.StatusReleased || !strings.Contains(o.Detail, "Released from hold: 1 message") {
		t.Errorf("release: %+v", o)
	}
	if _, err := os.Stat(delivered); err != nil {
		t.Errorf("the deliver command did not run after the release: %v", err)
	}
	req.QueueID = "GONE1"
	if o := x.execute(ctx, req); o.Status != ratelimit.StatusNotHeld {
		t.Errorf("release of a message postsuper does not hold: %+v, want not-held", o)
	}
	req.Action = ratelimit.Purge
	if o := x.execute(ctx, req); o.Status != ratelimit.StatusPurged || strings.TrimSpace(o.Detail) != "purge GONE1 of alice; rm -rf / on mx1 by oncall" {
		t.Errorf("purge: %+v", o)
	}
	cfg2 := cfg
	cfg2.PurgeCommand = []string{"/bin/sh", "-c", "echo no such queue file; exit 3"}
	cfg2.CommandTimeout = config.D(5 * time.Second)
	x.cfg.Store(&cfg2)
	if o := x.execute(ctx, req); o.Status != ratelimit.StatusFailed || !strings.Contains(o.Detail, "no such queue file") || !strings.Contains(o.Detail, "exit status 3") {
		t.Errorf("a failing command: %+v, want failed with its output", o)
	}
}

// TestExecutorTrainingCopies: before a release or purge, the held message
// printed by copy_command (here a shell that prints it with postcat's
// framing) is saved without the framing into the decision's folder; a
// copy that fails is logged and the request is carried out all the same.
func TestExecutorTrainingCopies(t *testing.T) {
	dir := t.TempDir()
	released, purged := filepath.Join(dir, "released"), filepath.Join(dir, "purged")
	for _, d := range []string{released, purged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.DefaultDesk()
	cfg.ReleaseCommand = []string{"/bin/echo", "released", "{queue_id}"}
	cfg.PurgeCommand = []string{"/bin/echo", "purged", "{queue_id}"}
	cfg.DeliverCommand = nil
	cfg.Training = config.TrainingConfig{ReleasedDir: released, PurgedDir: purged,
		CopyCommand: []string{"/bin/sh", "-c", `printf '*** MESSAGE CONTENTS hold/%s ***\nSubject: held %s\n\nbody\n*** HEADER EXTRACTED hold/%s ***\n' "$0" "$0" "$0"`, "{queue_id}"}}
	core, logs := zapobserver.New(zap.InfoLevel)
	x := &executor{log: zap.New(core)}
	x.cfg.Store(&cfg)
	ctx := context.Background()

	saved := func(t *testing.T, folder, qid string) {
		t.Helper()
		name := strings.NewReplacer("/", "_", ".", "_").Replace(qid)
		files, _ := filepath.Glob(filepath.Join(folder, "*-"+name+".eml"))
		if len(files) != 1 {
			all, _ := os.ReadDir(folder)
			t.Fatalf("%s holds %v, want one file named for %s", folder, all, qid)
		}
		b, err := os.ReadFile(files[0])
		if want := "Subject: held " + qid + "\n\nbody\n"; err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", files[0], b, err, want)
		}
	}
	if o := x.execute(ctx, ratelimit.DeskRequest{QueueID: "REL1", Action: ratelimit.Release}); o.Status != ratelimit.StatusReleased {
		t.Fatalf("release: %+v", o)
	}
	saved(t, released, "REL1")
	if o := x.execute(ctx, ratelimit.DeskRequest{QueueID: "PUR1", Action: ratelimit.Purge}); o.Status != ratelimit.StatusPurged {
		t.Fatalf("purge: %+v", o)
	}
	saved(t, purged, "PUR1")
	// A queue id never makes a path: "../x" stays inside the folder.
	x.execute(ctx, ratelimit.DeskRequest{QueueID: "../x", Action: ratelimit.Purge})
	saved(t, purged, "../x")

	failing := cfg
	failing.Training.CopyCommand = []string{"/bin/sh", "-c", "echo postcat: fatal: open queue file {queue_id}: No such file >&2; exit 1"}
	x.cfg.Store(&failing)
	if o := x.execute(ctx, ratelimit.DeskRequest{QueueID: "REL2", Action: ratelimit.Release}); o.Status != ratelimit.StatusReleased || !strings.Contains(o.Detail, "released REL2") {
		t.Errorf("release with a failing copy: %+v, want released", o)
	}
	warned := logs.FilterMessage("training copy not saved; the request goes ahead").All()
	if len(warned) != 1 || !strings.Contains(warned[0].ContextMap()["error"].(string), "No such file") {
		t.Errorf("warnings %+v, want one with postcat's message", warned)
	}
	if files, _ := filepath.Glob(filepath.Join(released, "*-REL2.eml")); len(files) != 0 {
		t.Errorf("a failed copy left %v", files)
	}
}

// TestCheckTrainingFolders: the start-up check names a training folder
// that is missing or not a directory.
func TestCheckTrainingFolders(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Desk.Training.ReleasedDir = filepath.Join(dir, "missing")
	cfg.Desk.Training.PurgedDir = file
	err := Check(cfg)
	for _, want := range []string{"desk.training.released_dir: " + filepath.Join(dir, "missing") + " does not exist", "desk.training.purged_dir: \"" + file + "\" is not a directory"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check: %v; want %q", err, want)
		}
	}
	cfg.Desk.Training.ReleasedDir, cfg.Desk.Training.PurgedDir = dir, dir
	if err := Check(cfg); err != nil {
		t.Errorf("existing folders: %v", err)
	}
}
