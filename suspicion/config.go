package suspicion

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("suspicion: invalid config")

// Config holds the thresholds of a Tracker. Durations are in the caller's
// monotonic time base; probabilities are in (0, 1). Use DefaultConfig and
// change fields; a zero Config is invalid.
type Config struct {
	// ProbeInterval is the prober's round per peer (recommended 200 ms): a
	// healthy peer gets one ping per round. ProbeGap divides it by
	// ProbesWanted. Must be > 0.
	ProbeInterval time.Duration

	// IdleInterval is the time between pings to a peer that is Healthy
	// with no current miss: the idle cadence (default 400 ms, twice
	// ProbeInterval). The first miss turns the peer Urgent and the pings
	// come Burst per ProbeInterval, so a longer one adds at most
	// IdleInterval − ProbeInterval to the time to the first miss after a
	// crash (on average half that) and saves pings of an idle cluster:
	// 400 ms instead of 200 ms cut an idle agent's CPU by about a third
	// and added 0.2 s to the simulated crash-to-decision p50 at 1,000
	// nodes (BENCHMARKS.md). In [ProbeInterval, StaleAfter].
	IdleInterval time.Duration

	// Burst is the number of pings per ProbeInterval to a peer in doubt (a
	// current miss, Suspect, Accused, or serf says failed), evenly spaced
	// ProbeInterval/Burst apart (default 8, i.e. one every 25 ms). Must be ≥ 1.
	Burst int

	// SuspectMisses is the least run of consecutive misses or anomalous
	// replies that turns Healthy into Suspect (default 2: one lost ping is
	// not evidence); SuspectFalseProb makes the run longer. It is also the
	// run that ends a Suspect peer's quiet (RecoverQuiet). Must be ≥ 1.
	SuspectMisses int

	// SuspectFalseProb is the probability, per run, that a live peer makes
	// a run of misses and anomalous replies long enough to be Suspect, when
	// each result is bad with the estimated loss plus LossMargin plus the
	// share of normal replies the scorer calls anomalous, 1 − SuspectPFail
	// (default 1e-3: a run of 4 on a clean link, 6 at 10 % round-trip
	// loss). Suspicion is the burst rate and, when withdrawn, a flap
	// penalty: a percentile score and a lossy link give a live peer one
	// bad result in a hundred or in ten, and one or two in a row must not
	// keep it there. In (0, 1).
	SuspectFalseProb float64

	// SuspectPFail is the scorer's failure probability at or above which a
	// reply counts as anomalous: a bad result toward the run that turns
	// Healthy into Suspect, and not a reply toward recovery (default 0.99). In (0, 1]. A reply with
	// Threshold > 1, or an RTT beyond its Timeout, is anomalous too.
	SuspectPFail float64

	// FalseAccuseProb is the probability, per run of misses, that a live
	// peer behind a link with the assumed loss rate produces a run long
	// enough to be accused (default 1e-9). In (0, 1). The run needed is
	// ⌈ln FalseAccuseProb / ln p⌉ where p is the assumed loss (see LossFloor).
	FalseAccuseProb float64

	// VerdictFalseProb is the same bound for this node's verdict when a
	// proposer asks (default 1e-3, i.e. 10 misses at p = 0.5). The verdict
	// is a second, independent gate after the proposer's own accusation, so
	// it may be weaker. In [FalseAccuseProb, 1).
	VerdictFalseProb float64

	// LossWeight is the weight of one ping in the exponentially weighted
	// moving average of the link's round-trip loss (default 1/64). In (0, 1].
	// A run of misses is folded in only when a reply ends it, so a dead
	// peer's misses never raise its own bar.
	LossWeight float64

	// LossMargin is added to the loss estimate to get the assumed loss, an
	// upper bound covering the estimate's noise and a loss rate that rises
	// faster than the average follows (default 0.15, about 3.5 standard
	// deviations of the estimate at LossWeight 1/64 and 59 % loss).
	// In [0, 1).
	LossMargin float64

	// LossFloor is the least assumed loss, whatever the estimate
	// (default 0.5: 30 misses at FalseAccuseProb 1e-9). It protects a link
	// whose loss starts suddenly. In (0, LossCeil].
	LossFloor float64

	// LossCeil is the largest assumed loss (default 0.85: 128 misses at
	// FalseAccuseProb 1e-9). It bounds the detection time on a very lossy
	// link. In [LossFloor, 1).
	LossCeil float64

	// MinSilence is the least time since the last reply before an
	// accusation (default 750 ms). It covers correlated misses that no
	// count of pings can tell apart from a crash: a process paused, a GC
	// stop, a busy host. Must be > 0.
	MinSilence time.Duration

	// SilenceTimeouts raises the silence needed to this many adaptive
	// timeouts when that is longer than MinSilence (default 8). Must be ≥ 0.
	SilenceTimeouts int

	// MinDwell is the least time in Suspect before Accused (default 250 ms).
	// Must be ≥ 0.
	MinDwell time.Duration

	// RecoverSuccesses is the number of consecutive normal replies that turns
	// Suspect into Healthy (default 3), plus ⌈penalty⌉. Must be ≥ 1.
	RecoverSuccesses int

	// RecoverQuiet is the least time without a miss or an anomalous reply
	// that turns Suspect into Healthy, multiplied by 1 + penalty
	// (default 500 ms). With RecoverSuccesses it is the hysteresis: a peer
	// that stutters every few hundred milliseconds stays Suspect instead of
	// flapping. Must be ≥ 0.
	RecoverQuiet time.Duration

	// FlapPenalty is added to the flap penalty each time a suspicion is
	// withdrawn: Suspect → Healthy, or Accused → Suspect (default 1).
	// Must be ≥ 0. See RFC 2439 (route flap damping) for the shape.
	FlapPenalty float64

	// MaxPenalty caps the flap penalty (default 4). Must be ≥ 0.
	MaxPenalty float64

	// FlapHalfLife is the half-life of the flap penalty (default 60 s).
	// Must be > 0.
	FlapHalfLife time.Duration

	// PenaltyMisses is the number of extra consecutive misses needed per
	// unit of penalty (default 3). Must be ≥ 0.
	PenaltyMisses float64

	// PenaltySilence is the extra silence needed per unit of penalty
	// (default 125 ms). Must be ≥ 0.
	PenaltySilence time.Duration

	// StaleAfter is the age of the last probe result beyond which Verdict
	// reports fresh = false and ShouldPropose is false (default 500 ms).
	// Must be ≥ IdleInterval.
	StaleAfter time.Duration

	// VerdictSilence is the least time since the last reply for Verdict to
	// say unreachable from the tracked evidence (default 250 ms). In
	// [0, MinSilence].
	VerdictSilence time.Duration

	// VerdictBurst is the number of pings the caller sends, ProbeGap apart
	// at the Burst rate, when Verdict says fresh = false (default 10).
	// Must be ≥ 1.
	VerdictBurst int

	// ProposeBackoff is the least time between two proposals about the same
	// peer (default 1 s); it doubles with each proposal up to
	// MaxProposeBackoff, until ResetProposals. Must be > 0.
	ProposeBackoff time.Duration

	// MaxProposeBackoff caps ProposeBackoff's doubling (default 8 s).
	// Must be ≥ ProposeBackoff.
	MaxProposeBackoff time.Duration

	// JoinGrace is the longest time after Joined during which the peer is
	// not accused (default 5 s); its first timely answer ends it. A member
	// that has just been added, a restart or a process resumed from a
	// stop, may be busy for a moment before it answers at all; a quorum
	// found it reachable a moment ago. A peer that answered and then died
	// is accused as fast as any other; one that never answered since it
	// was added is accused when the grace ends. Must be ≥ 0.
	JoinGrace time.Duration
}

// DefaultConfig returns the recommended configuration for a 200 ms probe
// round. See the package documentation for the numbers behind it.
func DefaultConfig() Config {
	return Config{
		ProbeInterval:     200 * time.Millisecond,
		IdleInterval:      400 * time.Millisecond,
		Burst:             8,
		SuspectMisses:     2,
		SuspectFalseProb:  1e-3,
		SuspectPFail:      0.99,
		FalseAccuseProb:   1e-9,
		VerdictFalseProb:  1e-3,
		LossWeight:        1.0 / 64,
		LossMargin:        0.15,
		LossFloor:         0.5,
		LossCeil:          0.85,
		MinSilence:        750 * time.Millisecond,
		SilenceTimeouts:   8,
		MinDwell:          250 * time.Millisecond,
		RecoverSuccesses:  3,
		RecoverQuiet:      500 * time.Millisecond,
		FlapPenalty:       1,
		MaxPenalty:        4,
		FlapHalfLife:      60 * time.Second,
		PenaltyMisses:     3,
		PenaltySilence:    125 * time.Millisecond,
		StaleAfter:        500 * time.Millisecond,
		VerdictSilence:    250 * time.Millisecond,
		VerdictBurst:      10,
		ProposeBackoff:    time.Second,
		MaxProposeBackoff: 8 * time.Second,
		JoinGrace:         5 * time.Second,
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
}

// open01 reports whether x is in the open interval (0, 1); NaN is not.
func open01(x float64) bool { return x > 0 && x < 1 }

// Validate reports the first field that breaks its invariant, by name.
func (c Config) Validate() error {
	switch {
	case c.ProbeInterval <= 0:
		return invalid("ProbeInterval = %v, must be > 0", c.ProbeInterval)
	case c.Burst < 1:
		return invalid("Burst = %d, must be ≥ 1", c.Burst)
	case c.SuspectMisses < 1:
		return invalid("SuspectMisses = %d, must be ≥ 1", c.SuspectMisses)
	case !open01(c.SuspectFalseProb):
		return invalid("SuspectFalseProb = %v, must be in (0, 1)", c.SuspectFalseProb)
	case !(c.SuspectPFail > 0 && c.SuspectPFail <= 1):
		return invalid("SuspectPFail = %v, must be in (0, 1]", c.SuspectPFail)
	case !open01(c.FalseAccuseProb):
		return invalid("FalseAccuseProb = %v, must be in (0, 1)", c.FalseAccuseProb)
	case !open01(c.VerdictFalseProb):
		return invalid("VerdictFalseProb = %v, must be in (0, 1)", c.VerdictFalseProb)
	case c.VerdictFalseProb < c.FalseAccuseProb:
		return invalid("VerdictFalseProb (%v) must be ≥ FalseAccuseProb (%v)", c.VerdictFalseProb, c.FalseAccuseProb)
	case !(c.LossWeight > 0 && c.LossWeight <= 1):
		return invalid("LossWeight = %v, must be in (0, 1]", c.LossWeight)
	case !(c.LossMargin >= 0 && c.LossMargin < 1):
		return invalid("LossMargin = %v, must be in [0, 1)", c.LossMargin)
	case !open01(c.LossFloor):
		return invalid("LossFloor = %v, must be in (0, 1)", c.LossFloor)
	case !open01(c.LossCeil):
		return invalid("LossCeil = %v, must be in (0, 1)", c.LossCeil)
	case c.LossCeil < c.LossFloor:
		return invalid("LossCeil (%v) must be ≥ LossFloor (%v)", c.LossCeil, c.LossFloor)
	case c.MinSilence <= 0:
		return invalid("MinSilence = %v, must be > 0", c.MinSilence)
	case c.SilenceTimeouts < 0:
		return invalid("SilenceTimeouts = %d, must be ≥ 0", c.SilenceTimeouts)
	case c.MinDwell < 0:
		return invalid("MinDwell = %v, must be ≥ 0", c.MinDwell)
	case c.RecoverSuccesses < 1:
		return invalid("RecoverSuccesses = %d, must be ≥ 1", c.RecoverSuccesses)
	case c.RecoverQuiet < 0:
		return invalid("RecoverQuiet = %v, must be ≥ 0", c.RecoverQuiet)
	case !(c.FlapPenalty >= 0) || math.IsInf(c.FlapPenalty, 0):
		return invalid("FlapPenalty = %v, must be finite and ≥ 0", c.FlapPenalty)
	case !(c.MaxPenalty >= 0) || math.IsInf(c.MaxPenalty, 0):
		return invalid("MaxPenalty = %v, must be finite and ≥ 0", c.MaxPenalty)
	case c.FlapHalfLife <= 0:
		return invalid("FlapHalfLife = %v, must be > 0", c.FlapHalfLife)
	case !(c.PenaltyMisses >= 0) || math.IsInf(c.PenaltyMisses, 0):
		return invalid("PenaltyMisses = %v, must be finite and ≥ 0", c.PenaltyMisses)
	case c.PenaltySilence < 0:
		return invalid("PenaltySilence = %v, must be ≥ 0", c.PenaltySilence)
	case c.IdleInterval < c.ProbeInterval:
		return invalid("IdleInterval (%v) must be ≥ ProbeInterval (%v)", c.IdleInterval, c.ProbeInterval)
	case c.StaleAfter < c.IdleInterval:
		return invalid("StaleAfter (%v) must be ≥ IdleInterval (%v)", c.StaleAfter, c.IdleInterval)
	case c.VerdictSilence < 0:
		return invalid("VerdictSilence = %v, must be ≥ 0", c.VerdictSilence)
	case c.VerdictSilence > c.MinSilence:
		return invalid("VerdictSilence (%v) must be ≤ MinSilence (%v)", c.VerdictSilence, c.MinSilence)
	case c.VerdictBurst < 1:
		return invalid("VerdictBurst = %d, must be ≥ 1", c.VerdictBurst)
	case c.ProposeBackoff <= 0:
		return invalid("ProposeBackoff = %v, must be > 0", c.ProposeBackoff)
	case c.MaxProposeBackoff < c.ProposeBackoff:
		return invalid("MaxProposeBackoff (%v) must be ≥ ProposeBackoff (%v)", c.MaxProposeBackoff, c.ProposeBackoff)
	case c.JoinGrace < 0:
		return invalid("JoinGrace = %v, must be ≥ 0", c.JoinGrace)
	}
	return nil
}

// RunNeeded returns the least n ≥ 1 with loss^n ≤ prob: the run of
// consecutive misses that a live peer behind a link losing the fraction
// loss of round trips (independently) reaches with probability at most
// prob from any given start. loss and prob must be in (0, 1).
func RunNeeded(loss, prob float64) int {
	if !open01(loss) || !open01(prob) {
		panic(fmt.Sprintf("suspicion: RunNeeded(%v, %v) outside (0, 1)", loss, prob))
	}
	n := math.Ceil(math.Log(prob)/math.Log(loss) - 1e-9)
	if n < 1 {
		n = 1
	}
	return int(n)
}
