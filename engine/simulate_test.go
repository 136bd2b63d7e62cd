package engine

import (
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
