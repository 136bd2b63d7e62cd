package agent

import (
	"io"
	"testing"
	"time"

	"github.com/vigil-project/vigil/membership"
	"github.com/vigil-project/vigil/recovery"
	"github.com/vigil-project/vigil/store"
)

// A user event already handled, before or after a restart, asks for no
// handler run; member events are recorded in the member history.
func TestHandleEventDeduplicatesAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	h, err := recovery.ParseEventHandler("user:deploy=/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	open := func() *Agent {
		st, err := store.Open(dir, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return &Agent{cfg: Config{EventHandlers: []recovery.EventHandler{h}}, store: st, log: NewLogger(io.Discard, "error", "json").Logger}
	}
	ev := membership.Event{Type: membership.User, Name: "deploy", LTime: 7, Payload: []byte("v1")}
	jobs := func(a *Agent, ev membership.Event) int {
		before := len(a.queue)
		a.handleEvent(ev)
		return len(a.queue) - before
	}
	a := open()
	if n := jobs(a, ev); n != 1 {
		t.Fatalf("first delivery: %d jobs, want 1", n)
	}
	if n := jobs(a, ev); n != 0 {
		t.Fatalf("second delivery: %d jobs, want 0", n)
	}
	other := ev
	other.Name = "rollback"
	if n := jobs(a, other); n != 0 {
		t.Fatalf("event with no matching handler: %d jobs", n)
	}
	// serf's failed is evidence only: recorded, no handler.
	failed := membership.Event{Type: membership.MemberFailed, Members: []membership.Member{{Name: "n9", Tags: map[string]string{"boot": "b9"}}}}
	a.cfg.EventHandlers = append(a.cfg.EventHandlers, recovery.EventHandler{Filters: []recovery.Filter{{Event: "member-failed"}}, Script: "/bin/true"})
	if n := jobs(a, failed); n != 0 {
		t.Fatalf("serf's member-failed ran %d handlers; only a decided failure may", n)
	}
	a.store.Close()

	a = open()
	defer a.store.Close()
	if n := jobs(a, ev); n != 0 {
		t.Fatalf("replay after restart: %d jobs, want 0", n)
	}
	next := ev
	next.LTime = 8
	if n := jobs(a, next); n != 1 {
		t.Fatalf("a new event after restart: %d jobs, want 1", n)
	}
	hist, err := a.store.MemberHistory("n9", 10)
	if err != nil || len(hist) != 1 || hist[0].Event != "failed" || hist[0].Boot != "b9" || hist[0].Source != "serf" {
		t.Fatalf("member history = %+v, %v", hist, err)
	}
}

func TestPause(t *testing.T) {
	if !pause(time.Millisecond, make(chan struct{})) {
		t.Error("pause reported a stop that never came")
	}
	stop := make(chan struct{})
	close(stop)
	if pause(time.Hour, stop) {
		t.Error("pause waited out the hour despite the stop")
	}
}
