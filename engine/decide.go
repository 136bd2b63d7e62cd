package engine

// Proposals, consensus messages, and what a decision does.

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/vigil-project/vigil/consensus"
	"github.com/vigil-project/vigil/suspicion"
)

// proposeFailure proposes the removal of an accused peer. The first live
// observer of the peer proposes at once; the others give it a head start.
func (e *Engine) proposeFailure(name string, t *suspicion.Tracker) {
	v := e.cn.SharedView()
	m, ok := v.Lookup(name)
	if !ok || e.leaving(m) {
		return
	}
	rank := 0
	for _, o := range Predecessors(viewNames(v), name, MonitorK) {
		if o == e.self() {
			break
		}
		if !e.down(o) {
			rank++
		}
	}
	if rank > 0 && t.Explain(e.elapsed()).InStateFor < time.Duration(rank)*rankHeadStart {
		return
	}
	exec := Executor(viewNames(v), name, func(o string) bool { return e.down(o) || e.ineligible(o) })
	if exec == "" {
		// No live member has a recovery handler: the failure is still
		// decided (its member-failed handlers run); nobody recovers it.
		exec = Executor(viewNames(v), name, e.down)
	}
	if e.propose(consensus.Change{Kind: consensus.Remove, Reason: consensus.Failed, Member: m, Executor: exec}) {
		// Back off only from a proposal that started; one refused because
		// another is in flight is tried again at the next probe.
		t.MarkProposed(e.elapsed())
	}
}

// propose starts a proposal; it reports whether one started.
func (e *Engine) propose(c consensus.Change) bool {
	err := e.cn.Propose(c)
	switch {
	case err == nil:
		e.rd.Proposed = append(e.rd.Proposed, c)
		e.log(Debug, "proposing a view change", "change", c.String(), "epoch", e.cn.Epoch())
	case errors.Is(err, consensus.ErrInFlight), errors.Is(err, consensus.ErrNotMember):
		return false
	default:
		e.log(Debug, "proposal not started", "change", c.String(), "error", err.Error())
		return false
	}
	e.drain()
	return true
}

// Message steps one consensus message that arrived from peer from. A
// prepare to remove a failed member waits for fresh evidence first.
func (e *Engine) Message(now time.Time, from string, payload []byte) {
	e.step(now)
	m, err := consensus.Decode(payload)
	if err != nil {
		e.log(Warn, "dropping a malformed consensus message", "from", from, "error", err.Error())
		return
	}
	if m.From != from {
		e.log(Warn, "dropping a consensus message with a forged sender", "from", from, "claims", m.From)
		return
	}
	if e.foreign(from) {
		e.log(Warn, "dropping a consensus message from another cluster", "from", from)
		return
	}
	if (m.Type == consensus.MsgDecided || m.Type == consensus.MsgSnapshot) && e.cn.Epoch() > 0 && !e.cn.SharedView().Contains(from) {
		// Decisions come from the members that learned them from a quorum.
		e.log(Warn, "dropping a decision from a node outside the view", "from", from, "msg", m.String())
		return
	}
	e.stepMessage(m)
}

func (e *Engine) stepMessage(m consensus.Message) {
	if m.Type == consensus.MsgPrepare && m.Change.Kind == consensus.Remove {
		// Stale evidence, or a suspicion not yet concluded (the proposer
		// crossed its bar a moment before this node): ping the subject in a
		// burst and answer on that, rather than "reachable" on a hunch.
		u, fresh := e.unreachable(m.Change.Member)
		_, burst := e.verdicts[m.Change.Member.Name]
		inconclusive := !u && e.down(m.Change.Member.Name) && !burst
		if !fresh || inconclusive {
			e.startBurst(m.Change.Member)
			e.held = append(e.held, m)
			return
		}
	}
	e.log(Debug, "consensus recv", "msg", m.String())
	if err := e.cn.Step(m); err != nil {
		e.log(Debug, "consensus message not taken", "msg", m.String(), "error", err.Error())
	}
	e.drain()
	e.adoptCluster(m.From)
}

// drain takes what consensus asks for into the engine's Ready, in its
// order (persist, then send), and acts on the decisions.
func (e *Engine) drain() {
	rd := e.cn.Ready()
	if rd.IsEmpty() {
		return
	}
	if rd.Persist != nil {
		acc := *rd.Persist
		e.rd.Acceptor = &acc
	}
	// Each decision's view, and the evidence of the failures named with
	// its acceptors: kept in the same write as the decisions.
	befores := e.viewsBefore(rd.Decided)
	for i, dec := range rd.Decided {
		if k, b, ok := e.evidenceRecord(dec, befores[i]); ok {
			e.setMeta(k, b)
		}
	}
	e.rd.Decided = append(e.rd.Decided, rd.Decided...)
	if rd.Snapshot != nil || len(rd.Decided) > 0 {
		v := e.cn.View()
		e.rd.View = &v
	}
	for _, m := range rd.Messages {
		e.log(Debug, "consensus send", "msg", m.String())
	}
	e.rd.Messages = append(e.rd.Messages, rd.Messages...)
	if rd.Snapshot != nil {
		e.log(Info, "installed the agreed view from a peer", "epoch", rd.Snapshot.Epoch, "members", len(rd.Snapshot.Members))
		if m, ok := e.seen.Lookup(e.self()); ok && m.Boot == e.boot {
			if m, ok := rd.Snapshot.Lookup(e.self()); !ok || m.Boot != e.boot {
				// The view moved on without this incarnation while it was
				// away: it was removed by a decision it never received.
				e.rejoin(rd.Snapshot.Epoch, "")
			}
		}
		for _, m := range rd.Snapshot.Members {
			if st, ok := e.status[m.Name]; !ok || st.boot != m.Boot || st.status != "alive" {
				e.status[m.Name] = agreed{status: "alive", epoch: rd.Snapshot.Epoch, boot: m.Boot, addr: m.Addr}
			}
		}
	}
	for i, dec := range rd.Decided {
		e.apply(dec, befores[i])
	}
	for _, c := range rd.Abandoned {
		e.log(Debug, "proposal given up: no quorum agreed, or another change won the epoch", "change", c.String())
	}
	if rd.Snapshot != nil || len(rd.Decided) > 0 {
		e.seen = e.cn.SharedView()
		e.refreshMonitors()
		// A new epoch: accusations may be proposed again at once.
		for _, name := range e.sus.Names() {
			e.sus.Peer(name).ResetProposals()
		}
	}
	if rd.Persist != nil {
		// The acceptor state changed, and with it maybe what this node
		// says of itself (an accept of its own removal, from a peer's
		// proposal or its own): its lease may end now, not at the next
		// input.
		e.checkLease()
	}
}

// viewsBefore returns, for each decision of a batch, the view it was
// decided in: forward from the view this node held before the batch, or,
// after a snapshot, back from the view after it (viewsBack).
func (e *Engine) viewsBefore(decided []consensus.Decision) []consensus.View {
	out := make([]consensus.View, 0, len(decided))
	v := e.seen
	for _, d := range decided {
		if v.Epoch != d.Epoch {
			return viewsBack(e.cn.SharedView(), decided)
		}
		out = append(out, v)
		next, err := v.Apply(d.Change)
		if err != nil {
			return viewsBack(e.cn.SharedView(), decided)
		}
		v = next
	}
	return out
}

// viewsBack returns, for each decision of a batch, the view it was
// decided in (its acceptors voted), going back from the view after the
// batch: one Ready can carry several decisions (a catch-up), and the view
// the node holds then is the last one's result.
// A member re-added under a new boot id is missing from the views it
// gives (the old incarnation is not in the view after).
func viewsBack(after consensus.View, decided []consensus.Decision) []consensus.View {
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
func (e *Engine) apply(dec consensus.Decision, before consensus.View) {
	e.lastApplied = e.now
	c := dec.Change
	prev, hadPrev := e.status[c.Member.Name]
	// The view this decision made: in a batch (a catch-up) the node's view
	// is already the last one's, and every node must hand jobs over alike.
	view, err := before.Apply(c)
	if err != nil {
		view = e.cn.SharedView()
	}
	old, replaced := before.Lookup(c.Member.Name)
	replaced = replaced && c.Kind == consensus.Add && old.Boot != c.Member.Boot
	e.noteStatus(dec)
	delete(e.pending, c.Member.String())
	e.log(Info, "view change decided", "epoch", dec.Epoch+1, "change", c.String(), "id", dec.ID())
	if c.Evidence.Proposer == e.self() {
		// The announcement is a hint (DecisionAnnounced reads the epoch and
		// the proposer): without the notes it fits serf's 512-byte events.
		hint := dec
		hint.Change.Evidence.ProposerNote, hint.Change.Evidence.Notes = nil, nil
		if b, err := consensus.EncodeDecision(hint); err == nil {
			e.rd.Announce = append(e.rd.Announce, UserEvent{Name: DecisionEvent, Payload: b})
		}
	}
	var typ EventType
	switch {
	case c.Kind == consensus.Remove && c.Reason == consensus.Failed:
		typ = EventFailed
	case c.Kind == consensus.Remove:
		typ = EventLeave
	case hadPrev && prev.status == "failed":
		// Back after a decided failure. A restart that nobody declared
		// failed is a join of the new incarnation.
		typ = EventRecovered
	default:
		typ = EventJoin
	}
	if c.Kind == consensus.Add && c.Member.Name == e.self() && c.Member.Boot == e.boot {
		e.refreshJournal()
	}
	if c.Kind == consensus.Add && c.Member.Name != e.self() {
		// A member just added was reachable to a quorum a moment ago;
		// give it JoinGrace to settle before it can be accused.
		e.sus.For(c.Member.Name, c.Member.Boot).Joined(e.elapsed())
	}
	ev := Event{Type: typ, Time: e.now, Member: c.Member}
	e.deferred = append(e.deferred, deferredEvent{ev: ev, removesMe: c.Kind == consensus.Remove && c.Member.Name == e.self()})
	e.flushDeferred()
	if replaced {
		// A restart under a new boot id: the old incarnation is gone.
		e.onMemberRemoved(c.Member.Name, view, c.Evidence.Proposer == e.self())
	}
	if c.Kind == consensus.Remove {
		if c.Reason == consensus.Failed {
			e.noteFailure(c.Member.Name, e.now)
			e.onFailureDecided(dec, before)
		}
		e.onMemberRemoved(c.Member.Name, view, c.Evidence.Proposer == e.self())
		e.sus.Remove(c.Member.Name)
		delete(e.scorers, c.Member.Name)
		delete(e.verdicts, c.Member.Name)
		if c.Member.Name == e.self() && c.Member.Boot == e.boot && c.Reason == consensus.Failed {
			e.rejoin(dec.Epoch+1, dec.ID())
		}
	}
}

// flushDeferred runs the handlers of applied decisions once this node has
// caught up with the cluster. A node that was cut off and learns on its
// return that it was removed runs no handler for what was decided while it
// was away (it confirmed nothing then; it rejoins now), and a node never
// runs member-failed or member-leave for itself.
func (e *Engine) flushDeferred() {
	if len(e.deferred) == 0 || e.cn.Status().Head > e.cn.Epoch() {
		return
	}
	if (e.leaseFenced || e.wasFenced) && e.now.Sub(e.lastApplied) < settleAfterFence {
		// Cut off a moment ago: the head it knows of may be stale (the
		// decision that removed it can still be on its way), so it waits
		// until no decision has come for a while (Tick calls again).
		return
	}
	evs := e.deferred
	e.deferred = nil
	for _, de := range evs {
		if de.removesMe {
			e.log(Warn, "learned on return that this node was removed: not running handlers for what was decided meanwhile", "decisions", len(evs))
			return
		}
	}
	for _, de := range evs {
		e.rd.Events = append(e.rd.Events, de.ev)
	}
}

// rejoin: this node read its own removal. It stops claiming membership
// under the old boot id and comes back under a new one; the view adds it
// again.
// epoch is the view epoch without it, id the decision (if it learned it).
func (e *Engine) rejoin(epoch uint64, id string) {
	if e.leaseFenced || e.wasFenced {
		e.stopRecoveries() // the fence handler ran when the lease ran out
	} else {
		e.fence("removed", epoch)
	}
	// The old incarnation's jobs may have been handed over by decisions
	// this node never applied (a snapshot): none runs before the cluster
	// was asked.
	for id, d := range e.due {
		d.inherited = true
		e.due[id] = d
	}
	old := e.boot
	e.boot = e.newID()
	e.rd.Boot, e.rd.Tags = e.boot, true
	e.wasFenced = false
	e.log(Warn, "this node was declared failed; rejoining under a new boot id",
		"old_boot", old, "boot", e.boot, "epoch", epoch, "id", id)
}

// --- the periodic work ---

// Tick advances consensus, runs the recoveries that are due, and proposes
// the adds and leaves gossip shows. The caller calls it at NextTick.
func (e *Engine) Tick(now time.Time) {
	e.step(now)
	if e.quietTick {
		// The ticks a quiet engine skipped count for the consensus
		// node's periodic catch-up, the one thing in it that counts
		// ticks while nothing is in flight.
		skipped := int(e.now.Sub(e.tickAt)/TickInterval) - 1
		e.cn.Skip(min(skipped, int(IdleTick/TickInterval)-1))
	}
	e.tickAt = e.now
	defer func() { e.quietTick = e.quiet() }()
	e.cn.Tick()
	e.drain()
	e.flushDeferred()
	e.runDue()
	e.recheckJournal()
	// Membership changes are looked for when gossip changed, while a
	// change waits to be proposed, and at most once a second after a
	// decision. Nothing else changes what a look would find: a look that
	// found nothing left nothing pending.
	if !e.membersDirty && len(e.pending) == 0 && e.cn.Epoch() > 0 &&
		(e.cn.Epoch() == e.membersEpoch || e.now.Sub(e.lastMembers) < time.Second) {
		return
	}
	e.membersDirty, e.lastMembers, e.membersEpoch = false, e.now, e.cn.Epoch()
	if e.cn.Epoch() == 0 && e.now.Sub(e.lastCatchup) > time.Second {
		// A new agent learns the view from any peer it can see.
		e.lastCatchup = e.now
		var peers []string
		for _, name := range e.gossipNames {
			if m := e.gossip[name]; name != e.self() && m.Status == "alive" {
				peers = append(peers, name)
			}
		}
		if len(peers) > 0 {
			e.cn.CatchUp(peers[e.rand.Intn(len(peers))])
			e.drain()
		}
	}
	e.bootstrapExpect()
	e.proposeMembership()
}

// NextTick is when the caller calls Tick next: TickInterval after the last
// while anything is in flight. A quiet engine (see quiet) waits up to
// IdleTick, and no later than its consensus node's next periodic catch-up
// or its lease's end: a node that missed a decision asks for it on time,
// and a node cut off fences on time. An input can end the quiet: the
// caller asks again after every input, and the answer may then be in the
// past (tick at once).
func (e *Engine) NextTick() time.Time {
	next := e.tickAt.Add(TickInterval)
	if !e.quietTick || !e.quiet() {
		return next
	}
	idle := e.tickAt.Add(min(IdleTick, time.Duration(e.cn.CatchupIn())*TickInterval))
	switch {
	case !e.leaseExpiry.Before(idle):
		return idle
	case e.leaseExpiry.Before(next):
		return next
	}
	return e.leaseExpiry
}

// quiet reports whether a Tick within IdleTick would do nothing that an
// input or the lease's end does not also bring: a member of a view, with
// its lease (one back after a fence too: it asks before it runs a job),
// whose consensus node is quiet (no proposal, no accepted value undecided,
// no catch-up asked, nothing known beyond its view), with no membership
// change waiting, no verdict burst or held prepare, no deferred handler
// event, and no recovery job unfinished.
// Accusations need no Tick: they are proposed at the probes.
func (e *Engine) quiet() bool {
	if !e.cn.Quiet() || e.cn.Epoch() == 0 || e.membersDirty || len(e.pending) > 0 ||
		len(e.held) > 0 || len(e.bursting) > 0 || len(e.deferred) > 0 ||
		len(e.due) > 0 || len(e.recheck) > 0 || len(e.checking) > 0 ||
		len(e.running) > 0 || len(e.killed) > 0 ||
		!e.leaseHeld || e.leaseFenced {
		return false
	}
	for id := range e.open {
		if j, ok := e.jobs[id]; ok && !j.State.Final() {
			return false
		}
		delete(e.open, id)
	}
	return true
}

// WantsMembers reports whether the engine should get serf's member list
// at every tick, not once a second: a membership change waits to be
// proposed, or a proposal is in flight.
func (e *Engine) WantsMembers() bool {
	return len(e.pending) > 0 || e.cn.Status().Phase != consensus.Idle
}

// proposeMembership proposes adding members gossip sees alive that the
// view lacks (new nodes, and restarts under a new boot id), and removing
// members that left. The member nearest the subject on the ring proposes
// first.
func (e *Engine) proposeMembership() {
	v := e.cn.SharedView()
	if !v.Contains(e.self()) {
		return
	}
	names := viewNames(v)
	type wanted struct {
		m Member
		c consensus.Change
	}
	var changes []wanted
	keep := map[string]bool{}
	for _, name := range e.gossipNames {
		m := e.gossip[name]
		boot := m.Boot()
		vm, inView := v.Lookup(m.Name)
		var c consensus.Change
		switch {
		case m.Status == "alive" && boot != "" && (!inView || vm.Boot != boot) && !e.removed(m.Name, boot):
			c = consensus.Change{Kind: consensus.Add, Reason: consensus.Joined,
				Member: consensus.Member{Name: m.Name, Boot: boot, Addr: m.Addr}}
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
	for key := range e.pending {
		if !keep[key] {
			delete(e.pending, key)
		}
	}
	for _, w := range changes {
		m, c := w.m, w.c
		key := c.Member.String()
		first, seen := e.pending[key]
		if !seen {
			e.pending[key] = e.now
			first = e.now
		}
		proposer := Executor(names, m.Name, e.down)
		if proposer == "" && m.Name == e.self() {
			proposer = e.self() // the last member re-adds itself after a restart
		}
		if proposer != e.self() && e.now.Sub(first) < addGrace {
			continue
		}
		if c.Kind == consensus.Add && c.Member.Name != e.self() {
			if wait := e.rejoinWait(c.Member.Name); wait > 0 {
				continue
			}
		}
		if e.propose(c) {
			return // one proposal at a time
		}
	}
}

// noteFailure records a decided failure of name, learned at now, for
// rejoin damping. The history is per name: a node's new boot ids share it.
func (e *Engine) noteFailure(name string, at time.Time) {
	h := e.failures[name][:0:0]
	for _, t := range e.failures[name] {
		if at.Sub(t) < dampingMemory {
			h = append(h, t)
		}
	}
	e.failures[name] = append(h, at)
}

// rejoinWait is how much longer a member that the view removed for
// failure must stay alive in gossip before it is added back: RejoinStable
// after its first failure in dampingMemory, doubled for each further one
// (at most 16 times). A node that flaps is kept out until it has been
// stable for longer than its flapping lasts; every agent judges from the
// same decisions, and the first that finds it stable proposes the add.
// 0 when the name has no recent failure or damping is off.
func (e *Engine) rejoinWait(name string) time.Duration {
	base := e.cfg.RejoinStable
	var recent int
	var last time.Time
	for _, t := range e.failures[name] {
		if e.now.Sub(t) < dampingMemory {
			recent++
			last = t
		}
	}
	if base <= 0 || recent == 0 {
		return 0
	}
	need := base << min(recent-1, 4)
	since := e.aliveSince[name]
	if since.IsZero() {
		return need
	}
	// Stable since it came back alive, and not before the failure.
	if last.After(since) {
		since = last
	}
	return max(need-e.now.Sub(since), 0)
}

// DecisionAnnounced takes a decision announced by gossip as a hint only:
// anyone who can send a serf user event can send one. If it is news, this
// node asks a member of its view for the log (consensus catch-up), and
// learns only what members hold, who learned it from a quorum.
func (e *Engine) DecisionAnnounced(now time.Time, payload []byte) {
	e.step(now)
	dec, err := consensus.DecodeDecision(payload)
	if err != nil {
		e.log(Warn, "ignoring a malformed decision announcement", "error", err.Error())
		return
	}
	if dec.Epoch < e.cn.Epoch() {
		return
	}
	if e.broken.trustAnnouncements && dec.Epoch == e.cn.Epoch() {
		_ = e.cn.Learn(dec)
		e.drain()
		return
	}
	v := e.cn.SharedView()
	peer := dec.Change.Evidence.Proposer
	if !v.Contains(peer) || peer == e.self() {
		peer = ""
		for _, name := range Successors(viewNames(v), e.self(), 1) {
			peer = name
		}
	}
	if peer == "" {
		return
	}
	e.log(Debug, "a decision was announced: asking a member for the log", "epoch", dec.Epoch, "ask", peer)
	e.cn.CatchUp(peer)
	e.drain()
}

// ForceRemove removes members of the view that are gone for good, each by
// a decision taken without a quorum (consensus.Node.Force), after a quorum
// was lost. It refuses this node, members not in the view, and members
// gossip still sees alive: force is for the dead. Each is removed as
// failed, so its recovery runs as usual.
func (e *Engine) ForceRemove(now time.Time, names []string) (uint64, error) {
	e.step(now)
	v := e.cn.SharedView()
	seen := map[string]bool{}
	for _, name := range names {
		switch {
		case seen[name]:
			return 0, fmt.Errorf("%s is named twice", name)
		case name == e.self():
			return 0, fmt.Errorf("%s is this agent: run force-remove on a survivor", name)
		case !v.Contains(name):
			return 0, fmt.Errorf("%s is not a member of the view at epoch %d", name, v.Epoch)
		}
		if m, ok := e.member(name); ok && m.Status == "alive" {
			return 0, fmt.Errorf("%s is alive to gossip: force-remove is for members that are gone", name)
		}
		seen[name] = true
	}
	if len(names) >= len(v.Members) {
		return 0, errors.New("that would leave nobody in the view")
	}
	if st := e.cn.Status(); st.Head > st.Epoch {
		return 0, fmt.Errorf("this agent is at epoch %d but has heard of epoch %d: run force-remove on the survivor with the highest epoch (vigil info), or wait for this one to catch up", st.Epoch, st.Head)
	}
	for _, name := range names {
		v = e.cn.SharedView()
		m, _ := v.Lookup(name)
		exec := Executor(viewNames(v), name, func(o string) bool { return seen[o] || e.ineligible(o) })
		if exec == "" {
			exec = Executor(viewNames(v), name, func(o string) bool { return seen[o] })
		}
		c := consensus.Change{Kind: consensus.Remove, Reason: consensus.Failed, Member: m, Executor: exec}
		if err := e.cn.Force(c); err != nil {
			return 0, fmt.Errorf("force-remove %s: %w", name, err)
		}
		e.log(Warn, "decided WITHOUT a quorum, as the operator asked (force-remove)", "change", c.String(), "epoch", v.Epoch)
		e.drain()
	}
	return e.cn.Epoch(), nil
}
