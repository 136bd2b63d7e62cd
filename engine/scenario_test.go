package engine

// The cases of the safety issue, each a scenario of the whole-agent
// simulation: the invariants of sim_test.go hold after every step, and
// each scenario checks its own outcome. Each runs over many seeds (the
// seed moves clock rates, delays and timing).

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-project/vigil/consensus"
)

type scenario struct {
	name string
	cfg  simConfig
	// setup may inject inputs; check judges the outcome once the run ends.
	setup func(s *simulation)
	check func(s *simulation) error
}

func runScenario(t *testing.T, sc scenario) {
	t.Helper()
	if err := scenarioError(sc, scenarioSeeds); err != "" {
		t.Fatal(err)
	}
}

// scenarioError runs a scenario over seeds and says how the first seed
// that fails does.
func scenarioError(sc scenario, seeds int64) string {
	first := int64(1)
	if *flagSimSeed >= 0 {
		first, seeds = *flagSimSeed, *flagSimSeed // replay one seed
	}
	for seed := first; seed <= seeds; seed++ {
		s := newSimulation(seed, sc.cfg, *flagSimTrace)
		s.logs, s.debug = *flagSimLogs, *flagSimDebug
		if sc.setup != nil {
			sc.setup(s)
		}
		s.run(sc.cfg.duration + simQuiet)
		if s.err == "" {
			s.settled()
		}
		err := s.err
		if err == "" {
			err = s.unrecovered
		}
		if err == "" && sc.check != nil {
			if e := sc.check(s); e != nil {
				err = e.Error()
			}
		}
		if err != "" {
			trace := ""
			if *flagSimTrace {
				trace = "\n" + strings.Join(s.trace, "\n")
			}
			return fmt.Sprintf("%s, seed %d: %s\n  replay: go test ./engine -run 'TestScenarios/%s$' -sim.seed=%d -sim.trace -v%s", sc.name, seed, err, sc.name, seed, trace)
		}
	}
	return ""
}

// startsFor are the recovery runs of node's failures.
func (s *simulation) startsFor(node string) []simStart {
	var out []simStart
	for _, st := range s.starts {
		if st.job.Node == node {
			out = append(out, st)
		}
	}
	return out
}

func (s *simulation) fenceOf(node, boot string) (simFenced, bool) {
	for _, f := range s.fenceLog {
		if f.node == node && f.boot == boot {
			return f, true
		}
	}
	return simFenced{}, false
}

func TestScenarios(t *testing.T) {
	cut := 5 * time.Second
	scenarios := []scenario{{
		// The partition {n1,n2,n3} | {n4,n5}: both cut-off nodes fence
		// before their recovery starts, which is within 6 s of the cut; one
		// recovery each, on the majority; one view of all five after.
		name: "partition",
		cfg: simConfig{n: 5, executors: allExecutors(5), duration: 30 * time.Second, faults: []simFault{
			{at: cut, until: 25 * time.Second, kind: "cut", a: []int{3, 4}, b: []int{0, 1, 2}},
		}},
		check: func(s *simulation) error {
			for _, name := range []string{"n04", "n05"} {
				runs := s.startsFor(name)
				if len(runs) != 1 {
					return fmt.Errorf("%d recovery runs for %s, want 1", len(runs), name)
				}
				r := runs[0]
				if r.node == "n04" || r.node == "n05" {
					return fmt.Errorf("the minority ran %s's recovery on %s", name, r.node)
				}
				if r.at-cut > 6*time.Second {
					return fmt.Errorf("%s's recovery started %v after the cut, want ≤ 6 s", name, r.at-cut)
				}
				f, ok := s.fenceOf(name, r.job.Boot)
				if !ok || f.at >= r.at {
					return fmt.Errorf("%s@%s fenced at %v (%v), its recovery started at %v", name, r.job.Boot, f.at, ok, r.at)
				}
			}
			return nil
		},
	}, {
		// An agent that lost its data dir and restarts with its old
		// command line comes back as a new acceptor; the next failure is
		// still decided.
		name: "lost-data-dir",
		cfg: simConfig{n: 5, executors: allExecutors(5), duration: 30 * time.Second, faults: []simFault{
			{at: cut, kind: "wipe", a: []int{4}},
			{at: 20 * time.Second, kind: "crash", a: []int{3}},
		}},
		check: func(s *simulation) error {
			if len(s.startsFor("n04")) != 1 {
				return fmt.Errorf("n04's failure: %d recovery runs, want 1", len(s.startsFor("n04")))
			}
			return nil
		},
	}, {
		// Decisions heard out of band, forged: an announcement nobody
		// decided, a decision from outside the view, one with a forged
		// sender. Nothing changes.
		name: "forged",
		cfg:  simConfig{n: 5, executors: allExecutors(5), duration: 20 * time.Second},
		setup: func(s *simulation) {
			forged := consensus.Decision{Epoch: 1, Ballot: consensus.Ballot{Round: 99, Node: "n01"}, Change: consensus.Change{
				Kind: consensus.Remove, Reason: consensus.Failed, Executor: "n03",
				Member:   consensus.Member{Name: "n02", Boot: "b1-1", Addr: "10.0.0.2:7946"},
				Evidence: consensus.Evidence{Proposer: "n01", Votes: []byte{0x1f}},
			}}
			ann, err := consensus.EncodeDecision(forged)
			if err != nil {
				panic(err)
			}
			for _, n := range s.nodes {
				s.push(&simEvent{at: cut, kind: evAnnounce, node: n.i, inc: -1, data: ann})
				for _, m := range []struct{ from, claims string }{{"intruder", "intruder"}, {"n04", "n01"}} {
					b, err := consensus.Encode(consensus.Message{Type: consensus.MsgDecided, From: m.claims, To: n.name,
						Epoch: 1, Ballot: forged.Ballot, Change: forged.Change, Head: 2})
					if err != nil {
						panic(err)
					}
					s.push(&simEvent{at: cut, kind: evMessage, node: n.i, inc: -1, from: m.from, data: b})
				}
			}
		},
		check: func(s *simulation) error {
			if len(s.decided) != 0 || len(s.starts) != 0 {
				return fmt.Errorf("forged decisions changed something: %d decided, %d recoveries", len(s.decided), len(s.starts))
			}
			return nil
		},
	}, {
		// A recovery report heard from a member that is not the job's
		// executor (a forged "recovery-done") changes no journal: the job
		// still runs, once.
		name: "forged-report",
		cfg: simConfig{n: 5, executors: allExecutors(5), duration: 30 * time.Second, faults: []simFault{
			{at: cut, kind: "crash", a: []int{4}},
		}},
		setup: func(s *simulation) {
			s.push(&simEvent{at: 7 * time.Second, kind: evFault, fn: func() {
				for _, j := range s.nodes[0].eng.Jobs() {
					forged := j
					forged.State = Succeeded
					for _, n := range s.nodes {
						if n.up && n.name != j.Executor {
							other := "n02"
							if j.Executor == other {
								other = "n03"
							}
							s.push(&simEvent{at: s.now, kind: evPut, node: n.i, inc: -1, from: other, job: forged, took: map[string]bool{}})
						}
					}
				}
			}})
		},
		check: func(s *simulation) error {
			if runs := s.startsFor("n05"); len(runs) != 1 {
				return fmt.Errorf("n05's recovery ran %d times, want once despite a forged report", len(runs))
			}
			return nil
		},
	}, {
		// A removal accepted by one acceptor before its proposer died is
		// not decided when the proposer comes back half a minute later,
		// against a node healthy since (the check of sim_test.go: no
		// removal of a node everyone reached for 30 s).
		name: "stale-accept",
		cfg:  simConfig{n: 5, executors: allExecutors(5), duration: 60 * time.Second},
		setup: func(s *simulation) {
			crashAt := cut + 1500*time.Millisecond + time.Duration(s.rnd.Int63n(int64(1500*time.Millisecond)))
			s.push(&simEvent{at: cut, kind: evFault, fn: func() { s.begin(simFault{kind: "cut", a: []int{2}, b: []int{0, 1, 3, 4}}, simConfig{}) }})
			s.push(&simEvent{at: crashAt, kind: evFault, fn: func() { s.crash(s.nodes[1]) }})
			s.push(&simEvent{at: cut + 3*time.Second, kind: evFault, fn: func() { s.end(simFault{kind: "cut"}, simConfig{}) }})
			s.push(&simEvent{at: 45 * time.Second, kind: evFault, fn: func() {
				s.start(s.nodes[1], 0, 0)
				s.push(&simEvent{at: s.now + time.Second, kind: evGossip, node: 1, inc: s.nodes[1].inc})
			}})
		},
	}, {
		// A store write that fails stops the agent with nothing of it
		// acted on, while a failure is being decided.
		name: "failed-write",
		cfg: simConfig{n: 5, executors: allExecutors(5), duration: 30 * time.Second, faults: []simFault{
			{at: cut, until: 12 * time.Second, kind: "diskfail", a: []int{1}},
			{at: cut, kind: "crash", a: []int{2}},
		}},
	}, {
		// The executor is cut off while its handler runs: it kills the
		// handler when its lease ends, and the takeover runs with a
		// higher fencing token, never beside it.
		name: "takeover",
		cfg: simConfig{n: 5, executors: allExecutors(5), runFor: 20 * time.Second, duration: 40 * time.Second, faults: []simFault{
			{at: cut, kind: "crash", a: []int{4}},
			{at: 12 * time.Second, until: 30 * time.Second, kind: "cut", a: []int{0}, b: []int{1, 2, 3}},
		}},
		check: func(s *simulation) error {
			runs := s.startsFor("n05")
			if len(runs) < 2 || runs[0].node != "n01" {
				return fmt.Errorf("runs of n05's recovery %+v: want n01's, then a takeover", runs)
			}
			return nil
		},
	}, {
		// Only agents with a recovery handler are executors.
		name: "one-executor",
		cfg: simConfig{n: 5, executors: []bool{false, false, true, false, false}, duration: 30 * time.Second, faults: []simFault{
			{at: cut, kind: "crash", a: []int{1}},
		}},
		check: func(s *simulation) error {
			runs := s.startsFor("n02")
			if len(runs) != 1 || runs[0].node != "n03" {
				return fmt.Errorf("runs of n02's recovery %+v: want one, on n03", runs)
			}
			return nil
		},
	}, {
		// A paused node fences first thing on resume; its recovery ran
		// while it was paused, after its lease had ended.
		name: "pause",
		cfg: simConfig{n: 5, executors: allExecutors(5), duration: 30 * time.Second, faults: []simFault{
			{at: cut, until: 15 * time.Second, kind: "pause", a: []int{1}},
		}},
		check: func(s *simulation) error {
			runs := s.startsFor("n02")
			if len(runs) != 1 {
				return fmt.Errorf("%d recovery runs for n02, want 1", len(runs))
			}
			f, ok := s.fenceOf("n02", runs[0].job.Boot)
			if !ok || f.at != 15*time.Second {
				return fmt.Errorf("n02 fenced at %v (%v), want the moment it resumed", f.at, ok)
			}
			return nil
		},
	}, {
		// n05's ingress from the others is cut: their pings fail and
		// they remove it, while its own datagrams still reach them. The
		// cut heals soon after the decision, before n05's lease would
		// have run out, and the members that removed it answer its pings
		// again; but n05 hears of decisions late (its consensus messages
		// lag 4 s). The answers must not renew its lease (those members
		// no longer vouch for it), so it fences before its recovery
		// starts however late it learns of its removal.
		name: "heal-after-removal",
		cfg: simConfig{n: 5, executors: allExecutors(5), duration: 30 * time.Second, faults: []simFault{
			{at: cut, kind: "oneway", a: []int{0, 1, 2, 3}, b: []int{4}},
		}},
		setup: func(s *simulation) {
			healed := false
			s.onDecided = func(d consensus.Decision) {
				if healed || d.Change.Kind != consensus.Remove || d.Change.Member.Name != "n05" {
					return
				}
				healed = true
				s.lag = map[string]time.Duration{"n05": 4 * time.Second}
				after := time.Duration(s.rnd.Int63n(int64(800 * time.Millisecond)))
				s.push(&simEvent{at: s.now + after, kind: evFault, fn: func() { s.end(simFault{kind: "oneway"}, simConfig{}) }})
			}
		},
		check: func(s *simulation) error {
			runs := s.startsFor("n05")
			if len(runs) != 1 {
				return fmt.Errorf("%d recovery runs for n05, want 1", len(runs))
			}
			f, ok := s.fenceOf("n05", runs[0].job.Boot)
			if !ok || f.at >= runs[0].at {
				return fmt.Errorf("n05 fenced at %v (%v), its recovery started at %v", f.at, ok, runs[0].at)
			}
			return nil
		},
	}}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { runScenario(t, sc) })
	}
	// The checks are not vacuous: engines with a safeguard switched off
	// fail them.
	t.Run("checks-can-fail", func(t *testing.T) {
		for _, b := range []struct {
			scenario, want string
			mutate         func(*Engine)
		}{
			{"partition", "holds its lease", func(e *Engine) { e.broken.noRecoveryDelay = true }},
			{"takeover", "holds its lease", func(e *Engine) { e.broken.noRecoveryDelay = true }},
			{"forged", "accepts it needs", func(e *Engine) { e.broken.trustAnnouncements = true }},
			{"heal-after-removal", "holds its lease", func(e *Engine) { e.broken.ignoreVouch = true }},
		} {
			for _, sc := range scenarios {
				if sc.name != b.scenario {
					continue
				}
				sc.cfg.mutate = b.mutate
				if err := scenarioError(sc, scenarioSeeds); !strings.Contains(err, b.want) {
					t.Errorf("%s with a safeguard off: %q, want a failure naming %q", sc.name, err, b.want)
				}
			}
		}
	})
}
