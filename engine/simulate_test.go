package engine

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSimulateReports(t *testing.T) {
	rep, err := Simulate(SimConfig{Nodes: 7, Crashes: 2, Pauses: 1, Loss: 0.05, Duration: 60 * time.Second, Seed: 3, Council: 5})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Violation != "" {
		t.Fatalf("seed 3: %s", rep.Violation)
	}
	if rep.CrashToDecision.N != 2 || rep.Undecided != 0 || rep.CrashToDecision.Max > 15*time.Second || rep.CrashToDecision.P50 <= 0 {
		t.Errorf("crash to decision %+v, %d undecided: want both crashes decided within 15 s", rep.CrashToDecision, rep.Undecided)
	}
	if rep.Recoveries < 2 || rep.Decisions < 2 || rep.DecisionLatency.N < 2 {
		t.Errorf("report %+v: want each crash decided and recovered", rep)
	}
	if rep.MessagesPerNodeSec <= 0 || rep.PingsPerNodeSec <= 0 || rep.BytesPerNodeSec <= rep.PingsPerNodeSec*PingBytes {
		t.Errorf("traffic %+v", rep)
	}
	// The same seed gives the same run.
	again, _ := Simulate(SimConfig{Nodes: 7, Crashes: 2, Pauses: 1, Loss: 0.05, Duration: 60 * time.Second, Seed: 3, Council: 5})
	if again.CrashToDecision != rep.CrashToDecision || again.BytesPerNodeSec != rep.BytesPerNodeSec {
		t.Errorf("seed 3 twice: %+v, then %+v", rep, again)
	}
}

// A safety property that breaks is reported, not hidden.
func TestSimulateReportsViolations(t *testing.T) {
	cfg := SimConfig{Nodes: 5, Partitions: 3, Duration: 60 * time.Second, Seed: 1}
	c := simConfig{n: 5, executors: allExecutors(5), duration: 40 * time.Second, faults: []simFault{
		{at: 5 * time.Second, until: 25 * time.Second, kind: "cut", a: []int{3, 4}, b: []int{0, 1, 2}},
	}, mutate: func(e *Engine) { e.broken.noRecoveryDelay = true }}
	s := newSimulation(cfg.Seed, c, false)
	s.run(c.duration)
	if !strings.Contains(s.err, "holds its lease") {
		t.Fatalf("an engine without the recovery delay: %q, want a violation", s.err)
	}
}

func TestSimConfigValidate(t *testing.T) {
	for _, c := range []SimConfig{
		{Nodes: 0, Duration: time.Minute},
		{Nodes: 5, Duration: time.Second},
		{Nodes: 5, Duration: time.Minute, Loss: 0.9},
		{Nodes: 5, Duration: time.Minute, Crashes: 5},
		{Nodes: 5, Duration: time.Minute, Council: 2},
		{Nodes: 5, Duration: time.Minute, Pauses: -1},
	} {
		if _, err := Simulate(c); err == nil {
			t.Errorf("Simulate(%+v) accepted", c)
		}
	}
}

// An engine with nothing in flight sleeps: it ticks about once a second,
// not every TickInterval, wakes at its next periodic catch-up and at its
// lease's end, and an input that ends its quiet brings the next tick back
// to TickInterval after the last.
func TestQuietEngineSleeps(t *testing.T) {
	cfg := simConfig{n: 5, executors: allExecutors(5), duration: time.Minute}
	s := newSimulation(1, cfg, false)
	s.run(20 * time.Second)
	ticks := s.ticks
	s.run(40 * time.Second)
	perSec := float64(s.ticks-ticks) / (5 * 20)
	if perSec > 1.6 || perSec < 0.5 {
		t.Errorf("an idle cluster ticks %.2f times per node and second, want about 1 (1/IdleTick; %v while busy)", perSec, 1/TickInterval.Seconds())
	}
	for _, n := range s.nodes {
		e := n.eng
		if !e.quietTick || !e.quiet() {
			t.Fatalf("%s is not quiet in an idle cluster", n.name)
		}
		next := e.NextTick()
		if gap := next.Sub(e.tickAt); gap < 5*TickInterval || gap > IdleTick {
			t.Errorf("%s: next tick %v after the last, want up to IdleTick", n.name, gap)
		}
		if catchup := e.tickAt.Add(time.Duration(e.cn.CatchupIn()) * TickInterval); next.After(catchup) {
			t.Errorf("%s: next tick %v, after its catch-up at %v", n.name, next, catchup)
		}
		// A lease ending before the idle tick brings the tick to its end.
		saved := e.leaseExpiry
		e.leaseExpiry = e.tickAt.Add(3 * TickInterval)
		if got := e.NextTick(); !got.Equal(e.leaseExpiry) {
			t.Errorf("%s: lease ends %v after the last tick, next tick %v after it", n.name, 3*TickInterval, got.Sub(e.tickAt))
		}
		e.leaseExpiry = saved
	}
	// A node whose lease came back after it fenced sleeps too: it asks
	// the cluster before it runs a job, which needs no ticks. (It ticked
	// every TickInterval for the rest of its incarnation.)
	n := s.nodes[0]
	n.eng.wasFenced = true
	s.run(45 * time.Second)
	if !n.eng.Fenced() || !n.eng.quiet() {
		t.Errorf("%s does not sleep once its lease is back (fenced %v)", n.name, n.eng.Fenced())
	}
	// Gossip that changes ends the quiet: the next tick is TickInterval
	// after the last (at once, if that is past).
	list := make([]Member, 0, len(n.gossip))
	for _, name := range slices.Sorted(maps.Keys(n.gossip)) {
		if name != s.nodes[1].name {
			list = append(list, n.gossip[name])
		}
	}
	n.eng.SetMembers(s.local(n, s.now), list)
	if got, want := n.eng.NextTick(), n.eng.tickAt.Add(TickInterval); !got.Equal(want) {
		t.Errorf("after a gossip change the next tick is %v after the last, want %v", got.Sub(n.eng.tickAt), TickInterval)
	}
}
