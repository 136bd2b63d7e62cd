package main

// Acceptance tests on hosts in network namespaces: a partition, and loss.

import (
	"fmt"
	"testing"
	"time"
)

// netnsCluster starts n agreed agents, one per namespace host.
func netnsCluster(t *testing.T, n int, dir string, extra ...string) (*network, []*node) {
	t.Helper()
	requireNetns(t)
	nw := newNetwork(t, n)
	c := newCluster(t)
	add := func(i int, extra ...string) *node { return nw.add(c, i, extra...) }
	return nw, startAgreed(t, n, dir, nw.ip(1), add, extra...)
}

// removals returns the removal entries of n's log, as "node:reason".
func removals(n *node) ([]string, error) {
	out, err := n.vigil("views", "--format", "json")
	if err != nil {
		return nil, err
	}
	var rm []string
	v, err := parseViews(out)
	if err != nil {
		return nil, err
	}
	for _, e := range v.Log {
		if e.Kind == "remove" {
			rm = append(rm, e.Node+":"+e.Reason)
		}
	}
	return rm, nil
}

func TestPartitionMajorityDecidesMinorityDoesNot(t *testing.T) {
	dir := t.TempDir()
	// Default settings, as a new user would run it.
	nw, nodes := netnsCluster(t, 5, dir, "--recovery-handler", recoveryRecorder(t, dir, 0),
		"--fence-handler", fenceRecorder(t, dir))
	nw.partition([]int{1, 2, 3}, []int{4, 5})
	cut := time.Now()

	var failedEpoch = map[string]uint64{}
	for _, n := range nodes[:3] {
		for _, gone := range []string{"n4", "n5"} {
			m := waitAgreed(t, n, gone, "failed", 120*time.Second)
			if e, ok := failedEpoch[gone]; ok && e != m.Epoch {
				t.Errorf("%s failed at epoch %d on %s, %d elsewhere", gone, m.Epoch, n.name, e)
			}
			failedEpoch[gone] = m.Epoch
		}
	}
	t.Logf("majority confirmed n4, n5 failed within %v of the cut", time.Since(cut).Round(time.Millisecond))
	// The minority keeps trying, and must confirm nobody. Give it time.
	time.Sleep(10 * time.Second)
	for _, n := range nodes[3:] {
		rm, err := removals(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(rm) > 0 {
			t.Errorf("minority node %s decided removals %v", n.name, rm)
		}
		for _, m := range nodes {
			if runs := handlerRuns(dir, n.name, "member-failed", m.name); len(runs) > 0 {
				t.Errorf("minority node %s ran member-failed for %s during the partition", n.name, m.name)
			}
		}
	}

	nw.heal()
	healed := time.Now()
	for _, n := range nodes {
		dumped := false
		waitFor(t, 180*time.Second, n.name+" sees all five alive in the view", func() error {
			err := allAgreed(n, "n1", "n2", "n3", "n4", "n5")
			if err != nil && !dumped && time.Since(healed) > 170*time.Second {
				dumped = true
				for _, m := range nodes {
					out, _ := n.vigil("why", m.name)
					t.Logf("%s: why %s:\n%s", n.name, m.name, out)
				}
			}
			return err
		})
	}
	// One view: every agent at the same epoch.
	waitFor(t, 60*time.Second, "one epoch everywhere", func() error {
		var epochs []uint64
		for _, n := range nodes {
			info, err := n.info()
			if err != nil {
				return err
			}
			epochs = append(epochs, info.Epoch)
		}
		for _, e := range epochs {
			if e != epochs[0] {
				return fmt.Errorf("epochs %v", epochs)
			}
		}
		return nil
	})
	t.Logf("all five alive in one view %v after the heal", time.Since(healed).Round(time.Millisecond))
	// Recovery: one run for n4, one for n5, on the majority; none after the heal.
	time.Sleep(5 * time.Second)
	runs := recoveryRuns(t, dir)
	for _, gone := range []string{"n4", "n5"} {
		if got := runs[gone]; len(got) != 1 || got[0] == "n4" || got[0] == "n5" {
			t.Errorf("recovery of %s ran on %v, want once on a majority node", gone, got)
		}
	}
	if len(runs) != 2 {
		t.Errorf("recovery runs %v, want exactly n4 and n5", runs)
	}
	// The minority lost its quorum: its fence handler ran there, before
	// the majority started its recovery (the lease), and both soon after
	// the cut. The bound is generous; BENCHMARKS.md has the figures.
	for _, n := range nodes[3:] {
		fence, rec := firstTime(dir, "fence", n.name), firstTime(dir, "recovery", n.name)
		switch {
		case fence.IsZero():
			t.Errorf("minority node %s did not run its fence handler", n.name)
		case rec.IsZero():
			t.Errorf("no recovery of %s", n.name)
		case !fence.Before(rec):
			t.Errorf("%s fenced %v after the cut, but its recovery started %v after it: recovery before fence",
				n.name, fence.Sub(cut), rec.Sub(cut))
		case rec.Sub(cut) > 30*time.Second:
			t.Errorf("recovery of %s started %v after the cut", n.name, rec.Sub(cut))
		}
		t.Logf("%s: fence %v, recovery start %v after the cut", n.name, fence.Sub(cut).Round(time.Millisecond), rec.Sub(cut).Round(time.Millisecond))
	}
	for _, n := range nodes[3:] {
		for _, m := range nodes {
			if runs := handlerRuns(dir, n.name, "member-failed", m.name); len(runs) > 0 {
				t.Errorf("minority node %s ran member-failed for %s after catching up: %q", n.name, m.name, runs)
			}
		}
	}
}

func TestLossOfTwentyPercentConfirmsNoFailure(t *testing.T) {
	dir := t.TempDir()
	nw, nodes := netnsCluster(t, 5, dir)
	nw.loss(0.2)
	time.Sleep(60 * time.Second)
	nw.clearLoss()
	time.Sleep(5 * time.Second)
	noneFailed(t, dir, nodes, "under loss")
}

// noneFailed checks that no node decided a removal or ran its
// member-failed handler for any other (while: what the test did).
func noneFailed(t *testing.T, dir string, nodes []*node, while string) {
	t.Helper()
	for _, n := range nodes {
		rm, err := removals(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(rm) > 0 {
			t.Errorf("%s decided removals %s: %v", n.name, while, rm)
		}
		for _, m := range nodes {
			if runs := handlerRuns(dir, n.name, "member-failed", m.name); len(runs) > 0 {
				t.Errorf("%s ran member-failed for %s %s: %q", n.name, m.name, while, runs)
			}
		}
	}
}
