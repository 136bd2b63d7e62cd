package engine

import (
	"fmt"
	"maps"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-project/vigil/consensus"
	"github.com/vigil-project/vigil/scoring"
)

// The prober wakes once a round, not once per peer: healthy peers fall due
// on the round grid (probeAfter), however their pings were spread
// when they were added, and each keeps its cadence.
func TestProbesAlignOnTheRoundGrid(t *testing.T) {
	const nodes = 5
	s := newSimulation(1, simConfig{n: nodes, executors: allExecutors(nodes), duration: 10 * time.Second}, false)
	s.run(5 * time.Second)
	if s.err != "" {
		t.Fatal(s.err)
	}
	e := s.nodes[0].eng
	e.Ready()
	// The models still learn: every peer once a ProbeInterval, on its grid
	// (TestTheRoundGridIsTheClocks checks the idle cadence's).
	round := e.cfg.Suspicion.ProbeInterval
	names := slices.Sorted(maps.Keys(e.probes))
	if len(names) != nodes-1 {
		t.Fatalf("monitors %v", names)
	}
	// Spread them, as peers that joined at different times are.
	for i, name := range names {
		e.probes[name].next = e.now.Add(time.Duration(i) * round / time.Duration(len(names)))
		e.probes[name].inflight = 0
	}
	var wakes []time.Time
	last := map[string]time.Time{}
	for len(wakes) < 12 {
		at := e.NextProbe()
		e.Probe(at)
		wakes = append(wakes, at)
		for _, p := range e.Ready().Pings {
			if prev, ok := last[p.Peer]; ok && at.Sub(prev) > round {
				t.Errorf("%s pinged %v after its last ping: longer than the round %v", p.Peer, at.Sub(prev), round)
			}
			last[p.Peer] = at
			e.Probed(at.Add(time.Millisecond), ProbeResult{Peer: p.Peer, Boot: p.Boot, Sent: at, RTT: time.Millisecond, Timeout: p.Timeout})
		}
		e.Ready()
	}
	// The first round wakes once per peer (or twice); from then on, once a
	// round.
	for i := len(wakes) - 6; i < len(wakes); i++ {
		if d := wakes[i].Sub(wakes[i-1]); d != round {
			t.Fatalf("wake-ups %v apart after the first round (wake %d), want %v: %v", d, i, round, wakes)
		}
	}
}

// The round grid is the clock's, not the node's: agents started at any
// time ping on the same instants (so an agent reads the pings it answers
// and the pongs it awaits in one wake-up), and the time handed back keeps
// the monotonic clock.
func TestTheRoundGridIsTheClocks(t *testing.T) {
	s := newSimulation(1, simConfig{n: 3, executors: allExecutors(3), duration: 10 * time.Second}, false)
	e := s.nodes[0].eng
	g := e.cfg.Suspicion.IdleInterval
	start := time.Now()
	for _, off := range []time.Duration{0, time.Millisecond, 37 * time.Millisecond, g - 1, g, 3*g + 5} {
		for _, gap := range []time.Duration{g, g + 1, 2*g - 1, 5 * g} {
			e.now = start.Add(off)
			at := e.probeAfter(gap)
			if r := at.UnixNano() % int64(g); r != 0 {
				t.Errorf("now+%v, gap %v: due %v past the clock's grid", off, gap, time.Duration(r))
			}
			if d := at.Sub(e.now); d > gap || d <= gap-g {
				t.Errorf("now+%v, gap %v: due %v later, want in (%v, %v]", off, gap, d, gap-g, gap)
			}
			if !strings.Contains(at.String(), "m=") {
				t.Errorf("now+%v, gap %v: the due time lost the monotonic clock: %v", off, gap, at)
			}
		}
	}
	// Before 1970 (a simulated clock may be anywhere) the grid holds too.
	e.now = time.Date(1960, 1, 1, 0, 0, 0, 12345, time.UTC)
	if at := e.probeAfter(g); at.UnixNano()%int64(g) != 0 || at.After(e.now.Add(g)) {
		t.Errorf("before 1970: due %v", at)
	}
	// A gap between ProbeInterval and the idle cadence (a peer still
	// learning) ends on the ProbeInterval grid.
	pi := e.cfg.Suspicion.ProbeInterval
	if pi < g {
		e.now = start.Add(37 * time.Millisecond)
		gap := pi + (g-pi)/2
		if at := e.probeAfter(gap); at.UnixNano()%int64(pi) != 0 || at.Sub(e.now) > gap || at.Sub(e.now) <= gap-pi {
			t.Errorf("gap %v: due %v later, %v past the %v grid", gap, at.Sub(e.now), time.Duration(at.UnixNano()%int64(pi)), pi)
		}
	}
	// A gap shorter than ProbeInterval keeps its own time.
	e.now = start.Add(time.Millisecond)
	if at := e.probeAfter(pi / 8); !at.Equal(e.now.Add(pi / 8)) {
		t.Errorf("a short gap moved to %v", at.Sub(e.now))
	}
}

// A verdict burst waits after its last ping as long as this observer's
// models say a live peer may take: the subject's own timeout when it
// monitors it, else the longest of its monitored peers', within
// [minBurstWait, ProbeTimeout].
func TestBurstWaitFollowsTheModels(t *testing.T) {
	s := newSimulation(1, simConfig{n: 5, executors: allExecutors(5), duration: 30 * time.Second}, false)
	s.run(time.Second)
	if s.err != "" {
		t.Fatal(s.err)
	}
	e := s.nodes[0].eng
	clamp := func(d time.Duration) time.Duration { return min(max(d, minBurstWait), e.cfg.ProbeTimeout) }
	// Models of peers 120, 160, 200, 240 ms away, so that each timeout is
	// its own and above the floor.
	rng := rand.New(rand.NewSource(1))
	var longest time.Duration
	seen := map[time.Duration]bool{}
	for i, name := range slices.Sorted(maps.Keys(e.probes)) {
		if e.probes[name].leaseOnly {
			continue
		}
		sc, err := scoring.NewPeer(e.cfg.Scoring)
		if err != nil {
			t.Fatal(err)
		}
		base := 120*time.Millisecond + time.Duration(i)*40*time.Millisecond
		for range 300 {
			rtt := base + time.Duration(rng.Int63n(int64(5*time.Millisecond)))
			if _, err := sc.Observe(scoring.Sample{RTT: rtt, Gap: 400 * time.Millisecond}); err != nil {
				t.Fatal(err)
			}
			if sc.NeedsRefit() {
				if err := sc.Refit(); err != nil {
					t.Fatal(err)
				}
			}
		}
		e.scorers[name] = sc
		w := e.missTimeout(name)
		if w <= minBurstWait || w >= e.cfg.ProbeTimeout {
			t.Fatalf("%s: timeout %v, want one between the floor and the cap", name, w)
		}
		seen[w] = true
		longest = max(longest, w)
	}
	if len(seen) < 2 {
		t.Fatalf("the peers' timeouts are all alike: %v", seen)
	}
	for name, p := range e.probes {
		if got, want := e.burstWait(name), clamp(e.missTimeout(name)); !p.leaseOnly && got != want {
			t.Errorf("burst at monitored %s waits %v, want its own timeout %v", name, got, want)
		}
	}
	if got, want := e.burstWait("stranger"), clamp(longest); got != want {
		t.Errorf("burst at a member it does not monitor waits %v, want %v (longest %v)", got, want, longest)
	}
	// With no model, the probe timeout.
	e.probes = map[string]*peerProbe{}
	if got := e.burstWait("stranger"); got != e.cfg.ProbeTimeout {
		t.Errorf("without models the burst waits %v, want the probe timeout %v", got, e.cfg.ProbeTimeout)
	}
}

// Only an answer that vouches for this node, from a peer not ahead of its
// view, renews its lease; one from ahead asks that peer to catch it up.
func TestLeaseCountsOnlyVouchingAnswers(t *testing.T) {
	s := steadySimulation(t, 5)
	e := s.nodes[0].eng
	e.Ready()
	peer := s.nodes[1]
	at := e.now.Add(time.Millisecond)
	answer := func(epoch uint64, vouched bool) ProbeResult {
		at = at.Add(time.Millisecond)
		return ProbeResult{Peer: peer.name, Boot: peer.eng.Boot(), Sent: at, RTT: time.Millisecond, Timeout: time.Second, Epoch: epoch, Vouched: vouched}
	}
	for _, c := range []struct {
		what    string
		r       ProbeResult
		renews  bool
		catchUp bool
	}{
		{"not vouching", answer(e.Epoch(), false), false, false},
		{"vouching from ahead", answer(e.Epoch()+1, true), false, true},
		{"vouching from behind", answer(e.Epoch()-1, true), true, false},
		{"vouching", answer(e.Epoch(), true), true, false},
	} {
		before := e.acked[peer.name]
		e.Probed(c.r.Sent.Add(time.Millisecond), c.r)
		if renewed := e.acked[peer.name] != before; renewed != c.renews {
			t.Errorf("%s: renews the lease %v, want %v", c.what, renewed, c.renews)
		}
		asked := false
		for _, m := range e.Ready().Messages {
			asked = asked || (m.Type == consensus.MsgCatchup && m.To == peer.name)
		}
		if asked != c.catchUp {
			t.Errorf("%s: asks %s to catch it up %v, want %v", c.what, peer.name, asked, c.catchUp)
		}
	}
}

// An answer that vouched from a view ahead of this node's counts once
// this node has learned that view, with the time its ping was sent: a
// member that learns every decision a moment after its acceptors (a
// cluster forming, one add after another) is not fenced for it.
func TestLeaseCountsAnswersFromAheadOnceCaughtUp(t *testing.T) {
	s := steadySimulation(t, 5)
	e := s.nodes[0].eng
	e.Ready()
	peer := s.nodes[1]
	epoch := e.Epoch()
	sent := e.now.Add(time.Millisecond)
	before := e.acked[peer.name]
	e.Probed(sent.Add(time.Millisecond), ProbeResult{Peer: peer.name, Boot: peer.eng.Boot(), Sent: sent, RTT: time.Millisecond,
		Timeout: time.Second, Epoch: epoch + 1, Vouched: true})
	if e.acked[peer.name] != before {
		t.Fatalf("an answer from ahead counted before this node caught up")
	}
	learnAdd(t, e, sent.Add(2*time.Millisecond), peer.name, "x9")
	if got := e.acked[peer.name]; !got.Equal(sent) {
		t.Errorf("after catching up, the answer from ahead counts from %v, want its send time %v", got, sent)
	}
}

// An acceptor that accepted its own removal (it can, in phase 2) may be
// one of the quorum that chose it: it stops counting itself toward its
// lease, as the others of that quorum stop vouching for it.
func TestLeaseDoesNotCountSelfAfterAcceptingItsOwnRemoval(t *testing.T) {
	s := steadySimulation(t, 5)
	n := s.nodes[0]
	e := n.eng
	e.Ready()
	// Two fresh answers and this node itself make the quorum of three;
	// the other two answered long ago.
	now := e.now.Add(time.Millisecond)
	for i, o := range s.nodes[1:] {
		e.acked[o.name] = now
		if i >= 2 {
			e.acked[o.name] = now.Add(-3 * e.cfg.FenceAfter)
		}
	}
	e.acks++
	e.CheckLease(now)
	if !e.LeaseValid(now) {
		t.Fatalf("no lease with two fresh answers and itself")
	}
	self, _ := e.View().Lookup(n.name)
	m := consensus.Message{Type: consensus.MsgAccept, From: s.nodes[1].name, To: n.name, Epoch: e.Epoch(),
		Ballot: consensus.Ballot{Round: 9, Node: s.nodes[1].name},
		Change: consensus.Change{Kind: consensus.Remove, Reason: consensus.Failed, Member: self, Executor: s.nodes[2].name}}
	deliver(t, e, now.Add(time.Millisecond), m)
	if e.Vouches(n.name) {
		t.Fatalf("%s vouches for itself after accepting its own removal", n.name)
	}
	if e.LeaseValid(now.Add(2 * time.Millisecond)) {
		t.Errorf("%s still holds its lease after accepting its own removal, with only two others' answers", n.name)
	}
}

// A member that learns view changes faster than it can ping the members
// they add (a cluster forming: one add after another, 100 ms apart) keeps
// the lease the last view it held one in gave it, not renewed, however many
// changes it learns: no more than a member that has learned none of them
// holds. It runs out FenceAfter after the last answers that renewed it.
func TestLeaseOutlastsQuickAdds(t *testing.T) {
	s := steadySimulation(t, 2)
	n, peer := s.nodes[0], s.nodes[1]
	e := n.eng
	e.Ready()
	now := e.now.Add(time.Millisecond)
	e.acked[peer.name] = now
	e.acks++
	e.CheckLease(now)
	if !e.LeaseValid(now) {
		t.Fatalf("no lease in a view of two with a fresh answer")
	}
	// Three adds: the views of three, four and five members need two, three
	// and three answers; only the peer's is in.
	for i := 3; i <= 5; i++ {
		now = now.Add(100 * time.Millisecond)
		learnAdd(t, e, now, peer.name, fmt.Sprintf("x%d", i))
		if !e.LeaseValid(now) || e.Fenced() {
			t.Fatalf("fenced %v after learning the add of x%d (epoch %d, %d members) 100 ms after the last",
				e.Fenced(), i, e.Epoch(), len(e.View().Members))
		}
	}
	if got, want := e.Lease(), e.acked[peer.name].Add(e.cfg.FenceAfter); got.After(want) {
		t.Errorf("the carried lease ends at %v, after the last answer's %v", got, want)
	}
	end := e.acked[peer.name].Add(e.cfg.FenceAfter + time.Millisecond)
	e.CheckLease(end)
	if e.LeaseValid(end) || !e.Fenced() {
		t.Errorf("still holds a lease FenceAfter after the last answer that renewed it, with the new members silent")
	}
}

// steadySimulation is a cluster of n nodes (every one an executor) after
// 5 s of its 10 simulated seconds, with no fault.
func steadySimulation(t *testing.T, n int) *simulation {
	t.Helper()
	s := newSimulation(1, simConfig{n: n, executors: allExecutors(n), duration: 10 * time.Second}, false)
	s.run(5 * time.Second)
	if s.err != "" {
		t.Fatal(s.err)
	}
	return s
}

// deliver encodes m and gives it to e at at, from m.From.
func deliver(t *testing.T, e *Engine, at time.Time, m consensus.Message) {
	t.Helper()
	b, err := consensus.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	e.Message(at, m.From, b)
}

// learnAdd has e learn from peer, at at, the decision of e's epoch that
// adds a member named name, and checks that e applied it.
func learnAdd(t *testing.T, e *Engine, at time.Time, peer, name string) {
	t.Helper()
	epoch := e.Epoch()
	deliver(t, e, at, consensus.Message{Type: consensus.MsgDecided, From: peer, To: e.self(), Epoch: epoch, Head: epoch + 1,
		Ballot: consensus.Ballot{Round: 1, Node: peer},
		Change: consensus.Change{Kind: consensus.Add, Reason: consensus.Joined,
			Member: consensus.Member{Name: name, Boot: "b", Addr: fmt.Sprintf("10.9.%d.%d:7946", epoch/250, epoch%250+1)}}})
	if got := e.Epoch(); got != epoch+1 {
		t.Fatalf("the decision of epoch %d adding %s was not applied (epoch %d)", epoch, name, got)
	}
}
