package scoring

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// Quality: the GMM detector against a fixed timeout and a phi-accrual
// detector (Hayashibara et al., "The φ accrual failure detector", SRDS 2004)
// on the traces of testdata/traces.
//
// Every detector sees the probes of a trace in order and raises at most one
// alarm per probe:
//
//   - gmm: the probe is timed out after the peer's adaptive timeout
//     (Result.Timeout); a timed-out probe is scored as a miss and raises an
//     alarm if PFail ≥ gmmPStar. Answers, late ones included, are observed;
//     Refit runs whenever NeedsRefit says so. Before the mixture is ready any
//     timed-out probe is an alarm.
//   - fixed: the probe raises an alarm if no answer comes within T.
//   - phi: inter-arrival times of answers, normal with the mean and standard
//     deviation of the last 1000; an alarm when the next answer comes later
//     than mean + z·sd (i.e. φ crosses −log10 Q(z)).
//
// Operating points: the GMM runs with DefaultConfig (q = 0.999) and
// gmmPStar. Its detection delay D on the crash trace (first alarm after the
// crash, minus the crash time) then fixes the other two: T = D, and z such
// that φ crosses its threshold exactly D after the crash. So all three detect
// the crash equally fast, and the test compares false alarms (alarms on
// probes of a live node, after a warm-up of qualityWarmup probes, divided by
// the number of such probes).
//
// The fixed timeout is one number for the whole cluster and the crash happens
// on a quiet LAN peer, where a short timeout is affordable. That is exactly
// the case the adaptive timeout exists for: a timeout short enough to catch
// that crash fires constantly on a peer with GC pauses, a congested link or a
// long tail, while the mixture moves its timeout per peer.

const (
	gmmPStar      = 0.99
	qualityWarmup = 200
	phiWindow     = 1000
)

// opPoint is one detector's outcome on one trace.
type opPoint struct {
	alarms, probes int
	delay          time.Duration // -1: crash not detected or no crash
}

func (o opPoint) far() float64 { return float64(o.alarms) / float64(max(o.probes, 1)) }

func crashTime(tr []probe) (time.Duration, bool) {
	for _, p := range tr {
		if !p.up {
			return p.send, true
		}
	}
	return 0, false
}

func runGMM(t testing.TB, tr []probe, cfg Config) opPoint {
	p, err := NewPeer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tc, crashed := crashTime(tr)
	op := opPoint{delay: -1}
	var lastAck time.Duration
	haveAck := false
	for i, pr := range tr {
		tau := p.Timeout()
		if !pr.hasAck || pr.rtt > tau {
			at := pr.send + tau
			miss := Sample{Miss: true, RTT: tau}
			if haveAck && at > lastAck {
				miss.Gap = at - lastAck
			}
			r, err := p.Observe(miss)
			if err != nil {
				t.Fatal(err)
			}
			alarm := !r.GMMReady || r.PFail >= gmmPStar
			if alarm && crashed && !pr.up && op.delay < 0 {
				op.delay = at - tc
			}
			if alarm && pr.up && i >= qualityWarmup {
				op.alarms++
			}
		}
		if pr.up && i >= qualityWarmup {
			op.probes++
		}
		if pr.hasAck && pr.rtt <= cfg.MaxTimeout {
			ack := pr.send + pr.rtt
			s := Sample{RTT: pr.rtt, Load: pr.load, HaveLoad: true}
			if haveAck && ack > lastAck {
				s.Gap = ack - lastAck
			}
			if _, err := p.Observe(s); err != nil {
				t.Fatal(err)
			}
			if !haveAck || ack > lastAck {
				lastAck, haveAck = ack, true
			}
		}
		if p.NeedsRefit() {
			if err := p.Refit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return op
}

func runFixed(tr []probe, timeout time.Duration) opPoint {
	tc, crashed := crashTime(tr)
	op := opPoint{delay: -1}
	for i, pr := range tr {
		alarm := !pr.hasAck || pr.rtt > timeout
		if alarm && crashed && !pr.up && op.delay < 0 {
			op.delay = pr.send + timeout - tc
		}
		if pr.up && i >= qualityWarmup {
			op.probes++
			if alarm {
				op.alarms++
			}
		}
	}
	return op
}

// phiState is the sliding window of inter-arrival times of a phi detector.
type phiState struct {
	gaps      []float64 // seconds, ring
	head, n   int
	sum, sum2 float64
}

func (s *phiState) add(g float64) {
	if s.n == len(s.gaps) {
		old := s.gaps[s.head]
		s.sum -= old
		s.sum2 -= old * old
	} else {
		s.n++
	}
	s.gaps[s.head] = g
	s.head = (s.head + 1) % len(s.gaps)
	s.sum += g
	s.sum2 += g * g
}

func (s *phiState) stats() (mean, sd float64) {
	mean = s.sum / float64(s.n)
	v := s.sum2/float64(s.n) - mean*mean
	return mean, math.Sqrt(max(v, 1e-12))
}

// acks returns the answer arrival times of a trace in arrival order with the
// index of the probe answered.
func acks(tr []probe) (at []time.Duration, idx []int) {
	type ack struct {
		t time.Duration
		i int
	}
	var as []ack
	for i, p := range tr {
		if p.hasAck {
			as = append(as, ack{p.send + p.rtt, i})
		}
	}
	// Nearly sorted already: insertion sort.
	for i := 1; i < len(as); i++ {
		for j := i; j > 0 && as[j].t < as[j-1].t; j-- {
			as[j], as[j-1] = as[j-1], as[j]
		}
	}
	for _, a := range as {
		at = append(at, a.t)
		idx = append(idx, a.i)
	}
	return at, idx
}

// phiZForDelay returns the z at which phi detects the crash exactly d after
// it happens.
func phiZForDelay(tr []probe, d time.Duration) float64 {
	tc, _ := crashTime(tr)
	at, _ := acks(tr)
	s := phiState{gaps: make([]float64, phiWindow)}
	var last time.Duration
	for j, a := range at {
		if j > 0 {
			s.add((a - at[j-1]).Seconds())
		}
		last = a
	}
	mean, sd := s.stats()
	return ((tc + d - last).Seconds() - mean) / sd
}

func runPhi(tr []probe, z float64) opPoint {
	tc, crashed := crashTime(tr)
	at, idx := acks(tr)
	s := phiState{gaps: make([]float64, phiWindow)}
	op := opPoint{delay: -1}
	for j := 1; j < len(at); j++ {
		g := (at[j] - at[j-1]).Seconds()
		if s.n >= 10 {
			mean, sd := s.stats()
			if idx[j] >= qualityWarmup {
				op.probes++
				if g > mean+z*sd {
					op.alarms++
				}
			}
		}
		s.add(g)
	}
	if crashed {
		mean, sd := s.stats()
		op.delay = at[len(at)-1] + time.Duration((mean+z*sd)*1e9) - tc
		if op.delay < 0 {
			op.delay = 0 // alarmed before the crash: counted, not a detection
		}
	}
	return op
}

func phiOf(z float64) string {
	q := 0.5 * math.Erfc(z/math.Sqrt2)
	if q <= 0 {
		return "inf"
	}
	return fmt.Sprintf("%.2f", -math.Log10(q))
}

func TestQuality(t *testing.T) {
	cfg := DefaultConfig()
	names := []string{"crash", "healthy", "congested", "slow"}
	traces := map[string][]probe{}
	for _, n := range names {
		traces[n] = loadTrace(t, n)
	}
	gmm := map[string]opPoint{}
	for _, n := range names {
		gmm[n] = runGMM(t, traces[n], cfg)
	}
	d := gmm["crash"].delay
	if d < 0 {
		t.Fatalf("gmm did not detect the crash")
	}
	if d > cfg.MaxTimeout {
		t.Errorf("gmm detected the crash after %v, want at the first missed probe (≤ %v)", d, cfg.MaxTimeout)
	}
	fixedT := d
	z := phiZForDelay(traces["crash"], d)
	fixed, phi := map[string]opPoint{}, map[string]opPoint{}
	for _, n := range names {
		fixed[n] = runFixed(traces[n], fixedT)
		phi[n] = runPhi(traces[n], z)
	}

	var tab strings.Builder
	fmt.Fprintf(&tab, "operating points: gmm q=%.3f PFail≥%.2f; fixed T=%v; phi z=%.2f (Φ=%s)\n",
		cfg.TimeoutQuantile, gmmPStar, fixedT, z, phiOf(z))
	fmt.Fprintf(&tab, "%-10s %-6s %8s %7s %12s\n", "trace", "det", "alarms", "FAR%", "crash delay")
	for _, n := range names {
		for _, det := range []struct {
			name string
			op   opPoint
		}{{"gmm", gmm[n]}, {"fixed", fixed[n]}, {"phi", phi[n]}} {
			delay := "-"
			if det.op.delay >= 0 {
				delay = det.op.delay.Round(time.Microsecond).String()
			}
			fmt.Fprintf(&tab, "%-10s %-6s %8d %7.3f %12s\n", n, det.name, det.op.alarms, 100*det.op.far(), delay)
		}
	}
	t.Logf("\n%s", tab.String())

	if fixed["crash"].delay < d {
		t.Errorf("operating points not matched: fixed delay %v < gmm delay %v", fixed["crash"].delay, d)
	}
	// Besides beating the fixed timeout, the GMM must stay near its nominal
	// rate (1 − q = 0.1 %) on stationary traces; congestion pays for the
	// transition until the refits catch up.
	bound := map[string]float64{"healthy": 0.01, "congested": 0.03, "slow": 0.01}
	for _, n := range []string{"healthy", "congested", "slow"} {
		g, f := gmm[n].far(), fixed[n].far()
		if !(g < f) {
			t.Errorf("%s: gmm false-alarm rate %.4f not below fixed %.4f", n, g, f)
		}
		if g > bound[n] {
			t.Errorf("%s: gmm false-alarm rate %.4f above %.2f", n, g, bound[n])
		}
	}
}
