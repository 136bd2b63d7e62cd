package engine

import (
	"fmt"
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
		b := EncodeNote(n)
		if len(b) != consensus.MaxNote {
			t.Fatalf("%d bytes", len(b))
		}
		got, ok := DecodeNote(b)
		want := n
		want.Misses = min(n.Misses, 255)
		want.Silence = min(n.Silence, 65535*10*time.Millisecond)
		want.Threshold = min(n.Threshold, 655.35)
		if !ok || got != want {
			t.Fatalf("round trip of %+v: %+v %v", n, got, ok)
		}
	}
	for _, bad := range [][]byte{nil, {1}, append([]byte{2}, make([]byte, 10)...), append([]byte{1, 3}, make([]byte, 9)...)} {
		if _, ok := DecodeNote(bad); ok {
			t.Fatalf("%v decoded", bad)
		}
	}
}

// One Ready can carry several decisions (a catch-up): each is named with
// the acceptors of the view it was decided in, not the last one.
func TestViewsBeforeABatch(t *testing.T) {
	m := func(n string) consensus.Member { return consensus.Member{Name: n, Boot: "b", Addr: n + ":7946"} }
	after := consensus.View{Epoch: 7, Members: []consensus.Member{m("n0"), m("n1"), m("n2"), m("n4"), m("n5")}}
	batch := []consensus.Decision{
		{Epoch: 5, Change: consensus.Change{Kind: consensus.Remove, Reason: consensus.Failed, Member: m("n3"), Executor: "n1"}},
		{Epoch: 6, Change: consensus.Change{Kind: consensus.Add, Reason: consensus.Joined, Member: m("n0")}},
	}
	got := viewsBack(after, batch)
	names := func(v consensus.View) (s []string) {
		for _, x := range v.Members {
			s = append(s, x.Name)
		}
		return s
	}
	if got[0].Epoch != 5 || fmt.Sprint(names(got[0])) != "[n1 n2 n3 n4 n5]" {
		t.Fatalf("before e5: %d %v", got[0].Epoch, names(got[0]))
	}
	if got[1].Epoch != 6 || fmt.Sprint(names(got[1])) != "[n1 n2 n4 n5]" {
		t.Fatalf("before e6: %d %v", got[1].Epoch, names(got[1]))
	}
}
