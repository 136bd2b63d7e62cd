package scoring

import (
	"math"
	"math/rand/v2"
)

// dim is the number of features: ln RTT and ln gap, both in ln seconds.
const dim = 2

// minDuration floors durations before the logarithm (1µs).
const minDuration = 1e-6

// Component is one diagonal Gaussian of the mixture, in (ln seconds).
type Component struct {
	Weight float64
	Mean   [dim]float64 // [ln RTT, ln gap]
	Var    [dim]float64
}

// gmm is a diagonal-covariance Gaussian mixture over [ln RTT, ln gap] with
// derived per-component constants for fast evaluation.
type gmm struct {
	k    int
	c    [MaxK]Component
	lc   [MaxK]float64      // ln w − ½ Σ ln(2π v): joint log-normaliser
	lc0  [MaxK]float64      // ln w − ½ ln(2π v₀): RTT-marginal log-normaliser
	inv  [MaxK][dim]float64 // 1 / v
	sd   [MaxK][dim]float64 // √v
	logw [MaxK]float64
}

// prepare fills the derived fields from c[:k].
func (g *gmm) prepare() {
	for j := 0; j < g.k; j++ {
		c := &g.c[j]
		g.logw[j] = math.Log(c.Weight)
		g.lc[j] = g.logw[j]
		for d := 0; d < dim; d++ {
			g.inv[j][d] = 1 / c.Var[d]
			g.sd[j][d] = math.Sqrt(c.Var[d])
			g.lc[j] -= 0.5 * math.Log(2*math.Pi*c.Var[d])
		}
		g.lc0[j] = g.logw[j] - 0.5*math.Log(2*math.Pi*c.Var[0])
	}
}

// nll is the negative log density of x under the joint mixture (nats).
func (g *gmm) nll(x [dim]float64) float64 {
	var lp [MaxK]float64
	m := math.Inf(-1)
	for j := 0; j < g.k; j++ {
		d0 := x[0] - g.c[j].Mean[0]
		d1 := x[1] - g.c[j].Mean[1]
		lp[j] = g.lc[j] - 0.5*(d0*d0*g.inv[j][0]+d1*d1*g.inv[j][1])
		m = max(m, lp[j])
	}
	var s float64
	for j := 0; j < g.k; j++ {
		s += math.Exp(lp[j] - m)
	}
	return -(m + math.Log(s))
}

// nllRTT is the negative log density of ln RTT under the RTT marginal.
func (g *gmm) nllRTT(y float64) float64 {
	var lp [MaxK]float64
	m := math.Inf(-1)
	for j := 0; j < g.k; j++ {
		d0 := y - g.c[j].Mean[0]
		lp[j] = g.lc0[j] - 0.5*d0*d0*g.inv[j][0]
		m = max(m, lp[j])
	}
	var s float64
	for j := 0; j < g.k; j++ {
		s += math.Exp(lp[j] - m)
	}
	return -(m + math.Log(s))
}

// survival is P(X_d > y) under the marginal mixture of dimension d.
func (g *gmm) survival(d int, y float64) float64 {
	var s float64
	for j := 0; j < g.k; j++ {
		// Φ(−z) through erfc keeps precision deep in the upper tail.
		s += g.c[j].Weight * normalCDF(-(y-g.c[j].Mean[d])/g.sd[j][d], 0, 1)
	}
	return min(max(s, 0), 1)
}

// quantile returns y with P(X_d ≤ y) = q under the marginal mixture of
// dimension d, by bisection on the mixture CDF.
func (g *gmm) quantile(d int, q float64) float64 {
	lo, hi := math.Inf(1), math.Inf(-1)
	for j := 0; j < g.k; j++ {
		lo = min(lo, g.c[j].Mean[d]-40*g.sd[j][d])
		hi = max(hi, g.c[j].Mean[d]+40*g.sd[j][d])
	}
	for i := 0; i < 200 && hi-lo > 1e-12; i++ {
		mid := 0.5 * (lo + hi)
		var cdf float64
		for j := 0; j < g.k; j++ {
			cdf += g.c[j].Weight * normalCDF(mid, g.c[j].Mean[d], g.sd[j][d])
		}
		if cdf < q {
			lo = mid
		} else {
			hi = mid
		}
	}
	return 0.5 * (lo + hi)
}

// params is the number of free parameters of a k-component diagonal mixture.
func params(k int) float64 { return float64(k*2*dim + k - 1) }

// fitWork is the scratch space of a fit, sized once per Peer.
type fitWork struct {
	d2  []float64 // n squared distances (k-means++)
	lab []int     // n hard labels (k-means)
}

func newFitWork(n int) fitWork {
	return fitWork{
		d2:  make([]float64, n),
		lab: make([]int, n),
	}
}

// fitBest fits mixtures with 1..kmax components to xs and keeps the one with
// the lowest BIC = −2·LL + p·ln n (Schwarz 1978). It returns false if no
// finite fit was found.
func fitBest(xs [][dim]float64, kmax int, cfg *Config, rng *rand.Rand, w *fitWork) (gmm, bool) {
	n := len(xs)
	// Every component needs a handful of points to be estimable.
	kmax = min(kmax, max(1, n/(2*dim+1)))
	var best gmm
	bestBIC := math.Inf(1)
	for k := 1; k <= kmax; k++ {
		g, ll, ok := fitK(xs, k, cfg, rng, w)
		if !ok {
			continue
		}
		bic := -2*ll + params(g.k)*math.Log(float64(n))
		if bic < bestBIC {
			best, bestBIC = g, bic
		}
	}
	return best, !math.IsInf(bestBIC, 1)
}

// fitK runs EM for a k-component diagonal mixture from a k-means++ start
// (Arthur & Vassilvitskii 2007) refined by a few Lloyd iterations. It returns
// the model and its total log-likelihood.
//
// Each iteration is one pass over the data: the E step's responsibilities
// are folded straight into the sufficient statistics Σr, Σr·x, Σr·x² of the
// M step, so no n×k matrix is stored. MaxIter counts E steps, and the
// returned log-likelihood is always that of the returned model.
func fitK(xs [][dim]float64, k int, cfg *Config, rng *rand.Rand, w *fitWork) (gmm, float64, bool) {
	n := len(xs)
	var g gmm
	g.k = k
	initKMeans(xs, &g, rng, w, cfg.VarFloor)
	g.prepare()
	prev := math.Inf(-1)
	var ll float64
	for it := 0; ; it++ {
		var nk [MaxK]float64
		var s1, s2 [MaxK][dim]float64
		var e [MaxK]float64
		ll = 0
		// Σ ln s_i is taken as ln Π s_i over blocks of 16: each s_i is in
		// [1, k], so a block cannot overflow, and it saves 15 logarithms in 16.
		prod, inBlock := 1.0, 0
		for i := range xs {
			x0, x1 := xs[i][0], xs[i][1]
			m := math.Inf(-1)
			for j := 0; j < g.k; j++ {
				d0 := x0 - g.c[j].Mean[0]
				d1 := x1 - g.c[j].Mean[1]
				e[j] = g.lc[j] - 0.5*(d0*d0*g.inv[j][0]+d1*d1*g.inv[j][1])
				m = max(m, e[j])
			}
			var s float64
			for j := 0; j < g.k; j++ {
				// A component more than e^-40 below the best one moves
				// nothing a float64 can hold: skip its exp.
				if d := e[j] - m; d > -40 {
					e[j] = math.Exp(d)
				} else {
					e[j] = 0
				}
				s += e[j]
			}
			inv := 1 / s
			for j := 0; j < g.k; j++ {
				r := e[j] * inv
				nk[j] += r
				s1[j][0] += r * x0
				s1[j][1] += r * x1
				s2[j][0] += r * x0 * x0
				s2[j][1] += r * x1 * x1
			}
			ll += m
			prod *= s
			if inBlock++; inBlock == 16 {
				ll += math.Log(prod)
				prod, inBlock = 1, 0
			}
		}
		ll += math.Log(prod)
		if math.IsNaN(ll) || math.IsInf(ll, 0) {
			return g, 0, false
		}
		if ll-prev < cfg.Tol*float64(n) || it+1 >= cfg.MaxIter {
			break
		}
		prev = ll
		// M step. Variances from Σr·x²/N − μ²: the features are logs of
		// seconds (|x| ≲ 15), so the cancellation costs < 1e-12 of a
		// variance at the floor.
		kk := 0
		for j := 0; j < g.k; j++ {
			if nk[j] < 1e-9 { // an emptied component is dropped
				continue
			}
			c := Component{Weight: nk[j] / float64(n)}
			for d := 0; d < dim; d++ {
				c.Mean[d] = s1[j][d] / nk[j]
				c.Var[d] = max(s2[j][d]/nk[j]-c.Mean[d]*c.Mean[d], cfg.VarFloor)
			}
			g.c[kk] = c
			kk++
		}
		if kk != g.k {
			g.k = kk
			prev = math.Inf(-1) // a different model: restart the convergence test
		}
		g.prepare()
	}
	return g, ll, true
}

// initKMeans seeds k centres by k-means++, runs up to 10 Lloyd iterations and
// sets weights, means and variances from the hard clusters.
func initKMeans(xs [][dim]float64, g *gmm, rng *rand.Rand, w *fitWork, floor float64) {
	n, k := len(xs), g.k
	var ctr [MaxK][dim]float64
	ctr[0] = xs[rng.IntN(n)]
	d2 := w.d2[:n]
	for i := range xs {
		d2[i] = sqdist(xs[i], ctr[0])
	}
	got := 1
	for ; got < k; got++ {
		var tot float64
		for _, d := range d2 {
			tot += d
		}
		if tot <= 0 {
			break // fewer distinct points than k
		}
		u := rng.Float64() * tot
		pick := n - 1
		for i, d := range d2 {
			u -= d
			if u < 0 {
				pick = i
				break
			}
		}
		ctr[got] = xs[pick]
		for i := range xs {
			d2[i] = min(d2[i], sqdist(xs[i], ctr[got]))
		}
	}
	k = got
	lab := w.lab[:n]
	var cnt [MaxK]float64
	for it := 0; it < 10; it++ {
		changed := false
		for i := range xs {
			bj, bd := 0, math.Inf(1)
			for j := 0; j < k; j++ {
				if d := sqdist(xs[i], ctr[j]); d < bd {
					bj, bd = j, d
				}
			}
			if it == 0 || lab[i] != bj {
				changed = true
			}
			lab[i] = bj
		}
		if !changed {
			break
		}
		var sum [MaxK][dim]float64
		cnt = [MaxK]float64{}
		for i, j := range lab {
			cnt[j]++
			sum[j][0] += xs[i][0]
			sum[j][1] += xs[i][1]
		}
		for j := 0; j < k; j++ {
			if cnt[j] > 0 {
				ctr[j] = [dim]float64{sum[j][0] / cnt[j], sum[j][1] / cnt[j]}
			}
		}
	}
	cnt = [MaxK]float64{}
	var ss [MaxK][dim]float64
	for i, j := range lab {
		cnt[j]++
		d0, d1 := xs[i][0]-ctr[j][0], xs[i][1]-ctr[j][1]
		ss[j][0] += d0 * d0
		ss[j][1] += d1 * d1
	}
	kk := 0
	for j := 0; j < k; j++ {
		if cnt[j] == 0 {
			continue
		}
		g.c[kk] = Component{
			Weight: cnt[j] / float64(n),
			Mean:   ctr[j],
			Var:    [dim]float64{max(ss[j][0]/cnt[j], floor), max(ss[j][1]/cnt[j], floor)},
		}
		kk++
	}
	g.k = kk
}

func sqdist(a, b [dim]float64) float64 {
	d0, d1 := a[0]-b[0], a[1]-b[1]
	return d0*d0 + d1*d1
}
