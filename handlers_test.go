package main

// The example handlers of testdata/handlers, run in dry-run mode the way
// vigil runs them: the environment and stdin come from
// recovery.RecoveryCommand and recovery.FenceCommand, the run from
// recovery.Run.

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-project/vigil/engine"
	"github.com/vigil-project/vigil/recovery"
)

const handlersDir = "testdata/handlers"

// exampleJob is a confirmed failure of a PostgreSQL primary, as journaled.
func exampleJob(epoch uint64, id string, tags map[string]string) engine.Job {
	return engine.Job{
		ID: id, Epoch: epoch, Node: "db-1", Boot: "b0", Addr: "10.0.0.1:7946", Tags: tags,
		Executor: "app-2", Proposer: "app-3", Votes: []string{"app-2", "app-3", "db-2"},
		State: engine.Pending,
	}
}

// handlerRun is one dry run of an example handler.
type handlerRun struct {
	exit  int
	would []string // the "would: " lines, prefix removed
	out   string
}

func runExampleHandler(t *testing.T, cmd recovery.Command, env ...string) handlerRun {
	t.Helper()
	// Empty values override anything the test process inherited.
	base := []string{
		"VIGIL_DRY_RUN=1", "VIGIL_STANDBY=", "VIGIL_REPLICA=", "VIGIL_WEBHOOK_URL=",
		"RESTART_UNIT=", "PGDATA=", "PG_CTL=", "FENCE_UNIT=", "WEBHOOK_TIMEOUT=",
	}
	cmd.Env = append(append(base, cmd.Env...), env...)
	res := recovery.Run(context.Background(), cmd)
	if res.Err != nil {
		t.Fatalf("%s: %v\n%s", cmd.Path, res.Err, res.Output)
	}
	r := handlerRun{exit: res.ExitCode, out: string(res.Output)}
	for line := range strings.Lines(r.out) {
		if s, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "would: "); ok {
			r.would = append(r.would, s)
		}
	}
	t.Logf("%s exit %d:\n%s", filepath.Base(cmd.Path), r.exit, r.out)
	return r
}

func handlerPath(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(handlersDir, name))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("%s has mode %v, want 0755", name, fi.Mode().Perm())
	}
	return p
}

func wantWould(t *testing.T, r handlerRun, want ...string) {
	t.Helper()
	if r.exit != 0 {
		t.Errorf("exit %d, want 0\n%s", r.exit, r.out)
	}
	if !slices.Equal(r.would, want) {
		t.Errorf("would run\n  %q\nwant\n  %q", r.would, want)
	}
}

func TestExampleHandlerRestartUnit(t *testing.T) {
	path := handlerPath(t, "restart-unit.sh")
	state := t.TempDir()
	job := exampleJob(7, "e6-0123456789abcdef", map[string]string{"unit": "web.service", "standby": "ops@standby-1", "role": "web"})
	cmd := recovery.RecoveryCommand(path, job, "app-2", 1, 10*time.Second)

	r := runExampleHandler(t, cmd, "HANDLER_STATE_DIR="+state)
	wantWould(t, r, "ssh -o BatchMode=yes -o ConnectTimeout=10 -- ops@standby-1 systemctl restart web.service")
	if _, err := os.Stat(filepath.Join(state, "dry-run", "done."+job.ID)); err != nil {
		t.Errorf("no dry-run marker: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "done."+job.ID)); err == nil {
		t.Errorf("a dry run wrote the real marker")
	}

	// The retry of the same decision, on attempt 2: nothing to do.
	r = runExampleHandler(t, recovery.RecoveryCommand(path, job, "app-2", 2, 10*time.Second), "HANDLER_STATE_DIR="+state)
	wantWould(t, r)
	if !strings.Contains(r.out, "already handled") {
		t.Errorf("second run does not say why it did nothing")
	}

	// A marker of a real run counts in a dry run too.
	realState := t.TempDir()
	if err := os.WriteFile(filepath.Join(realState, "done."+job.ID), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wantWould(t, runExampleHandler(t, cmd, "HANDLER_STATE_DIR="+realState))

	// Without tags: the standby from the environment, the default unit.
	bare := exampleJob(8, "e7-00000000000000aa", nil)
	cmd = recovery.RecoveryCommand(path, bare, "app-2", 1, 10*time.Second)
	wantWould(t, runExampleHandler(t, cmd, "HANDLER_STATE_DIR="+state, "VIGIL_STANDBY=standby-2"),
		"ssh -o BatchMode=yes -o ConnectTimeout=10 -- standby-2 systemctl restart app.service")

	// No standby at all, or a tag that would be shell syntax on the standby.
	if r := runExampleHandler(t, recovery.RecoveryCommand(path, exampleJob(9, "e8-00000000000000bb", nil), "app-2", 1, 0),
		"HANDLER_STATE_DIR="+state); r.exit == 0 || len(r.would) > 0 || !strings.Contains(r.out, "no standby") {
		t.Errorf("no standby: exit %d, would %q", r.exit, r.would)
	}
	evil := exampleJob(10, "e9-00000000000000cc", map[string]string{"standby": "standby-1", "unit": "web.service;reboot"})
	if r := runExampleHandler(t, recovery.RecoveryCommand(path, evil, "app-2", 1, 0),
		"HANDLER_STATE_DIR="+state); r.exit == 0 || len(r.would) > 0 {
		t.Errorf("unit with shell syntax: exit %d, would %q", r.exit, r.would)
	}
}

func TestExampleHandlerPromoteReplica(t *testing.T) {
	path := handlerPath(t, "promote-replica.sh")
	state := t.TempDir()
	primary := map[string]string{"role": "primary", "replica": "postgres@db-2"}
	pgdata := "PGDATA=/srv/pg/16/main"
	promote := "ssh -o BatchMode=yes -o ConnectTimeout=10 -- postgres@db-2 pg_ctl promote -D /srv/pg/16/main"

	job := exampleJob(12, "e11-1111111111111111", primary)
	r := runExampleHandler(t, recovery.RecoveryCommand(path, job, "app-2", 1, 0), "HANDLER_STATE_DIR="+state, pgdata)
	wantWould(t, r, promote)
	b, err := os.ReadFile(filepath.Join(state, "dry-run", "epoch.postgres@db-2"))
	if err != nil || strings.TrimSpace(string(b)) != "12" {
		t.Errorf("epoch file: %q, %v; want 12", b, err)
	}

	// Attempt 2 of the same decision: nothing to do.
	r = runExampleHandler(t, recovery.RecoveryCommand(path, job, "app-2", 2, 0), "HANDLER_STATE_DIR="+state, pgdata)
	wantWould(t, r)
	if !strings.Contains(r.out, "already handled") {
		t.Errorf("second run does not say why it did nothing")
	}

	// A stale executor: a decision of a lower epoch, after epoch 12 acted.
	stale := exampleJob(9, "e8-2222222222222222", primary)
	r = runExampleHandler(t, recovery.RecoveryCommand(path, stale, "app-5", 1, 0), "HANDLER_STATE_DIR="+state, pgdata)
	wantWould(t, r)
	if !strings.Contains(r.out, "stale") {
		t.Errorf("lower epoch not refused as stale")
	}

	// A higher epoch goes ahead and moves the fence up.
	newer := exampleJob(15, "e14-3333333333333333", primary)
	r = runExampleHandler(t, recovery.RecoveryCommand(path, newer, "app-2", 1, 0), "HANDLER_STATE_DIR="+state, pgdata)
	wantWould(t, r, promote)
	if b, _ := os.ReadFile(filepath.Join(state, "dry-run", "epoch.postgres@db-2")); strings.TrimSpace(string(b)) != "15" {
		t.Errorf("epoch file %q after epoch 15, want 15", b)
	}

	// An epoch acted on for real fences dry runs too.
	realState := t.TempDir()
	if err := os.WriteFile(filepath.Join(realState, "epoch.postgres@db-2"), []byte("20\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runExampleHandler(t, recovery.RecoveryCommand(path, newer, "app-2", 1, 0), "HANDLER_STATE_DIR="+realState, pgdata)
	wantWould(t, r)
	if !strings.Contains(r.out, "stale") {
		t.Errorf("epoch 15 after a real 20 not refused as stale")
	}

	// Not a primary: refused, exit 0, nothing done.
	web := exampleJob(16, "e15-4444444444444444", map[string]string{"role": "replica", "replica": "postgres@db-3"})
	r = runExampleHandler(t, recovery.RecoveryCommand(path, web, "app-2", 1, 0), "HANDLER_STATE_DIR="+state, pgdata)
	wantWould(t, r)
	if !strings.Contains(r.out, "not a primary") {
		t.Errorf("non-primary not refused with a message")
	}
	if _, err := os.Stat(filepath.Join(state, "dry-run", "epoch.postgres@db-3")); err == nil {
		t.Errorf("non-primary wrote an epoch")
	}

	// The replica from the environment and the default PGDATA.
	untagged := exampleJob(17, "e16-5555555555555555", map[string]string{"role": "primary"})
	r = runExampleHandler(t, recovery.RecoveryCommand(path, untagged, "app-2", 1, 0), "HANDLER_STATE_DIR="+state, "VIGIL_REPLICA=db-9")
	wantWould(t, r, "ssh -o BatchMode=yes -o ConnectTimeout=10 -- db-9 pg_ctl promote -D /var/lib/postgresql/data")
}

func TestExampleHandlerWebhook(t *testing.T) {
	path := handlerPath(t, "webhook.sh")
	job := exampleJob(12, "e11-1111111111111111", map[string]string{"role": "primary"})
	cmd := recovery.RecoveryCommand(path, job, "app-2", 3, 0)

	r := runExampleHandler(t, cmd, "VIGIL_WEBHOOK_URL=https://hooks.example.com/vigil?team=ops")
	wantWould(t, r, "curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json'"+
		" -H 'X-Vigil-Decision-Id: e11-1111111111111111' -H 'X-Vigil-Epoch: 12' --data-binary @- --url 'https://hooks.example.com/vigil?team=ops'")

	if !strings.Contains(r.out, `would post: {"id":"e11-1111111111111111","epoch":12,"decision_epoch":12,"node":"db-1"`) {
		t.Errorf("the decision JSON from stdin is not shown")
	}

	r = runExampleHandler(t, cmd)
	if r.exit == 0 || len(r.would) > 0 || !strings.Contains(r.out, "VIGIL_WEBHOOK_URL is not set") {
		t.Errorf("without a URL: exit %d, would %q, output %q", r.exit, r.would, r.out)
	}
}

func TestExampleHandlerFence(t *testing.T) {
	path := handlerPath(t, "fence.sh")
	for _, reason := range []string{"removed", "lease-expired"} {
		cmd := recovery.FenceCommand(path, "db-1", reason, 21, 0)
		wantWould(t, runExampleHandler(t, cmd, "FENCE_UNIT=postgresql@16-main.service"),
			"systemctl stop -- postgresql@16-main.service")
	}
	wantWould(t, runExampleHandler(t, recovery.FenceCommand(path, "db-1", "removed", 21, 0)),
		"systemctl stop -- app.service")
}
