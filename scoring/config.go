package scoring

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// MaxK is the largest number of mixture components a Config may ask for. The
// model lives in fixed-size arrays so that scoring never allocates.
const MaxK = 8

// ErrInvalidConfig is wrapped by every error Config.Validate returns; the
// message names the offending field.
var ErrInvalidConfig = errors.New("scoring: invalid config")

// Config holds every tunable of a Peer. Start from DefaultConfig and change
// fields; NewPeer rejects a Config that fails Validate.
//
// Threshold scorer: for each metric the threshold is Alpha·baseline + Beta,
// where the baseline is the median of that metric over the healthy window
// (recomputed by Refit). The score is value / threshold, so 1 means "at the
// threshold".
type Config struct {
	// RTTAlpha (dimensionless, > 0) and RTTBeta (≥ 0) set the RTT threshold
	// RTTAlpha·median(RTT) + RTTBeta. Defaults 3 and 10ms.
	RTTAlpha float64
	RTTBeta  time.Duration
	// GapAlpha (> 0) and GapBeta (≥ 0) set the threshold on the time between
	// answered probes (for a miss: the time since the last answer).
	// Defaults 2.5 and 0: with a 1s probe interval two misses in a row score
	// above 1.
	GapAlpha float64
	GapBeta  time.Duration
	// CPUAlpha, CPUBeta: CPU utilisation as a fraction of all cores, 0..1.
	// Defaults 1 and 0.5.
	CPUAlpha, CPUBeta float64
	// MemAlpha, MemBeta: memory in use as a fraction, 0..1. Defaults 1 and 0.3.
	MemAlpha, MemBeta float64
	// LoadAlpha, LoadBeta: one-minute load average (runnable tasks, not
	// divided by cores). Defaults 2 and 2.
	LoadAlpha, LoadBeta float64

	// MinBaseline is the number of answered samples (≥ 1) in the window
	// before a metric's baseline, and so its threshold score, exists.
	// Default 5.
	MinBaseline int

	// Window is the number of most recent answered samples kept for
	// baselines and the mixture (≥ MinSamples). Default 1000.
	Window int
	// MinSamples is the number of answered samples with a known gap needed
	// before the mixture is fitted (≥ 10, ≤ Window). Until then
	// Result.GMMReady is false and only the threshold scorer speaks.
	// Default 100.
	MinSamples int
	// RefitEvery is the number of answered samples (≥ 1) after which
	// NeedsRefit reports true, or half the samples in the window if that
	// is more: a model of a full window is fitted again when half of it is
	// new (every 500 samples, 200 s at the idle cadence), not every tenth.
	// A fit of 1000 samples costs milliseconds, and a thousand simulated
	// nodes spent half their time in it. Default 100.
	RefitEvery int
	// LateRefit (≥ 1) makes NeedsRefit report true early once that many
	// answered samples since the last Refit were slower than the adaptive
	// timeout, so the model follows a peer that became slower. Default 3.
	LateRefit int

	// Kmax is the largest number of mixture components tried (1..MaxK);
	// the number used is chosen by BIC. Default 4.
	Kmax int
	// VarFloor is the smallest variance of a component in each dimension,
	// in (ln seconds)²: 1e-4 means a spread of at least about 1 %.
	// Must be > 0. Default 1e-4.
	VarFloor float64
	// Tol stops EM when the mean log-likelihood per sample (nats) improves
	// by less than Tol in one iteration. Must be > 0. Default 1e-3: 1 nat
	// over 1000 samples, against a BIC penalty of ½·5·ln n ≈ 17 nats per
	// extra component; it keeps a full refit of 1000 samples under 3 ms.
	Tol float64
	// MaxIter bounds the EM iterations per candidate K (≥ 1). Default 200.
	MaxIter int

	// TimeoutQuantile is q in (0.5, 1): the adaptive probe timeout is the
	// q-quantile of the RTT mixture. Default 0.999.
	TimeoutQuantile float64
	// MinTimeout and MaxTimeout clamp the adaptive timeout
	// (0 < MinTimeout ≤ MaxTimeout). MaxTimeout is also the timeout used
	// before any baseline exists. Defaults 1ms and 2s.
	MinTimeout, MaxTimeout time.Duration

	// Seed seeds the PCG generator used by k-means++; refit number i uses
	// the stream (Seed, i), so fits are reproducible.
	Seed uint64
}

// DefaultConfig returns the defaults documented on each Config field.
func DefaultConfig() Config {
	return Config{
		RTTAlpha: 3, RTTBeta: 10 * time.Millisecond,
		GapAlpha: 2.5, GapBeta: 0,
		CPUAlpha: 1, CPUBeta: 0.5,
		MemAlpha: 1, MemBeta: 0.3,
		LoadAlpha: 2, LoadBeta: 2,
		MinBaseline:     5,
		Window:          1000,
		MinSamples:      100,
		RefitEvery:      100,
		LateRefit:       3,
		Kmax:            4,
		VarFloor:        1e-4,
		Tol:             1e-3,
		MaxIter:         200,
		TimeoutQuantile: 0.999,
		MinTimeout:      time.Millisecond,
		MaxTimeout:      2 * time.Second,
		Seed:            1,
	}
}

// maxWindow bounds Window so that a decoded snapshot cannot ask for
// unbounded memory.
const maxWindow = 1 << 16

// Validate reports the first invalid field, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	pos := func(name string, v float64) error {
		if !(v > 0) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: %s = %v, must be > 0 and finite", ErrInvalidConfig, name, v)
		}
		return nil
	}
	nonneg := func(name string, v float64) error {
		if !(v >= 0) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: %s = %v, must be ≥ 0 and finite", ErrInvalidConfig, name, v)
		}
		return nil
	}
	checks := []error{
		pos("RTTAlpha", c.RTTAlpha), nonneg("RTTBeta", float64(c.RTTBeta)),
		pos("GapAlpha", c.GapAlpha), nonneg("GapBeta", float64(c.GapBeta)),
		pos("CPUAlpha", c.CPUAlpha), nonneg("CPUBeta", c.CPUBeta),
		pos("MemAlpha", c.MemAlpha), nonneg("MemBeta", c.MemBeta),
		pos("LoadAlpha", c.LoadAlpha), nonneg("LoadBeta", c.LoadBeta),
		pos("VarFloor", c.VarFloor), pos("Tol", c.Tol),
	}
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	switch {
	case c.MinBaseline < 1:
		return fmt.Errorf("%w: MinBaseline = %d, must be ≥ 1", ErrInvalidConfig, c.MinBaseline)
	case c.Window < 10 || c.Window > maxWindow:
		return fmt.Errorf("%w: Window = %d, must be in [10, %d]", ErrInvalidConfig, c.Window, maxWindow)
	case c.MinSamples < 10 || c.MinSamples > c.Window:
		return fmt.Errorf("%w: MinSamples = %d, must be in [10, Window = %d]", ErrInvalidConfig, c.MinSamples, c.Window)
	case c.MinBaseline > c.Window:
		return fmt.Errorf("%w: MinBaseline = %d, must be ≤ Window = %d", ErrInvalidConfig, c.MinBaseline, c.Window)
	case c.RefitEvery < 1:
		return fmt.Errorf("%w: RefitEvery = %d, must be ≥ 1", ErrInvalidConfig, c.RefitEvery)
	case c.LateRefit < 1:
		return fmt.Errorf("%w: LateRefit = %d, must be ≥ 1", ErrInvalidConfig, c.LateRefit)
	case c.Kmax < 1 || c.Kmax > MaxK:
		return fmt.Errorf("%w: Kmax = %d, must be in [1, %d]", ErrInvalidConfig, c.Kmax, MaxK)
	case c.MaxIter < 1:
		return fmt.Errorf("%w: MaxIter = %d, must be ≥ 1", ErrInvalidConfig, c.MaxIter)
	case !(c.TimeoutQuantile > 0.5 && c.TimeoutQuantile < 1):
		return fmt.Errorf("%w: TimeoutQuantile = %v, must be in (0.5, 1)", ErrInvalidConfig, c.TimeoutQuantile)
	case c.MinTimeout <= 0:
		return fmt.Errorf("%w: MinTimeout = %v, must be > 0", ErrInvalidConfig, c.MinTimeout)
	case c.MaxTimeout < c.MinTimeout:
		return fmt.Errorf("%w: MaxTimeout = %v, must be ≥ MinTimeout = %v", ErrInvalidConfig, c.MaxTimeout, c.MinTimeout)
	}
	return nil
}
