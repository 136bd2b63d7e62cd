package consensus

import (
	"fmt"
	"slices"
)

const (
	catchupBatch = 8   // decisions sent per catch-up request
	pageBurst    = 8   // snapshot pages sent per catch-up request
	maxPending   = 256 // out-of-order decisions buffered
	// pageBudget is the room for members in a snapshot page: MaxMessageLen
	// minus the worst-case header (type, from, to, epoch, head, total,
	// offset, count).
	pageBudget = MaxMessageLen - (1 + 2*(1+MaxNameLen) + 2*10 + 2*5 + 2)
)

// Ready is what the caller must do next, in this order:
//
//  1. make Persist durable (if set) together with Snapshot and Decided
//     (apply Snapshot first, then Decided in order) — one transaction;
//  2. only then send Messages;
//  3. act on Decided and Abandoned (announce, run recovery, log).
type Ready struct {
	// Persist is the acceptor state to make durable before any Message is
	// sent (etcd raft: "saved to stable storage BEFORE Messages are sent").
	Persist *AcceptorState
	// Snapshot is set when the node jumped to a view received from a peer
	// (it was too far behind for the log). It replaces the stored view and
	// log; decisions between the old view and it are not reported.
	Snapshot *View
	// Decided holds new decisions in epoch order, each reported once.
	Decided []Decision
	// Messages to send; each has To set.
	Messages []Message
	// Abandoned holds this node's proposals that were given up: phase 1
	// found no quorum of agreeing verdicts, another change was decided for
	// the epoch, or the node left the view or jumped to a snapshot.
	Abandoned []Change
}

// IsEmpty reports whether r holds nothing to do.
func (r Ready) IsEmpty() bool {
	return r.Persist == nil && r.Snapshot == nil && len(r.Decided) == 0 && len(r.Messages) == 0 && len(r.Abandoned) == 0
}

// Phase of this node's proposer.
type Phase uint8

const (
	Idle      Phase = iota // no proposal
	Backoff                // waiting to retry with a higher ballot
	Preparing              // phase 1 sent
	Accepting              // phase 2 sent
)

// Status is a read-only summary of a Node for tests and the API.
type Status struct {
	ID        string
	Epoch     uint64
	Acceptor  AcceptorState
	IsMember  bool
	Acceptors int
	Quorum    int
	Phase     Phase
	Ballot    Ballot
	Proposal  Change
	Head      uint64 // highest view epoch heard of
	// AcceptedStale: the accepted value is stale and this node no longer
	// drives it (Config.StaleAccepted).
	AcceptedStale bool
}

type proposal struct {
	own    bool // the caller's proposal (reported if abandoned)
	change Change
	phase  Phase
	ballot Ballot
	timer  int // ticks in the current phase
	wait   int // backoff ticks left

	promised, agreed, accepted        []byte   // bitsets over acceptors
	notes                             [][]byte // agreeing acceptors' notes, by index
	nPromise, nAgree, nDisagree, nAcc int
	highest                           Ballot
	highestVal                        Change
	value                             Change
	// The promises that report no stale value: how many, and the highest
	// value among them. anyQuorum: stop waiting for a quorum of those.
	nFresh        int
	highestFresh  Ballot
	highestFreshV Change
	anyQuorum     bool
}

type snapAsm struct {
	epoch   uint64
	members []Member
	have    []byte
	n       int
	peer    string
	burst   int
}

// Node is one member's consensus state machine: acceptor, proposer and
// learner for the instance of its current epoch. It is not safe for
// concurrent use; the agent's loop owns it.
type Node struct {
	cfg Config

	view      View
	acceptors []Member
	accIdx    map[string]int
	quorum    int

	st       AcceptorState
	dirty    bool
	maxRound uint64 // highest round seen in this epoch

	log     []Decision // contiguous, last is view.Epoch-1
	pending map[uint64]Decision
	head    uint64

	prop      proposal
	idle      int // ticks an accepted value has waited undecided
	idleLimit int
	// acceptedAge counts the ticks since this node accepted its current
	// value (Config.StaleAccepted).
	acceptedAge int
	// dropStale: this node stops driving its stale accepted value (see
	// tryAccept); cleared by a new value or epoch.
	dropStale bool

	catchTimer int
	reqTimer   int // > 0 while a catch-up request is outstanding
	reqPeer    string
	reqFrom    uint64
	snap       *snapAsm

	local []Message
	rd    Ready
}

// NewNode restores a node from its persisted state. A node that has never
// joined passes a zero PersistentState: it is a learner until a peer sends
// it the view.
func NewNode(cfg Config, st PersistentState) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := st.View.Validate(); err != nil {
		return nil, fmt.Errorf("restore view: %w", err)
	}
	n := &Node{cfg: cfg, view: st.View.Clone(), pending: map[uint64]Decision{}}
	a := st.Acceptor
	switch {
	case a.Epoch > n.view.Epoch:
		return nil, fmt.Errorf("%w: acceptor state for epoch %d ahead of view %d", ErrInconsistent, a.Epoch, n.view.Epoch)
	case a.Epoch < n.view.Epoch:
		a = AcceptorState{Epoch: n.view.Epoch, VoteFrom: a.VoteFrom} // its instance is decided and in the view
	}
	if st.Fresh && a.VoteFrom == 0 {
		a.VoteFrom = NoVote
	}
	if !a.Accepted.IsZero() {
		if err := a.Value.Validate(); err != nil {
			return nil, fmt.Errorf("restore accepted value: %w", err)
		}
		if a.Promised.Less(a.Accepted) {
			return nil, fmt.Errorf("%w: promised %s below accepted %s", ErrInconsistent, a.Promised, a.Accepted)
		}
	}
	a.Value = a.Value.clone()
	n.st = a
	for i, d := range st.Log {
		if i > 0 && d.Epoch != st.Log[i-1].Epoch+1 {
			return nil, fmt.Errorf("%w: log not contiguous at epoch %d", ErrInconsistent, d.Epoch)
		}
	}
	if len(st.Log) > 0 && st.Log[len(st.Log)-1].Epoch+1 != n.view.Epoch {
		return nil, fmt.Errorf("%w: log ends at %d, view is %d", ErrInconsistent, st.Log[len(st.Log)-1].Epoch, n.view.Epoch)
	}
	tail := st.Log
	if len(tail) > cfg.LogTail {
		tail = tail[len(tail)-cfg.LogTail:]
	}
	n.log = slices.Clone(tail)
	n.head = n.view.Epoch
	n.enterEpoch()
	n.maxRound = max(a.Promised.Round, a.Accepted.Round, a.Round)
	if !a.Accepted.IsZero() {
		n.acceptedAge = cfg.StaleAccepted // it waited for as long as we were down
	}
	n.catchTimer = 1 + cfg.Rand.Intn(cfg.CatchupInterval)
	return n, nil
}

// enterEpoch resets per-instance bookkeeping for n.view.Epoch.
func (n *Node) enterEpoch() {
	n.dropStale = false
	n.acceptors = Acceptors(n.view, n.cfg.CouncilSize)
	n.accIdx = make(map[string]int, len(n.acceptors))
	for i, m := range n.acceptors {
		n.accIdx[m.Name] = i
	}
	n.quorum = QuorumSize(len(n.acceptors), n.cfg.Quorum)
	n.maxRound = 0
	n.idle = 0
}

// View returns a copy of the current view.
func (n *Node) View() View { return n.view.Clone() }

// SharedView returns the current view without copying it. The caller must
// not change it. It stays as it is when the node moves to the next epoch:
// the node replaces its view, it never changes one in place.
func (n *Node) SharedView() View { return n.view }

// Epoch returns the current view's epoch: the instance in progress.
func (n *Node) Epoch() uint64 { return n.view.Epoch }

// Status returns a summary of the node.
func (n *Node) Status() Status {
	s := Status{
		ID: n.cfg.ID, Epoch: n.view.Epoch, Acceptor: n.st, IsMember: n.view.Contains(n.cfg.ID),
		Acceptors: len(n.acceptors), Quorum: n.quorum, Head: n.head,
		Phase: n.prop.phase, Ballot: n.prop.ballot, Proposal: n.prop.change,
		AcceptedStale: n.staleAccepted() && n.dropStale,
	}
	s.Acceptor.Value = s.Acceptor.Value.clone()
	return s
}

// Ready returns and clears what the caller must persist, send and report.
func (n *Node) Ready() Ready {
	rd := n.rd
	n.rd = Ready{}
	if n.dirty {
		st := n.st
		st.Value = st.Value.clone()
		rd.Persist = &st
		n.dirty = false
	}
	return rd
}

// Propose starts a proposal of c for the current epoch. The proposer fills
// c.Evidence. It fails when this node is not a member, already proposes, or
// c does not apply to the current view.
func (n *Node) Propose(c Change) error {
	if n.view.Epoch == 0 || !n.view.Contains(n.cfg.ID) {
		return ErrNotMember
	}
	if n.prop.phase != Idle {
		return ErrInFlight
	}
	c.Evidence = Evidence{}
	if _, err := n.view.Apply(c); err != nil {
		return err
	}
	n.prop = proposal{own: true, change: c}
	n.startPhase1()
	n.drain()
	return nil
}

// Force decides c for the current epoch without a quorum, and tells the
// other members of the view. It is the operator's way out after a quorum
// of the view is lost for good (as etcd's --force-new-cluster): it breaks
// Paxos' promise if the lost acceptors chose another value for this epoch,
// so they must rejoin with empty stores. The caller makes sure it is asked
// for by name.
func (n *Node) Force(c Change) error {
	if n.view.Epoch == 0 || !n.view.Contains(n.cfg.ID) {
		return ErrNotMember
	}
	if err := c.Validate(); err != nil {
		return err
	}
	if _, err := n.view.Apply(c); err != nil {
		return err
	}
	c.Evidence = Evidence{Proposer: n.cfg.ID}
	n.prop = proposal{}
	d := Decision{Epoch: n.view.Epoch, Ballot: Ballot{Round: max(n.maxRound, n.st.Promised.Round, n.st.Round) + 1, Node: n.cfg.ID}, Change: c}
	for _, m := range n.view.Members {
		if m.Name != n.cfg.ID {
			n.send(Message{Type: MsgDecided, To: m.Name, Epoch: d.Epoch, Ballot: d.Ballot, Change: d.Change, Head: d.Epoch + 1})
		}
	}
	err := n.learn(d, "")
	n.drain()
	return err
}

// Learn feeds a decision heard out of band (the agent's serf user event).
// A decision beyond the next epoch is buffered and starts a catch-up.
func (n *Node) Learn(d Decision) error {
	err := n.learn(d, "")
	n.drain()
	return err
}

// CatchUp asks peer for what this node is missing (for example the seed a
// new node joined through, which has no view to pick peers from).
func (n *Node) CatchUp(peer string) {
	if peer == "" || peer == n.cfg.ID {
		return
	}
	n.reqTimer = 0
	n.requestCatchup(peer)
}

// Vouches reports whether this node vouches for name's membership, which
// a member's lease counts: this node's view holds name, and it has not
// accepted a value that removes name and is still undecided here. An
// acceptor that accepted the removal may be one of the quorum that chose
// it, so its answers must not keep the removed member going; once it
// learns the decision its view no longer holds the member.
func (n *Node) Vouches(name string) bool {
	if !n.voter() || !n.view.Contains(name) {
		// An acceptor that lost its state (VoteFrom) may have forgotten
		// that it accepted name's removal: it vouches again only once a
		// view has added it back.
		return false
	}
	v := n.st.Value
	return n.st.Accepted.IsZero() || v.Kind != Remove || v.Member.Name != name
}

// Accepted is the ballot of the value this node accepted in the current
// instance (zero: none), and whether it votes in it: what Vouches says
// changes only with these and the epoch.
func (n *Node) Accepted() (Ballot, bool) { return n.st.Accepted, n.voter() }

// Behind tells the node that peer's view is at epoch (an answer from it
// said so): if that is ahead of this node's, it asks peer for what it is
// missing, at most once a CatchupInterval.
func (n *Node) Behind(peer string, epoch uint64) {
	if epoch <= n.view.Epoch || peer == "" || peer == n.cfg.ID {
		return
	}
	n.head = max(n.head, epoch)
	n.requestCatchup(peer)
	n.drain()
}

// Step processes one message received from a peer. Errors report stale,
// foreign or malformed messages; they never leave the node inconsistent.
func (n *Node) Step(m Message) error {
	if m.To != "" && m.To != n.cfg.ID {
		return ErrMisdirected
	}
	if m.From == "" || m.From == n.cfg.ID {
		return fmt.Errorf("%w: sender %q", ErrInvalid, m.From)
	}
	err := n.step(m)
	n.drain()
	return err
}

// Tick advances the node's clock by one tick.
func (n *Node) Tick() {
	if !n.st.Accepted.IsZero() {
		n.acceptedAge++
	}
	p := &n.prop
	switch p.phase {
	case Preparing, Accepting:
		p.timer++
		if p.phase == Preparing && !p.anyQuorum && 2*p.timer >= n.cfg.ProposalTimeout {
			// Half the phase is gone without a quorum of promises free of
			// stale values: settle for any quorum.
			p.anyQuorum = true
			_ = n.tryAccept()
		}
		if p.phase != Idle && p.timer >= n.cfg.ProposalTimeout {
			n.backoff()
		}
	case Backoff:
		p.wait--
		if p.wait <= 0 {
			n.startPhase1()
		}
	case Idle:
		// Paxos needs someone to finish an instance whose proposer
		// vanished: an acceptor holding an undecided value drives it.
		if !n.st.Accepted.IsZero() && n.isAcceptor(n.cfg.ID) && n.voter() && !n.dropStale {
			n.idle++
			if n.idleLimit == 0 {
				n.idleLimit = n.cfg.ProposalTimeout + n.randBackoff()
			}
			if n.idle >= n.idleLimit {
				n.idle, n.idleLimit = 0, 0
				n.prop = proposal{change: n.st.Value.clone()}
				n.startPhase1()
			}
		}
	}
	if n.reqTimer > 0 {
		n.reqTimer--
	}
	n.catchTimer--
	if n.catchTimer <= 0 {
		n.catchTimer = n.cfg.CatchupInterval
		n.antiEntropy()
	}
	n.drain()
}

// Quiet reports whether nothing in the node counts ticks but its periodic
// catch-up: no proposal of its own, no accepted value waiting for its
// decision, no catch-up asked and not yet answered, no snapshot being
// fetched, no decision known beyond its view. The caller may then tick it
// less often, and tells it with Skip how many ticks went by.
func (n *Node) Quiet() bool {
	return n.prop.phase == Idle && n.st.Accepted.IsZero() && n.reqTimer == 0 &&
		n.snap == nil && n.head <= n.view.Epoch && len(n.local) == 0
}

// CatchupIn is how many ticks from now the node sends its next periodic
// catch-up: a caller that ticks a quiet node less often ticks it then.
func (n *Node) CatchupIn() int { return max(n.catchTimer, 1) }

// Skip counts k ticks that went by without Tick while the node was Quiet,
// so that its periodic catch-up keeps its pace in time. Nothing else in a
// quiet node counts ticks.
func (n *Node) Skip(k int) {
	if k <= 0 {
		return
	}
	n.catchTimer -= k
	if n.catchTimer <= 0 {
		n.catchTimer = n.cfg.CatchupInterval
		n.antiEntropy()
	}
}

func (n *Node) randBackoff() int {
	return n.cfg.BackoffMin + n.cfg.Rand.Intn(n.cfg.BackoffMax-n.cfg.BackoffMin+1)
}

func (n *Node) isAcceptor(name string) bool {
	_, ok := n.accIdx[name]
	return ok
}

// staleAccepted reports whether this node's accepted value has waited
// undecided for Config.StaleAccepted ticks (or since before a restart).
func (n *Node) staleAccepted() bool {
	return !n.st.Accepted.IsZero() && n.cfg.StaleAccepted > 0 && n.acceptedAge >= n.cfg.StaleAccepted
}

// voter reports whether this node may vote in the current instance
// (AcceptorState.VoteFrom).
func (n *Node) voter() bool { return n.view.Epoch >= n.st.VoteFrom }

// noteSelf makes a node that may not vote yet a voter from epoch e on,
// once view v holds its current incarnation.
func (n *Node) noteSelf(v View, e uint64) {
	if n.st.VoteFrom != NoVote || n.cfg.Boot == "" {
		return
	}
	if m, ok := v.Lookup(n.cfg.ID); ok && m.Boot == n.cfg.Boot {
		n.st.VoteFrom = e
		n.dirty = true
	}
}

func (n *Node) send(m Message) {
	m.From = n.cfg.ID
	if m.To == n.cfg.ID {
		n.local = append(n.local, m)
		return
	}
	n.rd.Messages = append(n.rd.Messages, m)
}

// drain delivers messages a node sent to itself (its own promise and
// accept as an acceptor). They need no persistence barrier: anything they
// cause leaves in the same Ready, after Persist.
func (n *Node) drain() {
	for len(n.local) > 0 {
		m := n.local[0]
		n.local = n.local[1:]
		_ = n.step(m)
	}
	n.local = n.local[:0]
}

func (n *Node) step(m Message) error {
	switch m.Type {
	case MsgPrepare, MsgAccept, MsgPromise, MsgNack, MsgAccepted:
		if m.Epoch > n.view.Epoch {
			n.head = max(n.head, m.Epoch)
			n.requestCatchup(m.From)
			return ErrFuture
		}
		if m.Epoch < n.view.Epoch {
			if m.Type == MsgPrepare || m.Type == MsgAccept {
				n.helpBehind(m.From, m.Epoch)
			}
			return ErrStale
		}
		if m.Ballot.Round == 0 || m.Ballot.Node == "" {
			return fmt.Errorf("%w: zero ballot", ErrInvalid)
		}
		switch m.Type {
		case MsgPrepare:
			return n.onPrepare(m)
		case MsgAccept:
			return n.onAccept(m)
		case MsgPromise:
			return n.onPromise(m)
		case MsgNack:
			return n.onNack(m)
		default:
			return n.onAccepted(m)
		}
	case MsgDecided:
		n.head = max(n.head, m.Head)
		return n.learn(Decision{Epoch: m.Epoch, Ballot: m.Ballot, Change: m.Change}, m.From)
	case MsgCatchup:
		return n.onCatchup(m)
	case MsgSnapshot:
		return n.onSnapshot(m)
	}
	return fmt.Errorf("%w: message type %d", ErrInvalid, m.Type)
}

// --- acceptor (Paxos Made Simple §2.2, P1a and P2c) ---

// admit is what an acceptor checks of a prepare or an accept before it
// acts: that it is an acceptor of this instance, that the ballot is the
// sender's own, that the change is well formed; it notes the ballot, and
// nacks one lower than its promise (P1a, P2c). ok is false when the message
// goes no further.
func (n *Node) admit(m Message) (ok bool, err error) {
	if !n.isAcceptor(n.cfg.ID) || !n.voter() {
		return false, ErrNotAcceptor
	}
	if m.Ballot.Node != m.From {
		return false, fmt.Errorf("%w: ballot %s from %s", ErrInvalid, m.Ballot, m.From)
	}
	if err := m.Change.Validate(); err != nil {
		return false, err
	}
	n.seeBallot(m)
	if m.Ballot.Less(n.st.Promised) {
		n.send(Message{Type: MsgNack, To: m.From, Epoch: m.Epoch, Ballot: m.Ballot, Accepted: n.st.Promised})
		return false, nil
	}
	return true, nil
}

func (n *Node) onPrepare(m Message) error {
	if ok, err := n.admit(m); !ok {
		return err
	}
	if n.st.Promised != m.Ballot {
		n.st.Promised = m.Ballot
		n.dirty = true
	}
	verdict := false
	if _, err := n.view.Apply(m.Change); err == nil {
		verdict = n.cfg.Verdict.Verdict(m.Change)
	}
	reply := Message{Type: MsgPromise, To: m.From, Epoch: m.Epoch, Ballot: m.Ballot, Verdict: verdict}
	if verdict {
		reply.Note = n.note(m.Change)
	}
	if !n.st.Accepted.IsZero() {
		reply.Accepted = n.st.Accepted
		reply.Change = n.st.Value.clone()
		reply.Stale = n.staleAccepted()
	}
	n.send(reply)
	return nil
}

func (n *Node) onAccept(m Message) error {
	if ok, err := n.admit(m); !ok {
		return err
	}
	if n.st.Accepted == m.Ballot && !n.st.Value.Equal(m.Change) {
		// One ballot, one value: a proposer never sends two.
		return fmt.Errorf("%w: two values for ballot %s", ErrConflict, m.Ballot)
	}
	if n.st.Promised != m.Ballot || n.st.Accepted != m.Ballot {
		n.st.Promised = m.Ballot
		n.st.Accepted = m.Ballot
		n.st.Value = m.Change.clone()
		n.dirty = true
		n.acceptedAge, n.dropStale = 0, false
	}
	n.send(Message{Type: MsgAccepted, To: m.From, Epoch: m.Epoch, Ballot: m.Ballot})
	return nil
}

// seeBallot notes another proposer's activity in this instance and yields
// to a higher ballot: fewer duelling proposers means progress (Paxos Made
// Simple §2.4). A node only re-driving an accepted value drops out, since
// the other proposer carries that value forward anyway (P2c); a node with
// its caller's proposal waits a full ProposalTimeout plus a random backoff
// from the last sign of the other proposer before it tries again.
func (n *Node) seeBallot(m Message) {
	n.maxRound = max(n.maxRound, m.Ballot.Round)
	n.idle = 0
	p := &n.prop
	if m.From == n.cfg.ID || p.phase == Idle || !p.ballot.Less(m.Ballot) {
		return
	}
	if !p.own {
		n.prop = proposal{}
		return
	}
	n.yield()
}

// yield backs off long enough for a higher ballot to finish its phases.
func (n *Node) yield() {
	n.prop.phase = Backoff
	n.prop.wait = n.cfg.ProposalTimeout + n.randBackoff()
}

// --- proposer (Paxos Made Simple §2.2, P2b; §2.4 progress) ---

func (n *Node) startPhase1() {
	p := &n.prop
	round := max(n.maxRound, n.st.Round) + 1
	n.st.Round = round // durable before the prepare leaves: no ballot reuse after a restart
	n.dirty = true
	n.maxRound = round
	words := (len(n.acceptors) + 7) / 8
	*p = proposal{
		own: p.own, change: p.change,
		phase:    Preparing,
		ballot:   Ballot{Round: round, Node: n.cfg.ID},
		promised: make([]byte, words), agreed: make([]byte, words), accepted: make([]byte, words),
		notes: make([][]byte, len(n.acceptors)),
	}
	for _, a := range n.acceptors {
		n.send(Message{Type: MsgPrepare, To: a.Name, Epoch: n.view.Epoch, Ballot: p.ballot, Change: p.change})
	}
}

// note is Config.Note's description of c, cut to MaxNote bytes; nil
// without a Note.
func (n *Node) note(c Change) []byte {
	if n.cfg.Note == nil {
		return nil
	}
	b := n.cfg.Note(c)
	if len(b) > MaxNote {
		b = b[:MaxNote]
	}
	return slices.Clone(b)
}

func (n *Node) backoff() {
	n.prop.phase = Backoff
	n.prop.wait = n.randBackoff()
}

func (n *Node) abandon() {
	if n.prop.phase != Idle && n.prop.own {
		n.rd.Abandoned = append(n.rd.Abandoned, n.prop.change)
	}
	n.prop = proposal{}
}

func setBit(b []byte, i int) bool {
	if b[i/8]&(1<<(i%8)) != 0 {
		return false
	}
	b[i/8] |= 1 << (i % 8)
	return true
}

func (n *Node) onPromise(m Message) error {
	p := &n.prop
	if p.phase != Preparing || m.Ballot != p.ballot {
		return ErrStale
	}
	i, ok := n.accIdx[m.From]
	if !ok {
		return ErrNotAcceptor
	}
	if !m.Accepted.IsZero() {
		if err := m.Change.Validate(); err != nil {
			return err
		}
	}
	if !setBit(p.promised, i) {
		return nil // duplicate
	}
	p.nPromise++
	if m.Verdict {
		setBit(p.agreed, i)
		p.nAgree++
		if len(m.Note) <= MaxNote {
			p.notes[i] = slices.Clone(m.Note)
		}
	} else {
		p.nDisagree++
	}
	if !m.Accepted.IsZero() && p.highest.Less(m.Accepted) {
		p.highest = m.Accepted
		p.highestVal = m.Change.clone()
	}
	if !m.Stale {
		p.nFresh++
		if !m.Accepted.IsZero() && p.highestFresh.Less(m.Accepted) {
			p.highestFresh = m.Accepted
			p.highestFreshV = m.Change.clone()
		}
	}
	return n.tryAccept()
}

// tryAccept moves the proposer to phase 2 once its promises allow it.
//
// P2b (Paxos Made Simple §2.2) asks for some majority S of acceptors whose
// highest accepted value the proposer carries forward, or any value if S
// accepted none. Any quorum of promises is such an S. The proposer prefers
// S = the promises that report no stale value: a removal one acceptor
// accepted before its proposer died is then not decided minutes later
// against a node healthy since. This is safe: a value chosen by a quorum Q
// is reported by every member of S ∩ Q (not empty); if all of Q report it
// stale, fewer than a quorum are free of it and the proposer waits, then
// settles for any quorum (anyQuorum) and carries the highest value.
func (n *Node) tryAccept() error {
	p := &n.prop
	if p.phase != Preparing || p.nPromise < n.quorum {
		return nil
	}
	highest, highestVal := p.highest, p.highestVal
	switch {
	case p.nFresh >= n.quorum:
		highest, highestVal = p.highestFresh, p.highestFreshV
	case p.anyQuorum || p.nPromise == len(n.acceptors):
	default:
		return nil // wait for more promises free of stale values
	}
	switch {
	case !highest.IsZero():
		// P2b: a value may already be chosen; carry the highest accepted
		// one forward whatever the verdicts say.
		p.value = highestVal
	case p.nAgree >= n.quorum:
		p.value = p.change.clone()
		p.value.Evidence = Evidence{Proposer: n.cfg.ID, Votes: slices.Clone(p.agreed), ProposerNote: n.note(p.change)}
		for i, note := range p.notes {
			if len(note) > 0 && len(p.value.Evidence.Notes) < MaxNotes {
				p.value.Evidence.Notes = append(p.value.Evidence.Notes, Note{Acceptor: uint8(i), Data: note})
			}
		}
	case p.nDisagree > len(n.acceptors)-n.quorum:
		if !p.own && n.staleAccepted() {
			// This node drove its stale value, a quorum free of it was
			// found, and the evidence is no longer there: drop it.
			n.dropStale = true
		}
		n.abandon() // no quorum of agreeing verdicts is possible
		return nil
	default:
		return nil // wait for more promises
	}
	p.phase = Accepting
	p.timer = 0
	for _, a := range n.acceptors {
		n.send(Message{Type: MsgAccept, To: a.Name, Epoch: n.view.Epoch, Ballot: p.ballot, Change: p.value})
	}
	return nil
}

func (n *Node) onNack(m Message) error {
	n.maxRound = max(n.maxRound, m.Accepted.Round)
	p := &n.prop
	if (p.phase != Preparing && p.phase != Accepting) || m.Ballot != p.ballot {
		return ErrStale
	}
	if !n.isAcceptor(m.From) {
		return ErrNotAcceptor
	}
	n.yield() // a higher ballot is active
	return nil
}

func (n *Node) onAccepted(m Message) error {
	p := &n.prop
	if p.phase != Accepting || m.Ballot != p.ballot {
		return ErrStale
	}
	i, ok := n.accIdx[m.From]
	if !ok {
		return ErrNotAcceptor
	}
	if !setBit(p.accepted, i) {
		return nil
	}
	p.nAcc++
	if p.nAcc < n.quorum {
		return nil
	}
	d := Decision{Epoch: n.view.Epoch, Ballot: p.ballot, Change: p.value}
	sent := map[string]bool{n.cfg.ID: true}
	tell := func(name string) {
		if name != "" && !sent[name] {
			sent[name] = true
			n.send(Message{Type: MsgDecided, To: name, Epoch: d.Epoch, Ballot: d.Ballot, Change: d.Change, Head: d.Epoch + 1})
		}
	}
	for _, a := range n.acceptors {
		tell(a.Name)
	}
	tell(d.Change.Member.Name)
	tell(d.Change.Executor)
	if len(n.view.Members) <= n.cfg.TellAll {
		for _, m := range n.view.Members {
			tell(m.Name)
		}
	}
	return n.learn(d, "")
}

// --- learner ---

func (n *Node) logEntry(e uint64) (Decision, bool) {
	if len(n.log) == 0 || e < n.log[0].Epoch || e >= n.view.Epoch {
		return Decision{}, false
	}
	return n.log[e-n.log[0].Epoch], true
}

func (n *Node) learn(d Decision, from string) error {
	if d.Epoch < n.view.Epoch {
		if old, ok := n.logEntry(d.Epoch); ok && !old.Change.Equal(d.Change) {
			return fmt.Errorf("%w: epoch %d", ErrConflict, d.Epoch)
		}
		return nil
	}
	if err := d.Change.Validate(); err != nil {
		return err
	}
	if d.Epoch == 0 {
		return fmt.Errorf("%w: decision for epoch 0", ErrInvalid)
	}
	if d.Epoch > n.view.Epoch {
		n.head = max(n.head, d.Epoch+1)
		if _, ok := n.pending[d.Epoch]; !ok && len(n.pending) < maxPending {
			d.Change = d.Change.clone()
			n.pending[d.Epoch] = d
		}
		if from == "" {
			from = n.randomPeer()
		}
		n.requestCatchup(from)
		return nil
	}
	if err := n.apply(d); err != nil {
		return err
	}
	for {
		next, ok := n.pending[n.view.Epoch]
		if !ok {
			break
		}
		delete(n.pending, n.view.Epoch)
		if n.apply(next) != nil {
			break
		}
	}
	for e := range n.pending {
		if e < n.view.Epoch {
			delete(n.pending, e)
		}
	}
	n.afterProgress(from)
	return nil
}

// afterProgress continues a catch-up once a batch has been consumed.
func (n *Node) afterProgress(from string) {
	if n.view.Epoch >= n.head {
		n.reqTimer = 0
		return
	}
	if n.reqTimer > 0 && n.view.Epoch >= n.reqFrom+catchupBatch {
		n.reqTimer = 0
	}
	if from == "" {
		from = n.reqPeer
	}
	if from == "" {
		from = n.randomPeer()
	}
	n.requestCatchup(from)
}

func (n *Node) apply(d Decision) error {
	nv, err := n.view.Apply(d.Change)
	if err != nil {
		return fmt.Errorf("%w: decision e%d: %v", ErrConflict, d.Epoch, err)
	}
	d.Change = d.Change.clone()
	n.log = append(n.log, d)
	if len(n.log) > n.cfg.LogTail {
		n.log = slices.Delete(n.log, 0, len(n.log)-n.cfg.LogTail)
	}
	n.rd.Decided = append(n.rd.Decided, d)
	if n.prop.phase != Idle && n.prop.change.Same(d.Change) {
		n.prop = proposal{} // ours (or the one we drove) won
	}
	n.abandon()
	n.view = nv
	n.head = max(n.head, nv.Epoch)
	n.st = AcceptorState{Epoch: nv.Epoch, VoteFrom: n.st.VoteFrom}
	n.dirty = true
	n.noteSelf(nv, nv.Epoch)
	n.enterEpoch()
	return nil
}

// --- catch-up and snapshots ---

func (n *Node) randomPeer() string {
	k := len(n.view.Members)
	if n.view.Contains(n.cfg.ID) {
		k--
	}
	if k <= 0 {
		return n.reqPeer
	}
	i := n.cfg.Rand.Intn(k)
	for _, m := range n.view.Members {
		if m.Name == n.cfg.ID {
			continue
		}
		if i == 0 {
			return m.Name
		}
		i--
	}
	return ""
}

func (n *Node) antiEntropy() {
	if n.snap != nil {
		n.reqTimer = 0
		n.requestCatchup(n.snap.peer)
		return
	}
	peer := n.randomPeer()
	if n.head > n.view.Epoch && n.reqPeer != "" {
		peer = n.reqPeer
	}
	if peer == "" || peer == n.cfg.ID {
		return
	}
	n.send(Message{Type: MsgCatchup, To: peer, Epoch: n.view.Epoch})
}

func (n *Node) requestCatchup(peer string) {
	if peer == "" || peer == n.cfg.ID || n.reqTimer > 0 {
		return
	}
	n.reqTimer = n.cfg.CatchupInterval
	n.reqPeer = peer
	n.reqFrom = n.view.Epoch
	m := Message{Type: MsgCatchup, To: peer, Epoch: n.view.Epoch}
	if n.snap != nil {
		m.SnapEpoch = n.snap.epoch
		m.Offset = uint32(n.snap.firstMissing())
		n.snap.burst = pageBurst
	}
	n.send(m)
}

// helpBehind answers a message from an older instance with its decision.
func (n *Node) helpBehind(peer string, e uint64) {
	if d, ok := n.logEntry(e); ok {
		n.send(Message{Type: MsgDecided, To: peer, Epoch: d.Epoch, Ballot: d.Ballot, Change: d.Change, Head: n.view.Epoch})
	}
}

func (n *Node) onCatchup(m Message) error {
	switch {
	case m.Epoch > n.view.Epoch:
		n.head = max(n.head, m.Epoch)
		n.requestCatchup(m.From)
		return nil
	case m.Epoch == n.view.Epoch || n.view.Epoch == 0:
		return nil
	}
	if m.SnapEpoch == n.view.Epoch && m.Offset > 0 {
		n.sendPages(m.From, int(m.Offset))
		return nil
	}
	if _, ok := n.logEntry(m.Epoch); ok && m.Epoch > 0 {
		for e := m.Epoch; e < n.view.Epoch && e < m.Epoch+catchupBatch; e++ {
			n.helpBehind(m.From, e)
		}
		return nil
	}
	n.sendPages(m.From, 0)
	return nil
}

func memberSize(m Member) int { return 3 + len(m.Name) + len(m.Boot) + len(m.Addr) }

func (n *Node) sendPages(to string, off int) {
	ms := n.view.Members
	for page := 0; page < pageBurst && off < len(ms); page++ {
		end, size := off, 0
		for end < len(ms) && end-off < maxPageCount && size+memberSize(ms[end]) <= pageBudget {
			size += memberSize(ms[end])
			end++
		}
		n.send(Message{
			Type: MsgSnapshot, To: to, Epoch: n.view.Epoch, Head: n.view.Epoch,
			Total: uint32(len(ms)), Offset: uint32(off), Members: slices.Clone(ms[off:end]),
		})
		off = end
	}
}

func (s *snapAsm) firstMissing() int {
	for i := range s.members {
		if s.have[i/8]&(1<<(i%8)) == 0 {
			return i
		}
	}
	return len(s.members)
}

func (n *Node) onSnapshot(m Message) error {
	n.head = max(n.head, m.Head, m.Epoch)
	if m.Epoch <= n.view.Epoch {
		return ErrStale
	}
	if m.Total == 0 || m.Total > MaxViewSize || len(m.Members) == 0 || int(m.Offset)+len(m.Members) > int(m.Total) {
		return fmt.Errorf("%w: snapshot page [%d+%d]/%d", ErrInvalid, m.Offset, len(m.Members), m.Total)
	}
	s := n.snap
	if s == nil || m.Epoch > s.epoch {
		s = &snapAsm{epoch: m.Epoch, members: make([]Member, m.Total), have: make([]byte, (m.Total+7)/8), burst: pageBurst}
		n.snap = s
	}
	if m.Epoch < s.epoch {
		return ErrStale
	}
	if int(m.Total) != len(s.members) {
		return fmt.Errorf("%w: snapshot total changed", ErrInvalid)
	}
	s.peer = m.From
	for i, mb := range m.Members {
		j := int(m.Offset) + i
		if setBit(s.have, j) {
			s.members[j] = mb
			s.n++
		}
	}
	if s.n < len(s.members) {
		s.burst--
		if s.burst <= 0 {
			n.reqTimer = 0
			n.requestCatchup(m.From)
		}
		return nil
	}
	v := View{Epoch: s.epoch, Members: s.members}
	n.snap = nil
	if err := v.Validate(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	n.install(v)
	return nil
}

func (n *Node) install(v View) {
	n.abandon()
	n.view = v
	n.log = nil
	n.st = AcceptorState{Epoch: v.Epoch, VoteFrom: n.st.VoteFrom}
	n.dirty = true
	n.noteSelf(v, v.Epoch)
	n.rd.Decided = nil // subsumed by the snapshot
	n.rd.Snapshot = &View{Epoch: v.Epoch, Members: slices.Clone(v.Members)}
	n.head = max(n.head, v.Epoch)
	n.enterEpoch()
	for e := range n.pending {
		if e < v.Epoch {
			delete(n.pending, e)
		}
	}
	if d, ok := n.pending[v.Epoch]; ok {
		delete(n.pending, v.Epoch)
		_ = n.learn(d, "")
	}
	n.afterProgress(n.reqPeer)
}
