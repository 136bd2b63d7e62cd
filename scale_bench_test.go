package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestScaleVersusSerf: N vigil agents on loopback (LAN profile, info
// logs), idle for a while with nobody failing, then one killed with
// SIGKILL; then N serf agents the same way, in the same run. It reports
// removals and accusations of healthy nodes while idle, and the kill →
// member-failed handler delay on every survivor, side by side. It runs
// for each size in VIGIL_SCALE_N (default 20 and 50), one after the other.
//
//	VIGIL_BENCH=1 VIGIL_SCALE_N=20,50 VIGIL_SCALE_IDLE=5m go test -count=1 -timeout 90m -run TestScaleVersusSerf -v .
//
// Run it alone, without -race: N agents saturate a 2-core machine.
func TestScaleVersusSerf(t *testing.T) {
	benchOnly(t, "to run many agents side by side with serf")
	sizes := []int{20, 50}
	if s := os.Getenv("VIGIL_SCALE_N"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || v < 3 {
				t.Fatalf("VIGIL_SCALE_N=%q: want numbers ≥ 3, comma-separated", s)
			}
			sizes = append(sizes, v)
		}
	}
	idle := 5 * time.Minute
	if s := os.Getenv("VIGIL_SCALE_IDLE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("VIGIL_SCALE_IDLE=%q: %v", s, err)
		}
		idle = d
	}
	for i, n := range sizes {
		if i > 0 {
			time.Sleep(10 * time.Second) // let the machine settle
		}
		t.Run(fmt.Sprint(n), func(t *testing.T) { scaleVersusSerf(t, n, idle) })
	}
}

func scaleVersusSerf(t *testing.T, n int, idle time.Duration) {
	// vigil
	c := newCluster(t)
	dir := t.TempDir()
	nodes := startAgreedCluster(t, c, n, dir, "--profile", "lan", "--log-level", "info")
	start := time.Now()
	time.Sleep(idle)
	removals := 0
	for _, nd := range nodes {
		for _, m := range nodes {
			removals += len(handlerRuns(dir, nd.name, "member-failed", m.name))
		}
	}
	accusations, proposed, fenced := idleVerdicts(t, nodes)
	t.Logf("vigil: %d agents idle for %v: %d member-failed handler runs, %d accusations, %d removals proposed, %d fences (load %s)",
		n, time.Since(start).Round(time.Second), removals, accusations, proposed, fenced, loadAvg())
	victim := nodes[n-1]
	killedAt := time.Now()
	victim.kill()
	var delays []time.Duration
	for _, nd := range nodes[:n-1] {
		delays = append(delays, memberFailedAt(t, dir, nd, victim).Sub(killedAt))
	}
	epochs := map[uint64]bool{}
	for _, nd := range nodes[:n-1] {
		m, err := agreedStatus(nd, victim.name)
		if err == nil && m.Status == "failed" {
			epochs[m.Epoch] = true
		}
	}
	for _, nd := range nodes {
		nd.kill()
	}
	vm := medianDuration(delays)
	t.Logf("vigil: kill -9 %s → member-failed: median %v, max %v, failed at %d distinct epoch(s)", victim.name, vm.Round(time.Millisecond), maxDuration(delays).Round(time.Millisecond), len(epochs))

	// serf
	time.Sleep(10 * time.Second) // let the machine settle
	sc := startSerfCluster(t, loopbackHosts(t, n))
	time.Sleep(idle)
	falseRuns := serfHandlerRuns(sc.failedEvents())
	t.Logf("serf: %d agents idle for %v: %d member-failed handler runs (load %s)", n, idle, falseRuns, loadAvg())
	sc.stop()
	sd := measureSerfFailover(t, n, 1)
	sm := medianDuration(sd)
	t.Logf("serf: kill -9 → member-failed: median %v, max %v", sm.Round(time.Millisecond), maxDuration(sd).Round(time.Millisecond))
	t.Logf("ratio vigil/serf (median kill → handler): %.2f", float64(vm)/float64(sm))
	cmd := fmt.Sprintf("VIGIL_BENCH=1 VIGIL_SCALE_N=%d VIGIL_SCALE_IDLE=%v go test -timeout 60m -run TestScaleVersusSerf .", n, idle)
	rows := []benchRow{
		{Figure: fmt.Sprintf("%d agents idle %v: member-failed runs about healthy nodes", n, idle), Vigil: fmt.Sprint(removals), Serf: fmt.Sprint(falseRuns), Ratio: "—", Goal: "0", Command: cmd},
		{Figure: fmt.Sprintf("%d agents idle %v: accusations of healthy nodes", n, idle), Vigil: fmt.Sprint(accusations), Serf: "—", Ratio: "—", Goal: "0", Command: cmd},
		{Figure: fmt.Sprintf("%d agents: kill -9 → member-failed handler, median", n), Vigil: vm.Round(10 * time.Millisecond).String(), Serf: sm.Round(10 * time.Millisecond).String(),
			Ratio: fmt.Sprintf("%.2f", float64(vm)/float64(sm)), Goal: "≤ 0.3", Command: cmd},
		{Figure: fmt.Sprintf("%d agents: survivors reporting it failed at one epoch", n), Vigil: fmt.Sprintf("%d epoch(s)", len(epochs)), Serf: "—", Ratio: "—", Goal: "1", Command: cmd},
	}
	if name := fmt.Sprintf("scale-%d", n); slices.Contains(benchOrder, name) {
		recordBench(t, name, rows...)
	} else {
		t.Logf("the summary has no rows for %d agents: the figures above only", n)
	}
	if removals > 0 {
		t.Errorf("%d member-failed handler runs about healthy agents while idle", removals)
	}
	if len(epochs) != 1 {
		t.Errorf("survivors report the victim failed at epochs %v, want one", epochs)
	}
}

func maxDuration(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// loadAvg is the machine's one-minute load average, for the logs.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// benchOnly skips a benchmark test unless VIGIL_BENCH is set (make bench
// sets it); why says what the test would do, or where CI measures it.
func benchOnly(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("VIGIL_BENCH") == "" {
		t.Skip("set VIGIL_BENCH=1 (make bench) " + why)
	}
}
