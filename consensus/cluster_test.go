package consensus

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
)

// cluster is a small deterministic harness for unit tests, the transcript
// test and benchmarks: FIFO delivery, nothing lost unless a test says so.
type cluster struct {
	t         testing.TB
	names     []string
	nodes     map[string]*Node
	verdicts  map[string]bool
	queue     []Message
	decided   map[string][]Decision
	abandoned map[string][]Change
	durable   map[string]PersistentState
	sent      int
	out       *strings.Builder // transcript output; nil: none
}

func testConfig(id string, seed int64, judge Judge) Config {
	cfg := DefaultConfig()
	cfg.ID = id
	cfg.Rand = rand.New(rand.NewSource(seed))
	cfg.Verdict = judge
	return cfg
}

func newCluster(t testing.TB, n int, tweak func(*Config)) *cluster {
	c := &cluster{
		t: t, nodes: map[string]*Node{}, verdicts: map[string]bool{},
		decided: map[string][]Decision{}, abandoned: map[string][]Change{}, durable: map[string]PersistentState{},
	}
	v := View{Epoch: 1}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		c.names = append(c.names, name)
		v.Members = append(v.Members, Member{Name: name, Boot: "b0", Addr: fmt.Sprintf("10.0.0.%d:7946", i+1)})
	}
	slices.SortFunc(v.Members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	for i, name := range c.names {
		c.verdicts[name] = true
		cfg := testConfig(name, int64(i+1), JudgeFunc(func(Change) bool { return c.verdicts[name] }))
		if tweak != nil {
			tweak(&cfg)
		}
		nd, err := NewNode(cfg, PersistentState{View: v})
		if err != nil {
			t.Fatal(err)
		}
		c.nodes[name] = nd
		c.durable[name] = PersistentState{View: v}
	}
	return c
}

func (c *cluster) printf(format string, args ...any) {
	if c.out != nil {
		fmt.Fprintf(c.out, format, args...)
	}
}

// flush takes name's Ready: persist (recorded), then queue its messages.
func (c *cluster) flush(name string) {
	rd := c.nodes[name].Ready()
	st := c.durable[name]
	if rd.Persist != nil {
		st.Acceptor = *rd.Persist
		c.printf("  %s persist e%d promised=%s accepted=%s\n", name, rd.Persist.Epoch, rd.Persist.Promised, rd.Persist.Accepted)
	}
	if rd.Snapshot != nil {
		st.View = *rd.Snapshot
		c.printf("  %s snapshot e%d (%d members)\n", name, rd.Snapshot.Epoch, len(rd.Snapshot.Members))
	}
	for _, d := range rd.Decided {
		c.decided[name] = append(c.decided[name], d)
		st.Log = append(st.Log, d)
		c.printf("  %s DECIDED %s\n", name, d)
	}
	st.View = c.nodes[name].View()
	c.durable[name] = st
	for _, ch := range rd.Abandoned {
		c.abandoned[name] = append(c.abandoned[name], ch)
		c.printf("  %s ABANDONED [%s]\n", name, ch)
	}
	for _, m := range rd.Messages {
		c.printf("  %s send %s\n", name, m)
		c.sent++
	}
	c.queue = append(c.queue, rd.Messages...)
}

func (c *cluster) flushAll() {
	for _, n := range c.names {
		c.flush(n)
	}
}

// deliver delivers the first queued message.
func (c *cluster) deliver() {
	m := c.queue[0]
	c.queue = c.queue[1:]
	nd, ok := c.nodes[m.To]
	if !ok {
		return
	}
	c.printf("deliver %s\n", m)
	if err := nd.Step(m); err != nil {
		c.printf("  %s: %v\n", m.To, err)
	}
	c.flush(m.To)
}

func (c *cluster) deliverAll() {
	for i := 0; len(c.queue) > 0; i++ {
		if i > 100000 {
			c.t.Fatal("messages never stop")
		}
		c.deliver()
	}
}

func (c *cluster) tick(name string) {
	c.nodes[name].Tick()
	c.flush(name)
}

func (c *cluster) propose(name string, ch Change) error {
	err := c.nodes[name].Propose(ch)
	if err == nil {
		c.flush(name)
	}
	return err
}
