package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/vigil-project/vigil/agent"
	"github.com/vigil-project/vigil/suspicion"
)

// vigil why's text names the suspicion bars beside the runs that count
// toward them: misses against the accusation, bad results against the
// suspicion.
func TestPrintWhyShowsTheSuspicionBars(t *testing.T) {
	x := suspicion.Explanation{State: suspicion.Healthy, InStateFor: time.Minute, Misses: 1, NeedMisses: 30,
		BadRun: 2, NeedSuspect: 4, Silence: 250 * time.Millisecond, LossEstimate: 0.05}
	var b bytes.Buffer
	if err := printWhy(&b, agent.Why{Node: "n2", Status: "alive", Suspicion: &x}); err != nil {
		t.Fatal(err)
	}
	want := "healthy for 1m0s; 1 misses in a row (30 to accuse), 2 bad results in a row (4 to suspect), silent 250ms, loss 5.0%"
	if !strings.Contains(b.String(), want) {
		t.Fatalf("vigil why:\n%s\nwant a line with %q", b.String(), want)
	}
}
