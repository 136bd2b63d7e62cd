package engine

import (
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
	j.Ended(1, "n4", Outcome{Exit: 2, Output: []byte("boom")}, false, t0.Add(time.Second))
	if j.State != Pending || j.Attempts[0].Exit != 2 || j.Attempts[0].Output != "boom" {
		t.Fatalf("after a failed attempt with retries left: %+v", j)
	}
	j.Started(2, "n5", t0.Add(2*time.Second)) // taken over
	j.Ended(2, "n5", Outcome{Exit: -1, TimedOut: true, Err: "recovery: handler timed out"}, true, t0.Add(3*time.Second))
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
	theirs.Ended(1, "n3", Outcome{Exit: 0}, true, t0.Add(time.Second))
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

func TestJobHandOver(t *testing.T) {
	t0 := time.Unix(1000, 0)
	// The executor died before anyone heard of its attempt.
	j := Job{ID: "e5-x", Epoch: 5, Executor: "n4", State: Pending}
	j.HandOver("n4", "n5", 7, t0)
	if j.FencingToken() != 7 {
		t.Fatalf("the takeover's token: %d, want 7 (above the first executor's 5)", j.FencingToken())
	}
	if j.Executor != "n5" || len(j.Attempts) != 1 || j.Attempts[0].Executor != "n4" || j.Attempts[0].Exit != -1 || j.NextAttempt() != 2 {
		t.Fatalf("handover with no known attempt: %+v", j)
	}
	// Its own announcement, arriving late, tells the real outcome.
	j.Ended(1, "n4", Outcome{Exit: 3}, false, t0.Add(time.Second))
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

func TestProbeable(t *testing.T) {
	for addr, want := range map[string]bool{
		"10.0.0.1:7946": true, "[::1]:7946": true, "host.example:1": true,
		"10.0.0.1": false, ":7946": false, "10.0.0.1:0": false, "10.0.0.1:70000": false, "10.0.0.1:x": false, "": false,
	} {
		if got := probeable(addr); got != want {
			t.Errorf("probeable(%q) = %v, want %v", addr, got, want)
		}
	}
}
