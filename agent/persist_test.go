package agent

import (
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/vigil-project/vigil/consensus"
	"github.com/vigil-project/vigil/engine"
	"github.com/vigil-project/vigil/store"
)

// Fail-stop storage, checked the way pebble's errorfs tests are: one
// acceptor persists its Readies through persistReady into a real data dir
// whose i-th write fails, for every i of a run of decisions. When a write
// fails the acceptor stops as the agent does (nothing of that Ready is
// sent), restarts from its data dir with loadConsensus, and the run goes
// on. After every restart nothing it promised or accepted in a message
// that left, and no decision it applied, may be missing from disk; at the
// end the three nodes agree on every epoch.
func TestFailedWriteLosesNothingPromisedOrDecided(t *testing.T) {
	writes := runFailStop(t, 0)
	if writes < 20 {
		t.Fatalf("the run made only %d writes", writes)
	}
	for i := 1; i <= writes; i++ {
		t.Run(fmt.Sprintf("fail-write-%d", i), func(t *testing.T) { runFailStop(t, i) })
	}
}

// runFailStop runs the workload with the failAt-th write of n1 failing
// (0: none) and returns how many writes n1 made.
func runFailStop(t *testing.T, failAt int) int {
	t.Helper()
	members := []consensus.Member{
		{Name: "n1", Boot: "b", Addr: "10.0.0.1:7946"},
		{Name: "n2", Boot: "b", Addr: "10.0.0.2:7946"},
		{Name: "n3", Boot: "b", Addr: "10.0.0.3:7946"},
	}
	v := consensus.View{Epoch: 1, Members: members}
	cfg := func(name string, seed int64) consensus.Config {
		c := consensus.DefaultConfig()
		c.ID, c.Boot = name, "b"
		c.Rand = rand.New(rand.NewSource(seed))
		c.Verdict = consensus.JudgeFunc(func(consensus.Change) bool { return true })
		return c
	}

	dir := t.TempDir()
	writes, armed := 0, false
	opts := store.Options{FailWrite: func() error {
		if !armed {
			return nil
		}
		writes++
		if writes == failAt {
			return errors.New("injected: no space left on device")
		}
		return nil
	}}
	s1, err := store.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s1.Close() }()
	if err := persistReady(s1, asEngine(consensus.Ready{Persist: &consensus.AcceptorState{Epoch: 1}, Snapshot: &v}, v)); err != nil {
		t.Fatal(err)
	}
	armed = true
	restore := func() *consensus.Node {
		st, _, err := loadConsensus(s1)
		if err != nil {
			t.Fatal(err)
		}
		n, err := consensus.NewNode(cfg("n1", int64(100+writes)), st)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	nodes := map[string]*consensus.Node{"n1": restore()}
	for i, name := range []string{"n2", "n3"} {
		n, err := consensus.NewNode(cfg(name, int64(i+2)), consensus.PersistentState{View: v})
		if err != nil {
			t.Fatal(err)
		}
		nodes[name] = n
	}

	var queue []consensus.Message
	promised := map[uint64]consensus.Ballot{} // highest ballot n1 promised in a message that left
	accepted := map[uint64]consensus.Ballot{} // likewise, accepted
	var applied uint64                        // the view epoch n1 reached on disk
	decided := map[string]map[uint64]consensus.Change{}
	crashes := 0

	// send queues messages, noting what n1 promised and accepted in them.
	send := func(from string, msgs []consensus.Message) {
		for _, m := range msgs {
			if from != "n1" {
				continue
			}
			switch m.Type {
			case consensus.MsgPromise:
				if promised[m.Epoch].Less(m.Ballot) {
					promised[m.Epoch] = m.Ballot
				}
			case consensus.MsgAccepted:
				if accepted[m.Epoch].Less(m.Ballot) {
					accepted[m.Epoch] = m.Ballot
				}
			}
		}
		queue = append(queue, msgs...)
	}
	flush := func(name string) {
		n := nodes[name]
		rd := n.Ready()
		if name == "n1" {
			if err := persistReady(s1, asEngine(rd, n.View())); err != nil {
				// Fail-stop: nothing of this Ready leaves. Restart from disk.
				crashes++
				nodes["n1"] = restore()
				st := nodes["n1"].Status()
				if st.Epoch < applied {
					t.Fatalf("write %d failed: n1 restarted at epoch %d, but it had applied epoch %d", failAt, st.Epoch, applied)
				}
				if b := promised[st.Epoch]; st.Acceptor.Promised.Less(b) {
					t.Fatalf("write %d failed: n1 restarted with promise %s at e%d, but promised %s in a message", failAt, st.Acceptor.Promised, st.Epoch, b)
				}
				if b := accepted[st.Epoch]; st.Acceptor.Accepted.Less(b) && st.Acceptor.Promised.Less(b) {
					t.Fatalf("write %d failed: n1 restarted with accepted %s at e%d, but sent Accepted %s", failAt, st.Acceptor.Accepted, st.Epoch, b)
				}
				return
			}
			applied = n.View().Epoch
		}
		if decided[name] == nil {
			decided[name] = map[uint64]consensus.Change{}
		}
		for _, d := range rd.Decided {
			decided[name][d.Epoch] = d.Change
		}
		send(name, rd.Messages)
	}
	deliverAll := func() {
		for steps := 0; len(queue) > 0; steps++ {
			if steps > 100000 {
				t.Fatal("messages never stop")
			}
			m := queue[0]
			queue = queue[1:]
			if n, ok := nodes[m.To]; ok {
				_ = n.Step(m)
				flush(m.To)
			}
		}
	}

	// The workload: each node in turn adds a member x and removes it again.
	names := []string{"n1", "n2", "n3"}
	for k := range 6 {
		proposer := names[k%3]
		x := consensus.Member{Name: fmt.Sprintf("x%d", k/2), Boot: "b", Addr: fmt.Sprintf("10.0.1.%d:7946", k/2)}
		change := consensus.Change{Kind: consensus.Add, Reason: consensus.Joined, Member: x}
		if k%2 == 1 {
			change = consensus.Change{Kind: consensus.Remove, Reason: consensus.Left, Member: x}
		}
		target := nodes[proposer].Epoch() + 1
		done := func() bool {
			for _, name := range names {
				if nodes[name].Epoch() < target {
					return false
				}
			}
			return true
		}
		for round := 0; !done(); round++ {
			if round > 2000 {
				t.Fatalf("write %d failed: change %d (%s) not decided: epochs n1=%d n2=%d n3=%d", failAt, k, change,
					nodes["n1"].Epoch(), nodes["n2"].Epoch(), nodes["n3"].Epoch())
			}
			if nodes[proposer].Epoch() < target {
				if err := nodes[proposer].Propose(change); err == nil {
					flush(proposer)
				}
			}
			deliverAll()
			for _, name := range names {
				nodes[name].Tick()
				flush(name)
			}
			deliverAll()
		}
	}
	for e, c := range decided["n2"] {
		for _, name := range []string{"n1", "n3"} {
			if o, ok := decided[name][e]; ok && !o.Same(c) {
				t.Fatalf("write %d failed: e%d decided %s on n2 and %s on %s", failAt, e, c, o, name)
			}
		}
	}
	if failAt > 0 && crashes == 0 && writes >= failAt {
		t.Fatalf("write %d failed but n1 never stopped", failAt)
	}
	return writes
}

// asEngine is what the engine makes of a consensus Ready that leads to
// view v.
func asEngine(rd consensus.Ready, v consensus.View) engine.Ready {
	out := engine.Ready{Acceptor: rd.Persist, Decided: rd.Decided}
	if rd.Snapshot != nil || len(rd.Decided) > 0 {
		out.View = &v
	}
	return out
}
