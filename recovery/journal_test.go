package recovery

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestJobStates(t *testing.T) {
	t0 := time.Unix(1000, 0)
	j := Job{ID: "e5-x", Node: "n3", Executor: "n4", State: Pending}
	j.Started(1, "n4", t0)
	if j.State != Running || j.NextAttempt() != 2 {
		t.Fatalf("after start: %+v", j)
	}
	j.Ended(1, "n4", Result{ExitCode: 2, Output: []byte("boom")}, false, t0.Add(time.Second))
	if j.State != Pending || j.Attempts[0].Exit != 2 || j.Attempts[0].Output != "boom" {
		t.Fatalf("after a failed attempt with retries left: %+v", j)
	}
	j.Started(2, "n5", t0.Add(2*time.Second)) // taken over
	j.Ended(2, "n5", Result{ExitCode: -1, TimedOut: true, Err: errors.New("recovery: handler timed out")}, true, t0.Add(3*time.Second))
	if j.State != Failed || len(j.Attempts) != 2 || !j.Attempts[1].TimedOut || j.Attempts[1].Executor != "n5" {
		t.Fatalf("after the last attempt timed out: %+v", j)
	}
	// A late "started" announcement does not reopen a final job.
	j.Started(2, "n5", t0.Add(4*time.Second))
	if j.State != Failed {
		t.Fatalf("a final job reopened: %+v", j)
	}
	b, err := j.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeJob(b)
	if err != nil || back.State != Failed || len(back.Attempts) != 2 {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	for _, bad := range []string{"", "{", `{"id":""}`, `[1]`} {
		if _, err := DecodeJob([]byte(bad)); err == nil {
			t.Errorf("DecodeJob(%q) accepted", bad)
		}
	}
}

func TestJobMerge(t *testing.T) {
	t0 := time.Unix(1000, 0)
	mine := Job{ID: "e5-x", Node: "n3", Executor: "n4", State: Running}
	mine.Started(1, "n3", t0)
	theirs := mine
	theirs.Attempts = append([]Attempt(nil), mine.Attempts...)
	theirs.Ended(1, "n3", Result{ExitCode: 0}, true, t0.Add(time.Second))
	mine.Merge(theirs)
	if mine.State != Succeeded || mine.Attempts[0].Ended.IsZero() {
		t.Fatalf("merge of a finished job: %+v", mine)
	}
	// A stale answer does not undo what is known.
	stale := Job{ID: "e5-x", State: Running, Attempts: []Attempt{{N: 1, Executor: "n3", Started: t0}}}
	mine.Merge(stale)
	if mine.State != Succeeded || mine.Attempts[0].Ended.IsZero() {
		t.Fatalf("a stale answer undid a finished job: %+v", mine)
	}
	other := Job{ID: "e9-y", State: Succeeded}
	mine.Merge(other)
	if len(mine.Attempts) != 1 {
		t.Fatalf("merged another job: %+v", mine)
	}
}

func TestRecoveryCommandContract(t *testing.T) {
	j := Job{ID: "e5-x", Epoch: 6, Node: "n3", Boot: "b3", Addr: "10.0.0.3:7946", Executor: "n4",
		Tags: map[string]string{"role": "db", "dc-zone": "a"}, Votes: []string{"n1", "n4"}}
	c := RecoveryCommand("/bin/h", j, "n4", 2, time.Minute)
	if c.Path != "/bin/h" || c.Shell != "" || len(c.Args) != 0 || c.Timeout != time.Minute {
		t.Fatalf("command %+v: want the handler executed directly", c)
	}
	env := strings.Join(c.Env, "\n")
	for _, want := range []string{"VIGIL_EVENT=recovery", "VIGIL_NODE=n3", "VIGIL_NODE_ADDR=10.0.0.3:7946",
		"VIGIL_SELF=n4", "VIGIL_EPOCH=6", "VIGIL_DECISION_ID=e5-x", "VIGIL_ATTEMPT=2",
		"VIGIL_NODE_TAG_ROLE=db", "VIGIL_NODE_TAG_DC_ZONE=a"} {
		if !strings.Contains(env, want) {
			t.Errorf("env lacks %s:\n%s", want, env)
		}
	}
	if !strings.Contains(string(c.Stdin), `"votes":["n1","n4"]`) || !strings.Contains(string(c.Stdin), `"attempt":2`) {
		t.Errorf("stdin %s", c.Stdin)
	}
}

func TestJobHandOver(t *testing.T) {
	t0 := time.Unix(1000, 0)
	// The executor died before anyone heard of its attempt.
	j := Job{ID: "e5-x", Epoch: 5, Executor: "n4", State: Pending}
	j.HandOver("n4", "n5", 7, t0)
	if j.FencingToken() != 7 || RecoveryCommand("/x", j, "n5", 2, time.Second).Env[4] != "VIGIL_EPOCH=7" {
		t.Fatalf("the takeover's token: %d, want 7 (above the first executor's 5)", j.FencingToken())
	}
	if j.Executor != "n5" || len(j.Attempts) != 1 || j.Attempts[0].Executor != "n4" || j.Attempts[0].Exit != -1 || j.NextAttempt() != 2 {
		t.Fatalf("handover with no known attempt: %+v", j)
	}
	// Its own announcement, arriving late, tells the real outcome.
	j.Ended(1, "n4", Result{ExitCode: 3}, false, t0.Add(time.Second))
	if j.Attempts[0].Exit != 3 || j.Attempts[0].Error != "" {
		t.Fatalf("a late first-hand end: %+v", j.Attempts[0])
	}
	// An attempt that was running is closed, not duplicated.
	k := Job{ID: "e6-y", Executor: "n4", State: Pending}
	k.Started(1, "n4", t0)
	k.HandOver("n4", "n5", 8, t0.Add(time.Second))
	if len(k.Attempts) != 1 || k.Attempts[0].Ended.IsZero() || k.State != Pending || k.NextAttempt() != 2 {
		t.Fatalf("handover of a running attempt: %+v", k)
	}
}
