package scoring

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestSampleValidate(t *testing.T) {
	ok := Sample{RTT: time.Millisecond, Gap: time.Second, Load: Load{CPU: 0.5, Mem: 0.2, Load1: 3}, HaveLoad: true}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		s    Sample
		want error
	}{
		{Sample{RTT: -1}, ErrNegativeDuration},
		{Sample{Gap: -time.Second}, ErrNegativeDuration},
		{Sample{Miss: true, RTT: -1}, ErrNegativeDuration},
		{Sample{HaveLoad: true, Load: Load{CPU: math.NaN()}}, ErrNotFinite},
		{Sample{HaveLoad: true, Load: Load{Mem: math.Inf(1)}}, ErrNotFinite},
		{Sample{HaveLoad: true, Load: Load{Load1: math.Inf(1)}}, ErrNotFinite},
		{Sample{HaveLoad: true, Load: Load{CPU: -0.1}}, ErrOutOfRange},
		{Sample{HaveLoad: true, Load: Load{Mem: 1.5}}, ErrOutOfRange},
	}
	for i, c := range bad {
		if err := c.s.Validate(); !errors.Is(err, c.want) {
			t.Errorf("%d: Validate(%+v) = %v, want %v", i, c.s, err, c.want)
		}
	}
	p, _ := NewPeer(DefaultConfig())
	if _, err := p.Observe(Sample{RTT: -1}); !errors.Is(err, ErrNegativeDuration) {
		t.Errorf("Observe accepted a negative RTT: %v", err)
	}
	if _, err := p.Score(Sample{HaveLoad: true, Load: Load{CPU: math.NaN()}}); !errors.Is(err, ErrNotFinite) {
		t.Errorf("Score accepted NaN: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		field string
		mod   func(*Config)
	}{
		{"RTTAlpha", func(c *Config) { c.RTTAlpha = 0 }},
		{"RTTBeta", func(c *Config) { c.RTTBeta = -1 }},
		{"GapAlpha", func(c *Config) { c.GapAlpha = math.NaN() }},
		{"CPUBeta", func(c *Config) { c.CPUBeta = math.Inf(1) }},
		{"LoadAlpha", func(c *Config) { c.LoadAlpha = -2 }},
		{"VarFloor", func(c *Config) { c.VarFloor = 0 }},
		{"Tol", func(c *Config) { c.Tol = -1 }},
		{"MinBaseline", func(c *Config) { c.MinBaseline = 0 }},
		{"Window", func(c *Config) { c.Window = 5 }},
		{"MinSamples", func(c *Config) { c.MinSamples = c.Window + 1 }},
		{"RefitEvery", func(c *Config) { c.RefitEvery = 0 }},
		{"LateRefit", func(c *Config) { c.LateRefit = 0 }},
		{"Kmax", func(c *Config) { c.Kmax = MaxK + 1 }},
		{"MaxIter", func(c *Config) { c.MaxIter = 0 }},
		{"TimeoutQuantile", func(c *Config) { c.TimeoutQuantile = 1 }},
		{"MinTimeout", func(c *Config) { c.MinTimeout = 0 }},
		{"MaxTimeout", func(c *Config) { c.MaxTimeout = c.MinTimeout - 1 }},
	}
	for _, c := range cases {
		cfg := DefaultConfig()
		c.mod(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: Validate = %v, want ErrInvalidConfig naming the field", c.field, err)
		}
		if _, err := NewPeer(cfg); err == nil {
			t.Errorf("%s: NewPeer accepted an invalid config", c.field)
		}
	}
}

// synth draws answered samples of a peer with two RTT modes.
func synth(r *rand.Rand, n int) []Sample {
	out := make([]Sample, n)
	for i := range out {
		rtt := 2e-3 * math.Exp(0.2*r.NormFloat64())
		if r.Float64() < 0.2 {
			rtt = 50e-3 * math.Exp(0.2*r.NormFloat64())
		}
		gap := 1.0 * math.Exp(0.02*r.NormFloat64())
		out[i] = Sample{
			RTT: time.Duration(rtt * 1e9), Gap: time.Duration(gap * 1e9),
			Load: Load{CPU: 0.3, Mem: 0.5, Load1: 2}, HaveLoad: true,
		}
	}
	return out
}

// trained returns a Peer that has observed n synthetic samples, refitting
// when asked.
func trained(t testing.TB, cfg Config, n int) *Peer {
	t.Helper()
	p, err := NewPeer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range synth(rand.New(rand.NewPCG(7, 7)), n) {
		if _, err := p.Observe(s); err != nil {
			t.Fatal(err)
		}
		if p.NeedsRefit() {
			if err := p.Refit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return p
}

func TestThresholdScorer(t *testing.T) {
	cfg := DefaultConfig()
	p, _ := NewPeer(cfg)
	r, _ := p.Score(Sample{RTT: time.Second, Gap: time.Second})
	if r.Threshold != 0 || r.Metric != MetricNone || r.GMMReady || r.Timeout != cfg.MaxTimeout {
		t.Fatalf("empty peer: %+v", r)
	}
	for i := 0; i < cfg.MinBaseline; i++ {
		p.Observe(Sample{RTT: 10 * time.Millisecond, Gap: time.Second, Load: Load{CPU: 0.2, Mem: 0.4, Load1: 1}, HaveLoad: true})
	}
	if !p.NeedsRefit() {
		t.Fatal("NeedsRefit false after MinBaseline samples")
	}
	if err := p.Refit(); err != nil {
		t.Fatal(err)
	}
	// RTT threshold = 3·10ms + 10ms = 40ms.
	r, _ = p.Score(Sample{RTT: 80 * time.Millisecond, Gap: time.Second})
	if math.Abs(r.Threshold-2) > 1e-9 || r.Metric != MetricRTT {
		t.Errorf("RTT score = %v (%v), want 2 (rtt)", r.Threshold, r.Metric)
	}
	// Gap threshold = 2.5·1s: a miss 5s after the last answer scores 2.
	r, _ = p.Score(Sample{Miss: true, RTT: 40 * time.Millisecond, Gap: 5 * time.Second})
	if math.Abs(r.Threshold-2) > 1e-9 || r.Metric != MetricGap {
		t.Errorf("gap score = %v (%v), want 2 (gap)", r.Threshold, r.Metric)
	}
	// CPU threshold = 1·0.2 + 0.5 = 0.7.
	r, _ = p.Score(Sample{RTT: 10 * time.Millisecond, Gap: time.Second, Load: Load{CPU: 1, Mem: 0.4, Load1: 1}, HaveLoad: true})
	if math.Abs(r.Threshold-1/0.7) > 1e-9 || r.Metric != MetricCPU {
		t.Errorf("cpu score = %v (%v), want %v (cpu)", r.Threshold, r.Metric, 1/0.7)
	}
	if r.GMMReady || r.PFail != 0 {
		t.Errorf("GMM ready too early: %+v", r)
	}
	if want := 40 * time.Millisecond; r.Timeout != want {
		t.Errorf("threshold timeout %v, want %v", r.Timeout, want)
	}
}

func TestBaselineIsRobust(t *testing.T) {
	cfg := DefaultConfig()
	p, _ := NewPeer(cfg)
	for i := 0; i < 99; i++ {
		p.Observe(Sample{RTT: 2 * time.Millisecond, Gap: time.Second})
	}
	p.Observe(Sample{RTT: 10 * time.Second, Gap: time.Second}) // one outlier, last
	p.Refit()
	if b, ok := p.Baseline(MetricRTT); !ok || math.Abs(b-2e-3) > 1e-12 {
		t.Errorf("baseline = %v, %v; want the median 2ms", b, ok)
	}
}

func TestMissesAreNotLearned(t *testing.T) {
	cfg := DefaultConfig()
	p, _ := NewPeer(cfg)
	for i := 0; i < 1000; i++ {
		p.Observe(Sample{Miss: true, RTT: time.Second, Gap: time.Duration(i) * time.Second})
	}
	if p.NeedsRefit() || p.n != 0 {
		t.Fatalf("misses entered the window: n=%d", p.n)
	}
}

func TestGMMRecoversMixture(t *testing.T) {
	p := trained(t, DefaultConfig(), 1000)
	if !p.Ready() {
		t.Fatal("not ready after 1000 samples")
	}
	cs := p.Components()
	var fast, slow float64
	for _, c := range cs {
		switch {
		case math.Abs(c.Mean[0]-math.Log(2e-3)) < 0.1:
			fast += c.Weight
		case math.Abs(c.Mean[0]-math.Log(50e-3)) < 0.1:
			slow += c.Weight
		}
		for d := 0; d < dim; d++ {
			if c.Var[d] < DefaultConfig().VarFloor {
				t.Errorf("variance %v below floor", c.Var[d])
			}
		}
	}
	if len(cs) < 2 || math.Abs(fast-0.8) > 0.05 || math.Abs(slow-0.2) > 0.05 {
		t.Errorf("components %+v: want ≈0.8 at 2ms and ≈0.2 at 50ms", cs)
	}
	// The timeout is the 0.999 quantile of the RTT mixture: check it against
	// the mixture CDF.
	y := math.Log(p.Timeout().Seconds())
	if s := p.model.survival(0, y); math.Abs(s-0.001) > 1e-6 {
		t.Errorf("survival at timeout = %v, want 0.001", s)
	}
}

func TestBICPicksOneForUnimodal(t *testing.T) {
	cfg := DefaultConfig()
	r := rand.New(rand.NewPCG(1, 2))
	xs := make([][dim]float64, 1000)
	for i := range xs {
		xs[i] = [dim]float64{-6 + 0.3*r.NormFloat64(), 0.05 * r.NormFloat64()}
	}
	w := newFitWork(len(xs))
	g, ok := fitBest(xs, 4, &cfg, rand.New(rand.NewPCG(3, 4)), &w)
	if !ok || g.k != 1 {
		t.Errorf("k = %d (ok %v), want 1", g.k, ok)
	}
}

func TestFitDeterministic(t *testing.T) {
	a := trained(t, DefaultConfig(), 600)
	b := trained(t, DefaultConfig(), 600)
	if a.model != b.model || a.timeout != b.timeout {
		t.Error("two fits with the same seed differ")
	}
}

func TestDegenerateWindow(t *testing.T) {
	// All samples identical: the variance floor keeps the model finite.
	cfg := DefaultConfig()
	p, _ := NewPeer(cfg)
	for i := 0; i < cfg.MinSamples; i++ {
		p.Observe(Sample{RTT: time.Millisecond, Gap: time.Second})
	}
	if err := p.Refit(); err != nil {
		t.Fatal(err)
	}
	r, _ := p.Score(Sample{RTT: time.Millisecond, Gap: time.Second})
	if !r.GMMReady || math.IsNaN(r.PFail) || r.PFail < 0 || r.PFail > 1 {
		t.Errorf("degenerate: %+v", r)
	}
}

func TestCalibration(t *testing.T) {
	// Fresh healthy samples: PFail ≥ p should happen about 1−p of the time.
	p := trained(t, DefaultConfig(), 1000)
	fresh := synth(rand.New(rand.NewPCG(99, 99)), 20000)
	for _, level := range []float64{0.5, 0.9, 0.99} {
		var over int
		for _, s := range fresh {
			r, _ := p.Score(s)
			if r.PFail >= level {
				over++
			}
		}
		got, want := float64(over)/float64(len(fresh)), 1-level
		if math.Abs(got-want) > 0.35*want+0.002 {
			t.Errorf("P(PFail ≥ %v) = %.4f, want ≈ %.4f", level, got, want)
		}
	}
}

func TestMissPFail(t *testing.T) {
	p := trained(t, DefaultConfig(), 1000)
	tau := p.Timeout()
	// A miss at the timeout, right after an answer: PFail = q.
	r, _ := p.Score(Sample{Miss: true, RTT: tau, Gap: time.Second})
	if math.Abs(r.PFail-0.999) > 1e-4 {
		t.Errorf("miss at timeout: PFail = %v, want 0.999", r.PFail)
	}
	// Silence grows: PFail rises to 1.
	prev := r.PFail
	for _, g := range []time.Duration{1100 * time.Millisecond, 2 * time.Second, 5 * time.Second} {
		r, _ := p.Score(Sample{Miss: true, RTT: tau, Gap: g})
		if r.PFail < prev {
			t.Errorf("PFail fell from %v to %v at gap %v", prev, r.PFail, g)
		}
		prev = r.PFail
	}
	if prev < 1-1e-9 {
		t.Errorf("5s of silence: PFail = %v, want ≈ 1", prev)
	}
	// Gap unknown: the RTT marginal is used for answers.
	r, _ = p.Score(Sample{RTT: 2 * time.Millisecond})
	if !(r.PFail < 0.9) || r.NLL == 0 {
		t.Errorf("typical answer without gap: %+v", r)
	}
	r, _ = p.Score(Sample{RTT: 5 * time.Second})
	if !(r.PFail > 0.999) {
		t.Errorf("5s answer without gap: %+v", r)
	}
}

func TestScoreDoesNotAllocate(t *testing.T) {
	p := trained(t, DefaultConfig(), 1000)
	samples := []Sample{
		{RTT: 2 * time.Millisecond, Gap: time.Second, Load: Load{CPU: 0.3, Mem: 0.5, Load1: 1}, HaveLoad: true},
		{RTT: 2 * time.Millisecond},
		{Miss: true, RTT: 5 * time.Millisecond, Gap: 2 * time.Second},
	}
	for _, s := range samples {
		if a := testing.AllocsPerRun(100, func() { p.Score(s) }); a != 0 {
			t.Errorf("Score(%+v) allocates %v times", s, a)
		}
		if a := testing.AllocsPerRun(100, func() { p.Observe(s) }); a != 0 {
			t.Errorf("Observe(%+v) allocates %v times", s, a)
		}
	}
}
