package scoring

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"
)

// quantile gives what gonum's stat.Quantile (LinInterp, no weights) gives.
func TestQuantileIsGonums(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ps := []float64{0, 1e-9, 0.001, 0.25, 0.5, 0.5 + 1e-12, 0.75, 0.999, 1}
	for n := 1; n <= 40; n++ {
		for range 50 {
			x := make([]float64, n)
			for i := range x {
				x[i] = math.Round(r.NormFloat64()*4) / 2 // ties too
			}
			slices.Sort(x)
			for _, p := range append(ps, r.Float64()) {
				if got, want := quantile(p, x), stat.Quantile(p, stat.LinInterp, x, nil); got != want {
					t.Fatalf("quantile(%v, %v) = %v, gonum says %v", p, x, got, want)
				}
			}
		}
	}
	if !math.IsNaN(quantile(0.5, []float64{1, math.NaN()})) {
		t.Fatal("a NaN in the data must give NaN")
	}
}

// normalCDF gives what gonum's distuv.Normal.CDF gives.
func TestNormalCDFIsGonums(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		mu, sigma, x := r.NormFloat64()*3, 0.01+r.Float64()*2, r.NormFloat64()*10
		if got, want := normalCDF(x, mu, sigma), (distuv.Normal{Mu: mu, Sigma: sigma}).CDF(x); got != want {
			t.Fatalf("normalCDF(%v, %v, %v) = %v, gonum says %v", x, mu, sigma, got, want)
		}
	}
}
