package engine

// The prober: which peers this node pings and when, what each result
// means for the peer's scorer and suspicion, and this observer's health.

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-project/vigil/consensus"
	"github.com/vigil-project/vigil/scoring"
	"github.com/vigil-project/vigil/suspicion"
)

// down reports whether this node's prober doubts a member it monitors.
// A tracker of a peer it does not probe (made by a verdict burst) holds no
// current evidence, and a node never doubts itself.
func (e *Engine) down(name string) bool {
	p, monitored := e.probes[name]
	if !monitored || name == e.self() {
		return false
	}
	if t, ok := e.sus.LookupFor(name, p.boot); ok {
		return t.State() != suspicion.Healthy
	}
	return false
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
// once (at least two). It then probes every peer at the idle cadence: bursts
// would only add load where the observer, or the whole machine, is the
// likelier cause, and a spiral of late acks and more bursts would follow.
func (h health) calm() bool { return h.slow() || h.doubted >= 2 && 2*h.doubted > h.monitored }

func (e *Engine) health() health {
	var h health
	for name, p := range e.probes {
		if p.leaseOnly {
			continue
		}
		h.monitored++
		if e.down(name) {
			h.doubted++
		}
		last := p.lastReply
		if last.IsZero() {
			last = p.since
		}
		if e.now.Sub(last) >= healthSilence {
			h.silent++
		}
	}
	return h
}

func (e *Engine) slow() bool { return e.health().slow() }

// acceptors are the acceptors of view v's instance, as consensus computes
// them: every member, or the council when the view is larger.
func (e *Engine) acceptors(v consensus.View) []consensus.Member {
	return consensus.Acceptors(v, e.cfg.CouncilSize)
}

// current is the agreed view and its acceptors, computed once per epoch:
// the lease is checked before every input. Callers must not change them.
func (e *Engine) current() (consensus.View, []consensus.Member) {
	if ep := e.cn.Epoch(); ep != e.cur.epoch || e.cur.acc == nil {
		v := e.cn.SharedView()
		e.cur.epoch, e.cur.view, e.cur.acc = ep, v, e.acceptors(v)
		e.cur.self, e.cur.member = v.Lookup(e.self())
	}
	return e.cur.view, e.cur.acc
}

// leaseProbeInterval is how often an acceptor this node does not monitor
// is pinged for the lease: four chances within the lease, so that loss
// alone does not end it.
func (e *Engine) leaseProbeInterval() time.Duration {
	return max(e.cfg.Suspicion.ProbeInterval, e.cfg.FenceAfter/4)
}

// refreshMonitors makes the monitored set the ring successors of this node
// in the agreed view; peers that left it are forgotten.
func (e *Engine) refreshMonitors() {
	v := e.cn.SharedView()
	want := map[string]consensus.Member{}
	if v.Contains(e.self()) {
		k := min(len(v.Members)-1, MonitorK)
		for _, name := range Successors(viewNames(v), e.self(), k) {
			m, _ := v.Lookup(name)
			want[name] = m
		}
	}
	lease := map[string]bool{}
	if v.Contains(e.self()) {
		for _, m := range e.acceptors(v) {
			if _, ok := want[m.Name]; !ok && m.Name != e.self() {
				want[m.Name] = m
				lease[m.Name] = true
			}
		}
	}
	for name, p := range e.probes {
		if m, ok := want[name]; !ok || m.Boot != p.boot || p.leaseOnly != lease[name] {
			delete(e.probes, name)
			if !v.Contains(name) {
				e.sus.Remove(name)
				delete(e.scorers, name)
			}
		}
	}
	for name, m := range want {
		if _, ok := e.probes[name]; ok {
			continue
		}
		if !probeable(m.Addr) {
			// No evidence can come from pings that cannot be sent: the
			// member is not probed (nor suspected) by this node.
			e.log(Warn, "cannot probe a member with this address", "member", name, "addr", m.Addr)
			continue
		}
		e.probes[name] = &peerProbe{boot: m.Boot, addr: m.Addr, next: e.now, since: e.now, leaseOnly: lease[name]}
		if !lease[name] {
			e.sus.For(name, m.Boot).ResetProposals()
		}
	}
}

// probeable reports whether addr has the form HOST:PORT, with a port
// of 1..65535, that the caller can ping.
func probeable(addr string) bool {
	i := strings.LastIndexByte(addr, ':')
	if i <= 0 {
		return false
	}
	port, err := strconv.Atoi(addr[i+1:])
	return err == nil && port > 0 && port < 65536
}

// scorer is the scorer of peer name, from its stored model if it has one.
func (e *Engine) scorer(name string) *scoring.Peer {
	if sc, ok := e.scorers[name]; ok {
		return sc
	}
	if b, ok := e.models[name]; ok {
		delete(e.models, name)
		if sc, err := scoring.DecodeSnapshot(b); err == nil {
			e.scorers[name] = sc
			return sc
		}
	}
	sc, err := scoring.NewPeer(e.cfg.Scoring)
	if err != nil {
		panic(err) // New validated the config
	}
	e.scorers[name] = sc
	return sc
}

// Models are the scorers' models, to keep for the next start.
func (e *Engine) Models() map[string][]byte {
	out := map[string][]byte{}
	for name, sc := range e.scorers {
		if b, err := sc.MarshalBinary(); err == nil {
			out[name] = b
		}
	}
	return out
}

// NextProbe is when the earliest probe is due (zero: none is), so the
// caller sleeps until then instead of polling. A peer with maxInflight
// pings in flight waits for answers, not for the time.
func (e *Engine) NextProbe() time.Time {
	var next time.Time
	for _, p := range e.probes {
		if p.inflight < maxInflight && (next.IsZero() || p.next.Before(next)) {
			next = p.next
		}
	}
	return next
}

// probeAfter is when the next ping to a peer is due, at most gap after
// this one. A gap of at least the idle cadence ends on the cluster's round
// grid (the clock's multiples of IdleInterval; of ProbeInterval for a gap
// between the two), the last point within the gap: every healthy peer,
// and the lease's pings, then fall due at the same instants, and the
// prober (and the caller's timers) wake once a round rather than once per
// peer. Every agent's clock has the same grid, so the pings an agent
// answers come at about the time of the pongs it awaits. A peer is never
// pinged later than its gap asks, so the gaps its model learns from do
// not stretch. Shorter gaps (a doubted peer's) keep their own times.
func (e *Engine) probeAfter(gap time.Duration) time.Time {
	g := e.cfg.Suspicion.IdleInterval
	if gap < g {
		// A peer still learning is pinged every ProbeInterval, on that
		// grid (the idle grid's points are on it too when IdleInterval is
		// a multiple of ProbeInterval, as the defaults are).
		g = e.cfg.Suspicion.ProbeInterval
	}
	if gap < g || g <= 0 {
		return e.now.Add(gap)
	}
	// From e.now, not a truncated time: the result keeps its monotonic
	// reading, so a step of the wall clock shifts the grid once and never
	// stalls the prober.
	off := e.now.Add(gap).UnixNano() % int64(g)
	if off < 0 {
		off += int64(g)
	}
	return e.now.Add(gap - time.Duration(off))
}

// Probe starts the pings that are due at now (Ready.Pings).
func (e *Engine) Probe(now time.Time) {
	e.step(now)
	calm := e.health().calm()
	for _, name := range slices.Sorted(maps.Keys(e.probes)) {
		p := e.probes[name]
		if e.now.Before(p.next) || p.inflight >= maxInflight {
			continue
		}
		timeout := e.missTimeout(name)
		p.inflight++
		if p.leaseOnly {
			p.next = e.probeAfter(e.leaseProbeInterval())
		} else if calm {
			// No bursts while this node doubts itself: every peer at the
			// idle cadence.
			p.next = e.probeAfter(e.cfg.Suspicion.IdleInterval)
		} else {
			t := e.sus.For(name, p.boot)
			gap := t.ProbeGap(e.elapsed())
			if gap > e.cfg.Suspicion.ProbeInterval && (t.InGrace(e.elapsed()) || !e.scorer(name).Ready()) {
				// A peer just added, or one whose model is still learning,
				// gets the full rate: its timeout is not yet its own, and
				// the sooner it answers in time the sooner its grace ends.
				gap = e.cfg.Suspicion.ProbeInterval
			}
			p.next = e.probeAfter(gap)
		}
		e.rd.Pings = append(e.rd.Pings, Ping{Peer: name, Boot: p.boot, Addr: p.addr, Timeout: timeout})
	}
}

// missTimeout is the peer's adaptive timeout, floored at minMissTimeout
// and capped at the probe timeout: no ack comes later than that, and a
// scorer still learning reports its maximum.
func (e *Engine) missTimeout(name string) time.Duration {
	return min(max(e.scorer(name).Timeout(), minMissTimeout), e.cfg.ProbeTimeout)
}

// Monitors reports whether this node scores the pings it sends to
// peer@boot (the caller's metrics count only those).
func (e *Engine) Monitors(peer, boot string) bool {
	p, ok := e.probes[peer]
	return ok && p.boot == boot && !p.leaseOnly
}

// Probed feeds one probe result through scoring and suspicion.
func (e *Engine) Probed(now time.Time, r ProbeResult) {
	e.step(now)
	if !r.Miss {
		e.contact(r)
	}
	p, ok := e.probes[r.Peer]
	if !ok || p.boot != r.Boot {
		return
	}
	if !r.Late {
		p.inflight--
	}
	if p.leaseOnly {
		return
	}
	sm := scoring.Sample{RTT: r.RTT, Miss: r.Miss}
	if !p.lastReply.IsZero() {
		// The gap is measured on the idle cadence: bursts to a doubted
		// peer, and the round rate while its model learns, shorten it by
		// our own doing, and a short gap is no evidence (it would keep the
		// peer doubted, and bursting, for ever; and a model learned on
		// short gaps would read every idle gap as an anomaly).
		sm.Gap = max(e.now.Sub(p.lastReply), e.cfg.Suspicion.IdleInterval)
	}
	if r.Load != nil {
		sm.Load = scoring.Load{CPU: r.Load.CPU, Mem: r.Load.Mem, Load1: r.Load.Load1}
		sm.HaveLoad = true
	}
	if !r.Miss {
		p.lastReply = e.now
	}
	sc := e.scorer(r.Peer)
	res, err := sc.Observe(sm)
	if err != nil {
		// The scorer takes no part in this one; suspicion still counts it.
		e.log(Debug, "sample rejected by the scorer", "peer", r.Peer, "error", err.Error())
		res = scoring.Result{Timeout: r.Timeout}
	}
	if sc.NeedsRefit() {
		if err := sc.Refit(); err != nil {
			e.log(Debug, "refit failed; keeping the old model", "peer", r.Peer, "error", err.Error())
		}
	}
	p.last = res
	if err == nil && !r.Miss {
		p.scored = res
	}
	p.samples = append(p.samples, Sample{At: e.now, RTT: r.RTT, Miss: r.Miss, Late: r.Late, Timeout: r.Timeout})
	if len(p.samples) > SamplesKept {
		p.samples = p.samples[len(p.samples)-SamplesKept:]
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
	t := e.sus.For(r.Peer, r.Boot)
	tr := t.Observe(e.elapsed(), suspicion.Observation{
		Miss: r.Miss, RTT: r.RTT, Timeout: r.Timeout, PFail: res.PFail, Threshold: thr, Late: r.Late,
	})
	if tr.Changed() {
		e.rd.Transitions = append(e.rd.Transitions, tr.To)
		// Routine: the decisions are what an operator acts on (info).
		e.log(Debug, "peer suspicion changed", "peer", r.Peer, "from", tr.From.String(), "to", tr.To.String(),
			"reason", string(tr.Reason), "pfail", res.PFail)
	}
	if t.ShouldPropose(e.elapsed()) && !e.slow() {
		e.proposeFailure(r.Peer, t)
	}
}

// contact counts an answered ping toward this node's lease, if the peer
// vouched for it (check-quorum: an acceptor that accepted or learned this
// node's removal no longer does). An answer from a peer ahead of this
// node's view counts only once this node has caught up to that view (it
// asks that peer for the missing decisions): until then the peer's view
// may have a council this node does not know of, and the answer must not
// make a quorum of the older one (a council seat passed on). Every answer
// a lease counts so comes from a view no later than the one the lease is
// computed in, as if it had come when this node was there.
func (e *Engine) contact(r ProbeResult) {
	if !e.broken.ignoreVouch {
		if r.Epoch > e.cn.Epoch() {
			if a := e.ahead[r.Peer]; r.Vouched && r.Sent.After(a.sent) {
				e.ahead[r.Peer] = aheadAck{sent: r.Sent, epoch: max(a.epoch, r.Epoch)}
			}
			e.cn.Behind(r.Peer, r.Epoch)
			e.drain()
			return
		}
		if !r.Vouched {
			return
		}
	}
	e.acknowledged(r.Peer, r.Sent)
	e.checkLease()
}

// aheadAck is an answer that vouched for this node from a view ahead of
// its own: the send time of the ping and the (highest) epoch it came from.
type aheadAck struct {
	sent  time.Time
	epoch uint64
}

// acknowledged records that peer vouched for this node in answer to the
// ping sent at sent.
func (e *Engine) acknowledged(peer string, sent time.Time) {
	if sent.After(e.acked[peer]) {
		e.acked[peer] = sent
		e.acks++
	}
}

// caughtUp counts the answers from ahead whose view this node has reached
// (epoch: its view's).
func (e *Engine) caughtUp(epoch uint64) {
	for peer, a := range e.ahead {
		if a.epoch <= epoch {
			e.acknowledged(peer, a.sent)
			delete(e.ahead, peer)
		}
	}
}

// Vouches reports whether this node's answers to name's pings vouch for
// name's membership (consensus.Node.Vouches): they renew name's lease.
func (e *Engine) Vouches(name string) bool { return e.cn.Vouches(name) }

// VouchRev is what Vouches depends on: the caller that keeps a copy of
// what Vouches says for its transport rebuilds it when this changes.
type VouchRev struct {
	Epoch    uint64
	Accepted consensus.Ballot
	Voter    bool
}

// VouchRev is what Vouches depends on now.
func (e *Engine) VouchRev() VouchRev {
	b, voter := e.cn.Accepted()
	return VouchRev{Epoch: e.cn.Epoch(), Accepted: b, Voter: voter}
}

// --- verdicts ---

// verdict is the consensus Judge: this node's own view of a proposed
// change. Removal evidence is made fresh before a prepare is stepped.
func (e *Engine) verdict(c consensus.Change) bool {
	switch {
	case c.Kind == consensus.Add:
		if e.removed(c.Member.Name, c.Member.Boot) {
			return false
		}
		m, ok := e.member(c.Member.Name)
		return ok && m.Status == "alive" && m.Boot() == c.Member.Boot
	case c.Reason == consensus.Left:
		m, ok := e.member(c.Member.Name)
		if !ok || m.Boot() != c.Member.Boot || m.Status == "left" || m.Status == "leaving" {
			return true
		}
		u, _ := e.unreachable(c.Member)
		return u
	default:
		if e.leaving(c.Member) {
			return false // it leaves gracefully: the removal is a leave, not a failure
		}
		u, _ := e.unreachable(c.Member)
		return u
	}
}

// unreachable is this node's evidence that a member is down, and whether
// that evidence is fresh enough to answer a prepare.
func (e *Engine) unreachable(m consensus.Member) (unreachable, fresh bool) {
	if m.Name == e.self() {
		return false, true // this node answers for itself: alive
	}
	if e.slow() {
		return false, true // a slow observer vouches for no one's failure
	}
	if cv, ok := e.verdicts[m.Name]; ok && cv.boot == m.Boot && e.now.Sub(cv.at) < verdictTTL {
		return cv.unreachable, true
	}
	if t, ok := e.sus.LookupFor(m.Name, m.Boot); ok {
		if u, f := t.Verdict(e.elapsed()); f {
			return u, true
		}
	}
	return false, false
}

// startBurst asks for a burst of pings to a member, close together, so
// that a verdict never rests on one lost packet.
func (e *Engine) startBurst(m consensus.Member) {
	if e.bursting[m.Name] {
		return
	}
	e.bursting[m.Name] = true
	n, gap := e.cfg.Suspicion.VerdictBurst, e.cfg.Suspicion.ProbeInterval/time.Duration(max(e.cfg.Suspicion.Burst, 1))
	e.rd.Bursts = append(e.rd.Bursts, Burst{Peer: m.Name, Boot: m.Boot, Addr: m.Addr, N: n, Gap: gap, Wait: e.burstWait(m.Name)})
}

// burstWait is how long a verdict burst waits after its last ping: the
// subject's adaptive timeout when this node monitors it, else the longest
// of the peers it monitors (how late a live peer answers this observer
// now: it grows when this machine is loaded), at least minBurstWait and at
// most the probe timeout; the probe timeout while no model is ready. The
// burst's first ping has the burst's length besides.
func (e *Engine) burstWait(name string) time.Duration {
	var w time.Duration
	if p, ok := e.probes[name]; ok && !p.leaseOnly {
		w = e.missTimeout(name)
	} else {
		for peer, p := range e.probes {
			if !p.leaseOnly {
				w = max(w, e.missTimeout(peer))
			}
		}
	}
	if w == 0 {
		return e.cfg.ProbeTimeout
	}
	return min(max(w, minBurstWait), e.cfg.ProbeTimeout)
}

// Bursted takes the outcome of a Burst and steps the prepares that waited
// for it.
func (e *Engine) Bursted(now time.Time, r BurstResult) {
	e.step(now)
	delete(e.bursting, r.Peer)
	// The burst is evidence about the incarnation it pinged: it joins the
	// tracker only if that is the member of the view now. A burst about
	// an incarnation already removed is judged alone.
	var t *suspicion.Tracker
	if vm, ok := e.cn.SharedView().Lookup(r.Peer); ok && vm.Boot == r.Boot {
		t = e.sus.For(r.Peer, r.Boot)
	} else {
		t, _ = suspicion.NewTracker(e.cfg.Suspicion) // validated in New
	}
	u := false // no ping could be sent: no evidence
	if r.OK+r.Miss > 0 {
		u = t.VerdictAfterPing(e.elapsed(), r.OK, r.Miss)
	}
	e.verdicts[r.Peer] = cachedVerdict{boot: r.Boot, unreachable: u, at: e.now}
	e.log(Debug, "verdict burst", "peer", r.Peer, "ok", r.OK, "miss", r.Miss, "unreachable", u)
	held := e.held
	e.held = nil
	for _, m := range held {
		e.stepMessage(m)
	}
}
