package main

import (
	"fmt"
	"testing"
	"time"
)

// TestTwentyAgentsIdleRemoveNobody: 20 agents on loopback (LAN profile),
// started together as an operator starts a new cluster (--bootstrap-expect
// 20, --retry-join n1), then idle for two minutes: nobody is removed,
// accused, reported failed or fenced. CI runs it with every agent built
// with the race detector, which costs each several times its CPU: local
// health must keep slow observers from reading their own slowness as their
// peers' failure. The five-minute figure, beside serf's, is
// TestScaleVersusSerf's.
func TestTwentyAgentsIdleRemoveNobody(t *testing.T) {
	if testing.Short() {
		t.Skip("20 agents idle for two minutes")
	}
	const n = 20
	c := newCluster(t)
	dir := t.TempDir()
	nodes := startTogether(t, c, n, dir, "--profile", "lan", "--log-level", "info")
	time.Sleep(2 * time.Minute)
	noneFailed(t, dir, nodes, "while idle")
	accused, proposed, fenced := idleVerdicts(t, nodes)
	t.Logf("%d agents idle 2m0s: %d accusations, %d removals proposed, %d fences (load %s)", n, accused, proposed, fenced, loadAvg())
	if accused+proposed > 0 {
		t.Errorf("idle agents were accused %d times, and %d removals proposed", accused, proposed)
	}
	// A cluster forming decides an add every few hundred milliseconds,
	// faster than the new members are pinged and than some members learn
	// each decision: no member may lose its lease to it.
	if fenced > 0 {
		t.Errorf("idle agents fenced %d times", fenced)
	}
}

// idleVerdicts sums what the agents' metrics say they did to their peers
// and themselves: how often one came to accuse a peer (suspicion entered
// Accused), proposed a removal for failure, or fenced.
func idleVerdicts(t *testing.T, nodes []*node) (accused, proposed, fenced int) {
	t.Helper()
	for _, nd := range nodes {
		mfs, _, err := scrape(nd)
		if err != nil {
			t.Fatalf("%s: %v", nd.name, err)
		}
		count := func(name, label, want string) int { return int(max(value(mfs, name, label, want), 0)) }
		accused += count("vigil_suspicion_transitions_total", "to", "accused")
		proposed += count("vigil_accusations_total", "", "")
		fenced += count("vigil_fences_total", "", "")
	}
	return accused, proposed, fenced
}

// startTogether starts n agents at once, each with the recording handler,
// --bootstrap-expect n and (but n1) --retry-join n1, and waits until every
// one agrees on all n members.
func startTogether(t *testing.T, c *cluster, n int, dir string, extra ...string) []*node {
	t.Helper()
	h := handlerLog(t, dir)
	var nodes []*node
	for i := 1; i <= n; i++ {
		args := append(recording(h), "--bootstrap-expect", fmt.Sprint(n))
		args = append(args, extra...)
		if i > 1 {
			args = append(args, "--retry-join", c.ip(1))
		}
		nd := c.add(i, args...)
		if err := nd.startNoWait(); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nd)
	}
	waitAllAgreed(t, nodes, 120*time.Second)
	return nodes
}
