package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"sort"
	"strconv"
	"time"

	"github.com/vigil-project/vigil/consensus"
	"github.com/vigil-project/vigil/membership"
	"github.com/vigil-project/vigil/recovery"
	"github.com/vigil-project/vigil/scoring"
	"github.com/vigil-project/vigil/store"
	"github.com/vigil-project/vigil/suspicion"
)

// The detector's cadences. Consensus counts in ticks of consensusTick;
// the prober sleeps until the next probe is due (armProber).
const (
	consensusTick = 100 * time.Millisecond
	// rankHeadStart is how long each observer of an accused peer lets the
	// one before it in ring order propose first.
	rankHeadStart = 2 * time.Second
	// monitorK is how many peers each agent probes: its successors on the
	// ring of the agreed view, so every member has monitorK observers.
	monitorK = 5
	// minMissTimeout floors the adaptive timeout at which an unanswered
	// ping is reported as a miss (a later ack still counts as a reply).
	minMissTimeout = 10 * time.Millisecond
	// verdictTTL is how long a verdict burst's result answers prepares.
	verdictTTL = 2 * time.Second
	// addGrace is how long a member other than the designated one waits
	// before it proposes an add or a leave itself.
	addGrace = 3 * time.Second
	// dampingMemory is how long a decided failure counts towards a name's
	// rejoin damping.
	dampingMemory = 30 * time.Minute
	// DecisionEvent names the serf user event that announces decisions.
	DecisionEvent = "vigil-decision"
	samplesKept   = 32
	// settleAfterFence is how long a node that fenced waits with no new
	// decision before it runs the handlers of what it learned: two
	// anti-entropy rounds (consensus CatchupInterval is 20 ticks).
	settleAfterFence = 2 * 20 * consensusTick
	// healthSilence is how long without any reply from every monitored
	// peer makes this observer doubt itself (localHealth).
	healthSilence = 600 * time.Millisecond
)

// agreed is what the view log says of one member name.
type agreed struct {
	status string // alive, failed, left
	epoch  uint64 // the view epoch at which this status took effect
	boot   string
	addr   string
}

// sample is one probe result, kept for `vigil why`.
type sample struct {
	At      time.Time     `json:"at"`
	RTT     time.Duration `json:"rtt_ns"`
	Miss    bool          `json:"miss"`
	Late    bool          `json:"late,omitempty"`
	Timeout time.Duration `json:"timeout_ns"`
}

// peerProbe is the prober's state for one monitored peer.
type peerProbe struct {
	boot      string
	addr      net.IP
	port      uint16
	next      time.Time
	lastReply time.Time
	inflight  int
	samples   []sample
	last      scoring.Result
	// scored is the last result the scorer scored (a reply): a miss has
	// no score, and the evidence of a failure shows the last one.
	scored scoring.Result
	// leaseOnly: an acceptor this node does not monitor, pinged only to
	// keep the lease (its replies are not scored).
	leaseOnly bool
	since     time.Time // when probing began
}

type probeResult struct {
	peer, boot string
	sent       time.Time
	rtt        time.Duration
	miss, late bool
	timeout    time.Duration
}

type burstResult struct {
	peer, boot string
	ok, miss   int
}

type deferredEvent struct {
	ev        membership.Event
	removesMe bool
}

type cachedVerdict struct {
	boot        string
	unreachable bool
	at          time.Time
}

// messenger carries consensus messages between agents. membership.Mesh
// implements it point to point on the gossip port.
type messenger interface {
	// Send delivers payload to node to without blocking; it repeats it
	// on Resend until the node acknowledges it or a timeout passes.
	Send(to string, payload []byte) error
	// Resend repeats the messages whose acknowledgement is overdue.
	Resend()
	// TakeInbound returns the consensus messages that arrived.
	TakeInbound() []membership.Inbound
}

// detector is the failure-detection state the agent's loop owns: the
// prober, per-peer scorers and suspicion, the consensus node, and the
// agreed statuses. Nothing here is touched outside the loop.
type detector struct {
	a *Agent
	// quorum is the rule of --quorum, as consensus names it.
	quorum consensus.Quorum
	msg    messenger
	cn     *consensus.Node
	sus    *suspicion.Set
	// base is the origin of the monotonic time given to suspicion.
	base    time.Time
	scorers map[string]*scoring.Peer
	probes  map[string]*peerProbe
	held    []membership.Inbound // prepares waiting for a fresh verdict
	// cur caches the view of one epoch and its acceptors (current).
	cur struct {
		epoch uint64
		view  consensus.View
		acc   []consensus.Member
	}
	// membersDirty: gossip changed serf's member list since tick last
	// read it, at lastMembers.
	membersDirty bool
	lastMembers  time.Time
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
	acked       map[string]time.Time
	leaseHeld   bool
	leaseFenced bool
	leaseExpiry time.Time
	// leaseEpoch is the view epoch leaseOwn was computed in (from that
	// view's acceptors alone); leasePrev is the same for the view before,
	// when the view moved on by one decision: see checkLease.
	leaseEpoch          uint64
	leaseOwn, leasePrev time.Time
	leaseAcc            map[string]bool // the acceptors of leaseEpoch
	// wasFenced: this incarnation ran out of its lease once; its jobs are
	// checked with the cluster before they run (maybeRun).
	wasFenced   bool
	lastApplied time.Time // when the last decision was applied; see flushDeferred
	probeCh     chan probeResult
	burstCh     chan burstResult
	lastCatchup time.Time
	cpu         membership.CPUSampler
	lastLoad    time.Time
	susCfg      suspicion.Config
	ccfg        consensus.Config
	// probeTimer fires when the earliest probe is due; nil until Run.
	probeTimer *time.Timer
}

func newDetector(a *Agent) (*detector, error) {
	d := &detector{
		a: a, msg: a.mesh, base: time.Now(),
		scorers: map[string]*scoring.Peer{}, probes: map[string]*peerProbe{},
		bursting: map[string]bool{}, verdicts: map[string]cachedVerdict{},
		status: map[string]agreed{}, pending: map[string]time.Time{}, acked: map[string]time.Time{},
		failures: map[string][]time.Time{}, aliveSince: map[string]time.Time{}, aliveBoot: map[string]string{},
		probeCh: make(chan probeResult, 256), burstCh: make(chan burstResult, 16),
		susCfg: suspicion.DefaultConfig(),
	}
	if err := scoring.DefaultConfig().Validate(); err != nil {
		return nil, err
	}
	var err error
	if d.sus, err = suspicion.NewSet(d.susCfg); err != nil {
		return nil, err
	}
	st, err := d.restore()
	if err != nil {
		return nil, err
	}
	ccfg := consensus.DefaultConfig()
	ccfg.ID = a.cfg.NodeName
	ccfg.Boot = a.boot
	if a.cfg.Quorum == "two-thirds" {
		d.quorum = consensus.TwoThirds
	}
	ccfg.Quorum = d.quorum
	ccfg.CouncilSize = a.cfg.CouncilSize
	ccfg.Rand = rand.New(rand.NewSource(time.Now().UnixNano()))
	ccfg.Verdict = consensus.JudgeFunc(d.verdict)
	ccfg.Note = d.note
	d.ccfg = ccfg
	if d.cn, err = consensus.NewNode(ccfg, st); err != nil {
		return nil, fmt.Errorf("restore consensus state from %s: %w", a.store.Path(), err)
	}
	return d, nil
}

// restore reads the acceptor state, the latest view and the log tail, and
// rebuilds the agreed statuses. Only an agent started with --bootstrap
// and an empty data dir creates a cluster; any other agent with an empty
// data dir waits to learn a view from a peer, and votes only once the
// view has added it (consensus.PersistentState.Fresh).
func (d *detector) restore() (consensus.PersistentState, error) {
	st, decided, err := loadConsensus(d.a.store)
	if err != nil {
		return st, err
	}
	for _, dec := range decided {
		d.noteStatus(dec)
	}
	switch {
	case st.View.Epoch == 0 && d.a.bootstrapping:
		if st, err = d.bootstrap(); err != nil {
			return st, err
		}
	case st.View.Epoch == 0:
		d.a.log.Info().Msg("no cluster in the data dir: waiting to join one (--join, --retry-join, vigil join), or start one agent with --bootstrap")
	}
	for _, m := range st.View.Members {
		if prev, ok := d.status[m.Name]; !ok || prev.boot != m.Boot || prev.status != "alive" {
			d.status[m.Name] = agreed{status: "alive", epoch: st.View.Epoch, boot: m.Boot, addr: m.Addr}
		}
	}
	return st, nil
}

// loadConsensus reads what consensus made durable: the acceptor state, the
// current view and the contiguous log tail that ends at it (Fresh when the
// store holds none of them). decided is every stored decision the tail
// was cut from, oldest first.
func loadConsensus(s *store.Store) (st consensus.PersistentState, decided []consensus.Decision, err error) {
	b, err := s.LoadAcceptor()
	if err != nil {
		return st, nil, err
	}
	if b != nil {
		if st.Acceptor, err = consensus.DecodeAcceptorState(b); err != nil {
			return st, nil, fmt.Errorf("%s: acceptor state: %w", s.Path(), err)
		}
	}
	epoch, vb, err := s.LoadView()
	if err != nil {
		return st, nil, err
	}
	if vb != nil {
		if err := json.Unmarshal(vb, &st.View); err != nil || st.View.Epoch != epoch {
			return st, nil, fmt.Errorf("%s: stored view is unreadable: %v", s.Path(), err)
		}
	}
	st.Fresh = b == nil && st.View.Epoch == 0
	from := uint64(1)
	if st.View.Epoch > 1024 {
		from = st.View.Epoch - 1024
	}
	recs, err := s.Decisions(from, 0)
	if err != nil {
		return st, nil, err
	}
	for _, r := range recs {
		dec, err := consensus.DecodeDecision(r.Bytes)
		if err != nil {
			return st, nil, fmt.Errorf("%s: decision %d: %w", s.Path(), r.Epoch, err)
		}
		if dec.Epoch >= st.View.Epoch {
			continue
		}
		decided = append(decided, dec)
		if len(st.Log) == 0 || st.Log[len(st.Log)-1].Epoch+1 == dec.Epoch {
			st.Log = append(st.Log, dec)
		} else {
			st.Log = append(st.Log[:0], dec) // keep the contiguous tail
		}
	}
	if len(st.Log) > 0 && st.Log[len(st.Log)-1].Epoch != st.View.Epoch-1 {
		st.Log = nil
	}
	return st, decided, nil
}

// persistReady makes a Ready durable in one transaction, as consensus
// asks before any of its messages leave: the acceptor state, the new
// decisions, and the view they lead to.
func persistReady(s *store.Store, rd consensus.Ready, v consensus.View, meta map[string][]byte) error {
	return s.Batch(func(tx *store.Tx) error {
		for k, b := range meta {
			if err := tx.SetMeta(k, b); err != nil {
				return err
			}
		}
		if rd.Persist != nil {
			b, err := consensus.EncodeAcceptorState(*rd.Persist)
			if err != nil {
				return err
			}
			if err := tx.SaveAcceptor(b); err != nil {
				return err
			}
		}
		for _, dec := range rd.Decided {
			b, err := consensus.EncodeDecision(dec)
			if err != nil {
				return err
			}
			if err := tx.AppendDecision(dec.Epoch, b); err != nil {
				return err
			}
		}
		if rd.Snapshot != nil || len(rd.Decided) > 0 {
			b, err := json.Marshal(v)
			if err != nil {
				return err
			}
			return tx.SaveView(v.Epoch, b)
		}
		return nil
	})
}

// bootstrap creates the cluster: a view of this node alone, its acceptor
// state and the cluster id, in one transaction.
func (d *detector) bootstrap() (consensus.PersistentState, error) {
	self := consensus.Member{Name: d.a.cfg.NodeName, Boot: d.a.boot, Addr: d.a.gossipAddr()}
	st := consensus.PersistentState{View: consensus.Bootstrap(self), Acceptor: consensus.AcceptorState{Epoch: 1}}
	vb, err := json.Marshal(st.View)
	if err != nil {
		return st, err
	}
	ab, err := consensus.EncodeAcceptorState(st.Acceptor)
	if err != nil {
		return st, err
	}
	id := d.a.clusterID()
	err = d.a.store.Batch(func(tx *store.Tx) error {
		if err := tx.SaveView(1, vb); err != nil {
			return err
		}
		if err := tx.SaveAcceptor(ab); err != nil {
			return err
		}
		return tx.SetMeta(clusterMeta, []byte(id))
	})
	if err != nil {
		return st, fmt.Errorf("bootstrap: %w", err)
	}
	d.a.log.Info().Str("cluster", id).Uint64("epoch", 1).Msg("bootstrapped a new cluster: the view is this node alone")
	return st, nil
}

// bootstrapExpect creates the cluster once --bootstrap-expect agents
// without one see each other: the one with the lowest name bootstraps,
// the others learn its view and are added like any new member.
func (d *detector) bootstrapExpect(members []membership.Member) {
	n := d.a.cfg.BootstrapExpect
	if n == 0 || d.cn.Epoch() > 0 || d.a.clusterID() != "" {
		return
	}
	alive := 0
	lowest := d.self()
	for _, m := range members {
		if m.Status != "alive" {
			continue
		}
		if m.Tags[membership.ClusterTag] != "" {
			return // a cluster exists: join it
		}
		alive++
		lowest = min(lowest, m.Name)
	}
	if alive < n || lowest != d.self() {
		return
	}
	d.a.setClusterID(newClusterID())
	st, err := d.bootstrap()
	if err != nil {
		d.a.fatal(err)
		return
	}
	cn, err := consensus.NewNode(d.ccfg, st)
	if err != nil {
		d.a.fatal(fmt.Errorf("bootstrap: %w", err))
		return
	}
	d.cn = cn
	d.status[d.self()] = agreed{status: "alive", epoch: 1, boot: d.a.boot, addr: d.a.gossipAddr()}
	if err := d.a.mesh.SetTags(d.a.ownTags()); err != nil {
		d.a.log.Error().Err(err).Msg("cannot publish the cluster id")
	}
	d.refreshMonitors()
}

// adoptCluster takes the cluster id of the peer this node learned its
// first view from.
func (d *detector) adoptCluster(from string) {
	if d.a.clusterID() != "" || d.cn.Epoch() == 0 {
		return
	}
	m, ok := d.serfMember(from)
	id := m.Tags[membership.ClusterTag]
	if !ok || id == "" {
		return
	}
	if err := d.a.store.SetMeta(clusterMeta, []byte(id)); err != nil {
		d.a.fatal(fmt.Errorf("record the cluster id: %w", err))
		return
	}
	d.a.setClusterID(id)
	d.a.log.Info().Str("cluster", id).Str("from", from).Msg("joined the cluster")
	if err := d.a.mesh.SetTags(d.a.ownTags()); err != nil {
		d.a.log.Error().Err(err).Msg("cannot publish the cluster id")
	}
}

// foreign reports whether a member carries another cluster's id.
func (d *detector) foreign(name string) bool {
	ours := d.a.clusterID()
	if ours == "" {
		return false
	}
	m, ok := d.serfMember(name)
	return ok && m.Tags[membership.ClusterTag] != "" && m.Tags[membership.ClusterTag] != ours
}

// noteStatus records what a decision says of its subject.
func (d *detector) noteStatus(dec consensus.Decision) {
	c := dec.Change
	st := agreed{epoch: dec.Epoch + 1, boot: c.Member.Boot, addr: c.Member.Addr, status: "alive"}
	if c.Kind == consensus.Remove {
		st.status = "left"
		if c.Reason == consensus.Failed {
			st.status = "failed"
		}
	}
	d.status[c.Member.Name] = st
}

func (d *detector) now() time.Duration { return time.Since(d.base) }

func (d *detector) self() string { return d.a.cfg.NodeName }

func viewNames(v consensus.View) []string {
	names := make([]string, len(v.Members))
	for i, m := range v.Members {
		names[i] = m.Name
	}
	return names
}

// down reports whether this node's prober doubts a member it monitors.
// A tracker of a peer it does not probe (made by a verdict burst) holds no
// current evidence, and a node never doubts itself.
func (d *detector) down(name string) bool {
	p, monitored := d.probes[name]
	if !monitored || name == d.self() {
		return false
	}
	if t, ok := d.sus.LookupFor(name, p.boot); ok {
		return t.State() != suspicion.Healthy
	}
	return false
}

// ineligible reports whether serf knows name as a member without a
// recovery handler: it is never named executor. A member serf does not
// know counts as eligible, so that two agents never both believe they
// are the executor.
func (d *detector) ineligible(name string) bool {
	m, ok := d.serfMember(name)
	return ok && m.Tags[membership.ExecutorTag] != "1"
}

// health is this observer's view of itself over the peers it monitors
// (Lifeguard, Dadgar et al. 2018, §IV: local health): how many it doubts,
// and how many have not answered a ping for healthSilence.
type health struct {
	monitored, doubted, silent int
}

// slow: none of the peers it monitors (at least two) has answered for a
// while, so the observer is the likelier culprit, starved of CPU or cut off
// from everyone. A slow observer proposes no removal and votes nobody
// unreachable. An observer on the majority side of a partition still hears
// some of its peers, so it still decides.
func (h health) slow() bool { return h.monitored >= 2 && h.silent == h.monitored }

// calm: the observer is slow, or doubts more than half of its peers at
// once (at least two). It then probes every peer at the calm rate: bursts
// would only add load where the observer, or the whole machine, is the
// likelier cause, and a spiral of late acks and more bursts would follow.
func (h health) calm() bool { return h.slow() || h.doubted >= 2 && 2*h.doubted > h.monitored }

func (d *detector) health() health {
	var h health
	now := time.Now()
	for name, p := range d.probes {
		if p.leaseOnly {
			continue
		}
		h.monitored++
		if d.down(name) {
			h.doubted++
		}
		last := p.lastReply
		if last.IsZero() {
			last = p.since
		}
		if now.Sub(last) >= healthSilence {
			h.silent++
		}
	}
	return h
}

func (d *detector) slow() bool { return d.health().slow() }

// serfMember finds a member in serf's list.
func (d *detector) serfMember(name string) (membership.Member, bool) {
	for _, m := range d.a.mesh.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return membership.Member{}, false
}

// --- the prober ---

// acceptors are the acceptors of view v's instance, as consensus computes
// them: every member, or the council when the view is larger.
func (d *detector) acceptors(v consensus.View) []consensus.Member {
	return consensus.Acceptors(v, d.ccfg.CouncilSize)
}

// current is the agreed view and its acceptors, computed once per epoch:
// the lease is checked before every event the loop handles. Callers must
// not change them.
func (d *detector) current() (consensus.View, []consensus.Member) {
	if e := d.cn.Epoch(); e != d.cur.epoch || d.cur.acc == nil {
		v := d.cn.View()
		d.cur.epoch, d.cur.view, d.cur.acc = e, v, d.acceptors(v)
	}
	return d.cur.view, d.cur.acc
}

// leaseProbeInterval is how often an acceptor this node does not monitor
// is pinged for the lease: four chances within the lease, so that loss
// alone does not end it.
func (d *detector) leaseProbeInterval() time.Duration {
	return max(d.susCfg.ProbeInterval, d.a.cfg.FenceAfter/4)
}

// refreshMonitors makes the monitored set the ring successors of this node
// in the agreed view; peers that left it are forgotten.
func (d *detector) refreshMonitors() {
	v := d.cn.View()
	want := map[string]consensus.Member{}
	if v.Contains(d.self()) {
		k := min(len(v.Members)-1, monitorK)
		for _, name := range recovery.Successors(viewNames(v), d.self(), k) {
			m, _ := v.Lookup(name)
			want[name] = m
		}
	}
	lease := map[string]bool{}
	if v.Contains(d.self()) {
		for _, m := range d.acceptors(v) {
			if _, ok := want[m.Name]; !ok && m.Name != d.self() {
				want[m.Name] = m
				lease[m.Name] = true
			}
		}
	}
	for name, p := range d.probes {
		if m, ok := want[name]; !ok || m.Boot != p.boot || p.leaseOnly != lease[name] {
			delete(d.probes, name)
			if !v.Contains(name) {
				d.sus.Remove(name)
				delete(d.scorers, name)
			}
		}
	}
	for name, m := range want {
		if _, ok := d.probes[name]; ok {
			continue
		}
		host, portStr, err := net.SplitHostPort(m.Addr)
		port, _ := strconv.Atoi(portStr)
		ip := net.ParseIP(host)
		if err != nil || ip == nil {
			d.a.log.Warn().Str("member", name).Str("addr", m.Addr).Msg("cannot probe a member with this address")
			continue
		}
		d.probes[name] = &peerProbe{boot: m.Boot, addr: ip, port: uint16(port), next: time.Now(), since: time.Now(), leaseOnly: lease[name]}
		if !lease[name] {
			d.sus.For(name, m.Boot).ResetProposals()
		}
	}
	d.armProber()
}

func (d *detector) scorer(name string) *scoring.Peer {
	if sc, ok := d.scorers[name]; ok {
		return sc
	}
	if b, err := d.a.store.Model(name); err == nil && b != nil {
		if sc, err := scoring.DecodeSnapshot(b); err == nil {
			d.scorers[name] = sc
			return sc
		}
	}
	sc, err := scoring.NewPeer(scoring.DefaultConfig())
	if err != nil {
		panic(err) // newDetector checked the default config
	}
	d.scorers[name] = sc
	return sc
}

// armProber sets the probe timer to the earliest due probe, so the loop
// sleeps until then instead of polling. A peer with 32 pings in flight
// waits for answers, not for the timer: onProbe re-arms.
func (d *detector) armProber() {
	if d.probeTimer == nil {
		return
	}
	var next time.Time
	for _, p := range d.probes {
		if p.inflight < 32 && (next.IsZero() || p.next.Before(next)) {
			next = p.next
		}
	}
	if next.IsZero() {
		d.probeTimer.Stop()
		return
	}
	d.probeTimer.Reset(max(time.Until(next), 0))
}

// probeDue starts the pings that are due.
func (d *detector) probeDue(now time.Time) {
	calm := d.health().calm()
	for name, p := range d.probes {
		if now.Before(p.next) || p.inflight >= 32 {
			continue
		}
		timeout := d.missTimeout(name)
		p.inflight++
		if p.leaseOnly {
			p.next = now.Add(d.leaseProbeInterval())
		} else if calm {
			p.next = now.Add(d.susCfg.ProbeInterval)
		} else {
			p.next = now.Add(d.sus.For(name, p.boot).ProbeGap(d.now()))
		}
		name, boot, addr, port := name, p.boot, p.addr, p.port
		d.a.spawn(func() { d.ping(name, boot, addr, port, timeout) })
	}
}

// missTimeout is the peer's adaptive timeout, floored at minMissTimeout
// and capped at memberlist's probe timeout: no ack comes later than that,
// and a scorer still learning reports its maximum.
func (d *detector) missTimeout(name string) time.Duration {
	return min(max(d.scorer(name).Timeout(), minMissTimeout), d.a.mesh.ProbeTimeout())
}

// ping sends one ping and reports a miss at timeout; an ack that comes
// later (within memberlist's probe timeout) is reported as a late reply.
func (d *detector) ping(name, boot string, addr net.IP, port uint16, timeout time.Duration) {
	type res struct {
		rtt time.Duration
		err error
	}
	done := make(chan res, 1)
	sent := time.Now()
	go func() {
		rtt, err := d.a.mesh.Ping(name, addr, port)
		// memberlist reads its clock for the send after the send: an ack
		// handled before that gives a negative round trip. It was fast.
		done <- res{max(rtt, 0), err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			// The ping could not be sent (or memberlist gave up): a miss,
			// counted as a full wait.
			r.rtt = timeout
		}
		d.deliver(probeResult{peer: name, boot: boot, sent: sent, rtt: r.rtt, miss: r.err != nil, timeout: timeout})
	case <-t.C:
		d.deliver(probeResult{peer: name, boot: boot, sent: sent, rtt: timeout, miss: true, timeout: timeout})
		if r := <-done; r.err == nil {
			d.deliver(probeResult{peer: name, boot: boot, sent: sent, rtt: r.rtt, late: true, timeout: timeout})
		}
	}
}

// deliver hands a probe result to the loop unless the agent is stopping.
func (d *detector) deliver(r probeResult) {
	select {
	case d.probeCh <- r:
	case <-d.a.stopping:
	}
}

// onProbe feeds one probe result through scoring and suspicion.
func (d *detector) onProbe(r probeResult) {
	if !r.miss && r.sent.After(d.acked[r.peer]) {
		d.acked[r.peer] = r.sent // contact, for the lease
	}
	p, ok := d.probes[r.peer]
	if !ok || p.boot != r.boot {
		return
	}
	now := time.Now()
	if !r.late {
		p.inflight--
	}
	if p.inflight == 31 {
		d.armProber() // it was at the cap: due again now
	}
	if p.leaseOnly {
		return
	}
	d.a.metrics.observeProbe(r.peer, r)
	sm := scoring.Sample{RTT: r.rtt, Miss: r.miss}
	if !p.lastReply.IsZero() {
		// The gap is measured on the calm cadence: bursts to a doubted peer
		// shorten it by our own doing, and a short gap is no evidence (it
		// would keep the peer doubted, and bursting, for ever).
		sm.Gap = max(now.Sub(p.lastReply), d.susCfg.ProbeInterval)
	}
	if ld, ok := d.a.mesh.PeerLoad(r.peer); ok {
		sm.Load = scoring.Load{CPU: ld.CPU / 100, Mem: ld.Mem / 100, Load1: ld.Load}
		sm.HaveLoad = true
	}
	if !r.miss {
		p.lastReply = now
	}
	sc := d.scorer(r.peer)
	res, err := sc.Observe(sm)
	if err != nil {
		// The scorer takes no part in this one; suspicion still counts it.
		d.a.log.Debug().Err(err).Str("peer", r.peer).Msg("sample rejected by the scorer")
		res = scoring.Result{Timeout: r.timeout}
	}
	if sc.NeedsRefit() {
		if err := sc.Refit(); err != nil {
			d.a.log.Debug().Err(err).Str("peer", r.peer).Msg("refit failed; keeping the old model")
		}
	}
	p.last = res
	if err == nil && !r.miss {
		p.scored = res
	}
	p.samples = append(p.samples, sample{At: now, RTT: r.rtt, Miss: r.miss, Late: r.late, Timeout: r.timeout})
	if len(p.samples) > samplesKept {
		p.samples = p.samples[len(p.samples)-samplesKept:]
	}
	// Suspicion judges the link: RTT and gap. A peer's own load is context
	// for `vigil scores`, not evidence that it is failing: a busy node that
	// answers is alive.
	thr := res.Threshold
	if res.Metric == scoring.MetricCPU || res.Metric == scoring.MetricMem || res.Metric == scoring.MetricLoad {
		linkOnly := sm
		linkOnly.HaveLoad = false
		if lr, err := sc.Score(linkOnly); err == nil {
			thr = lr.Threshold
		}
	}
	t := d.sus.For(r.peer, r.boot)
	tr := t.Observe(d.now(), suspicion.Observation{
		Miss: r.miss, RTT: r.rtt, Timeout: r.timeout, PFail: res.PFail, Threshold: thr,
	})
	if tr.Changed() {
		d.a.metrics.transitions.WithLabelValues(tr.To.String()).Inc()
		// Routine: the decisions are what an operator acts on (info).
		d.a.log.Debug().Str("peer", r.peer).Str("from", tr.From.String()).Str("to", tr.To.String()).
			Str("reason", string(tr.Reason)).Float64("pfail", res.PFail).Msg("peer suspicion changed")
	}
	if t.ShouldPropose(d.now()) && !d.slow() {
		d.proposeFailure(r.peer, t)
	}
}

// proposeFailure proposes the removal of an accused peer. The first live
// observer of the peer proposes at once; the others give it a head start.
func (d *detector) proposeFailure(name string, t *suspicion.Tracker) {
	v := d.cn.View()
	m, ok := v.Lookup(name)
	if !ok || d.leaving(m) {
		return
	}
	rank := 0
	for _, o := range recovery.Predecessors(viewNames(v), name, monitorK) {
		if o == d.self() {
			break
		}
		if !d.down(o) {
			rank++
		}
	}
	if rank > 0 && t.Explain(d.now()).InStateFor < time.Duration(rank)*rankHeadStart {
		return
	}
	exec := recovery.Executor(viewNames(v), name, func(o string) bool { return d.down(o) || d.ineligible(o) })
	if exec == "" {
		// No live member has a recovery handler: the failure is still
		// decided (its member-failed handlers run); nobody recovers it.
		exec = recovery.Executor(viewNames(v), name, d.down)
	}
	if d.propose(consensus.Change{Kind: consensus.Remove, Reason: consensus.Failed, Member: m, Executor: exec}) {
		// Back off only from a proposal that started; one refused because
		// another is in flight is tried again at the next probe.
		t.MarkProposed(d.now())
	}
}

// propose starts a proposal; it reports whether one started.
func (d *detector) propose(c consensus.Change) bool {
	err := d.cn.Propose(c)
	switch {
	case err == nil:
		d.a.metrics.proposed(c)
		d.a.log.Debug().Str("change", c.String()).Uint64("epoch", d.cn.Epoch()).Msg("proposing a view change")
	case errors.Is(err, consensus.ErrInFlight), errors.Is(err, consensus.ErrNotMember):
		return false
	default:
		d.a.log.Debug().Err(err).Str("change", c.String()).Msg("proposal not started")
		return false
	}
	d.handleReady()
	return true
}

// --- verdicts ---

// verdict is the consensus Judge: this node's own view of a proposed
// change. The loop makes removal evidence fresh before stepping a prepare.
func (d *detector) verdict(c consensus.Change) bool {
	switch {
	case c.Kind == consensus.Add:
		if d.removed(c.Member.Name, c.Member.Boot) {
			return false
		}
		m, ok := d.serfMember(c.Member.Name)
		return ok && m.Status == "alive" && m.Tags[membership.BootTag] == c.Member.Boot
	case c.Reason == consensus.Left:
		m, ok := d.serfMember(c.Member.Name)
		if !ok || m.Tags[membership.BootTag] != c.Member.Boot || m.Status == "left" || m.Status == "leaving" {
			return true
		}
		u, _ := d.unreachable(c.Member)
		return u
	default:
		if d.leaving(c.Member) {
			return false // it leaves gracefully: the removal is a leave, not a failure
		}
		u, _ := d.unreachable(c.Member)
		return u
	}
}

// leaving reports whether gossip says this incarnation of m is leaving
// or left: a member that stops answering because it leaves is removed as
// left, not convicted of failure.
func (d *detector) leaving(m consensus.Member) bool {
	sm, ok := d.serfMember(m.Name)
	return ok && sm.Tags[membership.BootTag] == m.Boot && (sm.Status == "leaving" || sm.Status == "left")
}

// unreachable is this node's evidence that a member is down, and whether
// that evidence is fresh enough to answer a prepare.
func (d *detector) unreachable(m consensus.Member) (unreachable, fresh bool) {
	if m.Name == d.self() {
		return false, true // this node answers for itself: alive
	}
	if d.slow() {
		return false, true // a slow observer vouches for no one's failure
	}
	if cv, ok := d.verdicts[m.Name]; ok && cv.boot == m.Boot && time.Since(cv.at) < verdictTTL {
		return cv.unreachable, true
	}
	if t, ok := d.sus.LookupFor(m.Name, m.Boot); ok {
		if u, f := t.Verdict(d.now()); f {
			return u, true
		}
	}
	return false, false
}

// startBurst pings a member VerdictBurst times, close together, so that a
// verdict never rests on one lost packet. It reports false when it cannot
// ping the member; its verdict is then "reachable" (no evidence).
func (d *detector) startBurst(m consensus.Member) bool {
	if d.bursting[m.Name] {
		return true
	}
	host, portStr, err := net.SplitHostPort(m.Addr)
	port, _ := strconv.Atoi(portStr)
	ip := net.ParseIP(host)
	if err != nil || ip == nil {
		d.verdicts[m.Name] = cachedVerdict{boot: m.Boot, at: time.Now()}
		return false
	}
	d.bursting[m.Name] = true
	n, gap := d.susCfg.VerdictBurst, d.susCfg.ProbeInterval/time.Duration(max(d.susCfg.Burst, 1))
	d.a.spawn(func() {
		results := make(chan bool, n)
		for i := 0; i < n; i++ {
			go func() {
				_, err := d.a.mesh.Ping(m.Name, ip, uint16(port))
				results <- err == nil
			}()
			time.Sleep(gap)
		}
		// Every ping ends within memberlist's probe timeout.
		var r burstResult
		r.peer, r.boot = m.Name, m.Boot
		for i := 0; i < n; i++ {
			if <-results {
				r.ok++
			} else {
				r.miss++
			}
		}
		select {
		case d.burstCh <- r:
		case <-d.a.stopping:
		}
	})
	return true
}

func (d *detector) onBurst(r burstResult) {
	delete(d.bursting, r.peer)
	// The burst is evidence about the incarnation it pinged: it joins the
	// tracker only if that is the member of the view now. A burst about
	// an incarnation already removed is judged alone.
	var t *suspicion.Tracker
	if vm, ok := d.cn.View().Lookup(r.peer); ok && vm.Boot == r.boot {
		t = d.sus.For(r.peer, r.boot)
	} else {
		t, _ = suspicion.NewTracker(d.susCfg) // validated in newDetector
	}
	u := t.VerdictAfterPing(d.now(), r.ok, r.miss)
	d.verdicts[r.peer] = cachedVerdict{boot: r.boot, unreachable: u, at: time.Now()}
	d.a.log.Debug().Str("peer", r.peer).Int("ok", r.ok).Int("miss", r.miss).Bool("unreachable", u).Msg("verdict burst")
	held := d.held
	d.held = nil
	for i := range held {
		d.onInbound(held[i])
	}
}

// --- messages ---

// onInbound steps one consensus message from the mesh. A prepare to
// remove a failed member waits for fresh evidence first.
func (d *detector) onInbound(in membership.Inbound) {
	m, err := consensus.Decode(in.Payload)
	if err != nil {
		d.a.log.Warn().Err(err).Str("from", in.From).Msg("dropping a malformed consensus message")
		return
	}
	if m.From != in.From {
		d.a.log.Warn().Str("from", in.From).Str("claims", m.From).Msg("dropping a consensus message with a forged sender")
		return
	}
	if d.foreign(in.From) {
		d.a.log.Warn().Str("from", in.From).Msg("dropping a consensus message from another cluster")
		return
	}
	if (m.Type == consensus.MsgDecided || m.Type == consensus.MsgSnapshot) && d.cn.Epoch() > 0 && !d.cn.View().Contains(in.From) {
		// Decisions come from the members that learned them from a quorum.
		d.a.log.Warn().Str("from", in.From).Str("msg", m.String()).Msg("dropping a decision from a node outside the view")
		return
	}
	if m.Type == consensus.MsgPrepare && m.Change.Kind == consensus.Remove {
		// Stale evidence, or a suspicion not yet concluded (the proposer
		// crossed its bar a moment before this node): ping the subject in a
		// burst and answer on that, rather than "reachable" on a hunch.
		u, fresh := d.unreachable(m.Change.Member)
		_, burst := d.verdicts[m.Change.Member.Name]
		inconclusive := !u && d.down(m.Change.Member.Name) && !burst
		if (!fresh || inconclusive) && d.startBurst(m.Change.Member) {
			d.held = append(d.held, in)
			return
		}
	}
	d.a.log.Debug().Str("msg", m.String()).Msg("consensus recv")
	if err := d.cn.Step(m); err != nil {
		d.a.log.Debug().Err(err).Str("msg", m.String()).Msg("consensus message not taken")
	}
	d.handleReady()
	d.adoptCluster(in.From)
}

// send delivers a consensus message to its one addressee.
func (d *detector) send(m consensus.Message) {
	b, err := consensus.Encode(m)
	if err != nil {
		d.a.log.Error().Err(err).Str("msg", m.String()).Msg("cannot encode a consensus message")
		return
	}
	d.a.log.Debug().Str("msg", m.String()).Msg("consensus send")
	if err := d.msg.Send(m.To, b); err != nil {
		d.a.log.Debug().Err(err).Str("msg", m.String()).Msg("consensus message not sent")
	}
}

// handleReady does what consensus asks, in its order: persist, then send,
// then act on decisions.
func (d *detector) handleReady() {
	if d.a.fatalErr != nil {
		return // stopping: the node's memory is ahead of the disk
	}
	rd := d.cn.Ready()
	if rd.IsEmpty() {
		return
	}
	// Each decision's view, and the evidence of the failures named with
	// its acceptors: kept in the same write as the decisions.
	befores := viewsBefore(d.cn.View(), rd.Decided)
	evidence := map[string][]byte{}
	for i, dec := range rd.Decided {
		if k, b, ok := d.evidenceRecord(dec, befores[i]); ok {
			evidence[k] = b
		}
	}
	err := persistReady(d.a.store, rd, d.cn.View(), evidence)
	if err != nil {
		// Nothing that depends on unsaved state may leave this node: the
		// agent stops, and restarts from what is on disk.
		d.a.fatal(fmt.Errorf("persist consensus state: %w", err))
		return
	}
	for _, m := range rd.Messages {
		d.send(m)
	}
	if rd.Snapshot != nil {
		d.a.log.Info().Uint64("epoch", rd.Snapshot.Epoch).Int("members", len(rd.Snapshot.Members)).Msg("installed the agreed view from a peer")
		for _, m := range rd.Snapshot.Members {
			if st, ok := d.status[m.Name]; !ok || st.boot != m.Boot || st.status != "alive" {
				d.status[m.Name] = agreed{status: "alive", epoch: rd.Snapshot.Epoch, boot: m.Boot, addr: m.Addr}
			}
		}
	}
	for i, dec := range rd.Decided {
		d.apply(dec, befores[i])
	}
	for _, c := range rd.Abandoned {
		d.a.log.Debug().Str("change", c.String()).Msg("proposal given up: no quorum agreed, or another change won the epoch")
	}
	if rd.Snapshot != nil || len(rd.Decided) > 0 {
		d.refreshMonitors()
		// A new epoch: accusations may be proposed again at once.
		for _, name := range d.sus.Names() {
			d.sus.Peer(name).ResetProposals()
		}
	}
}

// apply acts on one decision, once: handlers, the announcement, and a
// rejoin if this node was removed.
// viewsBefore returns, for each decision of a batch, the view it was
// decided in (its acceptors voted), going back from the view after the
// batch: one Ready can carry several decisions (a catch-up), and the view
// the node holds then is the last one's result.
func viewsBefore(after consensus.View, decided []consensus.Decision) []consensus.View {
	out := make([]consensus.View, len(decided))
	v := after
	for i := len(decided) - 1; i >= 0; i-- {
		c := decided[i].Change
		prev := consensus.View{Epoch: decided[i].Epoch}
		for _, m := range v.Members {
			if c.Kind == consensus.Add && m.Name == c.Member.Name {
				continue
			}
			prev.Members = append(prev.Members, m)
		}
		if c.Kind == consensus.Remove {
			prev.Members = append(prev.Members, c.Member)
		}
		sort.Slice(prev.Members, func(i, j int) bool { return prev.Members[i].Name < prev.Members[j].Name })
		out[i], v = prev, prev
	}
	return out
}

// apply acts on one decision; before is the view it was decided in.
func (d *detector) apply(dec consensus.Decision, before consensus.View) {
	d.lastApplied = time.Now()
	c := dec.Change
	prev, hadPrev := d.status[c.Member.Name]
	view := d.cn.View()
	d.noteStatus(dec)
	d.pendingDone(c.Member)
	d.a.metrics.decided(dec)
	d.a.log.Info().Uint64("epoch", dec.Epoch+1).Str("change", c.String()).Str("id", dec.ID()).Msg("view change decided")
	if c.Evidence.Proposer == d.self() {
		// The announcement is a hint (onDecisionEvent reads the epoch and
		// the proposer): without the notes it fits serf's 512-byte events.
		hint := dec
		hint.Change.Evidence.ProposerNote, hint.Change.Evidence.Notes = nil, nil
		if b, err := consensus.EncodeDecision(hint); err == nil {
			if err := d.a.mesh.UserEvent(DecisionEvent, b, false); err != nil {
				d.a.log.Warn().Err(err).Msg("cannot announce the decision")
			}
		}
	}
	var typ membership.EventType
	switch {
	case c.Kind == consensus.Remove && c.Reason == consensus.Failed:
		typ = membership.MemberFailed
	case c.Kind == consensus.Remove:
		typ = membership.MemberLeave
	case hadPrev && prev.status == "failed":
		// Back after a decided failure. A restart that nobody declared
		// failed is a join of the new incarnation.
		typ = membership.MemberRecovered
	default:
		typ = membership.MemberJoin
	}
	if c.Kind == consensus.Add && c.Member.Name != d.self() {
		// A member just added was reachable to a quorum a moment ago;
		// give it JoinGrace to settle before it can be accused.
		d.sus.For(c.Member.Name, c.Member.Boot).Joined(d.now())
	}
	ev := membership.Event{Type: typ, Time: time.Now(), Members: []membership.Member{d.eventMember(c.Member)}}
	d.deferred = append(d.deferred, deferredEvent{ev: ev, removesMe: c.Kind == consensus.Remove && c.Member.Name == d.self()})
	d.flushDeferred()
	if c.Kind == consensus.Remove {
		if c.Reason == consensus.Failed {
			d.noteFailure(c.Member.Name, time.Now())
			d.a.onFailureDecided(dec, before)
		}
		d.a.onMemberRemoved(c.Member.Name, view)
		d.sus.Remove(c.Member.Name)
		d.a.metrics.forgetPeer(c.Member.Name)
		delete(d.scorers, c.Member.Name)
		delete(d.verdicts, c.Member.Name)
		if c.Member.Name == d.self() && c.Member.Boot == d.a.boot && c.Reason == consensus.Failed {
			d.a.rejoin(dec)
		}
	}
}

// flushDeferred runs the handlers of applied decisions once this node has
// caught up with the cluster. A node that was cut off and learns on its
// return that it was removed runs no handler for what was decided while it
// was away (it confirmed nothing then; it rejoins now), and a node never
// runs member-failed or member-leave for itself.
func (d *detector) flushDeferred() {
	if len(d.deferred) == 0 || d.cn.Status().Head > d.cn.Epoch() {
		return
	}
	if (d.leaseFenced || d.wasFenced) && time.Since(d.lastApplied) < settleAfterFence {
		// Cut off a moment ago: the head it knows of may be stale (the
		// decision that removed it can still be on its way), so it waits
		// until no decision has come for a while (tick calls again).
		return
	}
	evs := d.deferred
	d.deferred = nil
	for _, de := range evs {
		if de.removesMe {
			d.a.log.Warn().Int("decisions", len(evs)).Msg("learned on return that this node was removed: not running handlers for what was decided meanwhile")
			return
		}
	}
	for _, de := range evs {
		d.a.queueHandlers(de.ev)
	}
}

// eventMember describes a view member for handlers, with serf's tags.
func (d *detector) eventMember(m consensus.Member) membership.Member {
	out := membership.Member{Name: m.Name, Tags: map[string]string{membership.BootTag: m.Boot}}
	if sm, ok := d.serfMember(m.Name); ok {
		out = sm
	}
	setAddr(&out, m.Addr)
	return out
}

// setAddr sets m's address and port from "IP:PORT"; m keeps its own when
// addr does not parse.
func setAddr(m *membership.Member, addr string) {
	if host, port, err := net.SplitHostPort(addr); err == nil {
		m.Addr = net.ParseIP(host)
		p, _ := strconv.Atoi(port)
		m.Port = uint16(p)
	}
}

// --- the periodic work ---

// tick advances consensus and proposes the adds and leaves serf shows.
func (d *detector) tick() {
	d.msg.Resend()
	d.cn.Tick()
	d.handleReady()
	d.flushDeferred()
	now := time.Now()
	if now.Sub(d.lastLoad) > 5*time.Second {
		d.lastLoad = now
		if ld, err := d.cpu.ReadLoad(); err == nil {
			d.a.mesh.SetLoad(ld)
		}
	}
	// serf's member list is copied when gossip changed it, while a change
	// waits to be proposed, and once a second otherwise: an idle agent
	// does not copy it ten times a second.
	if !d.membersDirty && len(d.pending) == 0 && d.cn.Epoch() > 0 && now.Sub(d.lastMembers) < time.Second {
		return
	}
	d.membersDirty, d.lastMembers = false, now
	members := d.a.mesh.Members()
	if d.cn.Epoch() == 0 && now.Sub(d.lastCatchup) > time.Second {
		// A new agent learns the view from any peer it can see.
		d.lastCatchup = now
		var peers []string
		for _, m := range members {
			if m.Name != d.self() && m.Status == "alive" {
				peers = append(peers, m.Name)
			}
		}
		if len(peers) > 0 {
			d.cn.CatchUp(peers[rand.Intn(len(peers))])
			d.handleReady()
		}
	}
	d.bootstrapExpect(members)
	d.proposeMembership(now, members)
}

// checkLease renews or ends this node's lease on its membership
// (consensus.LeaseExpiry) and fences the node the moment it runs out: the
// majority may decide without it, and will start a recovery for it once
// the lease has provably ended. The loop calls it before it acts on
// anything, so a node back from a pause fences first.
func (d *detector) checkLease(now time.Time) {
	v, acc := d.current()
	if m, ok := v.Lookup(d.self()); !ok || m.Boot != d.a.boot {
		// Not a member under this incarnation (never added, removed, or
		// restarted under a new boot id): nothing to hold until the view
		// adds it.
		d.leaseHeld, d.leaseFenced, d.leaseAcc = false, false, nil
		return
	}
	self := false
	contacts := make([]time.Time, 0, len(acc))
	for _, m := range acc {
		if m.Name == d.self() {
			self = true
			continue
		}
		contacts = append(contacts, d.acked[m.Name])
	}
	exp, _ := consensus.LeaseExpiry(now, contacts, self, consensus.QuorumSize(len(acc), d.quorum), d.a.cfg.FenceAfter)
	// A decision that changes the acceptors by one member (every member
	// an acceptor) leaves a quorum of the old acceptors and one of the new
	// sharing a member (as in Raft's single-server changes), so the lease
	// the old view granted holds into the next one: a new member has not
	// been pinged yet. A council seat passed on changes two members: no
	// carry-over then. Never over two changes or a snapshot.
	switch {
	case v.Epoch == d.leaseEpoch:
	case v.Epoch == d.leaseEpoch+1 && differByOne(d.leaseAcc, acc):
		d.leasePrev = d.leaseOwn
	default:
		d.leasePrev = time.Time{}
	}
	if v.Epoch != d.leaseEpoch || d.leaseAcc == nil {
		d.leaseAcc = make(map[string]bool, len(acc))
		for _, m := range acc {
			d.leaseAcc[m.Name] = true
		}
	}
	d.leaseEpoch, d.leaseOwn = v.Epoch, exp
	if d.leasePrev.After(exp) {
		exp = d.leasePrev
	}
	d.leaseExpiry = exp
	valid := now.Before(exp)
	switch {
	case valid && d.leaseFenced:
		// The replies may come from members that have removed this node
		// and not told it yet: until it has checked with the cluster, it
		// runs no job it had not started (maybeRun asks first).
		d.leaseFenced, d.wasFenced = false, true
		d.a.log.Warn().Uint64("epoch", v.Epoch).
			Msg("lease renewed: a quorum answers again and this node is still a member as far as it knows; what the fence handler stopped stays stopped")
	case valid:
		d.leaseHeld = true
	case d.leaseHeld && !d.leaseFenced:
		d.leaseFenced = true
		d.a.log.Warn().Time("expired", exp).Dur("lease", d.a.cfg.FenceAfter).Uint64("epoch", v.Epoch).
			Msg("lease expired: no quorum of the view answered within the lease; fencing")
		d.a.fence("lease-expired", v.Epoch)
	}
}

// differByOne reports whether the acceptor set acc differs from prev by at
// most one member, added or removed: then any quorum of one meets any
// quorum of the other.
func differByOne(prev map[string]bool, acc []consensus.Member) bool {
	if prev == nil {
		return false
	}
	diff, kept := 0, 0
	for _, m := range acc {
		if prev[m.Name] {
			kept++
		} else {
			diff++
		}
	}
	diff += len(prev) - kept
	return diff <= 1
}

// leaseValid reports whether this node holds its lease now: only then may
// it act for the cluster (run a recovery).
func (d *detector) leaseValid(now time.Time) bool {
	return d.leaseHeld && !d.leaseFenced && now.Before(d.leaseExpiry)
}

// proposeMembership proposes adding members serf sees alive that the view
// lacks (new nodes, and restarts under a new boot id), and removing members
// that left. The member nearest the subject on the ring proposes first.
func (d *detector) proposeMembership(now time.Time, members []membership.Member) {
	v := d.cn.View()
	if !v.Contains(d.self()) {
		return
	}
	names := viewNames(v)
	type wanted struct {
		m membership.Member
		c consensus.Change
	}
	var changes []wanted
	keep := map[string]bool{}
	for _, m := range members {
		boot := m.Tags[membership.BootTag]
		vm, inView := v.Lookup(m.Name)
		var c consensus.Change
		switch {
		case m.Status == "alive" && boot != "" && (!inView || vm.Boot != boot) && !d.removed(m.Name, boot):
			c = consensus.Change{Kind: consensus.Add, Reason: consensus.Joined,
				Member: consensus.Member{Name: m.Name, Boot: boot, Addr: hostPort(m)}}
		case (m.Status == "left" || m.Status == "leaving") && inView && vm.Boot == boot:
			c = consensus.Change{Kind: consensus.Remove, Reason: consensus.Left, Member: vm}
		default:
			continue
		}
		changes = append(changes, wanted{m, c})
		keep[c.Member.String()] = true
	}
	// A change gossip no longer asks for (the node died before it was
	// added, or a snapshot added it) is forgotten.
	for key := range d.pending {
		if !keep[key] {
			delete(d.pending, key)
		}
	}
	for _, w := range changes {
		m, c := w.m, w.c
		key := c.Member.String()
		first, seen := d.pending[key]
		if !seen {
			d.pending[key] = now
			first = now
		}
		proposer := recovery.Executor(names, m.Name, d.down)
		if proposer == "" && m.Name == d.self() {
			proposer = d.self() // the last member re-adds itself after a restart
		}
		if proposer != d.self() && now.Sub(first) < addGrace {
			continue
		}
		if c.Kind == consensus.Add && c.Member.Name != d.self() {
			if wait := d.rejoinWait(c.Member.Name, now); wait > 0 {
				continue
			}
		}
		if d.propose(c) {
			return // one proposal at a time
		}
	}
}

func (d *detector) pendingDone(m consensus.Member) { delete(d.pending, m.String()) }

// noteFailure records a decided failure of name, learned at now, for
// rejoin damping. The history is per name: a node's new boot ids share it.
func (d *detector) noteFailure(name string, at time.Time) {
	h := d.failures[name][:0:0]
	for _, t := range d.failures[name] {
		if at.Sub(t) < dampingMemory {
			h = append(h, t)
		}
	}
	d.failures[name] = append(h, at)
}

// rejoinWait is how much longer a member that the view removed for
// failure must stay alive in gossip before it is added back: --rejoin-stable
// after its first failure in dampingMemory, doubled for each further one
// (at most 16 times). A node that flaps is kept out until it has been
// stable for longer than its flapping lasts; every agent judges from the
// same decisions, and the first that finds it stable proposes the add.
// 0 when the name has no recent failure or damping is off.
func (d *detector) rejoinWait(name string, now time.Time) time.Duration {
	base := d.a.cfg.RejoinStable
	var recent int
	var last time.Time
	for _, t := range d.failures[name] {
		if now.Sub(t) < dampingMemory {
			recent++
			last = t
		}
	}
	if base <= 0 || recent == 0 {
		return 0
	}
	need := base << min(recent-1, 4)
	since := d.aliveSince[name]
	if since.IsZero() {
		return need
	}
	// Stable since it came back alive, and not before the failure.
	since = maxTime(since, last)
	return max(need-now.Sub(since), 0)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// onGossipStatus keeps, per name, since when serf has seen the member
// alive without a break (rejoinWait).
func (d *detector) onGossipStatus(ev membership.Event) {
	for _, m := range ev.Members {
		alive := m.Status == "alive" && (ev.Type == membership.MemberJoin || ev.Type == membership.MemberUpdate)
		switch {
		case alive:
			if prev, ok := d.aliveBoot[m.Name]; !ok || prev != m.Tags[membership.BootTag] || d.aliveSince[m.Name].IsZero() {
				d.aliveSince[m.Name] = ev.Time
				d.aliveBoot[m.Name] = m.Tags[membership.BootTag]
			}
		case ev.Type == membership.MemberFailed || ev.Type == membership.MemberLeave || ev.Type == membership.MemberReap:
			delete(d.aliveSince, m.Name)
			delete(d.aliveBoot, m.Name)
		}
	}
}

// removed reports whether the view log removed this incarnation. A removed
// incarnation never comes back: the node rejoins under a new boot id.
func (d *detector) removed(name, boot string) bool {
	st, ok := d.status[name]
	return ok && st.boot == boot && st.status != "alive"
}

// onSerfEvent passes serf's own verdicts to suspicion as evidence, and
// marks serf's member list changed for tick and for rejoin damping.
func (d *detector) onSerfEvent(ev membership.Event) {
	d.membersDirty = true
	d.onGossipStatus(ev)
	for _, m := range ev.Members {
		t, ok := d.sus.LookupFor(m.Name, m.Tags[membership.BootTag])
		if !ok {
			continue
		}
		switch ev.Type {
		case membership.MemberFailed:
			t.SerfStatus(d.now(), true)
		case membership.MemberJoin, membership.MemberUpdate:
			t.SerfStatus(d.now(), false)
		}
	}
}

// onDecisionEvent takes a decision announced by gossip as a hint only:
// anyone who can send a serf user event can send one. If it is news, this
// node asks a member of its view for the log (consensus catch-up), and
// learns only what members hold, who learned it from a quorum.
func (d *detector) onDecisionEvent(payload []byte) {
	dec, err := consensus.DecodeDecision(payload)
	if err != nil {
		d.a.log.Warn().Err(err).Msg("ignoring a malformed decision announcement")
		return
	}
	if dec.Epoch < d.cn.Epoch() {
		return
	}
	v := d.cn.View()
	peer := dec.Change.Evidence.Proposer
	if !v.Contains(peer) || peer == d.self() {
		peer = ""
		for _, name := range recovery.Successors(viewNames(v), d.self(), 1) {
			peer = name
		}
	}
	if peer == "" {
		return
	}
	d.a.log.Debug().Uint64("epoch", dec.Epoch).Str("ask", peer).Msg("a decision was announced: asking a member for the log")
	d.cn.CatchUp(peer)
	d.handleReady()
}

// forceRemove removes members of the view that are gone for good, each by
// a decision taken without a quorum (consensus.Node.Force), after a quorum
// was lost. It refuses this node, members not in the view, and members
// serf still sees alive: force is for the dead. Each is removed as failed,
// so its recovery runs as usual.
func (d *detector) forceRemove(names []string) (uint64, error) {
	v := d.cn.View()
	seen := map[string]bool{}
	for _, name := range names {
		switch {
		case seen[name]:
			return 0, fmt.Errorf("%s is named twice", name)
		case name == d.self():
			return 0, fmt.Errorf("%s is this agent: run force-remove on a survivor", name)
		case !v.Contains(name):
			return 0, fmt.Errorf("%s is not a member of the view at epoch %d", name, v.Epoch)
		}
		if m, ok := d.serfMember(name); ok && m.Status == "alive" {
			return 0, fmt.Errorf("%s is alive to gossip: force-remove is for members that are gone", name)
		}
		seen[name] = true
	}
	if len(names) >= len(v.Members) {
		return 0, errors.New("that would leave nobody in the view")
	}
	if st := d.cn.Status(); st.Head > st.Epoch {
		return 0, fmt.Errorf("this agent is at epoch %d but has heard of epoch %d: run force-remove on the survivor with the highest epoch (vigil info), or wait for this one to catch up", st.Epoch, st.Head)
	}
	for _, name := range names {
		v = d.cn.View()
		m, _ := v.Lookup(name)
		exec := recovery.Executor(viewNames(v), name, func(o string) bool { return seen[o] || d.ineligible(o) })
		if exec == "" {
			exec = recovery.Executor(viewNames(v), name, func(o string) bool { return seen[o] })
		}
		c := consensus.Change{Kind: consensus.Remove, Reason: consensus.Failed, Member: m, Executor: exec}
		if err := d.cn.Force(c); err != nil {
			return 0, fmt.Errorf("force-remove %s: %w", name, err)
		}
		d.a.log.Warn().Str("change", c.String()).Uint64("epoch", v.Epoch).Msg("decided WITHOUT a quorum, as the operator asked (force-remove)")
		d.handleReady()
		if d.a.fatalErr != nil {
			return 0, d.a.fatalErr
		}
	}
	return d.cn.Epoch(), nil
}

// saveModels keeps the scorers' models for the next start.
func (d *detector) saveModels() {
	for name, sc := range d.scorers {
		if b, err := sc.MarshalBinary(); err == nil {
			_ = d.a.store.PutModel(name, b)
		}
	}
}

// --- what the API shows ---

// members merges serf's list with the agreed view.
func (d *detector) members() []MemberInfo {
	v := d.cn.View()
	seen := map[string]bool{}
	var out []MemberInfo
	for _, m := range d.a.mesh.Members() {
		seen[m.Name] = true
		boot := m.Tags[membership.BootTag]
		info := MemberInfo{Name: m.Name, Addr: hostPort(m), Gossip: m.Status, Boot: boot, Tags: map[string]string{}}
		for k, val := range m.Tags {
			if !membership.Reserved(k) {
				info.Tags[k] = val
			}
		}
		st, known := d.status[m.Name]
		vm, inView := v.Lookup(m.Name)
		switch {
		case inView && vm.Boot == boot:
			info.Status, info.Epoch = "alive", st.epoch
			if d.down(m.Name) {
				info.Status = "suspect"
			}
		case known && st.boot == boot && st.status != "alive":
			info.Status, info.Epoch = st.status, st.epoch
		case m.Status == "left" || m.Status == "leaving":
			info.Status = "left"
		default:
			info.Status = "joining"
		}
		out = append(out, info)
	}
	// Members of the view, and members the log removed, that serf does not
	// know (it never heard of them, or forgot them).
	for _, m := range v.Members {
		if !seen[m.Name] {
			seen[m.Name] = true
			out = append(out, MemberInfo{Name: m.Name, Addr: m.Addr, Status: "alive", Gossip: "unknown",
				Epoch: d.status[m.Name].epoch, Boot: m.Boot, Tags: map[string]string{}})
		}
	}
	for name, st := range d.status {
		if !seen[name] && st.status != "alive" {
			out = append(out, MemberInfo{Name: name, Addr: st.addr, Status: st.status, Gossip: "unknown",
				Epoch: st.epoch, Boot: st.boot, Tags: map[string]string{}})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
