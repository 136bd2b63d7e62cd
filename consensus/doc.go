// Package consensus decides every change of vigil's agreed membership view.
//
// # Model
//
// The view log is a sequence of single-decree Paxos instances (Lamport,
// "Paxos Made Simple", 2001). Instance e decides the change that turns view e
// into view e+1: remove X@boot (failed, with the executor of the recovery
// handler, or left) or add X@boot (an add of a name already present with
// another boot replaces that incarnation, so a restarted agent rejoins in one
// decision). Ballots are ordered by (round, node name).
//
// The acceptors of instance e are the members of view e, or, when the view is
// larger than Config.CouncilSize (and always beyond MaxAcceptors), a council
// chosen by rendezvous hashing of the members' names (Acceptors): stable
// while its members stay. Nodes that are not acceptors
// of e are learners only for e. Every node must use the same Quorum rule and
// CouncilSize.
//
// Phase 1 (§2.2, "prepare"): the proposer sends Prepare(e, ballot, change).
// An acceptor that has promised no higher ballot promises and returns its
// accepted value, if any, and its own verdict on the change from
// Config.Verdict. A proposer free to choose its value (no promise reports an
// accepted value) goes to phase 2 only with a quorum of agreeing verdicts,
// recording them as Evidence; if that is no longer possible it gives the
// proposal up (Ready.Abandoned). If a promise reports an accepted value, the
// proposer carries the highest one forward whatever the verdicts say (§2.2,
// P2c): verdicts only gate a value of the proposer's own, so an instance
// with an accepted value can always finish.
//
// Phase 2 is plain Paxos: Accept(e, ballot, value); an acceptor accepts unless
// it promised a higher ballot. A quorum of Accepted decides; the proposer
// sends Decided to the acceptors, the subject and the executor. An acceptor
// holding an accepted but undecided value for ProposalTimeout plus a random
// backoff drives the instance itself, so a vanished proposer does not block
// it. Competing proposers retry with a higher ballot after a random backoff
// (§2.4: progress needs a distinguished proposer; randomization stands in).
//
// Learners apply decisions in epoch order. A node that hears of a later epoch
// (any message, a Decided from a peer, or Learn from an announcement)
// buffers what it got and asks that peer with Catchup: the peer answers with
// up to 8 Decided messages from its log tail, or, when the requester is
// older than the tail (or has no view at all), with the current view in
// Snapshot pages of at most 1 KiB, fetched 8 pages per request. Every node
// also sends a Catchup to a random member each CatchupInterval ticks, so a
// node that missed everything still converges.
//
// # Stale values and forgetful acceptors
//
// An accepted value that waits undecided for Config.StaleAccepted ticks, or
// that an acceptor restored after a restart, is stale: promises say so, and
// a proposer uses a quorum of promises without stale values as its P2b set
// when it has one (tryAccept). A chosen value was accepted by a quorum,
// which meets every other quorum, so it is still carried forward; only a
// value that a minority accepted can be passed over.
//
// A node restored from an empty store (PersistentState.Fresh) may have
// promised something under the same name before and forgotten it, so it
// does not vote (AcceptorState.VoteFrom) until the view adds its current
// incarnation, Config.Boot, and then only from the next epoch on.
//
// # Leases
//
// LeaseExpiry and RecoveryDelay are the arithmetic of the caller's leases
// on membership: see their comments for the argument and its assumptions.
//
// # Why any two quorums intersect
//
// For N acceptors, Majority uses q = ⌊N/2⌋+1 and TwoThirds uses
// q = ⌊(2N−1)/3⌋+1. In both, 2q > N: for majority 2(⌊N/2⌋+1) ≥ N+1; for two
// thirds ⌊x⌋+1 > x gives 3q > 2N−1, so 3q ≥ 2N and 2q ≥ 4N/3 > N. Two
// quorums Q1, Q2 of the same N acceptors have |Q1 ∩ Q2| ≥ 2q − N ≥ 1, so they
// share an acceptor. That shared acceptor is what carries a chosen value
// into every later ballot (§2.2, P2c), hence at most one value is decided per
// epoch. The acceptor set of instance e is a function of view e alone, and
// view e is itself decided, so every proposer of e counts quorums over the
// same set.
//
// # The caller's obligations
//
//   - Persist before send: make Ready.Persist durable (fsync), together
//     with Ready.Snapshot and Ready.Decided in one transaction, before sending
//     any of Ready.Messages (§2.3: an acceptor must remember its promise and
//     acceptance across a restart). A crash before that point must lose the
//     messages too.
//   - Restore with NewNode from exactly what was made durable: the latest
//     AcceptorState, the current view and optionally the log tail.
//   - Feed verdicts: Config.Verdict is called synchronously while a Prepare
//     is stepped; make the evidence about the subject fresh before stepping
//     it, and never call back into the Node from it.
//   - Tick at a steady cadence; every duration in Config is in ticks and
//     should cover a few message round trips.
//   - One goroutine owns the Node; Config.Rand is used only by it.
//   - Deliver messages with Step, and give a brand-new node a peer with
//     CatchUp. Learn trusts the decision it is given: feed it only decisions
//     from members of the view (the agent uses CatchUp for announcements
//     heard by gossip, which anyone can send).
//
// The package is pure: no network, clock, goroutines or logging.
package consensus
