package main

import (
	"fmt"
	"testing"
	"time"
)

// TestFlappingIngressVersusSerf: five agents on network-namespace hosts
// with default settings; host 5 drops every packet it receives for 10 s,
// then nothing for 10 s, four times; then a minute to settle. It counts
// the failures decided about n5 and the member-recovered runs, and the
// member-failed handler runs of five serf agents in the same conditions.
//
//	VIGIL_BENCH=1 go test -count=1 -run TestFlappingIngressVersusSerf -v .
func TestFlappingIngressVersusSerf(t *testing.T) {
	benchOnly(t, "to compare flap damping with serf")
	flap := func(nw *network) {
		for range 4 {
			nw.setChain(5, partChain, []string{"-d " + nw.ip(5) + " -j DROP"})
			time.Sleep(10 * time.Second)
			nw.setChain(5, partChain, nil)
			time.Sleep(10 * time.Second)
		}
		time.Sleep(60 * time.Second)
	}
	dir := t.TempDir()
	// The harness's 1 s test damping is replaced by the default.
	nw, nodes := netnsCluster(t, 5, dir, "--rejoin-stable", "20s")
	flap(nw)
	failed, recovered := 0, 0
	for _, n := range nodes[:4] {
		failed += len(handlerRuns(dir, n.name, "member-failed", "n5"))
		recovered += len(handlerRuns(dir, n.name, "member-recovered", "n5"))
	}
	others := 0
	for _, n := range nodes {
		for _, m := range nodes[:4] {
			others += len(handlerRuns(dir, n.name, "member-failed", m.name))
		}
	}
	m, err := agreedStatus(nodes[0], "n5")
	t.Logf("vigil: n5 decided failed %d times, recovered %d times (handler runs on 4 survivors: %d, %d); member-failed runs about healthy nodes: %d; n5 now %q (%v)",
		failed/4, recovered/4, failed, recovered, others, m.Status, err)
	for _, n := range nodes {
		n.kill()
	}
	nw.heal()

	sc := startSerfCluster(t, nw.hosts())
	flap(nw)
	evs := sc.failedEvents()
	about5, aboutOthers := 0, 0
	for _, e := range evs {
		if e.member == "n5" {
			about5++
		} else {
			aboutOthers++
		}
	}
	sc.stop()
	t.Logf("serf: member-failed events about n5: %d, about healthy nodes: %d", about5, aboutOthers)
	const cmd = "VIGIL_BENCH=1 go test -run TestFlappingIngressVersusSerf ."
	recordBench(t, "flap",
		benchRow{Figure: "ingress of n5 dropped 10 s on, 10 s off, ×4: failures decided (serf: member-failed events) about n5", Vigil: fmt.Sprint(failed / 4), Serf: fmt.Sprint(about5),
			Ratio: ratioOf(float64(failed/4), float64(about5)), Goal: "≤ 1", Command: cmd},
		benchRow{Figure: "the same: recoveries of n5", Vigil: fmt.Sprint(recovered / 4), Serf: "—", Ratio: "—", Goal: "≤ 1", Command: cmd},
		benchRow{Figure: "the same: member-failed about healthy nodes", Vigil: fmt.Sprint(others), Serf: fmt.Sprint(aboutOthers), Ratio: "—", Goal: "0", Command: cmd},
	)
	if failed/4 > 1 {
		t.Errorf("n5 was decided failed %d times while flapping, want once", failed/4)
	}
}
