package scoring

import "math"

// The two functions of gonum the scorer used, written out: gonum/stat, and
// gonum/stat/distuv through it, link gonum's linear algebra (1.3 MB of the
// agent's binary, and of its resident pages) for them.

// normalCDF is P(X ≤ x) for X normal with mean mu and standard deviation
// sigma, as gonum's distuv.Normal.CDF: through erfc, which keeps precision
// deep in the tails.
func normalCDF(x, mu, sigma float64) float64 {
	return 0.5 * math.Erfc(-(x-mu)/(sigma*math.Sqrt2))
}

// quantile is the p-quantile of sorted x, linearly interpolated between
// the order statistics, as gonum's stat.Quantile with stat.LinInterp and
// no weights. x must be sorted and not empty; p in [0, 1].
func quantile(p float64, x []float64) float64 {
	for _, v := range x {
		if math.IsNaN(v) {
			return math.NaN()
		}
	}
	fidx := p * float64(len(x))
	i := max(int(math.Ceil(fidx))-1, 0)
	if i == 0 {
		return x[0]
	}
	t := float64(i+1) - fidx
	return t*x[i-1] + (1-t)*x[i]
}
