package scoring

import (
	"math/rand/v2"
	"testing"
	"time"
)

func BenchmarkScore(b *testing.B) {
	p := trained(b, DefaultConfig(), 1000)
	s := Sample{RTT: 2 * time.Millisecond, Gap: time.Second, Load: Load{CPU: 0.3, Mem: 0.5, Load1: 1}, HaveLoad: true}
	b.ReportAllocs()
	for b.Loop() {
		p.Score(s)
	}
}

func BenchmarkScoreMiss(b *testing.B) {
	p := trained(b, DefaultConfig(), 1000)
	s := Sample{Miss: true, RTT: 5 * time.Millisecond, Gap: 2 * time.Second}
	b.ReportAllocs()
	for b.Loop() {
		p.Score(s)
	}
}

func BenchmarkObserve(b *testing.B) {
	p := trained(b, DefaultConfig(), 1000)
	s := Sample{RTT: 2 * time.Millisecond, Gap: time.Second}
	b.ReportAllocs()
	for b.Loop() {
		p.Observe(s)
	}
}

// BenchmarkFit1000 is one full Refit of a 1000-sample window: baselines,
// EM for K = 1..4 with BIC, calibration and timeout.
func BenchmarkFit1000(b *testing.B) {
	p := trained(b, DefaultConfig(), 1000)
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Refit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(p.model.k), "K")
}

// BenchmarkFitK4 is EM for K = 4 alone on 1000 samples.
func BenchmarkFitK4(b *testing.B) {
	cfg := DefaultConfig()
	var xs [][dim]float64
	for _, s := range synth(rand.New(rand.NewPCG(1, 1)), 1000) {
		xs = append(xs, [dim]float64{feat(s.RTT.Seconds()), feat(s.Gap.Seconds())})
	}
	w := newFitWork(len(xs))
	rng := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	for b.Loop() {
		fitK(xs, 4, &cfg, rng, &w)
	}
}

// BenchmarkFitTrace is one full Refit (K = 1..4 by BIC) of a 1000-sample
// window taken from each trace.
func BenchmarkFitTrace(b *testing.B) {
	for _, name := range []string{"healthy", "congested", "slow"} {
		b.Run(name, func(b *testing.B) {
			p, _ := NewPeer(DefaultConfig())
			var last time.Duration
			for i, pr := range loadTrace(b, name) {
				if !pr.hasAck {
					continue
				}
				s := Sample{RTT: pr.rtt}
				if a := pr.send + pr.rtt; i > 0 && a > last {
					s.Gap = a - last
					last = a
				}
				p.Observe(s)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := p.Refit(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(p.model.k), "K")
		})
	}
}
