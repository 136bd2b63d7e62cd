package engine

import (
	"maps"
	"slices"
	"testing"
	"time"
)

// The prober wakes once a round, not once per peer: healthy peers fall due
// on the node's round grid (probeAfter), however their pings were spread
// when they were added, and each keeps its cadence.
func TestProbesAlignOnTheRoundGrid(t *testing.T) {
	const nodes = 5
	s := newSimulation(1, simConfig{n: nodes, executors: allExecutors(nodes), duration: 10 * time.Second}, false)
	s.run(5 * time.Second)
	if s.err != "" {
		t.Fatal(s.err)
	}
	e := s.nodes[0].eng
	e.Ready()
	round := e.cfg.Suspicion.IdleInterval
	names := slices.Sorted(maps.Keys(e.probes))
	if len(names) != nodes-1 {
		t.Fatalf("monitors %v", names)
	}
	// Spread them, as peers that joined at different times are.
	for i, name := range names {
		e.probes[name].next = e.now.Add(time.Duration(i) * round / time.Duration(len(names)))
		e.probes[name].inflight = 0
	}
	var wakes []time.Time
	last := map[string]time.Time{}
	for len(wakes) < 12 {
		at := e.NextProbe()
		e.Probe(at)
		wakes = append(wakes, at)
		for _, p := range e.Ready().Pings {
			if prev, ok := last[p.Peer]; ok && at.Sub(prev) > round {
				t.Errorf("%s pinged %v after its last ping: longer than the round %v", p.Peer, at.Sub(prev), round)
			}
			last[p.Peer] = at
			e.Probed(at.Add(time.Millisecond), ProbeResult{Peer: p.Peer, Boot: p.Boot, Sent: at, RTT: time.Millisecond, Timeout: p.Timeout})
		}
		e.Ready()
	}
	// The first round wakes once per peer (or twice); from then on, once a
	// round.
	for i := len(wakes) - 6; i < len(wakes); i++ {
		if d := wakes[i].Sub(wakes[i-1]); d != round {
			t.Fatalf("wake-ups %v apart after the first round (wake %d), want %v: %v", d, i, round, wakes)
		}
	}
}
