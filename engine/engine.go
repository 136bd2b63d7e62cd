package engine

import (
	"errors"
	"fmt"
	"maps"
	"math/rand"
	"slices"
	"sort"
	"time"

	"github.com/vigil-project/vigil/consensus"
	"github.com/vigil-project/vigil/scoring"
	"github.com/vigil-project/vigil/suspicion"
)

// The engine's cadences and bounds.
const (
	// TickInterval is how often the caller calls Tick while anything is
	// in flight; consensus counts in these ticks.
	TickInterval = 100 * time.Millisecond
	// IdleTick is the longest a quiet engine waits for its next Tick
	// (NextTick).
	IdleTick = time.Second
	// rankHeadStart is how long each observer of an accused peer lets the
	// one before it in ring order propose first.
	rankHeadStart = time.Second
	// MonitorK is how many peers each agent probes: its successors on the
	// ring of the agreed view, so every member has MonitorK observers.
	MonitorK = 5
	// minMissTimeout floors the adaptive timeout at which an unanswered
	// ping is reported as a miss (a later ack still counts as a reply).
	minMissTimeout = 10 * time.Millisecond
	// minBurstWait is the least a verdict burst waits after its last ping.
	minBurstWait = 100 * time.Millisecond
	// verdictTTL is how long a verdict burst's result answers prepares.
	verdictTTL = 2 * time.Second
	// addGrace is how long a member other than the designated one waits
	// before it proposes an add or a leave itself.
	addGrace = 3 * time.Second
	// dampingMemory is how long a decided failure counts towards a name's
	// rejoin damping.
	dampingMemory = 30 * time.Minute
	// SamplesKept is how many probe results per peer `vigil why` shows.
	SamplesKept = 32
	// settleAfterFence is how long a node that fenced waits with no new
	// decision before it runs the handlers of what it learned: two
	// anti-entropy rounds (consensus CatchupInterval is 20 ticks).
	settleAfterFence = 2 * 20 * TickInterval
	// healthSilence is how long without any reply from every monitored
	// peer makes this observer doubt itself (health).
	healthSilence = 600 * time.Millisecond
	// maxInflight is how many pings to one peer may be unanswered.
	maxInflight = 32
	// JournalAskTimeout bounds a question to the cluster about a job.
	JournalAskTimeout = 2 * time.Second
	// JournalPutTries bounds how often an executor sends one journal entry
	// before it gives up on a quorum taking it.
	JournalPutTries = 10
	// MaxRecoveryBackoff caps the wait between two attempts on one executor.
	MaxRecoveryBackoff = 30 * time.Second
)

// The serf tags vigil publishes. They are reserved: operators cannot set
// them with --tag.
const (
	// BootTag carries a member's boot id.
	BootTag = "boot"
	// ExecutorTag is "1" on a member that has a recovery handler: only
	// those are named executors.
	ExecutorTag = "recovery"
	// ClusterTag carries the cluster id of a member that belongs to one.
	ClusterTag = "cluster"
	// RulesTag carries the consensus rules every member must share
	// ("QUORUM/COUNCIL/wWIRE", e.g. "majority/5/w2").
	RulesTag = "rules"
)

// DecisionEvent names the serf user event that announces decisions.
const DecisionEvent = "vigil-decision"

// Config is what the engine needs to know of its agent and settings.
type Config struct {
	// Name is this agent's node name.
	Name string
	// Quorum and CouncilSize are the consensus rules (--quorum,
	// --council-size).
	Quorum      consensus.Quorum
	CouncilSize int
	// FenceAfter is the lease on membership (--fence-after), > 0.
	FenceAfter time.Duration
	// RejoinStable is the damping base (--rejoin-stable); 0 turns it off.
	RejoinStable time.Duration
	// ProbeTimeout is the longest a ping can take to be answered (memberlist's
	// probe timeout): the cap on the adaptive miss timeout.
	ProbeTimeout time.Duration
	// Executor: this agent has a recovery handler, so it may be named the
	// executor of a recovery and runs the ones it is named for.
	Executor bool
	// BootstrapExpect: create the cluster once this many agents without
	// one see each other (0: off).
	BootstrapExpect int
	// Suspicion and Scoring configure the per-peer trackers and scorers.
	Suspicion suspicion.Config
	Scoring   scoring.Config
	// Rand drives every random choice (consensus backoffs, boot ids).
	Rand *rand.Rand
}

// Validate names the first field that is wrong.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("engine: Config.Name is empty")
	case c.FenceAfter <= 0:
		return fmt.Errorf("engine: Config.FenceAfter %v must be > 0", c.FenceAfter)
	case c.ProbeTimeout <= 0:
		return fmt.Errorf("engine: Config.ProbeTimeout %v must be > 0", c.ProbeTimeout)
	case c.Rand == nil:
		return errors.New("engine: Config.Rand is nil")
	case c.BootstrapExpect < 0:
		return fmt.Errorf("engine: Config.BootstrapExpect %d must be >= 0", c.BootstrapExpect)
	}
	if err := c.Suspicion.Validate(); err != nil {
		return err
	}
	return c.Scoring.Validate()
}

// State is what the agent's data dir holds, given to New.
type State struct {
	// Consensus is the acceptor state, view and log tail.
	Consensus consensus.PersistentState
	// Decided is every stored decision, oldest first (agreed statuses).
	Decided []consensus.Decision
	// Cluster is the cluster id ("" until the agent belongs to one).
	Cluster string
	// Boot is this start's boot id; Addr this agent's gossip address.
	Boot, Addr string
	// Bootstrap: create a cluster of this agent alone (--bootstrap on a
	// data dir that holds none); Cluster is its new id.
	Bootstrap bool
	// Models are the scorers' stored models, by peer.
	Models map[string][]byte
	// Jobs is the recovery journal.
	Jobs []Job
}

// Member is a member as gossip (serf) knows it.
type Member struct {
	Name   string
	Addr   string // IP:port of its gossip
	Status string // alive, leaving, left, failed
	Tags   map[string]string
}

// Boot is the member's boot id.
func (m Member) Boot() string { return m.Tags[BootTag] }

// GossipType is the kind of a gossip event.
type GossipType uint8

// The gossip events the engine takes as evidence.
const (
	GossipJoin GossipType = iota + 1
	GossipLeave
	GossipFailed
	GossipUpdate
	GossipReap
)

// GossipEvent is one serf member event.
type GossipEvent struct {
	Type    GossipType
	Members []Member
	Time    time.Time
}

// EventType is the kind of a handler event.
type EventType uint8

// The handler events of decided view changes.
const (
	EventJoin EventType = iota + 1
	EventLeave
	EventFailed
	EventRecovered
)

// Event is a decided view change for the operator's handlers.
type Event struct {
	Type   EventType
	Member consensus.Member
	Time   time.Time
}

// Load is a peer's load as its ack reported it.
type Load struct {
	CPU, Mem float64 // fractions 0..1
	Load1    float64
}

// ProbeResult is the outcome of one Ping.
type ProbeResult struct {
	Peer, Boot string
	Sent       time.Time
	RTT        time.Duration
	// Miss: no answer within Timeout. Late: an answer after a miss was
	// reported for the same ping.
	Miss, Late bool
	Timeout    time.Duration
	// Load is the peer's load from its ack, if it carried one.
	Load *Load
	// Epoch is the peer's view epoch as its ack said, and Vouched
	// whether the ack vouched for this node's membership (see
	// Engine.Vouches): only such an ack renews this node's lease, and
	// only from a peer not ahead of it.
	Epoch   uint64
	Vouched bool
}

// BurstResult is the outcome of one Burst.
type BurstResult struct {
	Peer, Boot string
	OK, Miss   int
}

// Ping asks the caller to ping Peer once at Addr and report a
// ProbeResult: a miss at Timeout, and a late reply if the ack comes after.
type Ping struct {
	Peer, Boot, Addr string
	Timeout          time.Duration
}

// Burst asks the caller to ping Peer N times, Gap apart, and report the
// counts in one BurstResult: a ping is answered if its pong comes by Wait
// after the last ping.
type Burst struct {
	Peer, Boot, Addr string
	N                int
	Gap, Wait        time.Duration
}

// Run asks the caller to start the runner of Job from attempt First: it
// retries with backoff (MaxRecoveryBackoff) and reports each start and end.
type Run struct {
	Job   Job
	First int
}

// Replicate asks the caller to send Job to the Others until all have
// taken it or JournalPutTries; Need is the quorum it wants.
type Replicate struct {
	Job    Job
	Others []string
	Need   int
}

// Fence asks the caller to run the fence handler.
type Fence struct {
	Reason string // lease-expired, removed
	Epoch  uint64
	Boot   string // the incarnation that fences
}

// UserEvent asks the caller to send a serf user event (no coalescing).
type UserEvent struct {
	Name    string
	Payload []byte
}

// Level is a log line's severity.
type Level uint8

// The levels of Log.
const (
	Debug Level = iota
	Info
	Warn
	Error
)

// Log is a line the engine asks the caller to log: Fields are key, value
// pairs.
type Log struct {
	Level  Level
	Msg    string
	Fields []any
}

// Report is what a runner reports: an attempt started, an attempt ended
// (Final: no attempt follows on this executor), or the runner exited.
type Report struct {
	ID      string
	N       int
	Started bool
	Exited  bool
	Outcome Outcome
	Final   bool
}

// JournalAnswer is one member's journal entry of a job.
type JournalAnswer struct {
	From string
	Job  Job
}

// JournalCheck is what the cluster said of one job (AskJournal): the
// entries of the agents that knew it, and who answered at all.
type JournalCheck struct {
	ID       string
	Answers  []JournalAnswer
	Answered map[string]bool
}

// Ready is what the caller must do after an input, in this order: make
// the first group durable in one write (a failed write stops the agent
// and nothing below is done), then carry out the rest.
type Ready struct {
	// Durable before anything below.
	Acceptor *consensus.AcceptorState
	Decided  []consensus.Decision
	View     *consensus.View // the view to store, when it changed
	Meta     map[string][]byte
	Jobs     []Job
	// Boot is a new boot id to record and publish (this node rejoins).
	Boot string

	Messages   []consensus.Message
	Pings      []Ping
	Bursts     []Burst
	Events     []Event
	Announce   []UserEvent
	AskJournal []string
	Replicate  []Replicate
	Run        []Run
	Kill       []string // ids of jobs whose runners must be killed now
	Fences     []Fence
	// Tags: this node's tags changed (boot id, cluster id): publish them.
	Tags bool
	Logs []Log

	// For metrics: proposals started, suspicion transitions (new states).
	Proposed    []consensus.Change
	Transitions []suspicion.State
}

// MustPersist reports whether the Ready holds something to write.
func (r Ready) MustPersist() bool {
	return r.Acceptor != nil || len(r.Decided) > 0 || r.View != nil || len(r.Meta) > 0 || len(r.Jobs) > 0
}

// agreed is what the view log says of one member name.
type agreed struct {
	status string // alive, failed, left
	epoch  uint64 // the view epoch at which this status took effect
	boot   string
	addr   string
}

// Sample is one probe result, kept for `vigil why`.
type Sample struct {
	At      time.Time     `json:"at"`
	RTT     time.Duration `json:"rtt_ns"`
	Miss    bool          `json:"miss"`
	Late    bool          `json:"late,omitempty"`
	Timeout time.Duration `json:"timeout_ns"`
}

// peerProbe is the prober's state for one monitored peer.
type peerProbe struct {
	boot      string
	addr      string
	next      time.Time
	lastReply time.Time
	inflight  int
	samples   []Sample
	last      scoring.Result
	// scored is the last result the scorer scored (a reply): a miss has
	// no score, and the evidence of a failure shows the last one.
	scored scoring.Result
	// leaseOnly: an acceptor this node does not monitor, pinged only to
	// keep the lease (its replies are not scored).
	leaseOnly bool
	since     time.Time // when probing began
}

type deferredEvent struct {
	ev        Event
	removesMe bool
}

type cachedVerdict struct {
	boot        string
	unreachable bool
	at          time.Time
}

// dueJob is a job that may run from at on; inherited says it must first
// be checked with the cluster (maybeRun).
type dueJob struct {
	at        time.Time
	inherited bool
}

// Engine is one agent's decisions: the prober's schedule, per-peer
// scorers and suspicion, the consensus node, the agreed statuses, the
// lease, and the recovery journal. It is driven like consensus.Node:
// every input carries the time, and Ready says what to do.
type Engine struct {
	cfg  Config
	rand *rand.Rand
	// now is the time of the input being stepped; base the origin of the
	// durations given to suspicion.
	now, base time.Time
	boot      string
	addr      string
	cluster   string
	cn        *consensus.Node
	ccfg      consensus.Config
	// seen is the view as of the last decisions taken in (viewsBefore).
	seen    consensus.View
	sus     *suspicion.Set
	scorers map[string]*scoring.Peer
	models  map[string][]byte // stored models not loaded yet
	probes  map[string]*peerProbe
	held    []consensus.Message // prepares waiting for a fresh verdict
	// cur caches the view of one epoch, its acceptors and this node's
	// entry in it (current).
	cur struct {
		epoch  uint64
		view   consensus.View
		acc    []consensus.Member
		self   consensus.Member
		member bool
	}
	// gossip is serf's member list as last given (SetMembers), the
	// gossipCall-th; gossipGen says in which call each name came last.
	gossip      map[string]Member
	gossipNames []string // sorted
	gossipGen   map[string]uint64
	gossipCall  uint64
	// membersDirty: gossip changed since Tick last looked, at lastMembers,
	// in the view of epoch membersEpoch.
	membersDirty bool
	lastMembers  time.Time
	membersEpoch uint64
	// failures are the times this agent learned decided failures, per
	// name, for rejoin damping; aliveSince and aliveBoot say since when
	// gossip has seen each name alive, and under which boot id.
	failures   map[string][]time.Time
	aliveSince map[string]time.Time
	aliveBoot  map[string]string
	bursting   map[string]bool
	verdicts   map[string]cachedVerdict
	status     map[string]agreed
	pending    map[string]time.Time // name@boot of an add or leave first seen
	// deferred holds the handler events of decisions learned while this
	// node was behind the cluster; see flushDeferred.
	deferred []deferredEvent
	// The lease on this node's membership (consensus.LeaseExpiry): acked
	// holds, per peer, the send time of the latest ping it acknowledged;
	// leaseHeld says this incarnation has held the lease, leaseFenced that
	// it ran out and the fence ran; leaseExpiry is its end.
	acked map[string]time.Time
	// ahead holds, per peer, the latest answer that vouched from a view
	// ahead of this node's: it counts (into acked) once this node has
	// caught up to that view (see contact).
	ahead       map[string]aheadAck
	leaseHeld   bool
	leaseFenced bool
	leaseExpiry time.Time
	// leaseEpoch is the view epoch leaseOwn was computed in (from that
	// view's acceptors alone); leasePrev is the lease of the views before,
	// carried while the view moves on one decision at a time: see
	// checkLease.
	leaseEpoch          uint64
	leaseOwn, leasePrev time.Time
	leaseSet            bool // leaseEpoch and leaseOwn hold for this incarnation
	// acks counts the updates of acked; leaseAcks is the count leaseOwn
	// was computed at, leaseSolo that this node alone is a quorum.
	acks, leaseAcks uint64
	leaseSolo       bool
	// leaseVouch is what this node said of itself when leaseOwn was
	// computed (consensus.Node.Vouches).
	leaseVouch bool
	// wasFenced: this incarnation ran out of its lease once; its jobs are
	// checked with the cluster before they run (maybeRun).
	wasFenced   bool
	lastApplied time.Time // when the last decision was applied; see flushDeferred
	// tickAt is the time of the last Tick; quietTick says it left the
	// engine quiet, so that the next may come IdleTick later (NextTick).
	tickAt      time.Time
	quietTick   bool
	lastCatchup time.Time
	// The recovery journal and the runners of the jobs this node executes.
	jobs map[string]*Job
	// open holds the ids of jobs that may be unfinished: every job saved
	// unfinished, until quiet finds it final.
	open     map[string]bool
	running  map[string]bool
	killed   map[string]bool // runners asked to stop that have not exited
	checking map[string]bool // inherited jobs being asked of the cluster
	due      map[string]dueJob
	recheck  map[string]time.Time // jobs to ask about again, from when
	rd       Ready
	// broken switches safeguards off, for the tests that prove the
	// simulation's checks can fail. Never set outside tests.
	broken struct{ noRecoveryDelay, trustAnnouncements, ignoreVouch bool }
}

// New builds the engine from what the data dir holds, at now. With
// st.Bootstrap it creates a cluster of this agent alone: the first Ready
// holds it, to be stored before anything else.
func New(cfg Config, st State, now time.Time) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg: cfg, rand: cfg.Rand, now: now, base: now, tickAt: now, boot: st.Boot, addr: st.Addr, cluster: st.Cluster,
		scorers: map[string]*scoring.Peer{}, models: map[string][]byte{}, probes: map[string]*peerProbe{},
		gossip: map[string]Member{}, gossipGen: map[string]uint64{}, bursting: map[string]bool{}, verdicts: map[string]cachedVerdict{},
		status: map[string]agreed{}, pending: map[string]time.Time{}, acked: map[string]time.Time{}, ahead: map[string]aheadAck{},
		failures: map[string][]time.Time{}, aliveSince: map[string]time.Time{}, aliveBoot: map[string]string{},
		jobs: map[string]*Job{}, open: map[string]bool{}, running: map[string]bool{}, killed: map[string]bool{}, checking: map[string]bool{}, due: map[string]dueJob{}, recheck: map[string]time.Time{},
	}
	var err error
	if e.sus, err = suspicion.NewSet(cfg.Suspicion); err != nil {
		return nil, err
	}
	for k, b := range st.Models {
		e.models[k] = b
	}
	for _, dec := range st.Decided {
		e.noteStatus(dec)
	}
	cs := st.Consensus
	switch {
	case cs.View.Epoch == 0 && st.Bootstrap:
		if st.Cluster == "" {
			return nil, errors.New("engine: a bootstrap needs a cluster id")
		}
		cs = e.bootstrap()
	case cs.View.Epoch == 0:
		e.log(Info, "no cluster in the data dir: waiting to join one (--join, --retry-join, vigil join), or start one agent with --bootstrap")
	}
	for _, m := range cs.View.Members {
		if prev, ok := e.status[m.Name]; !ok || prev.boot != m.Boot || prev.status != "alive" {
			e.status[m.Name] = agreed{status: "alive", epoch: cs.View.Epoch, boot: m.Boot, addr: m.Addr}
		}
	}
	ccfg := consensus.DefaultConfig()
	ccfg.ID = cfg.Name
	ccfg.Boot = st.Boot
	ccfg.Quorum = cfg.Quorum
	ccfg.CouncilSize = cfg.CouncilSize
	ccfg.Rand = rand.New(rand.NewSource(cfg.Rand.Int63()))
	ccfg.Verdict = consensus.JudgeFunc(e.verdict)
	ccfg.Note = e.note
	e.ccfg = ccfg
	if e.cn, err = consensus.NewNode(ccfg, cs); err != nil {
		return nil, fmt.Errorf("restore consensus state: %w", err)
	}
	e.seen = e.cn.SharedView()
	sort.Slice(st.Jobs, func(i, j int) bool { return st.Jobs[i].Epoch < st.Jobs[j].Epoch })
	for _, j := range st.Jobs {
		j := j
		e.jobs[j.ID] = &j
		if !j.State.Final() {
			e.open[j.ID] = true
		}
	}
	e.refreshMonitors()
	// After a restart, the unfinished jobs this node executes start again
	// once checked with the cluster.
	for _, j := range e.sortedJobs() {
		e.schedule(*j, true)
	}
	return e, nil
}

// bootstrap creates the cluster: a view of this node alone and its
// acceptor state, kept with the cluster id.
func (e *Engine) bootstrap() consensus.PersistentState {
	self := consensus.Member{Name: e.cfg.Name, Boot: e.boot, Addr: e.addr}
	st := consensus.PersistentState{View: consensus.Bootstrap(self), Acceptor: consensus.AcceptorState{Epoch: 1}}
	v, acc := st.View.Clone(), st.Acceptor
	e.rd.View, e.rd.Acceptor = &v, &acc
	e.setMeta(ClusterMeta, []byte(e.cluster))
	e.log(Info, "bootstrapped a new cluster: the view is this node alone", "cluster", e.cluster, "epoch", 1)
	return st
}

// ClusterMeta is the agent-metadata key of the cluster id.
const ClusterMeta = "cluster"

func (e *Engine) setMeta(k string, v []byte) {
	if e.rd.Meta == nil {
		e.rd.Meta = map[string][]byte{}
	}
	e.rd.Meta[k] = v
}

// Ready returns what the caller must do now and forgets it: the caller
// takes it after every input.
func (e *Engine) Ready() Ready {
	rd := e.rd
	e.rd = Ready{}
	return rd
}

func (e *Engine) log(l Level, msg string, kv ...any) {
	e.rd.Logs = append(e.rd.Logs, Log{Level: l, Msg: msg, Fields: kv})
}

// step begins an input at now: the time moves on (never back), and the
// lease is checked before anything else, so a node back from a pause
// fences first.
func (e *Engine) step(now time.Time) {
	if now.After(e.now) {
		e.now = now
	}
	e.checkLease()
}

// elapsed is the time since the engine started, as suspicion counts.
func (e *Engine) elapsed() time.Duration { return e.now.Sub(e.base) }

func (e *Engine) self() string { return e.cfg.Name }

// Boot is this incarnation's boot id; Cluster the cluster id.
func (e *Engine) Boot() string    { return e.boot }
func (e *Engine) Cluster() string { return e.cluster }

// View is the agreed view; Epoch its epoch; Status the consensus state.
func (e *Engine) View() consensus.View     { return e.cn.View() }
func (e *Engine) Epoch() uint64            { return e.cn.Epoch() }
func (e *Engine) Status() consensus.Status { return e.cn.Status() }
func (e *Engine) Acceptors() []consensus.Member {
	_, acc := e.current()
	return slices.Clone(acc) // acc may be the consensus node's own view
}

func viewNames(v consensus.View) []string {
	names := make([]string, len(v.Members))
	for i, m := range v.Members {
		names[i] = m.Name
	}
	return names
}

// noteStatus records what a decision says of its subject.
func (e *Engine) noteStatus(dec consensus.Decision) {
	c := dec.Change
	st := agreed{epoch: dec.Epoch + 1, boot: c.Member.Boot, addr: c.Member.Addr, status: "alive"}
	if c.Kind == consensus.Remove {
		st.status = "left"
		if c.Reason == consensus.Failed {
			st.status = "failed"
		}
	}
	e.status[c.Member.Name] = st
}

// --- gossip ---

// SetMembers gives the engine serf's member list as it is now. The
// caller gives it after gossip events and at least once a second.
func (e *Engine) SetMembers(now time.Time, members []Member) {
	if now.After(e.now) {
		e.now = now
	}
	// The list is read in place: it changes little between two calls, and
	// a thousand members are a table to rebuild every second. gossipGen
	// stamps each name with this call, so that names left out of it (and
	// names it gives twice, the last one kept) are found.
	e.gossipCall++
	changed, renamed := false, false
	for _, m := range members {
		old, known := e.gossip[m.Name]
		if !known || e.gossipGen[m.Name] == e.gossipCall {
			renamed = true
		}
		if !known || old.Addr != m.Addr || old.Status != m.Status || !maps.Equal(old.Tags, m.Tags) {
			e.gossip[m.Name] = m
			changed = true
		}
		e.gossipGen[m.Name] = e.gossipCall
	}
	if renamed || len(e.gossip) != len(members) {
		// Names came or went.
		for name, call := range e.gossipGen {
			if call != e.gossipCall {
				delete(e.gossip, name)
				delete(e.gossipGen, name)
			}
		}
		e.gossipNames = slices.Sorted(maps.Keys(e.gossip))
		changed = true
	}
	if changed {
		e.membersDirty = true
	}
}

// member finds a member in serf's list.
func (e *Engine) member(name string) (Member, bool) {
	m, ok := e.gossip[name]
	return m, ok
}

// Gossip takes one serf member event: evidence for suspicion and the
// history rejoin damping reads, never a verdict.
func (e *Engine) Gossip(now time.Time, ev GossipEvent) {
	e.step(now)
	e.membersDirty = true
	for _, m := range ev.Members {
		alive := m.Status == "alive" && (ev.Type == GossipJoin || ev.Type == GossipUpdate)
		switch {
		case alive:
			if prev, ok := e.aliveBoot[m.Name]; !ok || prev != m.Boot() || e.aliveSince[m.Name].IsZero() {
				e.aliveSince[m.Name] = ev.Time
				e.aliveBoot[m.Name] = m.Boot()
			}
		case ev.Type == GossipFailed || ev.Type == GossipLeave || ev.Type == GossipReap:
			delete(e.aliveSince, m.Name)
			delete(e.aliveBoot, m.Name)
		}
		t, ok := e.sus.LookupFor(m.Name, m.Boot())
		if !ok {
			continue
		}
		switch ev.Type {
		case GossipFailed:
			t.SerfStatus(e.elapsed(), true)
		case GossipJoin, GossipUpdate:
			t.SerfStatus(e.elapsed(), false)
		}
	}
}

// ineligible reports whether serf knows name as a member without a
// recovery handler: it is never named executor. A member serf does not
// know counts as eligible, so that two agents never both believe they
// are the executor.
func (e *Engine) ineligible(name string) bool {
	m, ok := e.member(name)
	return ok && m.Tags[ExecutorTag] != "1"
}

// foreign reports whether a member carries another cluster's id.
func (e *Engine) foreign(name string) bool {
	if e.cluster == "" {
		return false
	}
	m, ok := e.member(name)
	return ok && m.Tags[ClusterTag] != "" && m.Tags[ClusterTag] != e.cluster
}

// leaving reports whether gossip says this incarnation of m is leaving
// or left: a member that stops answering because it leaves is removed as
// left, not convicted of failure.
func (e *Engine) leaving(m consensus.Member) bool {
	sm, ok := e.member(m.Name)
	return ok && sm.Boot() == m.Boot && (sm.Status == "leaving" || sm.Status == "left")
}

// removed reports whether the view log removed this incarnation. A removed
// incarnation never comes back: the node rejoins under a new boot id.
func (e *Engine) removed(name, boot string) bool {
	st, ok := e.status[name]
	return ok && st.boot == boot && st.status != "alive"
}

// bootstrapExpect creates the cluster once BootstrapExpect agents without
// one see each other: the one with the lowest name bootstraps, the others
// learn its view and are added like any new member.
func (e *Engine) bootstrapExpect() {
	n := e.cfg.BootstrapExpect
	if n == 0 || e.cn.Epoch() > 0 || e.cluster != "" {
		return
	}
	alive := 0
	lowest := e.self()
	for _, name := range e.gossipNames {
		m := e.gossip[name]
		if m.Status != "alive" {
			continue
		}
		if m.Tags[ClusterTag] != "" {
			return // a cluster exists: join it
		}
		alive++
		lowest = min(lowest, m.Name)
	}
	if alive < n || lowest != e.self() {
		return
	}
	e.cluster = e.newID() + e.newID()
	st := e.bootstrap()
	cn, err := consensus.NewNode(e.ccfg, st)
	if err != nil {
		panic(fmt.Sprintf("engine: a bootstrapped view is invalid: %v", err)) // our own invariant
	}
	e.cn, e.seen = cn, cn.View()
	e.status[e.self()] = agreed{status: "alive", epoch: 1, boot: e.boot, addr: e.addr}
	e.rd.Tags = true
	e.refreshMonitors()
}

// newID is a random id of 16 hex digits (boot ids, cluster ids).
func (e *Engine) newID() string { return fmt.Sprintf("%016x", e.rand.Uint64()) }

// adoptCluster takes the cluster id of the peer this node learned its
// first view from.
func (e *Engine) adoptCluster(from string) {
	if e.cluster != "" || e.cn.Epoch() == 0 {
		return
	}
	m, ok := e.member(from)
	id := m.Tags[ClusterTag]
	if !ok || id == "" {
		return
	}
	e.cluster = id
	e.setMeta(ClusterMeta, []byte(id))
	e.rd.Tags = true
	e.log(Info, "joined the cluster", "cluster", id, "from", from)
}
