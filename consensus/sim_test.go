package consensus

import (
	"flag"
	"fmt"
	"math/rand"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	flagSeeds    = flag.Int("seeds", 0, "simulation: number of seeds to run (0: the default for this build)")
	flagSeed     = flag.Int64("seed", -1, "simulation: replay this one seed")
	flagFirst    = flag.Int64("seed-base", 1, "simulation: first seed")
	flagSimTrace = flag.Bool("simtrace", false, "simulation: print the trace of a replayed seed")
)

// Liveness bound: once faults stop, every live node must reach the same
// epoch with no undecided accepted value and no proposal in flight within
// this many ticks, and a fresh proposal must then decide within
// probeBound ticks.
const (
	quiesceBound = 600
	probeBound   = 200
)

// TestSimulation runs a seeded in-process network of 3..9 nodes that drops,
// duplicates, reorders and delays messages, partitions and heals, and
// crashes nodes (before persisting, or between persisting and sending) and
// restarts them from exactly what Ready.Persist / Decided / Snapshot gave.
// Safety is checked after every step; liveness once faults stop.
func TestSimulation(t *testing.T) {
	if *flagSeed >= 0 {
		res := runSim(*flagSeed, *flagSimTrace)
		if *flagSimTrace {
			t.Log("\n" + strings.Join(res.trace, "\n"))
		}
		if res.err != "" {
			t.Fatalf("seed %d: %s", *flagSeed, res.err)
		}
		t.Logf("seed %d: %s", *flagSeed, res.summary())
		return
	}
	n := *flagSeeds
	if n == 0 {
		n = defaultSeeds
		if testing.Short() {
			n /= 10
		}
	}
	start := time.Now()
	var (
		next   atomic.Int64
		mu     sync.Mutex
		failed []string
		agg    simStats
		worst  int64
	)
	next.Store(*flagFirst)
	last := *flagFirst + int64(n)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seed := next.Add(1) - 1
				if seed >= last {
					return
				}
				res := runSim(seed, false)
				mu.Lock()
				if res.stats.quiesceTicks > agg.maxQuiesce {
					worst = seed
				}
				agg.add(res.stats)
				if res.err != "" {
					failed = append(failed, fmt.Sprintf("seed %d: %s", seed, res.err))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(failed)
	for i, f := range failed {
		if i == 10 {
			t.Errorf("... and %d more", len(failed)-10)
			break
		}
		t.Error(f)
	}
	if len(failed) > 0 {
		t.Fatalf("%d/%d seeds failed; replay one with: go test ./consensus -run TestSimulation -seed N -simtrace -v", len(failed), n)
	}
	t.Logf("%d seeds in %v: %s (slowest to settle: seed %d)", n, time.Since(start).Round(time.Millisecond), agg.String(), worst)
}

type simStats struct {
	seeds, steps, decided, proposed, abandoned         int
	dropped, duplicated, delivered, crashes, snapshots int
	partitions, quiesceTicks, maxQuiesce, probeTicks   int
	maxProbe                                           int
}

func (s *simStats) add(o simStats) {
	s.seeds++
	s.steps += o.steps
	s.decided += o.decided
	s.proposed += o.proposed
	s.abandoned += o.abandoned
	s.dropped += o.dropped
	s.duplicated += o.duplicated
	s.delivered += o.delivered
	s.crashes += o.crashes
	s.snapshots += o.snapshots
	s.partitions += o.partitions
	s.quiesceTicks += o.quiesceTicks
	s.probeTicks += o.probeTicks
	s.maxQuiesce = max(s.maxQuiesce, o.quiesceTicks)
	s.maxProbe = max(s.maxProbe, o.probeTicks)
}

func (s simStats) String() string {
	return fmt.Sprintf("steps=%d proposed=%d decided=%d abandoned=%d delivered=%d dropped=%d duplicated=%d crashes=%d partitions=%d snapshots=%d quiesce(max)=%d probe(max)=%d",
		s.steps, s.proposed, s.decided, s.abandoned, s.delivered, s.dropped, s.duplicated, s.crashes, s.partitions, s.snapshots, s.maxQuiesce, s.maxProbe)
}

type simResult struct {
	err   string
	stats simStats
	trace []string
}

func (r simResult) summary() string { return r.stats.String() }

type simFailure struct{ msg string }

type simNode struct {
	name    string
	cfg     Config
	node    *Node // nil while crashed
	durable PersistentState
}

type simMsg struct {
	m   Message
	due int
}

type acceptRec struct {
	value Change
	by    map[string]bool
}

type sim struct {
	seed   int64
	rng    *rand.Rand
	nodes  []*simNode
	byName map[string]*simNode
	now    int
	net    []simMsg
	group  map[string]int // partition group; nil when healed
	faults bool

	pDrop, pDup, pAgree       float64
	pCrashBefore, pCrashAfter float64
	maxDelay                  int
	quorum                    Quorum
	council                   int
	tracing                   bool
	trace                     []string
	stats                     simStats
	decided                   map[uint64]Change // epoch → the one decided value
	refViews                  map[uint64]View   // epoch → the agreed view
	proposed                  map[uint64][]Change
	accepts                   map[uint64]map[Ballot]*acceptRec
	chosen                    map[uint64]Change
	agreed                    map[string]bool // node|change → gave an agreeing verdict
	maxEpoch                  uint64
}

func (s *sim) fail(format string, args ...any) {
	panic(simFailure{fmt.Sprintf("t=%d: ", s.now) + fmt.Sprintf(format, args...)})
}

func (s *sim) logf(format string, args ...any) {
	if s.tracing {
		s.trace = append(s.trace, fmt.Sprintf("t=%-5d ", s.now)+fmt.Sprintf(format, args...))
	}
}

type simJudge struct {
	s    *sim
	name string
}

func changeKey(c Change) string {
	return fmt.Sprintf("%v|%v|%s|%s", c.Kind, c.Reason, c.Member, c.Executor)
}

func (j simJudge) Verdict(c Change) bool {
	s := j.s
	ok := !s.faults || s.rng.Float64() < s.pAgree
	if ok {
		s.agreed[j.name+"|"+changeKey(c)] = true
	}
	return ok
}

func runSim(seed int64, tracing bool) (res simResult) {
	rng := rand.New(rand.NewSource(seed))
	s := &sim{
		seed: seed, rng: rng, byName: map[string]*simNode{}, tracing: tracing,
		decided: map[uint64]Change{}, refViews: map[uint64]View{}, proposed: map[uint64][]Change{},
		accepts: map[uint64]map[Ballot]*acceptRec{}, chosen: map[uint64]Change{}, agreed: map[string]bool{},
	}
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(simFailure); ok {
				res.err = f.msg
			} else {
				res.err = fmt.Sprintf("panic: %v", r)
			}
		}
		res.stats = s.stats
		res.trace = s.trace
	}()
	s.setup()
	steps := 300 + rng.Intn(1200)
	for i := 0; i < steps; i++ {
		s.step()
	}
	s.stats.steps = steps
	s.liveness()
	return res
}

func (s *sim) setup() {
	rng := s.rng
	n := 3 + rng.Intn(7)
	k := 1 + rng.Intn(n) // initial members; the others join later
	if rng.Intn(2) == 0 {
		k = n
	}
	s.pDrop = []float64{0, 0.05, 0.2, 0.4}[rng.Intn(4)]
	s.pDup = []float64{0, 0.05, 0.2}[rng.Intn(3)]
	s.pAgree = []float64{1, 0.9, 0.7, 0.5}[rng.Intn(4)]
	s.pCrashBefore = []float64{0, 0.002, 0.01, 0.03}[rng.Intn(4)]
	s.pCrashAfter = []float64{0, 0.002, 0.01, 0.03}[rng.Intn(4)]
	s.maxDelay = rng.Intn(6)
	s.quorum = Quorum(rng.Intn(2))
	if n >= 5 && rng.Intn(4) == 0 {
		s.council = 3 + rng.Intn(n-3)
	}
	s.faults = true
	initial := View{Epoch: 1}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		if i < k {
			initial.Members = append(initial.Members, Member{Name: name, Boot: "b0", Addr: fmt.Sprintf("10.0.0.%d:7946", i+1)})
		}
	}
	s.refViews[1] = initial
	s.maxEpoch = 1
	rtt := 2*s.maxDelay + 1
	bmax := rtt + rng.Intn(3*rtt+8)
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		cfg := DefaultConfig()
		cfg.ID = name
		cfg.Quorum = s.quorum
		cfg.CouncilSize = s.council
		// A phase needs a round trip (≤ 2·maxDelay+1 ticks once faults
		// stop); timeouts and backoff shorter than that cannot progress.
		cfg.ProposalTimeout = rtt + 1 + rng.Intn(6)
		cfg.BackoffMin = 1
		cfg.BackoffMax = bmax
		cfg.CatchupInterval = 3 + rng.Intn(12)
		cfg.LogTail = 1 + rng.Intn(12)
		cfg.Verdict = simJudge{s, name}
		sn := &simNode{name: name, cfg: cfg}
		if i < k {
			sn.durable.View = initial.Clone()
		}
		s.nodes = append(s.nodes, sn)
		s.byName[name] = sn
		s.restart(sn)
	}
	s.logf("seed=%d nodes=%d members=%d drop=%.2f dup=%.2f agree=%.2f delay≤%d quorum=%v council=%d",
		s.seed, n, k, s.pDrop, s.pDup, s.pAgree, s.maxDelay, s.quorum, s.council)
}

func (s *sim) restart(sn *simNode) {
	cfg := sn.cfg
	cfg.Rand = rand.New(rand.NewSource(s.rng.Int63()))
	st := PersistentState{Acceptor: sn.durable.Acceptor, View: sn.durable.View.Clone(), Log: slices.Clone(sn.durable.Log)}
	n, err := NewNode(cfg, st)
	if err != nil {
		s.fail("restart %s: %v", sn.name, err)
	}
	sn.node = n
}

func (s *sim) crash(sn *simNode, why string) {
	s.logf("CRASH %s (%s)", sn.name, why)
	sn.node = nil
	s.stats.crashes++
}

func (s *sim) live() []*simNode {
	var out []*simNode
	for _, sn := range s.nodes {
		if sn.node != nil {
			out = append(out, sn)
		}
	}
	return out
}

func (s *sim) step() {
	rng := s.rng
	switch r := rng.Intn(100); {
	case r < 55:
		if !s.deliverOne() {
			s.tick()
		}
	case r < 75:
		s.tick()
	case r < 82:
		for range 1 + rng.Intn(3) { // competing proposers
			s.propose()
		}
	case r < 84:
		s.announce()
	case r < 86:
		if l := s.live(); len(l) > 0 {
			s.crash(l[rng.Intn(len(l))], "random")
		}
	case r < 90:
		for _, sn := range s.nodes {
			if sn.node == nil && rng.Intn(2) == 0 {
				s.logf("RESTART %s at e%d", sn.name, sn.durable.View.Epoch)
				s.restart(sn)
			}
		}
	case r < 92:
		s.group = map[string]int{}
		for _, sn := range s.nodes {
			s.group[sn.name] = rng.Intn(2)
		}
		s.stats.partitions++
		s.logf("PARTITION %v", s.group)
	case r < 95:
		s.group = nil
		s.logf("HEAL")
	default:
		s.deliverOne()
	}
}

func (s *sim) tick() {
	s.now++
	for _, sn := range s.nodes {
		if sn.node != nil {
			sn.node.Tick()
			s.process(sn)
		}
	}
}

func (s *sim) deliverOne() bool {
	var due []int
	for i, sm := range s.net {
		if sm.due <= s.now {
			due = append(due, i)
		}
	}
	if len(due) == 0 {
		return false
	}
	i := due[s.rng.Intn(len(due))] // reorder: any due message may go first
	sm := s.net[i]
	s.net = slices.Delete(s.net, i, i+1)
	s.deliver(sm.m)
	return true
}

func (s *sim) deliver(m Message) {
	to := s.byName[m.To]
	if to == nil || to.node == nil {
		s.stats.dropped++
		return
	}
	if s.group != nil && s.group[m.From] != s.group[m.To] {
		s.stats.dropped++
		return
	}
	if s.faults && s.rng.Float64() < s.pDrop {
		s.stats.dropped++
		s.logf("drop %s", m)
		return
	}
	if s.faults && s.rng.Float64() < s.pDup {
		s.stats.duplicated++
		s.net = append(s.net, simMsg{m: m, due: s.now + s.rng.Intn(s.maxDelay+1)})
	}
	s.stats.delivered++
	s.logf("deliver %s", m)
	if err := to.node.Step(m); err != nil {
		s.logf("  %s: %v", to.name, err)
	}
	s.process(to)
}

// announce models the agent's serf user event: a node hears a decision
// out of band, possibly far ahead of its own epoch.
func (s *sim) announce() {
	l := s.live()
	if len(l) == 0 || s.maxEpoch <= 1 {
		return
	}
	sn := l[s.rng.Intn(len(l))]
	e := 1 + uint64(s.rng.Int63n(int64(s.maxEpoch-1)))
	c, ok := s.decided[e]
	if !ok {
		return
	}
	s.logf("ANNOUNCE e%d to %s", e, sn.name)
	if err := sn.node.Learn(Decision{Epoch: e, Change: c.clone()}); err != nil {
		s.fail("learn of announced e%d at %s: %v", e, sn.name, err)
	}
	s.process(sn)
}

func (s *sim) randomChange(v View) Change {
	rng := s.rng
	if len(v.Members) >= 2 && rng.Intn(3) > 0 {
		x := v.Members[rng.Intn(len(v.Members))]
		c := Change{Kind: Remove, Reason: Left, Member: x}
		if rng.Intn(3) > 0 {
			c.Reason = Failed
			for {
				c.Executor = v.Members[rng.Intn(len(v.Members))].Name
				if c.Executor != x.Name {
					break
				}
			}
		}
		return c
	}
	sn := s.nodes[rng.Intn(len(s.nodes))]
	return Change{Kind: Add, Reason: Joined, Member: Member{
		Name: sn.name, Boot: fmt.Sprintf("b%d", rng.Intn(3)), Addr: "10.0.0." + sn.name[1:] + ":7946",
	}}
}

func (s *sim) propose() {
	l := s.live()
	if len(l) == 0 {
		return
	}
	sn := l[s.rng.Intn(len(l))]
	v := sn.node.View()
	if !v.Contains(sn.name) {
		return
	}
	c := s.randomChange(v)
	if err := sn.node.Propose(c); err != nil {
		s.logf("propose at %s [%s]: %v", sn.name, c, err)
		return
	}
	s.stats.proposed++
	s.proposed[v.Epoch] = append(s.proposed[v.Epoch], c)
	s.logf("PROPOSE at %s e%d [%s]", sn.name, v.Epoch, c)
	s.process(sn)
}

// process handles one node's Ready the way the agent does, with crashes
// before persisting and between persisting and sending.
func (s *sim) process(sn *simNode) {
	rd := sn.node.Ready()
	if rd.IsEmpty() {
		return
	}
	if s.faults && s.rng.Float64() < s.pCrashBefore {
		s.crash(sn, "before persist")
		return
	}
	s.persist(sn, rd)
	if s.faults && s.rng.Float64() < s.pCrashAfter {
		s.crash(sn, "after persist, before send")
		return
	}
	s.stats.abandoned += len(rd.Abandoned)
	for _, c := range rd.Abandoned {
		s.logf("%s abandoned [%s]", sn.name, c)
	}
	for _, m := range rd.Messages {
		if m.From != sn.name || m.To == "" || m.To == sn.name {
			s.fail("%s sent a badly addressed message %s", sn.name, m)
		}
		b, err := Encode(m)
		if err != nil {
			s.fail("encode %s: %v", m, err)
		}
		wire, err := Decode(b)
		if err != nil {
			s.fail("decode %s: %v", m, err)
		}
		s.net = append(s.net, simMsg{m: wire, due: s.now + s.rng.Intn(s.maxDelay+1)})
	}
}

// persist makes rd durable for sn and checks safety against every decision
// and every durable acceptance seen so far.
func (s *sim) persist(sn *simNode, rd Ready) {
	d := &sn.durable
	if p := rd.Persist; p != nil {
		if p.Epoch < d.View.Epoch {
			s.fail("%s persisted acceptor state for old epoch %d (view %d)", sn.name, p.Epoch, d.View.Epoch)
		}
		d.Acceptor = *p
		d.Acceptor.Value = p.Value.clone()
		if !p.Accepted.IsZero() {
			s.recordAccept(sn.name, *p)
		}
	}
	if v := rd.Snapshot; v != nil {
		ref, ok := s.refViews[v.Epoch]
		if !ok || !ref.Equal(*v) {
			s.fail("%s installed snapshot e%d that is not the agreed view (%v)", sn.name, v.Epoch, ok)
		}
		if v.Epoch <= d.View.Epoch {
			s.fail("%s installed snapshot e%d not ahead of its view e%d", sn.name, v.Epoch, d.View.Epoch)
		}
		d.View = v.Clone()
		d.Log = nil
		s.stats.snapshots++
		s.logf("%s SNAPSHOT e%d", sn.name, v.Epoch)
	}
	for _, dec := range rd.Decided {
		if dec.Epoch != d.View.Epoch {
			s.fail("%s decided e%d out of order (view e%d)", sn.name, dec.Epoch, d.View.Epoch)
		}
		s.checkDecision(sn.name, dec)
		nv, err := d.View.Apply(dec.Change)
		if err != nil {
			s.fail("%s cannot apply its own decision e%d: %v", sn.name, dec.Epoch, err)
		}
		d.View = nv
		d.Log = append(d.Log, Decision{Epoch: dec.Epoch, Ballot: dec.Ballot, Change: dec.Change.clone()})
		if len(d.Log) > sn.cfg.LogTail {
			d.Log = slices.Delete(d.Log, 0, len(d.Log)-sn.cfg.LogTail)
		}
	}
	if p := rd.Persist; p != nil && p.Epoch > d.View.Epoch {
		s.fail("%s persisted acceptor state e%d ahead of its view e%d", sn.name, p.Epoch, d.View.Epoch)
	}
	if rd.Snapshot != nil || len(rd.Decided) > 0 {
		if got := sn.node.View(); !got.Equal(d.View) {
			s.fail("%s: node view e%d differs from the view the caller derived e%d", sn.name, got.Epoch, d.View.Epoch)
		}
	}
}

func (s *sim) checkDecision(who string, d Decision) {
	ref, ok := s.refViews[d.Epoch]
	if !ok {
		s.fail("%s decided e%d but no agreed view e%d exists", who, d.Epoch, d.Epoch)
	}
	if prev, ok := s.decided[d.Epoch]; ok {
		if !prev.Equal(d.Change) {
			s.fail("SAFETY: e%d decided twice: [%s] and [%s] (at %s)", d.Epoch, prev, d.Change, who)
		}
		return
	}
	if ch, ok := s.chosen[d.Epoch]; ok && !ch.Equal(d.Change) {
		s.fail("SAFETY: e%d decided [%s] but a quorum accepted [%s]", d.Epoch, d.Change, ch)
	}
	proposedHere := false
	for _, p := range s.proposed[d.Epoch] {
		if p.Same(d.Change) {
			proposedHere = true
		}
	}
	if !proposedHere {
		s.fail("SAFETY: e%d decided [%s] which nobody proposed at e%d", d.Epoch, d.Change, d.Epoch)
	}
	// The verdicts gate: a quorum of acceptors of e agreed with the change.
	acc := Acceptors(ref, s.council)
	q := QuorumSize(len(acc), s.quorum)
	ev := d.Change.Evidence
	if ev.Count() < q || len(ev.Votes) != (len(acc)+7)/8 {
		s.fail("SAFETY: e%d decided [%s] with %d votes, quorum %d", d.Epoch, d.Change, ev.Count(), q)
	}
	for i, a := range acc {
		if ev.Voted(i) && !s.agreed[a.Name+"|"+changeKey(d.Change)] {
			s.fail("SAFETY: e%d evidence counts %s, who never agreed with [%s]", d.Epoch, a.Name, d.Change)
		}
	}
	nv, err := ref.Apply(d.Change)
	if err != nil {
		s.fail("SAFETY: e%d decided [%s] which does not apply: %v", d.Epoch, d.Change, err)
	}
	s.decided[d.Epoch] = d.Change.clone()
	s.refViews[d.Epoch+1] = nv
	s.maxEpoch = max(s.maxEpoch, d.Epoch+1)
	s.stats.decided++
	s.logf("%s DECIDED e%d [%s] @%s", who, d.Epoch, d.Change, d.Ballot)
}

// recordAccept tracks durable acceptances: a value accepted by a quorum at
// one ballot is chosen (Paxos Made Simple §2.1), whether or not anybody
// learned it; two values chosen in one epoch are a safety violation.
func (s *sim) recordAccept(who string, st AcceptorState) {
	ref, ok := s.refViews[st.Epoch]
	if !ok {
		s.fail("%s accepted in e%d with no agreed view", who, st.Epoch)
	}
	acc := Acceptors(ref, s.council)
	if !slices.ContainsFunc(acc, func(m Member) bool { return m.Name == who }) {
		s.fail("%s accepted in e%d but is not an acceptor", who, st.Epoch)
	}
	byBallot := s.accepts[st.Epoch]
	if byBallot == nil {
		byBallot = map[Ballot]*acceptRec{}
		s.accepts[st.Epoch] = byBallot
	}
	rec := byBallot[st.Accepted]
	if rec == nil {
		rec = &acceptRec{value: st.Value.clone(), by: map[string]bool{}}
		byBallot[st.Accepted] = rec
	} else if !rec.value.Equal(st.Value) {
		s.fail("SAFETY: e%d ballot %s carries two values [%s] and [%s]", st.Epoch, st.Accepted, rec.value, st.Value)
	}
	rec.by[who] = true
	if len(rec.by) >= QuorumSize(len(acc), s.quorum) {
		if ch, ok := s.chosen[st.Epoch]; ok && !ch.Equal(rec.value) {
			s.fail("SAFETY: e%d chose [%s] and [%s]", st.Epoch, ch, rec.value)
		}
		if dec, ok := s.decided[st.Epoch]; ok && !dec.Equal(rec.value) {
			s.fail("SAFETY: e%d decided [%s] but a quorum accepted [%s] at %s", st.Epoch, dec, rec.value, st.Accepted)
		}
		s.chosen[st.Epoch] = rec.value
	}
}

// liveness stops all faults and checks that the cluster settles and can
// still decide.
func (s *sim) liveness() {
	s.faults = false
	s.group = nil
	s.logf("FAULTS STOP")
	for _, sn := range s.nodes {
		if sn.node == nil {
			s.restart(sn)
		}
	}
	start := s.now
	for !s.quiescent() {
		if s.now-start > quiesceBound {
			s.fail("LIVENESS: not settled %d ticks after faults stopped: %s", quiesceBound, s.describe())
		}
		s.settleTick()
	}
	s.stats.quiesceTicks = s.now - start
	// A fresh proposal with agreeing verdicts decides within probeBound.
	var proposer *simNode
	for _, sn := range s.nodes {
		if s.refViews[s.maxEpoch].Contains(sn.name) {
			proposer = sn
			break
		}
	}
	if proposer == nil {
		s.fail("no member left")
	}
	v := proposer.node.View()
	var c Change
	for {
		c = s.randomChange(v)
		if _, err := v.Apply(c); err == nil {
			break
		}
	}
	if err := proposer.node.Propose(c); err != nil {
		s.fail("probe proposal at %s: %v", proposer.name, err)
	}
	s.proposed[v.Epoch] = append(s.proposed[v.Epoch], c)
	s.logf("PROBE at %s e%d [%s]", proposer.name, v.Epoch, c)
	s.process(proposer)
	start = s.now
	for {
		if _, ok := s.decided[v.Epoch]; ok && s.quiescent() {
			break
		}
		if s.now-start > probeBound {
			s.fail("LIVENESS: probe [%s] at e%d not decided within %d ticks: %s", c, v.Epoch, probeBound, s.describe())
		}
		s.settleTick()
	}
	s.stats.probeTicks = s.now - start
}

func (s *sim) settleTick() {
	for range 10000 {
		if !s.deliverOne() {
			break
		}
	}
	s.tick()
}

// quiescent: every member of the latest agreed view has learned it, has
// no proposal in flight and no accepted value waiting for a decision. (A
// node added and removed again before it heard anything is not a member
// and nobody owes it the log.)
func (s *sim) quiescent() bool {
	top := s.refViews[s.maxEpoch]
	for _, m := range top.Members {
		st := s.byName[m.Name].node.Status()
		if st.Epoch != top.Epoch || st.Phase != Idle {
			return false
		}
		// A stale value its acceptor dropped may wait for ever, unless it
		// was chosen: then somebody must still decide it.
		if !st.Acceptor.Accepted.IsZero() && (!st.AcceptedStale || s.chosenNow(st.Epoch)) {
			return false
		}
	}
	return true
}

// chosenNow reports whether a value was chosen for epoch e and not yet
// decided.
func (s *sim) chosenNow(e uint64) bool {
	_, chosen := s.chosen[e]
	_, decided := s.decided[e]
	return chosen && !decided
}

func (s *sim) describe() string {
	var b strings.Builder
	for _, sn := range s.nodes {
		st := sn.node.Status()
		fmt.Fprintf(&b, "\n  %s e%d member=%t phase=%d ballot=%s promised=%s accepted=%s head=%d",
			sn.name, st.Epoch, st.IsMember, st.Phase, st.Ballot, st.Acceptor.Promised, st.Acceptor.Accepted, st.Head)
	}
	fmt.Fprintf(&b, "\n  in flight: %d messages", len(s.net))
	return b.String()
}

// TestSimulationCatchesBugs checks that the checker is not vacuous: it
// must flag a decision log with two values in one epoch and a value nobody
// proposed.
func TestSimulationCatchesBugs(t *testing.T) {
	s := &sim{
		decided: map[uint64]Change{}, refViews: map[uint64]View{}, proposed: map[uint64][]Change{},
		accepts: map[uint64]map[Ballot]*acceptRec{}, chosen: map[uint64]Change{}, agreed: map[string]bool{},
	}
	v := View{Epoch: 1, Members: []Member{{Name: "a"}, {Name: "b"}, {Name: "c"}}}
	s.refViews[1] = v
	rm := func(x string) Change {
		return Change{Kind: Remove, Reason: Left, Member: Member{Name: x}, Evidence: Evidence{Proposer: "a", Votes: []byte{7}}}
	}
	for _, n := range []string{"a", "b", "c"} {
		for _, x := range []string{"b", "c"} {
			s.agreed[n+"|"+changeKey(rm(x))] = true
		}
	}
	s.proposed[1] = []Change{rm("b"), rm("c")}
	expectFail := func(name string, f func()) {
		t.Helper()
		defer func() {
			if r := recover(); r == nil {
				t.Errorf("%s: checker did not fail", name)
			} else {
				t.Logf("%s: %v", name, r)
			}
		}()
		f()
	}
	s.checkDecision("a", Decision{Epoch: 1, Change: rm("b")})
	expectFail("two values", func() { s.checkDecision("b", Decision{Epoch: 1, Change: rm("c")}) })
	expectFail("not proposed", func() { s.checkDecision("b", Decision{Epoch: 2, Change: rm("a")}) })
	s.recordAccept("a", AcceptorState{Epoch: 2, Accepted: Ballot{1, "a"}, Value: rm("a")})
	expectFail("one ballot two values", func() {
		s.recordAccept("c", AcceptorState{Epoch: 2, Accepted: Ballot{1, "a"}, Value: rm("c")})
	})
}
