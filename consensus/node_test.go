package consensus

import (
	"errors"
	"fmt"
	"maps"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/quick"
)

func TestConfigValidateNamesField(t *testing.T) {
	good := testConfig("n1", 1, JudgeFunc(func(Change) bool { return true }))
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		field string
		mut   func(*Config)
	}{
		{"Config.ID", func(c *Config) { c.ID = "" }},
		{"Config.ID", func(c *Config) { c.ID = strings.Repeat("x", MaxNameLen+1) }},
		{"Config.Quorum", func(c *Config) { c.Quorum = 7 }},
		{"Config.CouncilSize", func(c *Config) { c.CouncilSize = MaxAcceptors + 1 }},
		{"Config.ProposalTimeout", func(c *Config) { c.ProposalTimeout = 0 }},
		{"Config.BackoffMin", func(c *Config) { c.BackoffMin = 0 }},
		{"Config.BackoffMax", func(c *Config) { c.BackoffMax = 0 }},
		{"Config.CatchupInterval", func(c *Config) { c.CatchupInterval = 0 }},
		{"Config.LogTail", func(c *Config) { c.LogTail = 0 }},
		{"Config.TellAll", func(c *Config) { c.TellAll = -1 }},
		{"Config.Rand", func(c *Config) { c.Rand = nil }},
		{"Config.Verdict", func(c *Config) { c.Verdict = nil }},
	}
	for _, tc := range cases {
		c := good
		tc.mut(&c)
		err := c.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: got %v", tc.field, err)
		}
		if _, err := NewNode(c, PersistentState{}); err == nil {
			t.Errorf("%s: NewNode accepted an invalid config", tc.field)
		}
	}
}

func TestQuorumSize(t *testing.T) {
	for _, tc := range []struct{ n, maj, tt int }{
		{1, 1, 1}, {2, 2, 2}, {3, 2, 2}, {4, 3, 3}, {5, 3, 4}, {6, 4, 4}, {7, 4, 5}, {9, 5, 6}, {10, 6, 7},
	} {
		if got := QuorumSize(tc.n, Majority); got != tc.maj {
			t.Errorf("majority(%d) = %d, want %d", tc.n, got, tc.maj)
		}
		if got := QuorumSize(tc.n, TwoThirds); got != tc.tt {
			t.Errorf("two-thirds(%d) = %d, want %d", tc.n, got, tc.tt)
		}
	}
	// Any two quorums intersect: 2q > n, and a quorum exists: q ≤ n.
	prop := func(n uint8, rule bool) bool {
		N := int(n)%MaxAcceptors + 1
		r := Majority
		if rule {
			r = TwoThirds
		}
		q := QuorumSize(N, r)
		return 2*q > N && q <= N
	}
	if err := quick.Check(prop, &quick.Config{MaxCount: 2000}); err != nil {
		t.Fatal(err)
	}
}

func bigView(epoch uint64, n int) View {
	v := View{Epoch: epoch}
	for i := range n {
		v.Members = append(v.Members, Member{Name: fmt.Sprintf("node-%04d", i), Boot: "b", Addr: "10.0.0.1:7946"})
	}
	return v
}

func TestAcceptorsCouncil(t *testing.T) {
	v := bigView(7, 40)
	if got := Acceptors(v, 0); len(got) != 40 {
		t.Fatalf("all members expected, got %d", len(got))
	}
	a := Acceptors(v, 7)
	if len(a) != 7 || !slices.IsSortedFunc(a, func(x, y Member) int { return strings.Compare(x.Name, y.Name) }) {
		t.Fatalf("council %v", a)
	}
	for _, m := range a {
		if !v.Contains(m.Name) {
			t.Fatalf("council member %s not in view", m.Name)
		}
	}
	if !reflect.DeepEqual(a, Acceptors(v, 7)) {
		t.Fatal("council not deterministic")
	}
	// Stable: another epoch of the same members has the same council, and
	// removing one council member changes the council by that seat alone.
	v.Epoch = 8
	if !reflect.DeepEqual(a, Acceptors(v, 7)) {
		t.Fatal("the council moved with the epoch")
	}
	w := v.Clone()
	w.Members = slices.DeleteFunc(w.Members, func(m Member) bool { return m.Name == a[3].Name })
	b := Acceptors(w, 7)
	kept := 0
	for _, m := range b {
		if slices.ContainsFunc(a, func(x Member) bool { return x.Name == m.Name }) {
			kept++
		}
	}
	if kept != 6 || len(b) != 7 {
		t.Fatalf("removing council member %s: council %v, kept %d of the old", a[3].Name, b, kept)
	}
	if got := Acceptors(bigView(1, 500), 0); len(got) != MaxAcceptors {
		t.Fatalf("500 members, council 0: %d acceptors, want %d", len(got), MaxAcceptors)
	}
}

func TestViewApply(t *testing.T) {
	v := View{Epoch: 3, Members: []Member{{Name: "a", Boot: "1"}, {Name: "c", Boot: "1"}}}
	add := func(name, boot string) Change {
		return Change{Kind: Add, Reason: Joined, Member: Member{Name: name, Boot: boot}}
	}
	rm := func(name, boot string) Change {
		return Change{Kind: Remove, Reason: Left, Member: Member{Name: name, Boot: boot}}
	}
	nv, err := v.Apply(add("b", "1"))
	if err != nil || nv.Epoch != 4 || len(nv.Members) != 3 || nv.Members[1].Name != "b" {
		t.Fatalf("add: %v %v", nv, err)
	}
	if _, err := v.Apply(add("a", "1")); !errors.Is(err, ErrNotApplicable) {
		t.Fatalf("add present: %v", err)
	}
	nv, err = v.Apply(add("a", "2")) // rejoin under a new boot replaces
	if err != nil || len(nv.Members) != 2 || nv.Members[0].Boot != "2" {
		t.Fatalf("replace: %v %v", nv, err)
	}
	if _, err := v.Apply(rm("a", "2")); !errors.Is(err, ErrNotApplicable) {
		t.Fatalf("remove wrong boot: %v", err)
	}
	if _, err := v.Apply(rm("z", "1")); !errors.Is(err, ErrNotApplicable) {
		t.Fatalf("remove non-member: %v", err)
	}
	one := Bootstrap(Member{Name: "a", Boot: "1"})
	if _, err := one.Apply(rm("a", "1")); !errors.Is(err, ErrNotApplicable) {
		t.Fatalf("remove last: %v", err)
	}
	if _, err := v.Apply(Change{Kind: Remove, Reason: Failed, Member: Member{Name: "a", Boot: "1"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("failure without executor: %v", err)
	}
	if v.Epoch != 3 || len(v.Members) != 2 || v.Members[0].Boot != "1" {
		t.Fatal("Apply modified its receiver")
	}
}

func TestProposeErrors(t *testing.T) {
	c := newCluster(t, 3, nil)
	n1 := c.nodes["n1"]
	if err := n1.Propose(Change{Kind: Remove, Reason: Left, Member: Member{Name: "zz", Boot: "b0"}}); !errors.Is(err, ErrNotApplicable) {
		t.Fatalf("remove non-member: %v", err)
	}
	if err := n1.Propose(Change{Kind: Add, Reason: Joined, Member: Member{Name: "n2", Boot: "b0"}}); !errors.Is(err, ErrNotApplicable) {
		t.Fatalf("add present member: %v", err)
	}
	if err := n1.Propose(Change{Kind: Add, Reason: Joined, Member: Member{Name: "n4", Boot: "b0"}}); err != nil {
		t.Fatal(err)
	}
	if err := n1.Propose(Change{Kind: Add, Reason: Joined, Member: Member{Name: "n5", Boot: "b0"}}); !errors.Is(err, ErrInFlight) {
		t.Fatalf("second proposal: %v", err)
	}
	outsider, err := NewNode(testConfig("x", 1, JudgeFunc(func(Change) bool { return true })), PersistentState{View: c.nodes["n2"].View()})
	if err != nil {
		t.Fatal(err)
	}
	if err := outsider.Propose(Change{Kind: Add, Reason: Joined, Member: Member{Name: "x", Boot: "1"}}); !errors.Is(err, ErrNotMember) {
		t.Fatalf("outsider: %v", err)
	}
}

func TestSingleNodeDecidesAlone(t *testing.T) {
	cfg := testConfig("a", 1, JudgeFunc(func(Change) bool { return true }))
	n, err := NewNode(cfg, PersistentState{View: Bootstrap(Member{Name: "a", Boot: "1"})})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Propose(Change{Kind: Add, Reason: Joined, Member: Member{Name: "b", Boot: "1"}}); err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	if len(rd.Decided) != 1 || rd.Persist == nil || n.Epoch() != 2 || !n.View().Contains("b") {
		t.Fatalf("ready %+v epoch %d", rd, n.Epoch())
	}
	if len(rd.Messages) != 1 || rd.Messages[0].To != "b" || rd.Messages[0].Type != MsgDecided {
		t.Fatalf("the new member must hear of its add: %v", rd.Messages)
	}
}

func TestDecideAndAbandon(t *testing.T) {
	c := newCluster(t, 5, nil)
	rm := Change{Kind: Remove, Reason: Failed, Member: Member{Name: "n5", Boot: "b0", Addr: "10.0.0.5:7946"}, Executor: "n4"}
	c.verdicts["n3"] = false
	if err := c.propose("n1", rm); err != nil {
		t.Fatal(err)
	}
	c.deliverAll()
	for _, name := range c.names {
		if got := c.decided[name]; len(got) != 1 || !got[0].Change.Same(rm) {
			t.Fatalf("%s decided %v", name, got)
		}
	}
	d := c.decided["n1"][0]
	if d.Change.Evidence.Proposer != "n1" || d.Change.Evidence.Count() < 3 || d.Change.Evidence.Voted(2) {
		t.Fatalf("evidence %+v", d.Change.Evidence)
	}
	// Without Config.Note, no notes.
	if d.Change.Evidence.ProposerNote != nil || d.Change.Evidence.Notes != nil {
		t.Fatalf("notes without Config.Note: %+v", d.Change.Evidence)
	}
	// Now only two of four agree: no quorum of verdicts, the proposal is abandoned.
	c.verdicts["n2"], c.verdicts["n4"] = false, false
	add := Change{Kind: Add, Reason: Joined, Member: Member{Name: "n5", Boot: "b1"}}
	if err := c.propose("n1", add); err != nil {
		t.Fatal(err)
	}
	c.deliverAll()
	if got := c.abandoned["n1"]; len(got) != 1 || !got[0].Same(add) {
		t.Fatalf("abandoned %v", got)
	}
	if c.nodes["n2"].Epoch() != 2 {
		t.Fatal("an abandoned proposal decided something")
	}
}

// The decided value carries the proposer's note and those of the
// acceptors that agreed, each at its acceptor index; every node learns the
// same notes.
func TestDecidedValueCarriesNotes(t *testing.T) {
	c := newCluster(t, 5, func(cfg *Config) {
		id := cfg.ID
		cfg.Note = func(ch Change) []byte { return []byte("by " + id + strings.Repeat("x", 20)) }
	})
	rm := Change{Kind: Remove, Reason: Failed, Member: Member{Name: "n5", Boot: "b0", Addr: "10.0.0.5:7946"}, Executor: "n4"}
	c.verdicts["n3"] = false
	if err := c.propose("n1", rm); err != nil {
		t.Fatal(err)
	}
	c.deliverAll()
	ev := c.decided["n1"][0].Change.Evidence
	want := func(who string) string { return ("by " + who + strings.Repeat("x", 20))[:MaxNote] }
	if string(ev.ProposerNote) != want("n1") {
		t.Fatalf("proposer note %q (cut to MaxNote)", ev.ProposerNote)
	}
	acc := Acceptors(c.nodes["n1"].View(), 0)
	if len(ev.Notes) != ev.Count() || len(ev.Notes) < 3 {
		t.Fatalf("%d notes for %d votes", len(ev.Notes), ev.Count())
	}
	for _, n := range ev.Notes {
		who := acc[n.Acceptor].Name
		if !ev.Voted(int(n.Acceptor)) || who == "n3" || string(n.Data) != want(who) {
			t.Fatalf("note %d %q of %s", n.Acceptor, n.Data, who)
		}
	}
	for _, name := range c.names {
		if got := c.decided[name]; len(got) != 1 || !got[0].Change.Equal(c.decided["n1"][0].Change) {
			t.Fatalf("%s learned %+v", name, got)
		}
	}
}

// TestCarryForwardIgnoresVerdicts: once a value is accepted, a later
// proposer carries it forward even when every verdict disagrees (P2c).
func TestCarryForwardIgnoresVerdicts(t *testing.T) {
	c := newCluster(t, 3, nil)
	rm := Change{Kind: Remove, Reason: Left, Member: Member{Name: "n3", Boot: "b0"}}
	if err := c.propose("n1", rm); err != nil {
		t.Fatal(err)
	}
	// Deliver promises and n1's accepts, but lose every Accepted reply and
	// the accepts to n3, so only n1 and n2 hold the value.
	for len(c.queue) > 0 {
		m := c.queue[0]
		if m.Type == MsgAccepted || (m.Type == MsgAccept && m.To == "n3") {
			c.queue = c.queue[1:]
			continue
		}
		c.deliver()
	}
	if st := c.nodes["n2"].Status(); st.Acceptor.Accepted.IsZero() {
		t.Fatal("n2 should have accepted")
	}
	for _, n := range c.names {
		c.verdicts[n] = false
	}
	// n1 is gone; n2 drives the accepted value after its timeout.
	delete(c.nodes, "n1")
	c.names = []string{"n2", "n3"}
	for range 100 {
		c.tick("n2")
		c.tick("n3")
		c.deliverAll()
		if len(c.decided["n2"]) > 0 {
			break
		}
	}
	if got := c.decided["n2"]; len(got) != 1 || !got[0].Change.Same(rm) || got[0].Change.Evidence.Proposer != "n1" {
		t.Fatalf("n2 decided %v", got)
	}
}

func TestRestore(t *testing.T) {
	judge := JudgeFunc(func(Change) bool { return true })
	v := View{Epoch: 4, Members: []Member{{Name: "a", Boot: "1"}, {Name: "b", Boot: "1"}, {Name: "c", Boot: "1"}}}
	val := Change{Kind: Remove, Reason: Left, Member: Member{Name: "c", Boot: "1"}}
	st := PersistentState{View: v, Acceptor: AcceptorState{Epoch: 4, Promised: Ballot{9, "b"}, Accepted: Ballot{7, "c"}, Value: val, Round: 3}}
	n, err := NewNode(testConfig("a", 1, judge), st)
	if err != nil {
		t.Fatal(err)
	}
	// A prepare below the persisted promise is refused.
	if err := n.Step(Message{Type: MsgPrepare, From: "c", To: "a", Epoch: 4, Ballot: Ballot{8, "c"}, Change: val}); err != nil {
		t.Fatal(err)
	}
	if rd := n.Ready(); len(rd.Messages) != 1 || rd.Messages[0].Type != MsgNack || rd.Messages[0].Accepted != (Ballot{9, "b"}) {
		t.Fatalf("want nack, got %v", rd.Messages)
	}
	// A higher one is promised, reporting the persisted accepted value.
	n.Step(Message{Type: MsgPrepare, From: "c", To: "a", Epoch: 4, Ballot: Ballot{10, "c"}, Change: val})
	rd := n.Ready()
	if rd.Persist == nil || rd.Persist.Promised != (Ballot{10, "c"}) {
		t.Fatalf("persist %v", rd.Persist)
	}
	if m := rd.Messages[0]; m.Type != MsgPromise || m.Accepted != (Ballot{7, "c"}) || !m.Change.Equal(val) {
		t.Fatalf("promise %v", m)
	}
	// A restarted proposer never reuses a round.
	if err := n.Propose(Change{Kind: Add, Reason: Joined, Member: Member{Name: "d", Boot: "1"}}); err != nil {
		t.Fatal(err)
	}
	if rd := n.Ready(); rd.Messages[0].Ballot.Round <= 10 {
		t.Fatalf("ballot %s not above everything seen", rd.Messages[0].Ballot)
	}

	bad := st
	bad.Acceptor.Epoch = 5
	if _, err := NewNode(testConfig("a", 1, judge), bad); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("acceptor ahead of view: %v", err)
	}
	bad = st
	bad.Log = []Decision{{Epoch: 2, Change: val}}
	if _, err := NewNode(testConfig("a", 1, judge), bad); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("log not ending at view: %v", err)
	}
	old := st
	old.Acceptor.Epoch = 3 // stale: its instance is decided, dropped
	n, err = NewNode(testConfig("a", 1, judge), old)
	if err != nil || !n.Status().Acceptor.Accepted.IsZero() {
		t.Fatalf("stale acceptor state: %v %+v", err, n.Status())
	}
}

// TestCatchupAndSnapshot: a node four decisions behind catches up from the
// log; a brand-new node (no view) fetches a 500-member view as pages.
func TestCatchupAndSnapshot(t *testing.T) {
	judge := JudgeFunc(func(Change) bool { return true })
	v := bigView(1, 500)
	leader, _ := NewNode(testConfig(v.Members[0].Name, 1, judge), PersistentState{View: v})
	var log []Decision
	cur := v
	for i := range 4 {
		ch := Change{Kind: Add, Reason: Joined, Member: Member{Name: fmt.Sprintf("new-%d", i), Boot: "b", Addr: "10.1.1.1:7946"}}
		d := Decision{Epoch: cur.Epoch, Ballot: Ballot{1, "x"}, Change: ch}
		var err error
		cur, err = cur.Apply(ch)
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, d)
		if err := leader.Learn(d); err != nil {
			t.Fatal(err)
		}
	}
	leader.Ready()
	if leader.Epoch() != 5 {
		t.Fatal(leader.Epoch())
	}
	run := func(n *Node) (msgs int) {
		for range 200 {
			rd := n.Ready()
			progressed := false
			for _, m := range rd.Messages {
				if m.Type != MsgCatchup {
					continue
				}
				m.To = v.Members[0].Name // whichever peer it asked, the leader answers
				leader.Step(m)
				for _, r := range leader.Ready().Messages {
					b, err := Encode(r)
					if err != nil {
						t.Fatalf("%s: %v", r.Type, err)
					}
					msgs++
					r2, _ := Decode(b)
					n.Step(r2)
					progressed = true
				}
			}
			if n.Epoch() == leader.Epoch() {
				return msgs
			}
			if !progressed {
				n.Tick()
			}
		}
		t.Fatalf("did not catch up: at e%d", n.Epoch())
		return 0
	}
	behind, _ := NewNode(testConfig(v.Members[1].Name, 2, judge), PersistentState{View: v})
	behind.Learn(log[3]) // an announcement beyond the next epoch: gap
	if msgs := run(behind); msgs != 4 {
		t.Errorf("log catch-up took %d messages", msgs)
	}
	fresh, _ := NewNode(testConfig("joiner", 3, judge), PersistentState{})
	fresh.CatchUp(v.Members[0].Name)
	msgs := run(fresh)
	if !fresh.View().Equal(leader.View()) {
		t.Fatal("snapshot differs")
	}
	t.Logf("500-member snapshot in %d pages", msgs)
}

// TestStepNeverPanics feeds random, often invalid messages to nodes in
// every role.
func TestStepNeverPanics(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.propose("n1", Change{Kind: Add, Reason: Joined, Member: Member{Name: "n4", Boot: "x"}})
	rng := rand.New(rand.NewSource(1))
	f := func(m Message) bool {
		m.Type = MessageType(rng.Intn(10))
		m.Epoch = uint64(rng.Intn(4))
		m.From = []string{"n1", "n2", "n3", "zz", ""}[rng.Intn(5)]
		m.To = []string{"n1", "n2", ""}[rng.Intn(3)]
		for _, name := range []string{"n1", "n2"} {
			c.nodes[name].Step(m)
			c.nodes[name].Ready()
			c.nodes[name].Tick()
		}
		return true
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 5000, Rand: rng}); err != nil {
		t.Fatal(err)
	}
}

func TestDecisionID(t *testing.T) {
	ch := Change{Kind: Remove, Reason: Failed, Member: Member{Name: "x", Boot: "1"}, Executor: "y", Evidence: Evidence{Proposer: "p", Votes: []byte{5}}}
	a := Decision{Epoch: 12, Ballot: Ballot{3, "p"}, Change: ch}
	b := a
	b.Ballot = Ballot{9, "q"} // learned at another ballot: same decision
	if a.ID() != b.ID() || !strings.HasPrefix(a.ID(), "e12-") || len(a.ID()) != len("e12-")+16 {
		t.Fatalf("ids %s %s", a.ID(), b.ID())
	}
	b.Epoch = 13
	if a.ID() == b.ID() {
		t.Fatal("different epochs share an id")
	}
}

// An acceptor that lost its store comes back under the same name with a
// new boot id. It may have promised or accepted something in the current
// epoch and forgotten it, so it must not vote until the view adds its new
// incarnation, and then only from the next epoch on. Without VoteFrom it
// would answer this prepare with a fresh promise.
func TestFreshStoreVotesOnlyAfterItsOwnAdd(t *testing.T) {
	judge := JudgeFunc(func(Change) bool { return true })
	v := View{Epoch: 7, Members: []Member{{Name: "a", Boot: "old"}, {Name: "b", Boot: "1"}, {Name: "c", Boot: "1"}}}
	cfg := testConfig("a", 1, judge)
	cfg.Boot = "new"
	n, err := NewNode(cfg, PersistentState{View: v, Fresh: true})
	if err != nil {
		t.Fatal(err)
	}
	prep := Message{Type: MsgPrepare, From: "b", To: "a", Epoch: 7, Ballot: Ballot{Round: 1, Node: "b"},
		Change: Change{Kind: Remove, Reason: Failed, Member: Member{Name: "c", Boot: "1"}, Executor: "b"}}
	if err := n.Step(prep); !errors.Is(err, ErrNotAcceptor) {
		t.Fatalf("a fresh store answered a prepare in epoch 7: %v", err)
	}
	if rd := n.Ready(); len(rd.Messages) != 0 {
		t.Fatalf("a fresh store sent %v", rd.Messages)
	}
	// Nor does it vouch for anyone's lease: it may have accepted c's
	// removal and forgotten it.
	if n.Vouches("c") {
		t.Fatal("a fresh store vouches for c in epoch 7")
	}
	// The view adds a@new at epoch 7 → 8: a votes from epoch 8 on.
	add := Decision{Epoch: 7, Ballot: Ballot{Round: 2, Node: "b"}, Change: Change{Kind: Add, Reason: Joined, Member: Member{Name: "a", Boot: "new"}}}
	if err := n.Step(Message{Type: MsgDecided, From: "b", To: "a", Epoch: add.Epoch, Ballot: add.Ballot, Change: add.Change, Head: 8}); err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	if rd.Persist == nil || rd.Persist.VoteFrom != 8 {
		t.Fatalf("after its add: persisted %+v, want VoteFrom 8", rd.Persist)
	}
	if !n.Vouches("c") {
		t.Fatal("a re-added node does not vouch for c in epoch 8")
	}
	prep.Epoch = 8
	if err := n.Step(prep); err != nil {
		t.Fatalf("a re-added node refused a prepare of epoch 8: %v", err)
	}
	if rd := n.Ready(); len(rd.Messages) != 1 || rd.Messages[0].Type != MsgPromise {
		t.Fatalf("want a promise, got %v", rd.Messages)
	}
	// VoteFrom survives the store's round trip.
	b, err := EncodeAcceptorState(AcceptorState{Epoch: 8, VoteFrom: NoVote})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := DecodeAcceptorState(b); err != nil || st.VoteFrom != NoVote {
		t.Fatalf("decode: %+v %v", st, err)
	}
}

// A removal that only its proposer and one acceptor accepted, before the
// proposer died, is not decided when that acceptor comes back (minutes
// later, after a restart) against a node that has been healthy since: a
// quorum of promises free of stale values lets the next proposer decide its
// own change. Without StaleAccepted it was carried forward (P2c) whenever
// the stale acceptor's promise was among the first quorum.
func TestStaleAcceptedRemovalIsNotForcedLater(t *testing.T) {
	healthy := Member{Name: "n5", Boot: "b0", Addr: "10.0.0.5:7946"}
	dead := Member{Name: "n1", Boot: "b0", Addr: "10.0.0.1:7946"}
	judge := JudgeFunc(func(c Change) bool { return c.Member.Name == dead.Name })
	c := newCluster(t, 5, func(cfg *Config) { cfg.Verdict = judge })
	// n1 proposes n5's removal while n5 looks down to everyone; phase 2
	// reaches n2 alone, then n1 dies.
	rm := Change{Kind: Remove, Reason: Failed, Member: healthy, Executor: "n4"}
	for _, n := range c.nodes {
		n.cfg.Verdict = JudgeFunc(func(Change) bool { return true })
	}
	if err := c.propose("n1", rm); err != nil {
		t.Fatal(err)
	}
	for len(c.queue) > 0 {
		m := c.queue[0]
		if m.Type == MsgAccept && m.To != "n2" || m.Type == MsgAccepted {
			c.queue = c.queue[1:]
			continue
		}
		c.deliver()
	}
	if st := c.nodes["n2"].Status(); st.Acceptor.Accepted.IsZero() {
		t.Fatal("n2 did not accept the removal")
	}
	delete(c.nodes, "n1")
	// n5 is healthy again: verdicts now judge only n1 unreachable. n2
	// restarts from its disk, holding the accepted removal.
	for _, n := range c.nodes {
		n.cfg.Verdict = judge
	}
	restarted, err := NewNode(testConfig("n2", 42, judge), c.durable["n2"])
	if err != nil {
		t.Fatal(err)
	}
	c.nodes["n2"] = restarted
	// n3 proposes the dead proposer's removal. n2's promise comes first.
	if err := c.propose("n3", Change{Kind: Remove, Reason: Failed, Member: dead, Executor: "n2"}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(c.queue); i++ {
		if c.queue[i].To == "n2" {
			c.queue[0], c.queue[i] = c.queue[i], c.queue[0]
		}
	}
	for range 100 {
		c.deliverAll()
		if len(c.decided["n3"]) > 0 {
			break
		}
		for _, name := range []string{"n2", "n3", "n4", "n5"} {
			c.tick(name)
		}
	}
	got := c.decided["n3"]
	if len(got) != 1 || got[0].Change.Member != dead {
		t.Fatalf("decided %v, want the removal of %s; the stale removal of %s must not be forced", got, dead, healthy)
	}
	for _, name := range []string{"n2", "n4", "n5"} {
		if v := c.nodes[name].View(); !v.Contains("n5") || v.Contains("n1") {
			t.Errorf("%s's view %v", name, v.Members)
		}
	}
}

// Force decides without a quorum and tells the other members, who learn it
// like any decision; it refuses what does not apply.
func TestForceDecidesWithoutAQuorum(t *testing.T) {
	c := newCluster(t, 5, nil)
	for _, gone := range []string{"n3", "n4", "n5"} {
		delete(c.nodes, gone)
	}
	c.names = []string{"n1", "n2"}
	gone := Member{Name: "n5", Boot: "b0", Addr: "10.0.0.5:7946"}
	if err := c.nodes["n1"].Force(Change{Kind: Remove, Reason: Failed, Member: Member{Name: "n9", Boot: "b0"}, Executor: "n1"}); err == nil {
		t.Fatal("forced the removal of a non-member")
	}
	if err := c.nodes["n1"].Force(Change{Kind: Remove, Reason: Failed, Member: gone, Executor: "n1"}); err != nil {
		t.Fatal(err)
	}
	c.flush("n1")
	c.deliverAll()
	for _, name := range c.names {
		got := c.decided[name]
		if len(got) != 1 || got[0].Change.Member != gone || got[0].Change.Evidence.Proposer != "n1" {
			t.Fatalf("%s decided %v", name, got)
		}
		if v := c.nodes[name].View(); v.Contains("n5") || v.Epoch != 2 {
			t.Fatalf("%s: view %+v", name, v)
		}
	}
}

// A view of at most TellAll members hears a decision from its proposer
// directly; a larger one only its acceptors, the subject and the executor.
func TestProposerTellsEveryMemberOfASmallView(t *testing.T) {
	for _, tellAll := range []int{12, 11, 0} {
		c := newCluster(t, 12, func(cfg *Config) { cfg.CouncilSize, cfg.TellAll = 3, tellAll })
		rm := Change{Kind: Remove, Reason: Failed, Member: Member{Name: "n12", Boot: "b0", Addr: "10.0.0.12:7946"}, Executor: "n11"}
		proposer := c.names[0]
		before := c.nodes[proposer].View()
		if err := c.propose(proposer, rm); err != nil {
			t.Fatal(err)
		}
		told := map[string]bool{}
		for i := 0; len(c.queue) > 0; i++ {
			if i > 10000 {
				t.Fatal("messages never stop")
			}
			if m := c.queue[0]; m.Type == MsgDecided && m.From == proposer {
				told[m.To] = true
			}
			c.deliver()
		}
		want := map[string]bool{"n12": true, "n11": true}
		for _, a := range Acceptors(before, 3) {
			want[a.Name] = true
		}
		if tellAll >= 12 {
			for _, name := range c.names {
				want[name] = true
			}
		}
		delete(want, proposer)
		if !maps.Equal(told, want) {
			t.Errorf("TellAll %d: the proposer told %v, want %v", tellAll, slices.Sorted(maps.Keys(told)), slices.Sorted(maps.Keys(want)))
		}
	}
}
