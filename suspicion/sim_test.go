package suspicion

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The simulation drives one Tracker (one observer's view of one peer) with
// the prober described in doc.go: one ping per ProbeGap, IdleInterval while
// the tracker is calm and ProbeInterval/Burst while it is urgent, results fed in the
// order they become known. Time is virtual; randomness is a seeded PCG.

// link describes the peer and the path to it.
type link struct {
	loss     float64       // probability a round trip is lost
	lossFrom time.Duration // loss applies to pings sent from this time on
	crashAt  time.Duration // the peer is dead from here on; < 0 = never
	// pausedUntil returns when the peer resumes if it is stopped at t.
	pausedUntil func(t time.Duration) (time.Duration, bool)
	timeout     time.Duration // prober's (adaptive) timeout
	rtt         time.Duration // base round-trip time
}

// pausePeriodic stops the peer for stop out of every period.
func pausePeriodic(period, stop time.Duration) func(time.Duration) (time.Duration, bool) {
	return func(t time.Duration) (time.Duration, bool) {
		if t < 0 {
			return 0, false
		}
		off := t % period
		if off < stop {
			return t - off + stop, true
		}
		return 0, false
	}
}

// pauseOnce stops the peer during [from, to).
func pauseOnce(from, to time.Duration) func(time.Duration) (time.Duration, bool) {
	return func(t time.Duration) (time.Duration, bool) {
		if t >= from && t < to {
			return to, true
		}
		return 0, false
	}
}

type event struct {
	at  time.Duration
	obs Observation
}

type pairRun struct {
	tk          *Tracker
	accused     []time.Duration // times of entering Accused
	proposals   []time.Duration
	healthyAt   []time.Duration // times of entering Healthy
	leftAccused []time.Duration // times of leaving Accused
	observed    int
	runStarts   int // misses that followed a reply (or the first result)
	maxRun      int
	// expectFalse sums loss^bar over run starts while the link is lossy:
	// the expected number of false accusations given the bars in force.
	expectFalse float64
	suspectTime time.Duration
	pings       int
}

// simulate runs one observer-peer pair for dur.
func simulate(rng *rand.Rand, cfg Config, l link, dur time.Duration) *pairRun {
	tk, err := NewTracker(cfg)
	if err != nil {
		panic(err)
	}
	r := &pairRun{tk: tk}
	var pending []event // sorted by at
	clock := time.Duration(rng.Int64N(int64(cfg.ProbeInterval)))
	lastSend := clock - cfg.ProbeInterval
	stateSince := clock
	prevMiss := false
	for clock < dur {
		next := max(lastSend+tk.ProbeGap(clock), clock)
		if len(pending) > 0 && pending[0].at <= next {
			ev := pending[0]
			pending = pending[1:]
			clock = ev.at
			before := tk.State()
			if ev.obs.Miss && !prevMiss && l.loss > 0 && ev.at >= l.lossFrom && (l.crashAt < 0 || ev.at < l.crashAt) {
				r.expectFalse += math.Pow(l.loss, float64(tk.needMisses(ev.at)))
			}
			tr := tk.Observe(ev.at, ev.obs)
			r.observed++
			if ev.obs.Miss {
				if !prevMiss {
					r.runStarts++
				}
				r.maxRun = max(r.maxRun, tk.misses)
			}
			prevMiss = ev.obs.Miss
			if tr.Changed() {
				if before == Suspect {
					r.suspectTime += ev.at - stateSince
				}
				stateSince = ev.at
				switch {
				case tr.To == Accused:
					r.accused = append(r.accused, ev.at)
				case tr.From == Accused:
					r.leftAccused = append(r.leftAccused, ev.at)
				}
				if tr.To == Healthy {
					r.healthyAt = append(r.healthyAt, ev.at)
				}
			}
			if tk.ShouldPropose(ev.at) {
				r.proposals = append(r.proposals, ev.at)
				tk.MarkProposed(ev.at)
			}
			continue
		}
		clock, lastSend = next, next
		r.pings++
		ev := ping(rng, l, next)
		i, _ := slices.BinarySearchFunc(pending, ev.at, func(e event, at time.Duration) int {
			if e.at <= at {
				return -1
			}
			return 1
		})
		pending = slices.Insert(pending, i, ev)
	}
	if tk.State() == Suspect {
		r.suspectTime += dur - stateSince
	}
	return r
}

// ping returns the result of a ping sent at t, and when it is known.
func ping(rng *rand.Rand, l link, t time.Duration) event {
	miss := event{at: t + l.timeout, obs: Observation{Miss: true, Timeout: l.timeout, PFail: 0.9, Threshold: 2}}
	if l.crashAt >= 0 && t >= l.crashAt {
		return miss
	}
	if t >= l.lossFrom && rng.Float64() < l.loss {
		return miss
	}
	rtt := l.rtt + time.Duration(rng.Int64N(int64(l.rtt)/2+1))
	if l.pausedUntil != nil {
		if resume, ok := l.pausedUntil(t); ok {
			rtt = resume - t + l.rtt
		}
	}
	if rtt > l.timeout {
		return miss
	}
	// A scorer's view: anything beyond 10× the base RTT is anomalous.
	pfail, thr := 0.01, float64(rtt)/float64(10*l.rtt)
	if thr > 1 {
		pfail = 0.999
	}
	return event{at: t + rtt, obs: Observation{RTT: rtt, Timeout: l.timeout, PFail: pfail, Threshold: thr}}
}

const (
	observers = 5
	peers     = 5
)

func seeds(t *testing.T, n int) int {
	if testing.Short() {
		return max(n/8, 2)
	}
	return n
}

func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n=0"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(f float64) time.Duration { return s[int(f*float64(len(s)-1))] }
	return fmt.Sprintf("n=%d min=%v median=%v p90=%v p99=%v max=%v",
		len(s), s[0], q(0.5), q(0.9), q(0.99), s[len(s)-1])
}

// TestSimLossyNoAccusation: 60 s of random loss on every link, nobody
// fails, 5 observers × 5 peers, many seeds: no accusation, no proposal.
// Half the seeds start the loss suddenly at a random time, when the loss
// estimate is still that of a clean link.
func TestSimLossyNoAccusation(t *testing.T) {
	cfg := DefaultConfig()
	for _, loss := range []float64{0.36, 0.59} {
		t.Run(fmt.Sprintf("loss=%.2f", loss), func(t *testing.T) {
			t.Parallel()
			n := seeds(t, 48)
			var pings, starts, maxRun, maxNeed int
			var suspect time.Duration
			var est, expect float64
			for seed := range n {
				rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
				for pair := range observers * peers {
					l := link{loss: loss, crashAt: -1, timeout: 10 * time.Millisecond, rtt: 100 * time.Microsecond}
					if seed%2 == 1 {
						l.lossFrom = time.Duration(rng.Int64N(int64(30 * time.Second)))
					}
					r := simulate(rng, cfg, l, time.Minute)
					if len(r.accused) > 0 || len(r.proposals) > 0 {
						t.Fatalf("seed %d pair %d: accused at %v, proposed at %v (max run %d)",
							seed, pair, r.accused, r.proposals, r.maxRun)
					}
					pings += r.pings
					starts += r.runStarts
					maxRun = max(maxRun, r.maxRun)
					maxNeed = max(maxNeed, r.tk.needMisses(time.Minute))
					suspect += r.suspectTime
					est += r.tk.loss
					expect += r.expectFalse
				}
			}
			pairs := n * observers * peers
			// Expected number of runs reaching the bar if every run had to
			// reach the floor bar (the smallest the tracker uses).
			floorBar := RunNeeded(cfg.LossFloor, cfg.FalseAccuseProb)
			t.Logf("%d seeds × %d pairs × 60 s: %d pings (%.1f/s per pair), %d miss runs, longest run %d, bar at end ≤ %d (floor %d), mean loss estimate %.3f, suspect %.0f%% of the time",
				n, observers*peers, pings, float64(pings)/float64(pairs)/60, starts, maxRun, maxNeed, floorBar,
				est/float64(pairs), 100*suspect.Seconds()/(float64(pairs)*60))
			t.Logf("expected false accusations: %.2g with the bars in force (Σ loss^bar over run starts); %.2g had the bar stayed at the floor %d (%d starts × %.2g)",
				expect, float64(starts)*math.Pow(loss, float64(floorBar)), floorBar, starts, math.Pow(loss, float64(floorBar)))
		})
	}
}

// TestSimCrash: the peer dies at a random time after 10 s; every observer
// must accuse it within a bound; report the detection delay.
func TestSimCrash(t *testing.T) {
	cfg := DefaultConfig()
	bounds := map[float64]time.Duration{0: 1500 * time.Millisecond, 0.36: 2500 * time.Millisecond, 0.59: 4500 * time.Millisecond}
	for _, loss := range []float64{0, 0.36, 0.59} {
		t.Run(fmt.Sprintf("loss=%.2f", loss), func(t *testing.T) {
			t.Parallel()
			n := seeds(t, 40)
			var delays, propose []time.Duration
			for seed := range n {
				rng := rand.New(rand.NewPCG(uint64(seed), 0xc4a5))
				crash := 10*time.Second + time.Duration(rng.Int64N(int64(10*time.Second)))
				for obs := range observers {
					l := link{loss: loss, crashAt: crash, timeout: 10 * time.Millisecond, rtt: 100 * time.Microsecond}
					r := simulate(rng, cfg, l, crash+10*time.Second)
					if len(r.accused) == 0 {
						t.Fatalf("seed %d observer %d: crash at %v never accused: %+v", seed, obs, crash, r.tk.Explain(crash+10*time.Second))
					}
					if r.accused[0] < crash {
						t.Fatalf("seed %d observer %d: accused at %v before the crash at %v", seed, obs, r.accused[0], crash)
					}
					d := r.accused[0] - crash
					if d > bounds[loss] {
						t.Errorf("seed %d observer %d: detection took %v > %v", seed, obs, d, bounds[loss])
					}
					delays = append(delays, d)
					if len(r.proposals) == 0 {
						t.Fatalf("seed %d observer %d: accused but never proposed", seed, obs)
					}
					propose = append(propose, r.proposals[0]-crash)
					// Back-off: 1 s, 2 s, 4 s, 8 s, 8 s over the 10 s after the crash.
					if len(r.proposals) > 5 {
						t.Errorf("seed %d observer %d: %d proposals in 10 s", seed, obs, len(r.proposals))
					}
				}
			}
			t.Logf("crash → accused (per observer, %d ms idle cadence, burst %d): %s", cfg.IdleInterval.Milliseconds(), cfg.Burst, quantiles(delays))
			t.Logf("crash → first ShouldPropose: %s", quantiles(propose))
		})
	}
}

// TestSimSlowNode: the peer is stopped 100 ms out of every 300 ms for a
// minute. Pings during a stop come back late (a miss when the timeout is
// shorter than the rest of the stop). No observer may accuse.
func TestSimSlowNode(t *testing.T) {
	cfg := DefaultConfig()
	for _, tc := range []struct {
		loss    float64
		timeout time.Duration
	}{
		{0, 10 * time.Millisecond},
		{0, 150 * time.Millisecond},
		{0.36, 10 * time.Millisecond},
		{0.36, 150 * time.Millisecond},
	} {
		t.Run(fmt.Sprintf("loss=%.2f/timeout=%v", tc.loss, tc.timeout), func(t *testing.T) {
			t.Parallel()
			n := seeds(t, 40)
			var maxRun, flaps int
			var maxPenalty float64
			for seed := range n {
				rng := rand.New(rand.NewPCG(uint64(seed), 0x5105))
				phase := time.Duration(rng.Int64N(int64(300 * time.Millisecond)))
				pause := pausePeriodic(300*time.Millisecond, 100*time.Millisecond)
				for obs := range observers {
					l := link{
						loss: tc.loss, crashAt: -1, timeout: tc.timeout, rtt: 100 * time.Microsecond,
						pausedUntil: func(t time.Duration) (time.Duration, bool) {
							r, ok := pause(t + phase)
							return r - phase, ok
						},
					}
					r := simulate(rng, cfg, l, time.Minute)
					if len(r.accused) > 0 || len(r.proposals) > 0 {
						t.Fatalf("seed %d observer %d: slow node accused at %v: %+v", seed, obs, r.accused, r.tk.Explain(time.Minute))
					}
					maxRun = max(maxRun, r.maxRun)
					flaps += r.tk.flaps
					maxPenalty = max(maxPenalty, r.tk.penaltyNow(time.Minute))
				}
			}
			t.Logf("%d seeds × %d observers × 60 s: longest run %d, %.1f flaps per observer-minute, max penalty at end %.2f",
				n, observers, maxRun, float64(flaps)/float64(n*observers), maxPenalty)
		})
	}
}

// TestSimLongPause: the peer is stopped for 10 s. Every observer accuses
// it; when it resumes, the accusation is withdrawn at the first reply and
// the peer is Healthy again after the hysteresis.
func TestSimLongPause(t *testing.T) {
	cfg := DefaultConfig()
	const from, to = 10 * time.Second, 20 * time.Second
	var delays, healthy, withdrawn []time.Duration
	for seed := range seeds(t, 40) {
		rng := rand.New(rand.NewPCG(uint64(seed), 0x10))
		for obs := range observers {
			l := link{crashAt: -1, timeout: 10 * time.Millisecond, rtt: 100 * time.Microsecond, pausedUntil: pauseOnce(from, to)}
			r := simulate(rng, cfg, l, 30*time.Second)
			if len(r.accused) != 1 || r.accused[0] < from || r.accused[0] > to {
				t.Fatalf("seed %d observer %d: accused at %v, want once in [%v, %v)", seed, obs, r.accused, from, to)
			}
			delays = append(delays, r.accused[0]-from)
			if len(r.leftAccused) != 1 || r.leftAccused[0] < to {
				t.Fatalf("seed %d observer %d: left Accused at %v", seed, obs, r.leftAccused)
			}
			withdrawn = append(withdrawn, r.leftAccused[0]-to)
			i := slices.IndexFunc(r.healthyAt, func(at time.Duration) bool { return at >= to })
			if i < 0 || r.tk.State() != Healthy {
				t.Fatalf("seed %d observer %d: not Healthy after resuming: %+v", seed, obs, r.tk.Explain(30*time.Second))
			}
			healthy = append(healthy, r.healthyAt[i]-to)
			for _, p := range r.proposals {
				if p >= r.leftAccused[0] {
					t.Fatalf("seed %d observer %d: proposed at %v after the peer answered at %v", seed, obs, p, r.leftAccused[0])
				}
			}
			if e := r.tk.Explain(30 * time.Second); e.Flaps != 2 || e.Penalty <= 1 {
				t.Errorf("seed %d observer %d: flaps %d penalty %.2f, want 2 and > 1", seed, obs, e.Flaps, e.Penalty)
			}
		}
	}
	t.Logf("stop → accused: %s", quantiles(delays))
	t.Logf("resume → accusation withdrawn: %s", quantiles(withdrawn))
	t.Logf("resume → healthy: %s", quantiles(healthy))
}

// TestSimErrorBudget checks the model behind the bar: with a deliberately
// weak FalseAccuseProb, false accusations on a lossy link happen, and at no
// more than FalseAccuseProb per run of misses; and the loss estimate
// follows the true loss.
func TestSimErrorBudget(t *testing.T) {
	cfg := DefaultConfig()
	cfg.FalseAccuseProb = 1e-2
	cfg.MinSilence = 50 * time.Millisecond
	cfg.MinDwell = 0
	cfg.MaxPenalty = 0
	cfg.VerdictFalseProb = 0.1
	cfg.VerdictSilence = 0
	for _, loss := range []float64{0.36, 0.59} {
		t.Run(fmt.Sprintf("loss=%.2f", loss), func(t *testing.T) {
			t.Parallel()
			var starts, accusations int
			var est []float64
			for seed := range seeds(t, 8) {
				rng := rand.New(rand.NewPCG(uint64(seed), 0xb0d6e7))
				for range observers * peers {
					l := link{loss: loss, crashAt: -1, timeout: 10 * time.Millisecond, rtt: 100 * time.Microsecond}
					r := simulate(rng, cfg, l, time.Minute)
					starts += r.runStarts
					accusations += len(r.accused)
					est = append(est, r.tk.loss)
				}
			}
			rate := float64(accusations) / float64(starts)
			var mean, dev float64
			for _, e := range est {
				mean += e
			}
			mean /= float64(len(est))
			for _, e := range est {
				dev += (e - mean) * (e - mean)
			}
			dev = math.Sqrt(dev / float64(len(est)))
			t.Logf("%d accusations in %d miss runs: %.2g per run (budget %.0g); loss estimate %.3f ± %.3f (true %.2f)",
				accusations, starts, rate, cfg.FalseAccuseProb, mean, dev, loss)
			if rate > cfg.FalseAccuseProb {
				t.Errorf("false accusations %.2g per run > FalseAccuseProb %.0g", rate, cfg.FalseAccuseProb)
			}
			if math.Abs(mean-loss) > 0.05 {
				t.Errorf("mean loss estimate %.3f, true loss %.2f", mean, loss)
			}
		})
	}
}
