package consensus

import (
	"fmt"
	"math/rand"
	"testing"
)

// BenchmarkDecision measures one decision end to end among N acceptors:
// every member delivers what it has each tick, then ticks. Reported:
// messages and ticks per decision (loss=0: no ticks are needed; loss=10%:
// retries after ProposalTimeout).
func BenchmarkDecision(b *testing.B) {
	for _, n := range []int{5, 9} {
		for _, loss := range []float64{0, 0.1} {
			b.Run(fmt.Sprintf("acceptors=%d/loss=%.0f%%", n, loss*100), func(b *testing.B) {
				c := newCluster(b, n, func(cfg *Config) {
					cfg.ProposalTimeout = 3
					cfg.BackoffMin, cfg.BackoffMax = 1, 3
					cfg.CatchupInterval = 5
				})
				rng := rand.New(rand.NewSource(1))
				last := c.names[n-1]
				ticks, msgs := 0, 0
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					// Re-add the last member under a new boot: the view keeps n members.
					ch := Change{Kind: Add, Reason: Joined, Member: Member{Name: last, Boot: fmt.Sprintf("b%d", i+1), Addr: "10.0.0.9:7946"}}
					epoch := c.nodes["n1"].Epoch()
					if err := c.propose("n1", ch); err != nil {
						b.Fatal(err)
					}
					for c.nodes["n1"].Epoch() == epoch || !allAt(c, epoch+1) {
						for len(c.queue) > 0 {
							m := c.queue[0]
							c.queue = c.queue[1:]
							msgs++
							if rng.Float64() < loss {
								continue
							}
							c.nodes[m.To].Step(m)
							c.flush(m.To)
						}
						if c.nodes["n1"].Epoch() != epoch && allAt(c, epoch+1) {
							break
						}
						ticks++
						for _, name := range c.names {
							c.tick(name)
						}
						if ticks > 1000*(i+1) {
							b.Fatal("no progress")
						}
					}
				}
				b.ReportMetric(float64(msgs)/float64(b.N), "msgs/decision")
				b.ReportMetric(float64(ticks)/float64(b.N), "ticks/decision")
			})
		}
	}
}

func allAt(c *cluster, e uint64) bool {
	for _, nd := range c.nodes {
		if nd.Epoch() < e {
			return false
		}
	}
	return true
}

// BenchmarkStep measures one acceptor stepping a Prepare then an Accept
// with a fresh ballot, and draining its Ready.
func BenchmarkStep(b *testing.B) {
	v := bigView(1, 5)
	n, err := NewNode(testConfig(v.Members[0].Name, 1, JudgeFunc(func(Change) bool { return true })), PersistentState{View: v})
	if err != nil {
		b.Fatal(err)
	}
	from := v.Members[1].Name
	ch := Change{Kind: Remove, Reason: Failed, Member: v.Members[4], Executor: from, Evidence: Evidence{Proposer: from, Votes: []byte{0x1f}}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bal := Ballot{Round: uint64(i + 1), Node: from}
		if i%2 == 0 {
			n.Step(Message{Type: MsgPrepare, From: from, To: n.cfg.ID, Epoch: 1, Ballot: bal, Change: ch})
		} else {
			n.Step(Message{Type: MsgAccept, From: from, To: n.cfg.ID, Epoch: 1, Ballot: bal, Change: ch})
		}
		n.Ready()
	}
}

func BenchmarkEncodeDecode(b *testing.B) {
	m := Message{Type: MsgAccept, From: "node-a", To: "node-b", Epoch: 42, Ballot: Ballot{7, "node-a"},
		Change: Change{Kind: Remove, Reason: Failed, Member: Member{Name: "node-c", Boot: "0123456789abcdef", Addr: "10.0.0.3:7946"}, Executor: "node-d", Evidence: Evidence{Proposer: "node-a", Votes: []byte{0x1b}}}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf, _ := Encode(m)
		if _, err := Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}
