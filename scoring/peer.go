package scoring

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// ErrFitFailed is returned by Refit when EM produced no finite model; the
// previous model, if any, stays in use.
var ErrFitFailed = errors.New("scoring: mixture fit failed")

// Metric names one input of the threshold scorer.
type Metric uint8

// Metrics scored against thresholds.
const (
	MetricNone Metric = iota
	MetricRTT
	MetricGap
	MetricCPU
	MetricMem
	MetricLoad
	numMetrics
)

func (m Metric) String() string {
	switch m {
	case MetricRTT:
		return "rtt"
	case MetricGap:
		return "gap"
	case MetricCPU:
		return "cpu"
	case MetricMem:
		return "mem"
	case MetricLoad:
		return "load"
	}
	return "none"
}

// Result is the evidence one sample gives about one peer.
type Result struct {
	// Threshold is the largest value/threshold over the metrics present in
	// the sample that have a baseline; > 1 means some metric is over its
	// threshold. 0 if no metric could be scored.
	Threshold float64
	// Metric is the metric that gave Threshold.
	Metric Metric
	// GMMReady is false until the mixture has been fitted; NLL and PFail
	// are then 0 and only Threshold speaks.
	GMMReady bool
	// NLL is the negative log density (nats) of the answered sample under
	// the mixture: joint [ln RTT, ln gap], or the RTT marginal if Gap is
	// unknown. 0 for a miss.
	NLL float64
	// PFail, in [0, 1], is 1 − p-value: the probability that a healthy
	// sample of this peer would be less anomalous than this one. For an
	// answered sample it is the calibrated NLL; for a miss it is the
	// one-sided evidence of silence (see doc.go).
	PFail float64
	// Timeout is the adaptive probe timeout to use for the next probe of
	// this peer.
	Timeout time.Duration
}

// rec is one answered sample in the window, in seconds and fractions.
type rec struct {
	rtt, gap        float64 // seconds; gap 0 = unknown
	cpu, mem, load1 float64
	haveLoad        bool
}

// Peer is the model of one peer. It is not safe for concurrent use.
type Peer struct {
	cfg Config
	pcg *rand.PCG
	rng *rand.Rand

	win  []rec // ring of the last cfg.Window answered samples
	head int   // next write position
	n    int   // samples in win
	nGap int   // samples in win with a known gap

	sinceRefit int    // answered samples since the last Refit
	late       int    // answered samples since the last Refit slower than timeout
	refits     uint64 // Refit calls that fitted a mixture (seeds the PCG)
	answered   uint64
	misses     uint64

	base   [numMetrics]float64 // median per metric
	baseOK [numMetrics]bool

	ready   bool
	model   gmm
	calJ    calib // joint NLL
	calR    calib // RTT-marginal NLL
	timeout time.Duration

	// scratch for Refit, sized by cfg.Window
	xs   [][dim]float64
	vals []float64
	fw   fitWork
}

// NewPeer returns an empty model for one peer.
func NewPeer(cfg Config) (*Peer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Peer{cfg: cfg, timeout: cfg.MaxTimeout}
	p.alloc()
	return p, nil
}

func (p *Peer) alloc() {
	p.pcg = rand.NewPCG(p.cfg.Seed, 0)
	p.rng = rand.New(p.pcg)
	p.win = make([]rec, p.cfg.Window)
	p.xs = make([][dim]float64, 0, p.cfg.Window)
	p.vals = make([]float64, 0, p.cfg.Window)
	p.fw = newFitWork(p.cfg.Window)
}

// Config returns the configuration of p.
func (p *Peer) Config() Config { return p.cfg }

// Ready reports whether the mixture has been fitted.
func (p *Peer) Ready() bool { return p.ready }

// Timeout returns the current adaptive probe timeout.
func (p *Peer) Timeout() time.Duration { return p.timeout }

// Components returns a copy of the fitted mixture (nil before the first fit).
func (p *Peer) Components() []Component {
	if !p.ready {
		return nil
	}
	return slices.Clone(p.model.c[:p.model.k])
}

// Baseline returns the median of metric m over the window as of the last
// Refit (seconds for RTT and gap), and whether it exists.
func (p *Peer) Baseline(m Metric) (float64, bool) {
	if m <= MetricNone || m >= numMetrics {
		return 0, false
	}
	return p.base[m], p.baseOK[m]
}

// Score evaluates s against the current model without learning from it.
// It does not allocate for a valid sample.
func (p *Peer) Score(s Sample) (Result, error) {
	if err := s.Validate(); err != nil {
		return Result{}, err
	}
	return p.score(s), nil
}

// Observe scores s against the current model and then learns it: an answered
// sample enters the window, a miss is only counted. Observe never refits;
// call Refit when NeedsRefit reports true. It does not allocate.
func (p *Peer) Observe(s Sample) (Result, error) {
	if err := s.Validate(); err != nil {
		return Result{}, err
	}
	r := p.score(s)
	if s.Miss {
		p.misses++
		return r, nil
	}
	p.answered++
	if p.n == len(p.win) && p.win[p.head].gap > 0 {
		p.nGap-- // evicted
	}
	if s.Gap > 0 {
		p.nGap++
	}
	p.win[p.head] = rec{
		rtt: s.RTT.Seconds(), gap: s.Gap.Seconds(),
		cpu: s.Load.CPU, mem: s.Load.Mem, load1: s.Load.Load1, haveLoad: s.HaveLoad,
	}
	p.head = (p.head + 1) % len(p.win)
	p.n = min(p.n+1, len(p.win))
	p.sinceRefit++
	if s.RTT > p.timeout {
		p.late++
	}
	return r, nil
}

// NeedsRefit reports whether Refit should be called: RefitEvery answered
// samples arrived since the last one (or half the window's samples, if
// more), or LateRefit of them came back later
// than the adaptive timeout (the peer has changed; at q = 0.999 about one in
// a thousand healthy answers is late), or enough samples arrived for a first
// baseline or a first mixture.
func (p *Peer) NeedsRefit() bool {
	if p.sinceRefit == 0 {
		return false
	}
	if p.sinceRefit >= max(p.cfg.RefitEvery, p.n/2) || (p.ready && p.late >= p.cfg.LateRefit) {
		return true
	}
	if !p.baseOK[MetricRTT] && p.n >= p.cfg.MinBaseline {
		return true
	}
	return !p.ready && p.nGap >= p.cfg.MinSamples
}

// feat maps seconds to the model's feature space.
func feat(sec float64) float64 { return math.Log(max(sec, minDuration)) }

func (p *Peer) score(s Sample) Result {
	r := Result{GMMReady: p.ready, Timeout: p.timeout}
	// Threshold scorer.
	try := func(m Metric, v float64, alpha, beta float64) {
		if !p.baseOK[m] {
			return
		}
		th := alpha*p.base[m] + beta
		if th <= 0 {
			return
		}
		if sc := v / th; sc > r.Threshold {
			r.Threshold, r.Metric = sc, m
		}
	}
	if !s.Miss {
		try(MetricRTT, s.RTT.Seconds(), p.cfg.RTTAlpha, p.cfg.RTTBeta.Seconds())
	}
	if s.Gap > 0 {
		try(MetricGap, s.Gap.Seconds(), p.cfg.GapAlpha, p.cfg.GapBeta.Seconds())
	}
	if s.HaveLoad {
		try(MetricCPU, s.Load.CPU, p.cfg.CPUAlpha, p.cfg.CPUBeta)
		try(MetricMem, s.Load.Mem, p.cfg.MemAlpha, p.cfg.MemBeta)
		try(MetricLoad, s.Load.Load1, p.cfg.LoadAlpha, p.cfg.LoadBeta)
	}
	if !p.ready {
		return r
	}
	// Mixture.
	switch {
	case s.Miss:
		// The RTT is censored: all we know is that it exceeded the time
		// waited, and that the peer has been silent for Gap. Each is a
		// one-sided test; PFail takes the stronger of the two.
		surv := 1.0
		if s.RTT > 0 {
			surv = min(surv, p.model.survival(0, feat(s.RTT.Seconds())))
		}
		if s.Gap > 0 {
			surv = min(surv, p.model.survival(1, feat(s.Gap.Seconds())))
		}
		r.PFail = 1 - surv
	case s.Gap > 0:
		r.NLL = p.model.nll([dim]float64{feat(s.RTT.Seconds()), feat(s.Gap.Seconds())})
		r.PFail = 1 - p.calJ.pvalue(r.NLL)
	default:
		r.NLL = p.model.nllRTT(feat(s.RTT.Seconds()))
		r.PFail = 1 - p.calR.pvalue(r.NLL)
	}
	return r
}

// Refit recomputes the baselines and, once MinSamples answered samples with a
// known gap are in the window, refits the mixture (K chosen by BIC from
// 1..Kmax), its calibration and the adaptive timeout. It costs O(Window·Kmax²
// ·iterations); see BenchmarkFit1000. On ErrFitFailed the previous model stays.
func (p *Peer) Refit() error {
	p.sinceRefit, p.late = 0, 0
	p.refitBaselines()
	p.xs = p.xs[:0]
	// Oldest first, so that a decoded snapshot (whose ring starts at 0)
	// sums in the same order and fits bit for bit the same model.
	start := (p.head - p.n + len(p.win)) % len(p.win)
	for i := 0; i < p.n; i++ {
		if r := p.win[(start+i)%len(p.win)]; r.gap > 0 {
			p.xs = append(p.xs, [dim]float64{feat(r.rtt), feat(r.gap)})
		}
	}
	if len(p.xs) < p.cfg.MinSamples {
		p.timeout = p.thresholdTimeout()
		return nil
	}
	p.pcg.Seed(p.cfg.Seed, p.refits)
	p.refits++
	g, ok := fitBest(p.xs, p.cfg.Kmax, &p.cfg, p.rng, &p.fw)
	if !ok {
		return ErrFitFailed
	}
	g.prepare()
	p.model = g
	p.ready = true
	nll := p.vals[:len(p.xs)]
	for i, x := range p.xs {
		nll[i] = g.nll(x)
	}
	p.calJ.fit(nll)
	for i, x := range p.xs {
		nll[i] = g.nllRTT(x[0])
	}
	p.calR.fit(nll)
	p.timeout = p.clamp(math.Exp(g.quantile(0, p.cfg.TimeoutQuantile)))
	return nil
}

// thresholdTimeout is the timeout before the mixture exists: the RTT
// threshold, or MaxTimeout without a baseline.
func (p *Peer) thresholdTimeout() time.Duration {
	if !p.baseOK[MetricRTT] {
		return p.cfg.MaxTimeout
	}
	return p.clamp(p.cfg.RTTAlpha*p.base[MetricRTT] + p.cfg.RTTBeta.Seconds())
}

func (p *Peer) clamp(sec float64) time.Duration {
	if math.IsNaN(sec) || sec >= p.cfg.MaxTimeout.Seconds() {
		return p.cfg.MaxTimeout
	}
	d := time.Duration(sec * float64(time.Second))
	return min(max(d, p.cfg.MinTimeout), p.cfg.MaxTimeout)
}

func (p *Peer) refitBaselines() {
	for m := MetricRTT; m < numMetrics; m++ {
		v := p.vals[:0]
		for i := 0; i < p.n; i++ {
			r := &p.win[i]
			switch {
			case m == MetricRTT:
				v = append(v, r.rtt)
			case m == MetricGap && r.gap > 0:
				v = append(v, r.gap)
			case m == MetricCPU && r.haveLoad:
				v = append(v, r.cpu)
			case m == MetricMem && r.haveLoad:
				v = append(v, r.mem)
			case m == MetricLoad && r.haveLoad:
				v = append(v, r.load1)
			}
		}
		if len(v) < p.cfg.MinBaseline {
			p.baseOK[m] = false
			p.base[m] = 0
			continue
		}
		slices.Sort(v)
		p.base[m] = quantile(0.5, v)
		p.baseOK[m] = true
	}
}
