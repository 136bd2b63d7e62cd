package scoring

import (
	"math"
	"slices"
)

const (
	// calKnots is the number of empirical quantiles kept of the training NLL.
	calKnots = 33
	// calTail is the training mass above the last knot, modelled as an
	// exponential tail.
	calTail = 0.1
	// minTailScale keeps the tail from becoming a step (nats).
	minTailScale = 1e-3
)

// calib maps a negative log-likelihood to a p-value: the probability that a
// sample drawn like the training data is at least as unlikely.
//
// The body is the empirical CDF of the training NLLs, kept as calKnots
// quantiles at cumulative probabilities (1−calTail)·j/(calKnots−1) and
// interpolated linearly. Above the (1−calTail) quantile u the tail is a
// peaks-over-threshold fit with a generalised Pareto of shape 0, i.e. an
// exponential whose scale is the mean excess over u (Pickands 1975;
// Balkema & de Haan 1974). For a single d-dimensional Gaussian, NLL minus its
// minimum is ½χ²_d, which for d = 2 is exactly exponential, so the tail model
// is not an arbitrary choice.
type calib struct {
	q     [calKnots]float64
	scale float64
}

// fit builds the table from training NLLs; nll is sorted in place.
func (c *calib) fit(nll []float64) {
	slices.Sort(nll)
	for j := range c.q {
		p := (1 - calTail) * float64(j) / float64(calKnots-1)
		c.q[j] = quantile(p, nll)
	}
	u := c.q[calKnots-1]
	var sum float64
	var n int
	for _, v := range nll {
		if v > u {
			sum += v - u
			n++
		}
	}
	c.scale = 1
	if n > 0 {
		c.scale = max(sum/float64(n), minTailScale)
	}
}

// pvalue returns P(NLL ≥ x) under the training distribution.
func (c *calib) pvalue(x float64) float64 {
	if x <= c.q[0] {
		return 1
	}
	u := c.q[calKnots-1]
	if x >= u {
		return calTail * math.Exp(-(x-u)/c.scale)
	}
	lo, hi := 0, calKnots-1 // q[lo] < x < q[hi]
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if c.q[mid] < x {
			lo = mid
		} else {
			hi = mid
		}
	}
	step := (1 - calTail) / float64(calKnots-1)
	cdf := step * float64(lo)
	if w := c.q[hi] - c.q[lo]; w > 0 {
		cdf += step * (x - c.q[lo]) / w
	}
	return 1 - cdf
}

// valid reports whether a decoded table is usable.
func (c *calib) valid() bool {
	for j, v := range c.q {
		if math.IsNaN(v) || math.IsInf(v, 0) || (j > 0 && v < c.q[j-1]) {
			return false
		}
	}
	return c.scale >= minTailScale && !math.IsInf(c.scale, 0)
}
