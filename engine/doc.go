// Package engine holds every decision a vigil agent makes, over the pure
// cores scoring, suspicion and consensus: which peers it probes and when,
// what a probe result means, whether it trusts its own evidence (local
// health), when it proposes a view change and what it votes, its lease on
// its membership and when it fences, who executes a recovery and who takes
// it over, the recovery journal, and which handler events a decision makes.
//
// It is to the whole agent what consensus.Node is to Paxos: deterministic,
// with no network, clock, goroutines or logging. Every input carries the
// time (the caller's monotonic clock): Probe, Probed, Bursted, Message,
// Gossip, SetMembers, DecisionAnnounced, Tick, Reported, JournalChecked,
// JournalPut, ForceRemove, CheckLease. Randomness comes from Config.Rand.
//
// # The caller's obligations
//
// After every input the caller takes Ready and, in this order:
//
//  1. makes Acceptor, Decided, View, Meta and Jobs durable in one write
//     (fsynced) before anything else of the Ready is done. A write that
//     fails stops the agent: the engine's memory is then ahead of the disk,
//     and nothing that depends on it may leave (no vote that is not on
//     disk). JournalPut's answer likewise leaves only once the Ready that
//     follows it is durable.
//  2. records Boot, if set, and publishes the node's tags when Tags is set;
//     gives its pongs what Vouches says when VouchRev has changed (before
//     the Messages leave: an Accepted of a removal among them must not
//     go while the pongs still vouch for the member removed);
//  3. sends Messages to their addressees (consensus.Encode), kills the
//     runners of Kill, runs the fence handler for each of Fences, announces
//     Announce as serf user events, sends Pings and Bursts and reports each
//     as a ProbeResult or BurstResult, queues Events for the operator's
//     handlers, asks AskJournal of the cluster (JournalChecked), sends each
//     Replicate's entry, and starts the runners of Run (Reported);
//  4. logs Logs;
//  5. sleeps until NextProbe or NextTick, whichever comes first (NextTick
//     is TickInterval after the last Tick while anything is in flight, up
//     to IdleTick when the engine is quiet; an input can bring it closer,
//     so the caller asks again after every input).
//
// The caller gives the time of now, never a timer's time: a timer that
// fired before a pause must not hide that the lease ran out during it. It
// calls CheckLease before anything that is not an input (an API request).
// It gives SetMembers serf's member list after gossip events and at least
// once a second.
//
// # What is proved, and how
//
// sim_test.go runs 3 to 25 engines on a simulated network and clock with
// loss, delay, duplication, partitions both ways and one way, pauses,
// crashes, restarts with and without their data dir, failed writes and
// clock rates within 4 % of real time, and checks the safety properties of
// README's "Guarantees" after every step; scenario_test.go runs the cases
// of the safety issue through it.
package engine
