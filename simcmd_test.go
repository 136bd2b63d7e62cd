package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/vigil-project/vigil/engine"
)

// vigil simulate from the CLI: the report as a table and as JSON, and bad
// settings refused with a clear error.
func TestSimulateCommand(t *testing.T) {
	out := runIn(t, "simulate", "--nodes", "5", "--crashes", "1", "--loss", "0.05", "--duration", "40s", "--seed", "2", "--format", "json")
	var rep engine.SimReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if rep.Nodes != 5 || rep.CrashToDecision.N != 1 || rep.Undecided != 0 || rep.FalseRemovals != 0 || rep.Violation != "" {
		t.Errorf("report %+v", rep)
	}
	// Mostly idle, with one crash: the engines tick about once a second,
	// ten times while a decision is in flight.
	if rep.TicksPerNodeSec < 0.5 || rep.TicksPerNodeSec > 5 {
		t.Errorf("%.2f ticks per node and second, want about 1 in a mostly idle run", rep.TicksPerNodeSec)
	}
	table := runIn(t, "simulate", "--nodes", "3", "--duration", "20s")
	for _, want := range []string{"crash to decision", "false removals", "per node and second", "ticks"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	for _, bad := range [][]string{
		{"--loss", "2"}, {"--nodes", "0"}, {"--crashes", "9", "--nodes", "3"}, {"--quorum", "most"}, {"--format", "xml"}, {"extra"},
	} {
		var o, e bytes.Buffer
		if code := run(context.Background(), append([]string{"vigil", "simulate", "--duration", "20s"}, bad...), &o, &e); code == 0 || e.Len() == 0 {
			t.Errorf("simulate %v: exit %d, stderr %q: want an error", bad, code, e.String())
		}
	}
}
