package engine

// The whole-agent simulation (sim.go) over thousands of seeds: 3 to 25
// engines with random faults, the safety properties checked after every
// step.
//
// Replay one seed: go test ./engine -run 'TestSimulation$' -sim.seed=N -v
// (add -sim.trace for every event).

import (
	"flag"
	"fmt"
	"math/rand"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-project/vigil/consensus"
)

var (
	flagSimSeeds = flag.Int("sim.seeds", 0, "whole-agent simulation: seeds to run (0: the default of this build)")
	flagSimSeed  = flag.Int64("sim.seed", -1, "whole-agent simulation: replay this one seed")
	flagSimBase  = flag.Int64("sim.base", 1, "whole-agent simulation: first seed")
	flagSimTrace = flag.Bool("sim.trace", false, "whole-agent simulation: print every event of a replayed seed")
	flagSimLogs  = flag.Bool("sim.logs", false, "whole-agent simulation: with -sim.trace, the engines' log lines too")
	flagSimDebug = flag.Bool("sim.debug", false, "whole-agent simulation: with -sim.logs, debug lines too")
)

// randomConfig draws a seed's cluster and faults: a minority of crashes
// (some restarted, with or without their data dir), pauses, two-way and
// one-way partitions, loss and duplication.
func randomConfig(r *rand.Rand) simConfig {
	sizes := []int{3, 3, 4, 5, 5, 5, 6, 7, 9, 12, 25}
	cfg := simConfig{n: sizes[r.Intn(len(sizes))], duration: 25 * time.Second}
	if r.Intn(3) == 0 {
		cfg.quorum = consensus.TwoThirds
	}
	if cfg.n > 7 && r.Intn(2) == 0 {
		cfg.council = 5
	}
	perm := r.Perm(cfg.n)
	// A quorum of the acceptors always survives, so liveness holds: with
	// a council, fewer faults than half of it.
	acc := cfg.n
	if cfg.council > 0 && cfg.n > cfg.council {
		acc = cfg.council
	}
	faulty := perm[:acc-consensus.QuorumSize(acc, cfg.quorum)]
	for k, i := range faulty {
		at := time.Duration(2+r.Intn(15)) * time.Second
		switch r.Intn(7) {
		case 6:
			cfg.faults = append(cfg.faults, simFault{at: at, until: at + time.Duration(1+r.Intn(8))*time.Second, kind: "diskfail", a: []int{i}})
		case 0:
			cfg.faults = append(cfg.faults, simFault{at: at, kind: "crash", a: []int{i}})
		case 1:
			cfg.faults = append(cfg.faults, simFault{at: at, kind: "restart", a: []int{i}})
		case 2:
			cfg.faults = append(cfg.faults, simFault{at: at, kind: "wipe", a: []int{i}})
		case 3:
			cfg.faults = append(cfg.faults, simFault{at: at, until: at + time.Duration(1+r.Intn(8))*time.Second, kind: "pause", a: []int{i}})
		case 4:
			rest := perm[len(faulty):]
			cfg.faults = append(cfg.faults, simFault{at: at, until: at + time.Duration(1+r.Intn(8))*time.Second, kind: "cut", a: []int{i}, b: rest})
		case 5:
			rest := perm[len(faulty):]
			if k%2 == 0 {
				cfg.faults = append(cfg.faults, simFault{at: at, until: at + time.Duration(1+r.Intn(8))*time.Second, kind: "oneway", a: []int{i}, b: rest})
			} else {
				cfg.faults = append(cfg.faults, simFault{at: at, until: at + time.Duration(1+r.Intn(8))*time.Second, kind: "oneway", a: rest, b: []int{i}})
			}
		}
	}
	if r.Intn(3) == 0 {
		cfg.faults = append(cfg.faults, simFault{at: time.Second, until: cfg.duration, kind: "loss", loss: 0.05 + r.Float64()*0.15})
	}
	if r.Intn(3) == 0 {
		cfg.faults = append(cfg.faults, simFault{at: time.Second, until: cfg.duration, kind: "dup", loss: 0.05})
	}
	return cfg
}

// simQuiet is how long the simulation runs after the faults end before
// it checks that the cluster has settled.
const simQuiet = 45 * time.Second

func runSeed(seed int64, tracing bool) simResult {
	r := rand.New(rand.NewSource(seed))
	cfg := randomConfig(r)
	s := newSimulation(seed, cfg, tracing)
	s.logs, s.debug = *flagSimLogs, *flagSimDebug
	s.run(cfg.duration + simQuiet)
	if s.err == "" {
		s.settled()
	}
	return simResult{err: s.err, unrecovered: s.unrecovered, trace: s.trace, falseR: s.falseRm, stats: fmt.Sprintf(
		"%d nodes, %d decisions (%d failures), %d recovery runs, %d fences, %d messages", cfg.n, len(s.decided), s.removals, s.runs, s.fences, s.msgs)}
}

// TestSimulation runs whole agents over thousands of seeds; the failing
// seed is printed with the command that replays it.
func TestSimulation(t *testing.T) {
	if *flagSimSeed >= 0 {
		res := runSeed(*flagSimSeed, *flagSimTrace)
		if *flagSimTrace {
			t.Log("\n" + strings.Join(res.trace, "\n"))
		}
		if res.err != "" {
			t.Fatalf("seed %d: %s", *flagSimSeed, res.err)
		}
		if res.unrecovered != "" {
			t.Logf("seed %d: known liveness gap: %s", *flagSimSeed, res.unrecovered)
		}
		t.Logf("seed %d: %s", *flagSimSeed, res.stats)
		return
	}
	n := *flagSimSeeds
	if n == 0 {
		n = simSeeds
		if testing.Short() {
			n = max(n/10, 20)
		}
	}
	var next atomic.Int64
	next.Store(*flagSimBase)
	last := *flagSimBase + int64(n)
	var mu sync.Mutex
	var failed, gaps []string
	var wg sync.WaitGroup
	start := time.Now()
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seed := next.Add(1) - 1
				if seed >= last {
					return
				}
				res := runSeed(seed, false)
				mu.Lock()
				if res.err != "" {
					failed = append(failed, fmt.Sprintf("seed %d: %s\n  replay: go test ./engine -run 'TestSimulation$' -sim.seed=%d -sim.trace -v", seed, res.err, seed))
				}
				if res.unrecovered != "" {
					gaps = append(gaps, fmt.Sprintf("seed %d: %s", seed, res.unrecovered))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Strings(failed)
	sort.Strings(gaps)
	// A decided failure that no journal ever saw recovered is a liveness
	// gap (README's known gaps), reported here, not a failure: the safety
	// checks above are what fails the test.
	for _, g := range gaps {
		t.Logf("known liveness gap, %s", g)
	}
	for _, f := range failed {
		t.Error(f)
	}
	t.Logf("%d seeds from %d in %v, %d failed", n, *flagSimBase, time.Since(start).Round(time.Millisecond), len(failed))
}
