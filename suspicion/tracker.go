package suspicion

import (
	"math"
	"strconv"
	"time"
)

// State is a peer's suspicion state.
type State uint8

const (
	// Healthy: no current doubt.
	Healthy State = iota
	// Suspect: some evidence; probe harder (ProbesWanted), don't propose.
	Suspect
	// Accused: evidence beyond the accusation bar; propose removal.
	Accused
)

func (s State) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Suspect:
		return "suspect"
	case Accused:
		return "accused"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Reason says why a transition happened, for the agent's log and `vigil why`.
type Reason string

// Reasons for transitions.
const (
	ReasonMisses     Reason = "misses"      // Healthy → Suspect: a run of misses past the suspicion bar
	ReasonAnomaly    Reason = "anomaly"     // Healthy → Suspect: a run of misses and late or anomalous replies past the bar
	ReasonSerfFailed Reason = "serf-failed" // Healthy → Suspect: serf reports the member failed
	ReasonEvidence   Reason = "evidence"    // Suspect → Accused: run, silence and dwell past the bar
	ReasonReply      Reason = "reply"       // Accused → Suspect: the peer answered
	ReasonRecovered  Reason = "recovered"   // Suspect → Healthy: enough consecutive normal replies
)

// Transition is a state change returned by the methods that take evidence.
// From == To means nothing changed; Reason is then empty.
type Transition struct {
	From, To State
	Reason   Reason
}

// Changed reports whether the transition changed the state.
func (tr Transition) Changed() bool { return tr.From != tr.To }

// Observation is the result of one ping to the peer.
type Observation struct {
	// Miss is true when no ack came back within the prober's timeout.
	Miss bool
	// RTT is the round-trip time of a reply; ignored for a miss.
	RTT time.Duration
	// Timeout is the scorer's adaptive timeout for this peer, 0 if unknown.
	// A reply with RTT > Timeout proves the peer alive but is anomalous.
	Timeout time.Duration
	// PFail is the scorer's probability, in [0, 1], that the sample comes
	// from a failing peer.
	PFail float64
	// Threshold is the sample's threshold score; > 1 is over the threshold.
	Threshold float64
	// Late marks the reply to a ping already observed as a miss: it ends
	// the run of misses and proves the peer alive, but it is the same bad
	// result as that miss, not a second one.
	Late bool
}

// Tracker is the suspicion state of one peer as seen by this node. It is
// not safe for concurrent use; the zero value is not usable: use NewTracker
// or Set.Peer.
type Tracker struct {
	cfg Config

	state State
	since time.Duration // when state was entered
	clock time.Duration // the latest now seen; earlier values are clamped to it

	hasObs      bool
	firstObs    time.Duration
	lastObs     time.Duration
	hasReply    bool
	lastReply   time.Duration
	misses      int     // consecutive misses, up to now
	bad         int     // consecutive misses or anomalous replies, up to now
	badReplies  int     // anomalous replies in the current bad run
	oks         int     // consecutive normal replies
	loss        float64 // EWMA of the round-trip loss over completed runs
	lastTimeout time.Duration
	lastRTT     time.Duration
	lastPFail   float64
	lastThresh  float64
	serfFailed  bool
	lastBad     time.Duration // last observation that made a bad run of SuspectMisses

	penalty   float64 // flap penalty as of penaltyAt
	penaltyAt time.Duration

	transitions int
	flaps       int

	proposals  int // since the last ResetProposals or leaving Accused
	proposedAt time.Duration

	// incarnation is the peer's boot id the evidence is about (Set.For).
	incarnation string
	// graceUntil: no accusation before it (Joined), unless the peer has
	// answered in time since. Zero is no grace: the tracker's clock never
	// reads below zero (at).
	graceUntil time.Duration
}

// NewTracker returns a Healthy tracker with no evidence.
func NewTracker(cfg Config) (*Tracker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Tracker{cfg: cfg}, nil
}

// Reset forgets all evidence, the flap penalty and the proposal back-off,
// as for a peer that comes back with a new boot id.
func (t *Tracker) Reset() {
	*t = Tracker{cfg: t.cfg, clock: t.clock, incarnation: t.incarnation}
}

// Joined records that the peer joined (or came back) at now: it is not
// accused until it has answered one ping in time, for at most JoinGrace.
// Evidence still accrues, and Verdict still answers on it. So a node that
// answers and then dies is accused as fast as any other; only one that
// has not answered since it was added gets the grace.
func (t *Tracker) Joined(now time.Duration) {
	now = t.at(now)
	t.graceUntil = now + t.cfg.JoinGrace
}

// inGrace reports whether now is within the grace after Joined.
func (t *Tracker) inGrace(now time.Duration) bool { return now < t.graceUntil }

// InGrace reports whether the peer is still in its join grace: added, and
// not yet answered in time.
func (t *Tracker) InGrace(now time.Duration) bool { return t.inGrace(now) }

// State returns the current state.
func (t *Tracker) State() State { return t.state }

// at clamps now to the latest time seen, so the tracker's clock never runs
// backwards.
func (t *Tracker) at(now time.Duration) time.Duration {
	if now < t.clock {
		return t.clock
	}
	t.clock = now
	return now
}

// penaltyNow returns the flap penalty decayed to now.
func (t *Tracker) penaltyNow(now time.Duration) float64 {
	if t.penalty == 0 {
		return 0
	}
	dt := now - t.penaltyAt
	if dt <= 0 {
		return t.penalty
	}
	return t.penalty * math.Exp2(-float64(dt)/float64(t.cfg.FlapHalfLife))
}

func (t *Tracker) addPenalty(now time.Duration) {
	p := t.penaltyNow(now) + t.cfg.FlapPenalty
	t.penalty = min(p, t.cfg.MaxPenalty)
	t.penaltyAt = now
}

// assumedLoss is the loss rate the bar is computed for: the estimate plus
// the margin, clamped to [LossFloor, LossCeil]. The estimate changes only
// when a reply ends a run, so it is frozen during the current run.
func (t *Tracker) assumedLoss() float64 {
	return min(max(t.loss+t.cfg.LossMargin, t.cfg.LossFloor), t.cfg.LossCeil)
}

// needMisses is the run of consecutive misses needed to accuse at now.
func (t *Tracker) needMisses(now time.Duration) int {
	n := RunNeeded(t.assumedLoss(), t.cfg.FalseAccuseProb)
	return n + int(math.Ceil(t.penaltyNow(now)*t.cfg.PenaltyMisses-1e-9))
}

// needSuspect is the run of consecutive misses or anomalous replies that
// turns Healthy into Suspect: at least SuspectMisses, and long enough that
// a live peer makes it with probability at most SuspectFalseProb when each
// result is bad with the estimated loss, plus LossMargin, plus the share
// of normal replies the scorer calls anomalous (1 − SuspectPFail).
func (t *Tracker) needSuspect() int {
	b := min(t.loss+t.cfg.LossMargin+(1-t.cfg.SuspectPFail), t.cfg.LossCeil)
	if b <= 0 {
		return t.cfg.SuspectMisses
	}
	return max(t.cfg.SuspectMisses, RunNeeded(b, t.cfg.SuspectFalseProb))
}

// needVerdict is the run of consecutive misses for an unreachable verdict.
func (t *Tracker) needVerdict() int {
	return RunNeeded(t.assumedLoss(), t.cfg.VerdictFalseProb)
}

// needSilence is the time since the last reply needed to accuse at now.
func (t *Tracker) needSilence(now time.Duration) time.Duration {
	s := max(t.cfg.MinSilence, time.Duration(t.cfg.SilenceTimeouts)*t.lastTimeout)
	return s + time.Duration(t.penaltyNow(now)*float64(t.cfg.PenaltySilence))
}

// needRecover is the run of normal replies that ends a suspicion.
func (t *Tracker) needRecover(now time.Duration) int {
	return t.cfg.RecoverSuccesses + int(math.Ceil(t.penaltyNow(now)-1e-9))
}

// needQuiet is the time without a miss or an anomalous reply that ends a
// suspicion.
func (t *Tracker) needQuiet(now time.Duration) time.Duration {
	return time.Duration(float64(t.cfg.RecoverQuiet) * (1 + t.penaltyNow(now)))
}

// quiet is the time since the last bad run of SuspectMisses results, or
// the last transition: a lone miss or anomaly is what a lossy link and a
// percentile score give a live peer every few seconds at the burst rate.
func (t *Tracker) quiet(now time.Duration) time.Duration {
	return now - max(t.lastBad, t.since)
}

// silence is the time since the last reply, or since the first
// observation if the peer never replied.
func (t *Tracker) silence(now time.Duration) time.Duration {
	switch {
	case t.hasReply:
		return now - t.lastReply
	case t.hasObs:
		return now - t.firstObs
	}
	return 0
}

func (t *Tracker) moveTo(now time.Duration, s State, why Reason) Transition {
	tr := Transition{From: t.state, To: s, Reason: why}
	if (t.state == Suspect && s == Healthy) || (t.state == Accused && s == Suspect) {
		t.addPenalty(now)
		t.flaps++
	}
	if t.state == Accused {
		t.proposals = 0
	}
	t.state = s
	t.since = now
	t.transitions++
	return tr
}

// accusable reports whether the evidence at now passes the accusation bar.
func (t *Tracker) accusable(now time.Duration) bool {
	return t.state == Suspect &&
		!t.inGrace(now) &&
		now-t.since >= t.cfg.MinDwell &&
		t.misses >= t.needMisses(now) &&
		t.silence(now) >= t.needSilence(now)
}

// Observe takes the result of one ping, known at now, and returns the
// transition it caused. Results must be fed in the order they are known.
func (t *Tracker) Observe(now time.Duration, o Observation) Transition {
	now = t.at(now)
	if !t.hasObs {
		t.hasObs = true
		t.firstObs = now
	}
	t.lastObs = now
	if o.Timeout > 0 {
		t.lastTimeout = o.Timeout
	}
	pfail := o.PFail
	if math.IsNaN(pfail) {
		pfail = 0
	}
	t.lastPFail, t.lastThresh = pfail, o.Threshold

	none := Transition{From: t.state, To: t.state}
	if o.Miss {
		t.misses++
		t.oks = 0
		if t.badResult(now) {
			why := ReasonMisses
			if t.badReplies > 0 {
				why = ReasonAnomaly
			}
			tr := t.moveTo(now, Suspect, why)
			if t.accusable(now) { // only with MinDwell = 0
				tr = Transition{From: Healthy, To: Accused, Reason: ReasonEvidence}
				t.moveTo(now, Accused, ReasonEvidence)
			}
			return tr
		}
		if t.accusable(now) {
			return t.moveTo(now, Accused, ReasonEvidence)
		}
		return none
	}

	// A reply, however late, proves the peer alive: it ends the run.
	t.lastRTT = max(o.RTT, 0)
	if t.misses > 0 {
		t.loss = 1 - (1-t.loss)*math.Pow(1-t.cfg.LossWeight, float64(t.misses))
		t.misses = 0
	}
	t.loss *= 1 - t.cfg.LossWeight
	t.hasReply = true
	t.lastReply = now

	anomalous := pfail >= t.cfg.SuspectPFail || o.Threshold > 1 ||
		(o.Timeout > 0 && o.RTT > o.Timeout)
	switch {
	case o.Late:
		t.oks = 0 // its miss is already in the bad run
	case anomalous:
		t.oks = 0
		t.badReplies++
		if t.badResult(now) {
			return t.moveTo(now, Suspect, ReasonAnomaly)
		}
	default:
		t.oks++
		t.bad, t.badReplies = 0, 0
		t.graceUntil = 0 // it answered in time: it is up, judge it as any other
	}
	switch t.state {
	case Accused:
		return t.moveTo(now, Suspect, ReasonReply)
	case Suspect:
		if t.oks >= t.needRecover(now) && t.quiet(now) >= t.needQuiet(now) {
			return t.moveTo(now, Healthy, ReasonRecovered)
		}
	}
	return none
}

// badResult counts a miss or an anomalous reply into the bad run. It
// marks the end of the quiet once the run reaches SuspectMisses, and
// reports whether a Healthy peer's run has reached the suspicion bar.
func (t *Tracker) badResult(now time.Duration) bool {
	t.bad++
	if t.bad >= t.cfg.SuspectMisses {
		t.lastBad = now
	}
	return t.state == Healthy && t.bad >= t.needSuspect()
}

// SerfStatus takes serf's own view of the peer at now. failed moves a
// Healthy peer to Suspect, which makes the prober probe it harder; it never
// accuses by itself and never shortens the bar.
func (t *Tracker) SerfStatus(now time.Duration, failed bool) Transition {
	now = t.at(now)
	was := t.serfFailed
	t.serfFailed = failed
	if failed && !was && t.state == Healthy {
		return t.moveTo(now, Suspect, ReasonSerfFailed)
	}
	return Transition{From: t.state, To: t.state}
}

// ProbesWanted returns how many pings the prober should send to the peer
// in the next ProbeInterval: 1 while Healthy with no current bad result,
// Burst while in doubt (Urgent).
func (t *Tracker) ProbesWanted(now time.Duration) int {
	if t.Urgent() {
		return t.cfg.Burst
	}
	return 1
}

// Urgent reports whether the peer is in doubt and should be probed at the
// Burst rate: not Healthy, a current miss or anomalous reply, or serf
// says failed.
func (t *Tracker) Urgent() bool {
	return t.state != Healthy || t.bad > 0 || t.serfFailed
}

// ProbeGap returns the time from the last ping sent to the peer to the
// next one: IdleInterval while it is not Urgent, ProbeInterval / Burst
// while it is.
func (t *Tracker) ProbeGap(now time.Duration) time.Duration {
	if !t.Urgent() {
		return t.cfg.IdleInterval
	}
	return t.cfg.ProbeInterval / time.Duration(t.ProbesWanted(now))
}

// fresh reports whether the last probe result is at most StaleAfter old.
func (t *Tracker) fresh(now time.Duration) bool {
	return t.hasObs && now-t.lastObs <= t.cfg.StaleAfter
}

// ShouldPropose reports whether this node should propose the peer's removal
// now: it is Accused on fresh evidence, and ProposeBackoff (doubled per
// proposal since the last ResetProposals) has passed since MarkProposed.
func (t *Tracker) ShouldPropose(now time.Duration) bool {
	now = t.at(now)
	if t.state != Accused || !t.fresh(now) {
		return false
	}
	if t.proposals == 0 {
		return true
	}
	return now-t.proposedAt >= t.backoff()
}

func (t *Tracker) backoff() time.Duration {
	b := t.cfg.ProposeBackoff
	for i := 1; i < t.proposals && b < t.cfg.MaxProposeBackoff; i++ {
		b *= 2
	}
	return min(b, t.cfg.MaxProposeBackoff)
}

// MarkProposed records that this node proposed the peer's removal at now.
func (t *Tracker) MarkProposed(now time.Duration) {
	t.proposedAt = t.at(now)
	t.proposals++
}

// ResetProposals clears the proposal back-off, e.g. when the view changes.
// Leaving Accused clears it too.
func (t *Tracker) ResetProposals() { t.proposals = 0 }

// Verdict is this node's own verdict on the peer for a consensus promise.
// fresh = false means the evidence is missing, older than StaleAfter, or
// inconclusive (a run of misses too short to call): the caller must send
// VerdictBurst pings ProbeGap apart at the Burst rate and call
// VerdictAfterPing. With fresh = true, unreachable is the answer.
func (t *Tracker) Verdict(now time.Duration) (unreachable, fresh bool) {
	now = t.at(now)
	switch {
	case !t.fresh(now):
		return false, false
	case t.misses == 0:
		return false, true
	case t.misses >= t.needVerdict() && t.silence(now) >= t.cfg.VerdictSilence:
		return true, true
	}
	return false, false
}

// VerdictAfterPing folds in a fresh burst of direct pings that ended at
// now, okCount replies and missCount misses, and returns the verdict:
// unreachable when no ping was answered and the run of misses, the burst's
// included, reaches the verdict bar. The burst may also move the state.
func (t *Tracker) VerdictAfterPing(now time.Duration, okCount, missCount int) (unreachable bool) {
	for range max(missCount, 0) {
		t.Observe(now, Observation{Miss: true})
	}
	for range max(okCount, 0) {
		t.Observe(now, Observation{})
	}
	return okCount <= 0 && t.misses > 0 && t.misses >= t.needVerdict()
}

// Explanation is a snapshot of a tracker for `vigil why NODE`.
type Explanation struct {
	State          State
	InStateFor     time.Duration // time since the last transition
	Misses         int           // consecutive misses
	BadRun         int           // consecutive misses or anomalous replies
	NeedSuspect    int           // bad run that makes a Healthy peer Suspect
	NeedMisses     int           // consecutive misses needed to accuse now
	Replies        int           // consecutive normal replies
	NeedReplies    int           // consecutive normal replies needed to recover
	Quiet          time.Duration // time since the last miss, anomaly or transition
	NeedQuiet      time.Duration // quiet needed to recover
	LastReplyAge   time.Duration // -1 if the peer never replied
	Silence        time.Duration // time since the last reply (or first probe)
	NeedSilence    time.Duration // silence needed to accuse now
	LastResultAge  time.Duration // -1 if no probe result yet
	LossEstimate   float64       // EWMA of the round-trip loss, completed runs only
	AssumedLoss    float64       // the loss the bar is computed for
	Penalty        float64       // flap penalty, decayed to now
	Transitions    int           // state changes since NewTracker or Reset
	Flaps          int           // withdrawn suspicions since NewTracker or Reset
	SerfFailed     bool          // serf's last status for the peer
	LastRTT        time.Duration // RTT of the last reply
	LastPFail      float64       // PFail of the last probe result
	LastThreshold  float64       // threshold score of the last probe result
	ProbesWanted   int           // pings per ProbeInterval
	Proposals      int           // proposals since the back-off was reset
	VerdictMisses  int           // consecutive misses for an unreachable verdict
	FreshEvidence  bool          // last result at most StaleAfter old
	ShouldPropose  bool
	VerdictUnreach bool          // Verdict's unreachable
	VerdictFresh   bool          // Verdict's fresh
	GraceLeft      time.Duration // time left of the JoinGrace; 0 if none
}

// Explain returns a snapshot at now. It does not change the state.
func (t *Tracker) Explain(now time.Duration) Explanation {
	if now < t.clock {
		now = t.clock
	}
	e := Explanation{
		State:         t.state,
		InStateFor:    now - t.since,
		Misses:        t.misses,
		BadRun:        t.bad,
		NeedSuspect:   t.needSuspect(),
		NeedMisses:    t.needMisses(now),
		Replies:       t.oks,
		NeedReplies:   t.needRecover(now),
		Quiet:         t.quiet(now),
		NeedQuiet:     t.needQuiet(now),
		LastReplyAge:  -1,
		Silence:       t.silence(now),
		NeedSilence:   t.needSilence(now),
		LastResultAge: -1,
		LossEstimate:  t.loss,
		AssumedLoss:   t.assumedLoss(),
		Penalty:       t.penaltyNow(now),
		Transitions:   t.transitions,
		Flaps:         t.flaps,
		SerfFailed:    t.serfFailed,
		LastRTT:       t.lastRTT,
		LastPFail:     t.lastPFail,
		LastThreshold: t.lastThresh,
		ProbesWanted:  t.ProbesWanted(now),
		Proposals:     t.proposals,
		VerdictMisses: t.needVerdict(),
		FreshEvidence: t.fresh(now),
	}
	if t.hasReply {
		e.LastReplyAge = now - t.lastReply
	}
	if t.inGrace(now) {
		e.GraceLeft = t.graceUntil - now
	}
	if t.hasObs {
		e.LastResultAge = now - t.lastObs
	}
	// Verdict and ShouldPropose only move the clock, which Explain's now
	// already accounts for; compute them on a copy to keep Explain read-only.
	c := *t
	e.ShouldPropose = c.ShouldPropose(now)
	e.VerdictUnreach, e.VerdictFresh = c.Verdict(now)
	return e
}
