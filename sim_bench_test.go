package main

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/vigil-project/vigil/engine"
)

// TestSimulationAtScale runs the engines of `vigil simulate` at 20 and at
// 1,000 nodes with 5 % loss each way: the simulation goals of the scale
// work. serf has no simulator, so its column is empty.
//
//	VIGIL_BENCH=1 [VIGIL_SIM_DURATION=10m] go test -count=1 -timeout 60m -run TestSimulationAtScale -v .
func TestSimulationAtScale(t *testing.T) {
	benchOnly(t, "to simulate 20 and 1,000 nodes (minutes of wall time)")
	dur := 10 * time.Minute
	if v := os.Getenv("VIGIL_SIM_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("VIGIL_SIM_DURATION: %v", err)
		}
		dur = d
	}
	run := func(nodes, crashes int, d time.Duration) (engine.SimReport, time.Duration) {
		start := time.Now()
		r, err := engine.Simulate(engine.SimConfig{Nodes: nodes, Loss: 0.05, Crashes: crashes, Duration: d, Seed: 1, Council: 5})
		if err != nil {
			t.Fatal(err)
		}
		if r.Violation != "" {
			t.Errorf("%d nodes, seed 1: safety violation: %s", nodes, r.Violation)
		}
		wall := time.Since(start)
		t.Logf("%d nodes, %v simulated in %v: crash→decision p50 %v p99 %v max %v (%d undecided), false removals %d, %.2f msgs, %.1f pings per node·s",
			nodes, d, wall.Round(time.Second), r.CrashToDecision.P50, r.CrashToDecision.P99, r.CrashToDecision.Max, r.Undecided,
			r.FalseRemovals, r.MessagesPerNodeSec, r.PingsPerNodeSec)
		return r, wall
	}
	small, _ := run(20, 3, 2*time.Minute)
	big, wall := run(1000, 10, dur)
	cmd := fmt.Sprintf("VIGIL_BENCH=1 VIGIL_SIM_DURATION=%v go test -timeout 60m -run TestSimulationAtScale .", dur)
	const none = "— (no simulator)"
	recordBench(t, "simulation",
		benchRow{Figure: fmt.Sprintf("simulated, 1,000 nodes, 5 %% loss, %v: false removals", dur), Vigil: fmt.Sprint(big.FalseRemovals), Serf: none, Ratio: "—", Goal: "0", Command: cmd},
		benchRow{Figure: "the same: crash → decision p50 (10 crashes)", Vigil: big.CrashToDecision.P50.Round(10 * time.Millisecond).String(), Serf: none, Ratio: "—", Goal: "≤ 2 s", Command: cmd},
		benchRow{Figure: "consensus messages per node·s, 1,000 nodes against 20", Vigil: fmt.Sprintf("%.2f against %.2f", big.MessagesPerNodeSec, small.MessagesPerNodeSec),
			Serf: none, Ratio: "—", Goal: fmt.Sprintf("≤ 1.3 × (%s ×)", ratioOf(big.MessagesPerNodeSec, small.MessagesPerNodeSec)), Command: cmd},
		benchRow{Figure: fmt.Sprintf("wall time to simulate 1,000 nodes for %v", dur), Vigil: wall.Round(time.Second).String(), Serf: none, Ratio: "—", Goal: "< 5 min for 10 min", Command: cmd},
	)
	if big.FalseRemovals > 0 || small.FalseRemovals > 0 {
		t.Errorf("false removals: %d at 1,000 nodes, %d at 20", big.FalseRemovals, small.FalseRemovals)
	}
}
