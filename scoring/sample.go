package scoring

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Errors returned by Sample.Validate (wrapped with the field name).
var (
	ErrNegativeDuration = errors.New("scoring: negative duration")
	ErrNotFinite        = errors.New("scoring: value is NaN or infinite")
	ErrOutOfRange       = errors.New("scoring: value out of range")
)

// Load is a peer's own load figures, as it reports them.
type Load struct {
	CPU   float64 // CPU utilisation, fraction of all cores, 0..1
	Mem   float64 // memory in use, fraction, 0..1
	Load1 float64 // one-minute load average, ≥ 0
}

// Sample is one probe outcome for one peer.
//
// An answered probe has Miss == false, RTT its round-trip time and Gap the
// time since the previous answered probe of the same peer (0 when unknown,
// e.g. the first answer).
//
// A miss (no answer within the timeout the prober used) has Miss == true, RTT
// the time the prober waited for this probe (0 if unknown) and Gap the time
// elapsed since the last answered probe (0 if unknown). A miss is never
// learned. If the answer arrives late, the caller reports it again as an
// answered sample with its true RTT.
type Sample struct {
	RTT      time.Duration
	Miss     bool
	Gap      time.Duration
	Load     Load
	HaveLoad bool // Load is set
}

// Validate rejects negative durations and NaN, infinite or out-of-range load
// figures.
func (s Sample) Validate() error {
	if s.RTT < 0 {
		return fmt.Errorf("%w: RTT = %v", ErrNegativeDuration, s.RTT)
	}
	if s.Gap < 0 {
		return fmt.Errorf("%w: Gap = %v", ErrNegativeDuration, s.Gap)
	}
	if !s.HaveLoad {
		return nil
	}
	check := func(name string, v, max float64) error {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: Load.%s = %v", ErrNotFinite, name, v)
		}
		if v < 0 || v > max {
			return fmt.Errorf("%w: Load.%s = %v, want [0, %v]", ErrOutOfRange, name, v, max)
		}
		return nil
	}
	if err := check("CPU", s.Load.CPU, 1); err != nil {
		return err
	}
	if err := check("Mem", s.Load.Mem, 1); err != nil {
		return err
	}
	return check("Load1", s.Load.Load1, math.MaxFloat64)
}
