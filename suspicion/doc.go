// Package suspicion is the per-peer failure-suspicion state machine: from
// this node's own probe results, the scorer's verdict on each sample and
// serf's opinion, it decides whether a peer is Healthy, Suspect or Accused,
// when this node should propose the peer's removal, and what this node
// answers when another node's proposal asks for its verdict.
//
// The package is pure: no clock, no goroutines, no network, no logging.
// Every method that depends on time takes now, a monotonic offset
// (time.Duration) chosen by the caller; a now earlier than one already seen
// is treated as equal to it. Methods return what happened (a Transition);
// the caller logs it.
//
// # Evidence model
//
// Only this node's own pings decide. The two things to tell apart are a
// lossy link, where misses come at random between replies, and a dead or
// stopped peer, where every ping misses. A reply, however late, proves the
// peer alive, so the evidence is the run of consecutive misses since the
// last reply. If a link loses round trips independently with probability p,
// a live peer produces a run of n misses from a given start with
// probability p^n: the likelihood ratio of "dead" against "alive behind
// this link" grows by 1/p per miss and nothing else in the sequence
// matters. The bar is the least n with p^n ≤ FalseAccuseProb (RunNeeded):
//
//	assumed loss p                  bar n (FalseAccuseProb 1e-9)
//	0.50 (LossFloor, a clean link)  30
//	0.51 (36 % link + 0.15 margin)  31
//	0.74 (59 % link + 0.15 margin)  69
//	0.85 (LossCeil)                 128
//
// p is estimated per peer: an exponentially weighted average of the miss
// rate (LossWeight 1/64) plus LossMargin 0.15 (about 3.5 standard
// deviations), clamped to [LossFloor, LossCeil]. A run of misses is folded
// into the average only when a reply ends it, so a dead peer's misses never
// raise its own bar, and a live peer's long run raises the bar for the next.
// The floor covers a link whose loss starts suddenly, before the average
// has moved: at the floor bar of 30 a 59 % link gives 0.59^30 = 1.3e-7 per
// run.
//
// What that means for the acceptance test (20 % loss each way on every
// host, round trips failing 36 % or 59 % of the time, 5 observers × 5
// peers, 60 s, nobody failing). With the prober below, a peer behind such a
// link is probed about 35 times a second and starts about 500 runs of
// misses per minute, so 25 pairs start about 12 600 runs a minute:
//
//	36 %: 12 600 × 0.36^31 ≈ 2e-10 false accusations per minute
//	59 %: 12 600 × 0.59^69 ≈ 2e-12 in steady state; if the bar stayed at
//	      the floor of 30 the whole minute, 12 600 × 0.59^30 ≈ 1.6e-3
//
// The simulation measures Σ p^bar over the runs actually started with the
// bar then in force, sudden onsets included: about 5e-5 per 25-pair minute
// at 59 % (see TestSimLossyNoAccusation). A proposal must then collect a
// quorum of acceptors' own verdicts, a second, independent gate.
//
// Misses that are correlated in time (a SIGSTOPped or GC-paused process,
// an overloaded host) defeat any count of pings, so an accusation also
// needs the time since the last reply to reach MinSilence (750 ms, or
// SilenceTimeouts adaptive timeouts if longer), and MinDwell (250 ms) in
// Suspect. A node stopped 100 ms out of every 300 ms never goes more than
// about 130 ms without a reply.
//
// # States
//
//	Healthy → Suspect  a run of consecutive bad results, misses or anomalous
//	                   replies (PFail ≥ SuspectPFail, Threshold > 1, or RTT
//	                   beyond the adaptive timeout), at least SuspectMisses
//	                   (2) and long enough that a live peer makes it with
//	                   probability ≤ SuspectFalseProb (1e-3) when a result
//	                   is bad with the estimated loss + LossMargin + 1 −
//	                   SuspectPFail: 4 on a clean link, 6 at 10 % loss. Or
//	                   serf reports the peer failed. One lost ping is not
//	                   evidence, nor is one reply in the scorer's top 1 %:
//	                   by construction one in a hundred is.
//	Suspect → Accused  run ≥ bar + ⌈penalty × PenaltyMisses⌉, and silence ≥
//	                   MinSilence + penalty × PenaltySilence, and MinDwell in
//	                   Suspect.
//	Accused → Suspect  any reply: the peer is alive; proposals stop at once.
//	Suspect → Healthy  RecoverSuccesses (3) + ⌈penalty⌉ consecutive normal
//	                   replies and RecoverQuiet × (1 + penalty) (500 ms ×)
//	                   without a bad run of SuspectMisses: the hysteresis. A
//	                   peer that stutters every few hundred milliseconds
//	                   stays Suspect rather than flapping; a lone miss at
//	                   the burst rate on a lossy link does not hold it there.
//
// Flap damping, after RFC 2439: each withdrawn suspicion (Suspect → Healthy,
// Accused → Suspect) adds FlapPenalty (1) to a penalty that halves every
// FlapHalfLife (60 s), capped at MaxPenalty (4). The penalty raises the
// accusation bar (up to +12 misses, +500 ms silence) and the recovery bar,
// so a peer that keeps coming back needs more evidence both ways.
//
// serf's member-failed is one observer's timer spread by gossip, over the
// same lossy network: it makes the peer Suspect (so it is probed at the
// burst rate), never accuses, never lowers the bar. The scorer's PFail and
// Threshold likewise only count toward the run that makes a peer Suspect
// and hold up its recovery; a slow reply is still a reply. A reply to a ping
// already counted as a miss (Observation.Late) is the same bad result as
// that miss, not a second one.
//
// # The caller's obligations: the prober
//
// For each monitored peer, with the defaults:
//
//   - Send the next ping ProbeGap(now) after the previous one, asking again
//     after every result: 400 ms (IdleInterval) while the tracker is calm,
//     25 ms (ProbeInterval / Burst, Burst = 8) while it is Urgent (a current
//     miss or anomalous reply, Suspect, Accused, or serf says failed). The
//     first miss must switch to the burst rate at once, not at the next
//     400 ms round: the bar is counted in pings, so the detection time is
//     bar × gap.
//   - Give each ping the scorer's adaptive timeout and report a miss when it
//     expires. Pings may overlap if the timeout is longer than the gap.
//     Feed every result (RTT, Timeout, PFail, Threshold) with Observe in the
//     order the results become known, the verdict bursts' included.
//   - Keep probing an Accused peer at the burst rate until it is removed from
//     the view: its first reply withdraws the accusation.
//   - Call SerfStatus on serf's member-failed (true) and on its member-join,
//     member-update or alive (false).
//   - After Observe, if ShouldPropose(now), propose and call MarkProposed(now);
//     the back-off (1 s, doubling to 8 s) stops repeats. Call
//     ResetProposals when the view changes.
//   - On a prepare, ask Verdict(now). If fresh is false, send VerdictBurst
//     (10) pings ProbeGap apart at the burst rate (25 ms: 225 ms from the
//     first to the last, and then a wait of at least 100 ms for the pongs:
//     longer than a 100 ms stop) and answer with VerdictAfterPing. An
//     acceptor that does not monitor the peer has no tracker evidence and
//     always pings; 10 misses are its bar at the floor (0.5^10 ≈ 1e-3).
//   - Keep one tracker per incarnation: Set.For(name, boot) forgets the
//     evidence about an older boot id, so what was seen of a removed
//     incarnation (a verdict burst, a run of misses) never counts against
//     the node that comes back. Set.Remove(name) when the peer leaves the
//     view.
//   - Call Joined when the view adds the peer: it is not accused until
//     its first timely answer, for at most JoinGrace (5 s). A node that
//     has just started, or resumed from a stop, can be busy for a moment
//     before it answers at all; a quorum found it reachable a moment
//     before. One that answered and then died is accused as fast as any.
//
// Cost: 2.5 pings a second to a calm peer, 40 to a peer in doubt. In the
// simulation (TestSimLossyNoAccusation) a live peer is Suspect 1 % of the
// time at 36 % loss (4.0 pings a second per pair, the bursts after single
// misses included) and 52 % of the time at 59 % (23 a second). Under loss
// the burst rate is also what keeps the loss estimate sharp and detection
// fast.
//
// # Detection time
//
// On a clean link the first ping after a crash misses within IdleInterval;
// the burst then reaches the 30-miss bar in about 30 × 25 ms, which matches
// MinSilence. In the simulation (TestSimCrash, 10 ms timeout):
//
//	loss   crash → accused (per observer)
//	0      median 0.91 s
//	36 %   median 0.92 s
//	59 %   median 1.47 s (bar 69 or more)
//
// (0.83, 0.85 and 1.53 s with a 200 ms idle cadence.) A 10 s stop is
// accused the same way (about 1.0 s), withdrawn at the
// first reply after it resumes and Healthy about 1 s later.
package suspicion
