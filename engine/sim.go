package engine

// The whole-agent simulation: engines on a simulated network and clock,
// with the faults of a real cluster and the safety properties checked
// after every step. The simulation plays the part of agent/ (pings, the
// store, serf's gossip, the runners) as faithfully as the properties
// need; sim_test.go runs it over thousands of seeds, and Simulate (vigil
// simulate) runs one cluster for an operator.

import (
	"container/heap"
	"fmt"
	"math/rand"
	"slices"
	"sort"
	"time"

	"github.com/vigil-project/vigil/consensus"
	"github.com/vigil-project/vigil/scoring"
	"github.com/vigil-project/vigil/suspicion"
)

// maxDrift is the clock-rate bound the lease assumes (consensus/lease.go:
// 5 %); the simulation drifts clocks within 4 %.
const maxDrift = 0.04

var simEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type evKind uint8

const (
	evTick evKind = iota + 1
	evProbeDue
	evProbed
	evBursted
	evMessage
	evGossip
	evAnnounce
	evChecked
	evPut
	evReport
	evFault
)

type simEvent struct {
	at   time.Duration // true time since the start
	seq  uint64
	kind evKind
	node int    // addressee
	inc  int    // the addressee's incarnation the event is for (-1: any)
	from string // sender (messages, puts)
	data []byte
	pr   ProbeResult
	br   BurstResult
	jc   JournalCheck
	job  Job
	rep  Report
	fn   func()          // evFault
	took map[string]bool // evPut: the members that answered "taken"
	run  *simRunner      // evReport: the runner that scheduled it
}

type eventQueue []*simEvent

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*simEvent)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// simDisk is what a node's data dir holds.
type simDisk struct {
	acceptor *consensus.AcceptorState
	view     *consensus.View
	decided  []consensus.Decision
	cluster  string
	jobs     map[string]Job
}

type simRunner struct {
	node, inc int
	attempt   int
	job       string
	token     uint64
	started   time.Duration
}

type simNode struct {
	i        int
	name     string
	addr     string
	eng      *Engine
	up       bool
	paused   bool
	inc      int // incarnation: one per start
	rate     float64
	executor bool
	disk     simDisk
	gossip   map[string]Member // what serf shows this node
	probeAt  time.Duration     // the probe wake-up scheduled (0: none)
	tickAt   time.Duration     // the tick scheduled (0: none)
	fenced   map[string]time.Duration
	runners  map[string]*simRunner
	checked  uint64 // the epoch checkView last looked at
	// gossipVer is the simulation's gossipVer when gossipTo last looked;
	// memberCache is this node's serf member, for memberKey (boot/cluster).
	gossipVer   uint64
	memberCache Member
	memberKey   string
	diskFail    bool // its next write fails
	// queued holds the events that arrived while paused, in order.
	queued []*simEvent
}

type simulation struct {
	seed   int64
	rnd    *rand.Rand
	now    time.Duration
	seq    uint64
	q      eventQueue
	nodes  []*simNode
	byname map[string]*simNode
	// The network: per-direction loss, a partition (cut[a][b]: a's
	// packets do not reach b), delay bounds.
	loss     float64
	dup      float64
	cut      [][]bool
	base     []time.Duration // per link a→b: index a*n+b
	maxDelay time.Duration
	trace    []string
	tracing  bool
	logs     bool // with tracing, the engines' log lines; debug: theirs at debug too
	debug    bool
	err      string
	// What the checks remember.
	decided  map[uint64]consensus.Decision // epoch → the value decided
	accepted map[string]map[string]bool    // "epoch/ballot" → acceptors that sent Accepted
	viewAt   map[uint64]consensus.View     // epoch → the view its instance ran in
	running  map[string][]*simRunner       // job → runners now
	lastRun  map[string]*simRunner         // job → the last runner started
	crashed  map[string]bool               // names crashed for good
	removals int
	runs     int
	fences   int
	falseRm  int
	msgs     int
	bootIDs  int
	healthy  map[string]time.Duration // name@boot → true time since it was up, reachable and unpaused
	// gossipVer counts the changes gossip would see (a start, crash,
	// pause, cut, new boot id or cluster id).
	gossipVer uint64
	// unrecovered names a decided failure never recovered by the end: a
	// liveness gap TestSimulation reports and the scenarios fail on.
	unrecovered string
	runFor      time.Duration
	fenceAfter  time.Duration
	mutate      func(*Engine) // breaks each engine, to prove the checks can fail
	// onDecided, if set, sees each value the first time it is decided
	// (a scenario schedules faults relative to a decision).
	onDecided func(d consensus.Decision)
	// lag delays every consensus message to a node by that much more (a
	// scenario's node that hears of decisions late).
	lag map[string]time.Duration
	// What Simulate reports: crashes and removals by name@boot, the
	// first proposal of each change, decision latencies, false removals,
	// pings and consensus bytes.
	crashAt, removedAt map[string]time.Duration
	proposedAt         map[string]time.Duration
	latencies          []time.Duration
	falseRemovals      int
	pings, bytes       int
	ticks              int // Ticks delivered
	starts             []simStart
	fenceLog           []simFenced
}

// simStart is a recovery runner that started; simFenced a fence.
type simStart struct {
	node string
	job  Job
	at   time.Duration
}

type simFenced struct {
	node, boot, reason string
	at                 time.Duration
}

func (s *simulation) tracef(format string, args ...any) {
	if s.tracing {
		s.trace = append(s.trace, fmt.Sprintf("%9.3fs ", s.now.Seconds())+fmt.Sprintf(format, args...))
	}
}

func (s *simulation) fail(format string, args ...any) {
	if s.err == "" {
		s.err = fmt.Sprintf("at %.3fs: ", s.now.Seconds()) + fmt.Sprintf(format, args...)
	}
}

func (s *simulation) push(e *simEvent) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.q, e)
}

// local is node n's clock at true time t.
func (s *simulation) local(n *simNode, t time.Duration) time.Time {
	return simEpoch.Add(time.Duration(float64(t) * n.rate))
}

// trueAt is the true time at which n's clock reads l.
func (s *simulation) trueAt(n *simNode, l time.Time) time.Duration {
	return time.Duration(float64(l.Sub(simEpoch)) / n.rate)
}

// delay is one packet's time on the wire: a link's base delay, up to
// maxDelay, and a small jitter (a LAN's round trips vary little).
func (s *simulation) delay(a, b int) time.Duration {
	base := s.base[a*len(s.nodes)+b]
	return base + time.Duration(s.rnd.ExpFloat64()*float64(base/10))
}

// passes reports whether one packet from a reaches b.
func (s *simulation) passes(a, b int) bool {
	return !s.cut[a][b] && s.rnd.Float64() >= s.loss
}

func (s *simulation) byName(name string) *simNode { return s.byname[name] }

func (s *simulation) config(n *simNode, quorum consensus.Quorum, council int) Config {
	return Config{
		Name: n.name, Quorum: quorum, CouncilSize: council, FenceAfter: s.fenceAfter,
		RejoinStable: 10 * time.Second, ProbeTimeout: 500 * time.Millisecond, Executor: n.executor,
		Suspicion: suspicion.DefaultConfig(), Scoring: scoring.DefaultConfig(),
		Rand: rand.New(rand.NewSource(s.rnd.Int63())),
	}
}

// start (re)starts node n from its disk, under a new boot id.
func (s *simulation) start(n *simNode, quorum consensus.Quorum, council int) {
	n.inc++
	s.bootIDs++
	boot := fmt.Sprintf("b%d-%d", n.i, n.inc)
	st := State{Boot: boot, Addr: n.addr, Cluster: n.disk.cluster}
	if n.disk.view != nil {
		st.Consensus.View = n.disk.view.Clone()
	}
	if n.disk.acceptor != nil {
		st.Consensus.Acceptor = *n.disk.acceptor
	}
	st.Consensus.Fresh = n.disk.acceptor == nil && st.Consensus.View.Epoch == 0
	for _, d := range n.disk.decided {
		if d.Epoch < st.Consensus.View.Epoch {
			st.Decided = append(st.Decided, d)
		}
	}
	// The contiguous tail that ends at the view, as the agent loads it.
	for _, d := range st.Decided {
		if len(st.Consensus.Log) == 0 || st.Consensus.Log[len(st.Consensus.Log)-1].Epoch+1 == d.Epoch {
			st.Consensus.Log = append(st.Consensus.Log, d)
		} else {
			st.Consensus.Log = append(st.Consensus.Log[:0], d)
		}
	}
	if len(st.Consensus.Log) > 0 && st.Consensus.Log[len(st.Consensus.Log)-1].Epoch != st.Consensus.View.Epoch-1 {
		st.Consensus.Log = nil
	}
	ids := make([]string, 0, len(n.disk.jobs))
	for id := range n.disk.jobs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		st.Jobs = append(st.Jobs, n.disk.jobs[id])
	}
	e, err := New(s.config(n, quorum, council), st, s.local(n, s.now))
	if err != nil {
		s.fail("restart %s: %v", n.name, err)
		return
	}
	if s.mutate != nil {
		s.mutate(e)
	}
	n.eng, n.up, n.paused, n.queued, n.probeAt, n.tickAt, n.checked = e, true, false, nil, 0, 0, 0
	s.gossipVer++
	n.gossip = map[string]Member{}
	n.runners = map[string]*simRunner{}
	s.tracef("%s starts as %s at epoch %d", n.name, boot, e.Epoch())
	s.gossipTo(n)
	s.handle(n)
}

// crash stops node n at once; its handlers die with it (Pdeathsig).
func (s *simulation) crash(n *simNode) {
	if !n.up {
		return
	}
	s.tracef("%s crashes", n.name)
	delete(s.healthy, n.name+"@"+n.eng.Boot())
	for id := range n.runners {
		s.stopRunner(n, id)
	}
	n.up, n.paused, n.eng, n.queued = false, false, nil, nil
	s.gossipVer++
}

func (s *simulation) member(n *simNode) Member {
	if key := n.eng.Boot() + "/" + n.eng.Cluster(); key == n.memberKey {
		return n.memberCache
	} else {
		n.memberKey = key
	}
	tags := map[string]string{BootTag: n.eng.Boot(), RulesTag: "majority/0/w2"}
	if c := n.eng.Cluster(); c != "" {
		tags[ClusterTag] = c
	}
	if n.executor {
		tags[ExecutorTag] = "1"
	}
	n.memberCache = Member{Name: n.name, Addr: n.addr, Status: "alive", Tags: tags}
	return n.memberCache
}

// gossipTo refreshes what serf shows node o: every member it can reach
// both ways is alive; the others failed (SWIM with indirect probes would
// see through a one-way cut more often; this is the harder case).
func (s *simulation) gossipTo(o *simNode) {
	if !o.up || o.paused || o.gossipVer == s.gossipVer {
		return // nothing changed since it last looked
	}
	o.gossipVer = s.gossipVer
	var list []Member
	var events []GossipEvent
	for _, y := range s.nodes {
		if y.eng == nil && y.inc == 0 {
			continue // never started
		}
		var m Member
		prev, known := o.gossip[y.name]
		switch {
		case y == o || y.up && !y.paused && !s.cut[o.i][y.i] && !s.cut[y.i][o.i]:
			m = s.member(y)
		case known:
			m = prev
			m.Status = "failed"
		default:
			continue
		}
		list = append(list, m)
		switch {
		case !known || prev.Status != m.Status && m.Status == "alive":
			events = append(events, GossipEvent{Type: GossipJoin, Members: []Member{m}, Time: s.local(o, s.now)})
		case prev.Status != m.Status:
			events = append(events, GossipEvent{Type: GossipFailed, Members: []Member{m}, Time: s.local(o, s.now)})
		case prev.Boot() != m.Boot() || prev.Tags[ClusterTag] != m.Tags[ClusterTag]:
			events = append(events, GossipEvent{Type: GossipUpdate, Members: []Member{m}, Time: s.local(o, s.now)})
		}
		o.gossip[y.name] = m
	}
	if len(events) == 0 {
		return
	}
	o.eng.SetMembers(s.local(o, s.now), list)
	for _, ev := range events {
		o.eng.Gossip(s.local(o, s.now), ev)
	}
	s.handle(o)
}

// handle carries out node n's Ready as agent/ does: persist, then send,
// then act.
func (s *simulation) handle(n *simNode) {
	if !n.up || n.eng == nil {
		return
	}
	rd := n.eng.Ready()
	if n.diskFail && rd.MustPersist() {
		// The write fails: the agent stops with nothing of this Ready done
		// (fail-stop storage), like a crash.
		s.tracef("%s: a write to the data dir fails: it stops", n.name)
		s.crash(n)
		return
	}
	if s.tracing && s.logs {
		for _, l := range rd.Logs {
			if l.Level >= Info || s.debug {
				s.tracef("%s: %s %v", n.name, l.Msg, l.Fields)
			}
		}
	}
	if rd.Acceptor != nil {
		a := *rd.Acceptor
		n.disk.acceptor = &a
		if !a.Accepted.IsZero() {
			// An acceptor's vote, the proposer's own included (it sends no
			// message to itself).
			s.noteAccept(a.Epoch, a.Accepted, n.name)
		}
	}
	n.disk.decided = append(n.disk.decided, rd.Decided...)
	if rd.View != nil {
		v := rd.View.Clone()
		n.disk.view = &v
	}
	if c, ok := rd.Meta[ClusterMeta]; ok {
		n.disk.cluster = string(c)
	}
	for _, j := range rd.Jobs {
		if n.disk.jobs == nil {
			n.disk.jobs = map[string]Job{}
		}
		n.disk.jobs[j.ID] = j
	}
	for _, c := range rd.Proposed {
		if _, ok := s.proposedAt[proposalKey(c)]; !ok {
			s.proposedAt[proposalKey(c)] = s.now
		}
	}
	for _, d := range rd.Decided {
		s.checkDecision(n, d)
	}
	s.checkView(n)
	for _, m := range rd.Messages {
		s.send(n, m)
	}
	for _, id := range rd.Kill {
		s.stopRunner(n, id)
	}
	for _, f := range rd.Fences {
		n.fenced[f.Boot] = s.now
		s.fenceLog = append(s.fenceLog, simFenced{node: n.name, boot: f.Boot, reason: f.Reason, at: s.now})
		s.fences++
		s.tracef("%s fences (%s, epoch %d)", n.name, f.Reason, f.Epoch)
	}
	if rd.Boot != "" || rd.Tags {
		s.gossipVer++
	}
	if rd.Boot != "" {
		s.bootIDs++
		s.tracef("%s rejoins as %s", n.name, rd.Boot)
		s.updateHealthy()
	}
	for _, p := range rd.Pings {
		s.ping(n, p)
	}
	for _, b := range rd.Bursts {
		s.burst(n, b)
	}
	for _, ue := range rd.Announce {
		if ue.Name != DecisionEvent {
			continue
		}
		for _, o := range s.nodes {
			if o != n && o.up && s.passes(n.i, o.i) {
				s.push(&simEvent{at: s.now + 10*s.delay(n.i, o.i), kind: evAnnounce, node: o.i, inc: o.inc, data: ue.Payload})
			}
		}
	}
	for _, id := range rd.AskJournal {
		s.ask(n, id)
	}
	for _, r := range rd.Replicate {
		s.replicate(n, n.inc, r, map[string]bool{}, 1)
	}
	for _, r := range rd.Run {
		s.startRunner(n, r)
	}
	// As agent/'s loop: the tick at NextTick, asked again after every
	// input (one may end the engine's quiet and bring it closer).
	if at := max(s.trueAt(n, n.eng.NextTick())+time.Microsecond, s.now); n.tickAt == 0 || at < n.tickAt {
		n.tickAt = at
		s.push(&simEvent{at: at, kind: evTick, node: n.i, inc: n.inc})
	}
	if next := n.eng.NextProbe(); !next.IsZero() {
		// Rounded up, so that the node's clock has reached next by then.
		at := max(s.trueAt(n, next)+time.Microsecond, s.now)
		if n.probeAt == 0 || at < n.probeAt {
			n.probeAt = at
			s.push(&simEvent{at: at, kind: evProbeDue, node: n.i, inc: n.inc})
		}
	}
}

// replicate sends a journal entry to the members that have not taken it,
// JournalPutTries times JournalAskTimeout apart, as agent/ does.
func (s *simulation) replicate(n *simNode, inc int, r Replicate, took map[string]bool, try int) {
	if !n.up || n.inc != inc {
		return
	}
	for _, o := range r.Others {
		on := s.byName(o)
		if took[o] || on == nil || !on.up || on.paused || !s.passes(n.i, on.i) || !s.passes(on.i, n.i) {
			continue
		}
		s.push(&simEvent{at: s.now + s.delay(n.i, on.i), kind: evPut, node: on.i, inc: on.inc, from: n.name, job: r.Job, took: took})
	}
	if len(took) < len(r.Others) && try < JournalPutTries {
		s.push(&simEvent{at: s.now + JournalAskTimeout, kind: evFault, fn: func() { s.replicate(n, inc, r, took, try+1) }})
	}
}

// proposalKey names a change without its evidence.
func proposalKey(c consensus.Change) string {
	return fmt.Sprintf("%d/%d/%s", c.Kind, c.Reason, c.Member)
}

// isCut reports whether a cut separates node i from any live node.
func (s *simulation) isCut(i int) bool {
	for _, o := range s.nodes {
		if o.up && o.i != i && (s.cut[o.i][i] || s.cut[i][o.i]) {
			return true
		}
	}
	return false
}

func (s *simulation) send(n *simNode, m consensus.Message) {
	b, err := consensus.Encode(m)
	if err != nil {
		s.fail("%s encodes %s: %v", n.name, m, err)
		return
	}
	s.msgs++
	s.bytes += len(b)
	if m.Type == consensus.MsgAccepted {
		s.noteAccept(m.Epoch, m.Ballot, n.name)
	}
	to := s.byName(m.To)
	if to == nil {
		return
	}
	copies := 1
	if s.rnd.Float64() < s.dup {
		copies = 2
	}
	for c := 0; c < copies; c++ {
		// The transport resends until acknowledged: a lost packet is
		// resent; a cut link loses it for good.
		at := s.now + s.delay(n.i, to.i)
		for !s.passes(n.i, to.i) {
			if s.cut[n.i][to.i] {
				return
			}
			at += 200 * time.Millisecond
		}
		s.push(&simEvent{at: at + s.lag[to.name], kind: evMessage, node: to.i, inc: -1, from: n.name, data: b})
	}
}

func (s *simulation) noteAccept(epoch uint64, b consensus.Ballot, name string) {
	k := fmt.Sprintf("%d/%s", epoch, b)
	if s.accepted[k] == nil {
		s.accepted[k] = map[string]bool{}
	}
	s.accepted[k][name] = true
}

// answers reports whether a ping from a to b gets its ack, and after how
// long.
func (s *simulation) answers(a *simNode, b *simNode) (time.Duration, bool) {
	if b == nil || !b.up || b.paused || !s.passes(a.i, b.i) || !s.passes(b.i, a.i) {
		return 0, false
	}
	return s.delay(a.i, b.i) + s.delay(b.i, a.i), true
}

func (s *simulation) ping(n *simNode, p Ping) {
	s.pings++
	sent := s.local(n, s.now)
	r := ProbeResult{Peer: p.Peer, Boot: p.Boot, Sent: sent, Timeout: p.Timeout}
	b := s.byName(p.Peer)
	rtt, ok := s.answers(n, b)
	tout := time.Duration(float64(p.Timeout) / n.rate)
	switch {
	case ok && rtt < tout:
		// What the pong says is read when the ping is sent, before the
		// peer can learn more: the earliest state is the one most
		// likely to vouch, the adversary's choice.
		r.Epoch, r.Vouched = b.eng.Epoch(), b.eng.Vouches(n.name)
		r.RTT = time.Duration(float64(rtt) * n.rate)
		s.push(&simEvent{at: s.now + rtt, kind: evProbed, node: n.i, inc: n.inc, pr: r})
	default:
		r.RTT, r.Miss = p.Timeout, true
		s.push(&simEvent{at: s.now + tout, kind: evProbed, node: n.i, inc: n.inc, pr: r})
	}
}

func (s *simulation) burst(n *simNode, b Burst) {
	s.pings += b.N
	r := BurstResult{Peer: b.Peer, Boot: b.Boot}
	for k := 0; k < b.N; k++ {
		if _, ok := s.answers(n, s.byName(b.Peer)); ok {
			r.OK++
		} else {
			r.Miss++
		}
	}
	at := s.now + time.Duration(b.N-1)*b.Gap + b.Wait
	s.push(&simEvent{at: at, kind: evBursted, node: n.i, inc: n.inc, br: r})
}

func (s *simulation) ask(n *simNode, id string) {
	c := JournalCheck{ID: id, Answered: map[string]bool{}}
	for _, o := range s.nodes {
		if o == n || !o.up || o.paused || !s.passes(n.i, o.i) || !s.passes(o.i, n.i) {
			continue
		}
		c.Answered[o.name] = true
		if j, ok := o.eng.JournalQuestion(id); ok {
			c.Answers = append(c.Answers, JournalAnswer{From: o.name, Job: j})
		}
	}
	s.push(&simEvent{at: s.now + 50*time.Millisecond, kind: evChecked, node: n.i, inc: n.inc, jc: c})
}

// startRunner checks the recovery's preconditions and starts its runner:
// it reports the start at once and a success a while later.
func (s *simulation) startRunner(n *simNode, r Run) {
	j := r.Job
	if !n.executor {
		s.fail("%s runs %s without a recovery handler", n.name, j.ID)
	}
	// Fence before recovery: the removed incarnation holds no lease now.
	if x := s.byName(j.Node); x != nil && x.up && x.eng != nil && x.eng.Boot() == j.Boot {
		// A node that fenced and then heard a quorum again holds a lease
		// but stays fenced (the fence handler's stop is not undone).
		if _, fenced := x.fenced[j.Boot]; !fenced && x.eng.LeaseValid(s.local(x, s.now)) {
			s.fail("%s starts recovery %s of %s@%s while it still holds its lease (until %v)", n.name, j.ID, j.Node, j.Boot, x.eng.Lease().Sub(simEpoch))
		}
		if !x.paused && x.eng.leaseHeld && !x.eng.Fenced() {
			s.fail("%s starts recovery %s of %s@%s, which has not fenced", n.name, j.ID, j.Node, j.Boot)
		}
	}
	for _, o := range s.running[j.ID] {
		on := s.nodes[o.node]
		if !on.paused {
			s.fail("%s starts %s while %s runs it (token %d)", n.name, j.ID, on.name, o.token)
		}
	}
	if last := s.lastRun[j.ID]; last != nil && last.node != n.i && j.FencingToken() <= last.token {
		s.fail("%s takes %s over with token %d, not above %s's %d", n.name, j.ID, j.FencingToken(), s.nodes[last.node].name, last.token)
	}
	sr := &simRunner{node: n.i, inc: n.inc, attempt: r.First, job: j.ID, token: j.FencingToken(), started: s.now}
	n.runners[j.ID] = sr
	s.running[j.ID] = append(s.running[j.ID], sr)
	s.lastRun[j.ID] = sr
	s.runs++
	s.starts = append(s.starts, simStart{node: n.name, job: j, at: s.now})
	s.tracef("%s runs recovery %s of %s (token %d, attempt %d)", n.name, j.ID, j.Node, j.FencingToken(), r.First)
	s.push(&simEvent{at: s.now, kind: evReport, node: n.i, inc: n.inc, rep: Report{ID: j.ID, N: r.First, Started: true}})
	took := time.Duration(s.rnd.Int63n(int64(3 * time.Second)))
	if s.runFor > 0 {
		took = s.runFor
	}
	s.push(&simEvent{at: s.now + took, kind: evReport, node: n.i, inc: n.inc, run: sr,
		rep: Report{ID: j.ID, N: r.First, Outcome: Outcome{Exit: 0}, Final: true}})
	s.push(&simEvent{at: s.now + took, kind: evReport, node: n.i, inc: n.inc, run: sr, rep: Report{ID: j.ID, Exited: true}})
}

// stopRunner ends a runner: killed, it reports its attempt ended with
// no outcome, then its exit, as agent/'s runner does.
func (s *simulation) stopRunner(n *simNode, id string) {
	sr, ok := n.runners[id]
	if !ok {
		return
	}
	delete(n.runners, id)
	if n.up {
		s.push(&simEvent{at: s.now, kind: evReport, node: n.i, inc: n.inc,
			rep: Report{ID: id, N: sr.attempt, Outcome: Outcome{Exit: -1, Err: "killed"}}})
		s.push(&simEvent{at: s.now, kind: evReport, node: n.i, inc: n.inc, rep: Report{ID: id, Exited: true}})
	}
	s.dropRunner(sr)
}

func (s *simulation) dropRunner(sr *simRunner) {
	rs := s.running[sr.job]
	for k, o := range rs {
		if o == sr {
			s.running[sr.job] = append(rs[:k:k], rs[k+1:]...)
			break
		}
	}
}

// checkDecision: one value per epoch, decided by a quorum of the
// acceptors of the view it was decided in.
func (s *simulation) checkDecision(n *simNode, d consensus.Decision) {
	if prev, ok := s.decided[d.Epoch]; ok {
		if !prev.Change.Same(d.Change) {
			s.fail("two values for epoch %d: %s and %s (learned by %s)", d.Epoch, prev.Change, d.Change, n.name)
		}
		return
	}
	s.decided[d.Epoch] = d
	v, ok := s.viewAt[d.Epoch]
	if !ok {
		s.fail("epoch %d decided by %s without a known view of that epoch", d.Epoch, n.name)
		return
	}
	acc := consensus.Acceptors(v, n.eng.cfg.CouncilSize)
	votes := 0
	for _, m := range acc {
		if s.accepted[fmt.Sprintf("%d/%s", d.Epoch, d.Ballot)][m.Name] {
			votes++
		}
	}
	if need := consensus.QuorumSize(len(acc), n.eng.cfg.Quorum); votes < need {
		s.fail("epoch %d decided %s with %d of the %d accepts it needs", d.Epoch, d.Change, votes, need)
	}
	c := d.Change
	s.tracef("decided e%d: %s", d.Epoch, c)
	if s.onDecided != nil {
		s.onDecided(d)
	}
	if at, ok := s.proposedAt[proposalKey(c)]; ok {
		s.latencies = append(s.latencies, s.now-at)
	}
	if c.Kind == consensus.Remove {
		s.removedAt[c.Member.String()] = s.now
		if x := s.byName(c.Member.Name); x != nil && x.up && x.eng.Boot() == c.Member.Boot && !x.paused && !s.isCut(x.i) {
			s.falseRemovals++
		}
	}
	if c.Kind == consensus.Remove && c.Reason == consensus.Failed {
		s.removals++
		if since, ok := s.healthy[c.Member.String()]; ok && s.now-since > falseRemovalBound {
			s.falseRm++
			s.fail("removed %s, healthy and reachable from everyone for %v", c.Member, s.now-since)
		}
	}
}

// falseRemovalBound: a member up, unpaused and reachable both ways from
// every node for this long is never removed (stale evidence expires).
const falseRemovalBound = 30 * time.Second

// checkView: every node that reaches an epoch holds the same view there.
func (s *simulation) checkView(n *simNode) {
	if n.eng.Epoch() == 0 || n.eng.Epoch() == n.checked {
		return
	}
	n.checked = n.eng.Epoch()
	v := n.eng.cn.SharedView()
	if prev, ok := s.viewAt[v.Epoch]; !ok {
		s.viewAt[v.Epoch] = v
	} else if !slices.Equal(prev.Members, v.Members) {
		s.fail("%s holds another view at epoch %d: %v, not %v", n.name, v.Epoch, v.Members, prev.Members)
	}
}

// updateHealthy tracks, per incarnation, since when it has been up,
// unpaused and reachable both ways from every live node.
func (s *simulation) updateHealthy() {
	for _, n := range s.nodes {
		if !n.up || n.eng == nil {
			continue
		}
		key := n.name + "@" + n.eng.Boot()
		ok := !n.paused
		for _, o := range s.nodes {
			if o.up && o != n && (s.cut[o.i][n.i] || s.cut[n.i][o.i]) {
				ok = false
			}
		}
		if !ok {
			delete(s.healthy, key)
		} else if _, seen := s.healthy[key]; !seen {
			s.healthy[key] = s.now
		}
	}
}

// deliver steps one event into its node.
func (s *simulation) deliver(e *simEvent) {
	if e.kind == evFault {
		e.fn()
		s.updateHealthy()
		return
	}
	n := s.nodes[e.node]
	if !n.up || e.inc >= 0 && e.inc != n.inc {
		return
	}
	if n.paused {
		n.queued = append(n.queued, e)
		return
	}
	now := s.local(n, s.now)
	switch e.kind {
	case evTick:
		if n.tickAt != e.at {
			return
		}
		n.tickAt = 0
		s.ticks++
		n.eng.Tick(now)
	case evProbeDue:
		if n.probeAt != e.at {
			return
		}
		n.probeAt = 0
		n.eng.Probe(now)
	case evProbed:
		n.eng.Probed(now, e.pr)
	case evBursted:
		n.eng.Bursted(now, e.br)
	case evMessage:
		n.eng.Message(now, e.from, e.data)
	case evGossip:
		s.gossipTo(n)
		s.push(&simEvent{at: s.now + time.Second + time.Duration(s.rnd.Int63n(int64(time.Second))), kind: evGossip, node: n.i, inc: n.inc})
	case evAnnounce:
		n.eng.DecisionAnnounced(now, e.data)
	case evChecked:
		n.eng.JournalChecked(now, e.jc)
	case evPut:
		ok := n.eng.JournalPut(now, e.from, e.job)
		s.tracef("%s takes %s's entry of %s (%s): %v", n.name, e.from, e.job.ID, e.job.State, ok)
		if ok && s.passes(n.i, s.byName(e.from).i) {
			e.took[n.name] = true
		}
	case evReport:
		if e.run != nil {
			// A report the runner scheduled when it started: void if it
			// was killed since (stopRunner reported for it).
			if n.runners[e.rep.ID] != e.run {
				return
			}
			if e.rep.Exited {
				delete(n.runners, e.rep.ID)
				s.dropRunner(e.run)
			}
		}
		n.eng.Reported(now, e.rep)
	}
	s.handle(n)
}

func (s *simulation) pause(n *simNode) {
	if n.up {
		s.tracef("%s pauses", n.name)
		n.paused = true
		s.gossipVer++
	}
}

func (s *simulation) resume(n *simNode) {
	if !n.up || !n.paused {
		return
	}
	s.tracef("%s resumes (%d events waited)", n.name, len(n.queued))
	n.paused, n.probeAt, n.tickAt = false, 0, 0
	s.gossipVer++
	// First thing on resume, as the agent's loop: the lease.
	n.eng.CheckLease(s.local(n, s.now))
	s.handle(n)
	q := n.queued
	n.queued = nil
	for _, e := range q {
		if e.kind == evProbeDue || e.kind == evTick {
			continue // handle scheduled a new one
		}
		e.at = s.now
		s.push(e)
	}
}

// simConfig is one seed's cluster and faults.
type simConfig struct {
	// executors, if set, says which nodes have a recovery handler (else a
	// random three in four); runFor how long a recovery handler runs
	// (else up to 3 s).
	executors []bool
	runFor    time.Duration
	mutate    func(*Engine)
	// fenceAfter is every agent's lease (0: 2 s).
	fenceAfter time.Duration
	n          int
	council    int
	quorum     consensus.Quorum
	duration   time.Duration // of faults; a quiet minute follows
	faults     []simFault
}

type simFault struct {
	at, until time.Duration
	kind      string // crash, restart, wipe, pause, cut, oneway, loss
	a         []int
	b         []int
	loss      float64
}

type simResult struct {
	err, unrecovered string
	trace            []string
	stats            string
	falseR           int
}

func newSimulation(seed int64, cfg simConfig, tracing bool) *simulation {
	s := &simulation{
		seed: seed, rnd: rand.New(rand.NewSource(seed)), tracing: tracing, maxDelay: 2 * time.Millisecond,
		decided: map[uint64]consensus.Decision{}, accepted: map[string]map[string]bool{},
		viewAt: map[uint64]consensus.View{}, running: map[string][]*simRunner{}, lastRun: map[string]*simRunner{},
		crashed: map[string]bool{}, healthy: map[string]time.Duration{}, runFor: cfg.runFor, mutate: cfg.mutate,
		fenceAfter: cfg.fenceAfter, crashAt: map[string]time.Duration{}, removedAt: map[string]time.Duration{},
		proposedAt: map[string]time.Duration{}, byname: map[string]*simNode{},
	}
	if s.fenceAfter <= 0 {
		s.fenceAfter = 2 * time.Second
	}
	s.base = make([]time.Duration, cfg.n*cfg.n)
	for k := range s.base {
		s.base[k] = 50*time.Microsecond + time.Duration(s.rnd.Int63n(int64(s.maxDelay)))
	}
	s.cut = make([][]bool, cfg.n)
	for i := range s.cut {
		s.cut[i] = make([]bool, cfg.n)
	}
	// An established cluster: every node in the view of epoch 1.
	var members []consensus.Member
	width := max(2, len(fmt.Sprint(cfg.n)))
	for i := 0; i < cfg.n; i++ {
		n := &simNode{i: i, name: fmt.Sprintf("n%0*d", width, i+1), addr: fmt.Sprintf("10.0.%d.%d:7946", (i+1)/256, (i+1)%256),
			rate: 1 + (s.rnd.Float64()*2-1)*maxDrift, executor: s.rnd.Intn(4) != 0, fenced: map[string]time.Duration{}}
		if cfg.executors != nil {
			n.executor = cfg.executors[i]
		}
		s.nodes = append(s.nodes, n)
		s.byname[n.name] = n
		members = append(members, consensus.Member{Name: n.name, Boot: fmt.Sprintf("b%d-%d", i, 1), Addr: n.addr})
	}
	v := consensus.View{Epoch: 1, Members: members}
	for _, n := range s.nodes {
		vv := v.Clone()
		n.disk = simDisk{view: &vv, acceptor: &consensus.AcceptorState{Epoch: 1}, cluster: "sim-cluster", jobs: map[string]Job{}}
	}
	s.viewAt[1] = v
	for _, n := range s.nodes {
		s.start(n, cfg.quorum, cfg.council)
	}
	for _, n := range s.nodes {
		s.push(&simEvent{at: time.Duration(s.rnd.Int63n(int64(time.Second))), kind: evGossip, node: n.i, inc: n.inc})
	}
	s.updateHealthy()
	for _, f := range cfg.faults {
		f := f
		s.push(&simEvent{at: f.at, kind: evFault, fn: func() { s.begin(f, cfg) }})
		if f.until > 0 {
			s.push(&simEvent{at: f.until, kind: evFault, fn: func() { s.end(f, cfg) }})
		}
	}
	return s
}

func (s *simulation) begin(f simFault, cfg simConfig) {
	s.tracef("fault %s %v %v loss=%.2f", f.kind, f.a, f.b, f.loss)
	switch f.kind {
	case "crash":
		for _, i := range f.a {
			if n := s.nodes[i]; n.up {
				s.crashAt[n.name+"@"+n.eng.Boot()] = s.now
			}
			s.crash(s.nodes[i])
			s.crashed[s.nodes[i].name] = true
		}
	case "restart", "wipe":
		for _, i := range f.a {
			n := s.nodes[i]
			s.crash(n)
			if f.kind == "wipe" {
				n.disk = simDisk{jobs: map[string]Job{}}
			}
			s.start(n, cfg.quorum, cfg.council)
			s.push(&simEvent{at: s.now + time.Second, kind: evGossip, node: n.i, inc: n.inc})
		}
	case "pause":
		for _, i := range f.a {
			s.pause(s.nodes[i])
		}
	case "cut", "oneway":
		s.gossipVer++
		for _, i := range f.a {
			for _, j := range f.b {
				s.cut[i][j] = true
				if f.kind == "cut" {
					s.cut[j][i] = true
				}
			}
		}
	case "loss":
		s.loss = f.loss
	case "dup":
		s.dup = f.loss
	case "diskfail":
		for _, i := range f.a {
			s.nodes[i].diskFail = true
		}
	}
}

func (s *simulation) end(f simFault, cfg simConfig) {
	s.tracef("fault %s ends", f.kind)
	switch f.kind {
	case "pause":
		for _, i := range f.a {
			s.resume(s.nodes[i])
		}
	case "cut", "oneway":
		s.gossipVer++
		for i := range s.cut {
			for j := range s.cut[i] {
				s.cut[i][j] = false
			}
		}
	case "diskfail":
		for _, i := range f.a {
			n := s.nodes[i]
			n.diskFail = false
			if !n.up {
				s.start(n, cfg.quorum, cfg.council)
				s.push(&simEvent{at: s.now + time.Second, kind: evGossip, node: n.i, inc: n.inc})
			}
		}
	case "loss":
		s.loss = 0
	case "dup":
		s.dup = 0
	}
}

// run steps the simulation until end, checking after every step.
func (s *simulation) run(end time.Duration) {
	for s.q.Len() > 0 && s.err == "" {
		e := heap.Pop(&s.q).(*simEvent)
		if e.at > end {
			heap.Push(&s.q, e) // a later run goes on from it
			break
		}
		s.now = e.at
		s.deliver(e)
	}
}

// settled checks liveness once the faults are over: the live nodes hold
// one view, with no crashed node in it and every live node in it.
func (s *simulation) settled() {
	var epoch uint64
	var first *simNode
	for _, n := range s.nodes {
		if !n.up {
			continue
		}
		if first == nil {
			first, epoch = n, n.eng.Epoch()
		}
		if n.eng.Epoch() != epoch {
			s.fail("not settled: %s at epoch %d, %s at %d", first.name, epoch, n.name, n.eng.Epoch())
			return
		}
	}
	if first == nil {
		return
	}
	v := first.eng.View()
	for _, n := range s.nodes {
		m, in := v.Lookup(n.name)
		switch {
		case !n.up && in:
			s.fail("crashed %s still in the view at epoch %d", n.name, v.Epoch)
		case n.up && (!in || m.Boot != n.eng.Boot()):
			s.fail("live %s@%s not in the view at epoch %d: %v", n.name, n.eng.Boot(), v.Epoch, v.Members)
		}
	}
	// Every decided failure with an executor left has been recovered: some
	// live journal holds its outcome. (A member's own journal can still
	// say pending when it missed every report of the outcome: about one
	// seed in a thousand; README's known gaps.)
	final := map[string]bool{}
	for _, n := range s.nodes {
		if n.up {
			for _, j := range n.eng.Jobs() {
				final[j.ID] = final[j.ID] || j.State.Final()
			}
		}
	}
	for _, n := range s.nodes {
		if !n.up {
			continue
		}
		for _, j := range n.eng.Jobs() {
			if x := s.byName(j.Executor); !final[j.ID] && s.anyExecutor() && x != nil && x.executor && s.unrecovered == "" {
				s.unrecovered = fmt.Sprintf("job %s of %s is %s in every live journal at the end (%s's says executor %s)", j.ID, j.Node, j.State, n.name, j.Executor)
			}
		}
	}
}

func (s *simulation) anyExecutor() bool {
	for _, n := range s.nodes {
		if n.up && n.executor {
			return true
		}
	}
	return false
}
