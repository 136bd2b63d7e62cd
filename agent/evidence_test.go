package agent

import (
	"testing"
	"time"

	"github.com/vigil-project/vigil/consensus"
)

func TestEvidenceNoteRoundTrip(t *testing.T) {
	for _, n := range []EvidenceNote{
		{Monitored: true, State: "accused", Misses: 7, Silence: 1230 * time.Millisecond, Loss: 0.125, PFail: 0.9998, Threshold: 3.25},
		{Burst: true, State: "suspect", Misses: 300, Silence: time.Hour, Loss: 1, PFail: 0, Threshold: 1000},
		{State: "healthy"},
	} {
		b := encodeNote(n)
		if len(b) != consensus.MaxNote {
			t.Fatalf("%d bytes", len(b))
		}
		got, ok := decodeNote(b)
		want := n
		want.Misses = min(n.Misses, 255)
		want.Silence = min(n.Silence, 65535*10*time.Millisecond)
		want.Threshold = min(n.Threshold, 655.35)
		if !ok || got != want {
			t.Fatalf("round trip of %+v: %+v %v", n, got, ok)
		}
	}
	for _, bad := range [][]byte{nil, {1}, append([]byte{2}, make([]byte, 10)...), append([]byte{1, 3}, make([]byte, 9)...)} {
		if _, ok := decodeNote(bad); ok {
			t.Fatalf("%v decoded", bad)
		}
	}
}
