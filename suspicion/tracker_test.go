package suspicion

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

const ms = time.Millisecond

// small is a config with round numbers for table tests: the accusation bar
// is 5 misses (0.5^5 = 1/32), the verdict bar 3, silence 100 ms, dwell
// 50 ms, recovery 3 replies and 100 ms quiet, each flap adds one miss to
// the bar, one reply and 100 % of the quiet to the recovery.
func small() Config {
	c := DefaultConfig()
	c.LossFloor, c.LossCeil, c.LossMargin = 0.5, 0.5, 0
	c.FalseAccuseProb = 1.0 / 32
	c.VerdictFalseProb = 1.0 / 8
	c.MinSilence = 100 * ms
	c.SilenceTimeouts = 0
	c.VerdictSilence = 50 * ms
	c.MinDwell = 50 * ms
	c.SuspectMisses = 2
	c.RecoverSuccesses = 3
	c.RecoverQuiet = 100 * ms
	c.FlapPenalty = 1
	c.MaxPenalty = 2
	c.FlapHalfLife = time.Hour
	c.PenaltyMisses = 1
	c.PenaltySilence = 0
	c.ProbeInterval = 200 * ms
	c.IdleInterval = 200 * ms
	c.StaleAfter = 200 * ms
	c.ProposeBackoff = time.Second
	c.MaxProposeBackoff = 4 * time.Second
	return c
}

func newTracker(t *testing.T, c Config) *Tracker {
	t.Helper()
	tk, err := NewTracker(c)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

type step struct {
	at   time.Duration
	op   string // ok, miss, late, pfail, thr, serf-fail, serf-ok
	want State
	why  Reason // if set, the step must cause a transition for this reason
}

func apply(tk *Tracker, s step) Transition {
	switch s.op {
	case "ok":
		return tk.Observe(s.at, Observation{RTT: ms, Timeout: 10 * ms, PFail: 0.01, Threshold: 0.2})
	case "miss":
		return tk.Observe(s.at, Observation{Miss: true, Timeout: 10 * ms, PFail: 0.9})
	case "late":
		return tk.Observe(s.at, Observation{RTT: 20 * ms, Timeout: 10 * ms})
	case "late-of-miss": // the reply to a ping already observed as a miss
		return tk.Observe(s.at, Observation{RTT: 20 * ms, Timeout: 10 * ms, Late: true})
	case "pfail":
		return tk.Observe(s.at, Observation{RTT: ms, Timeout: 10 * ms, PFail: 0.995})
	case "thr":
		return tk.Observe(s.at, Observation{RTT: ms, Timeout: 10 * ms, Threshold: 1.5})
	case "serf-fail":
		return tk.SerfStatus(s.at, true)
	case "serf-ok":
		return tk.SerfStatus(s.at, false)
	}
	panic("unknown op " + s.op)
}

// run repeats op at every 10 ms in [from, to], expecting want after each.
func run(op string, from, to time.Duration, want State) []step {
	var ss []step
	for at := from; at <= to; at += 10 * ms {
		ss = append(ss, step{at: at, op: op, want: want})
	}
	return ss
}

func seq(parts ...any) []step {
	var ss []step
	for _, p := range parts {
		switch p := p.(type) {
		case step:
			ss = append(ss, p)
		case []step:
			ss = append(ss, p...)
		}
	}
	return ss
}

func TestTransitions(t *testing.T) {
	H, S, A := Healthy, Suspect, Accused
	tests := []struct {
		name  string
		steps []step
	}{
		{"one miss is not evidence", seq(
			step{0, "ok", H, ""}, step{10 * ms, "miss", H, ""}, step{20 * ms, "ok", H, ""},
			step{30 * ms, "miss", H, ""}, step{40 * ms, "ok", H, ""})},
		{"two misses make a suspect", seq(
			step{0, "ok", H, ""}, step{10 * ms, "miss", H, ""}, step{20 * ms, "miss", S, ReasonMisses})},
		{"accusation waits for the silence", seq(
			step{0, "ok", H, ""}, step{10 * ms, "miss", H, ""}, step{20 * ms, "miss", S, ReasonMisses},
			run("miss", 30*ms, 90*ms, S), // run of 9 ≥ 5, dwell ≥ 50 ms, silence < 100 ms
			step{100 * ms, "miss", A, ReasonEvidence})},
		{"accusation waits for the dwell", seq(
			step{0, "miss", H, ""}, step{time.Second, "miss", S, ReasonMisses}, // silence since first result
			run("miss", 1010*ms, 1040*ms, S),
			step{1050 * ms, "miss", A, ReasonEvidence})},
		{"accusation waits for the run", seq(
			step{0, "ok", H, ""}, step{100 * ms, "miss", H, ""}, step{200 * ms, "miss", S, ReasonMisses},
			step{300 * ms, "miss", S, ""}, step{400 * ms, "miss", S, ""},
			step{500 * ms, "miss", A, ReasonEvidence})},
		{"a reply ends the run", seq(
			step{0, "ok", H, ""}, step{100 * ms, "miss", H, ""}, step{110 * ms, "miss", S, ReasonMisses}, run("miss", 120*ms, 130*ms, S), step{140 * ms, "ok", S, ""},
			run("miss", 150*ms, 180*ms, S), step{190 * ms, "ok", S, ""},
			run("miss", 200*ms, 230*ms, S), step{240 * ms, "late", S, ""},
			run("miss", 250*ms, 280*ms, S))},
		{"a reply withdraws an accusation; hysteresis and penalty", seq(
			step{0, "ok", H, ""}, step{100 * ms, "miss", H, ""}, step{110 * ms, "miss", S, ReasonMisses}, run("miss", 120*ms, 150*ms, S),
			step{160 * ms, "miss", A, ReasonEvidence}, // 50 ms dwell
			step{300 * ms, "ok", S, ReasonReply},      // penalty 1: 4 replies and 200 ms quiet
			run("ok", 310*ms, 490*ms, S),
			step{500 * ms, "ok", H, ReasonRecovered})},
		{"the penalty raises the bar", seq(
			step{0, "ok", H, ""}, step{5 * ms, "late", H, ""}, step{10 * ms, "late", S, ReasonAnomaly},
			run("ok", 20*ms, 100*ms, S), step{110 * ms, "ok", H, ReasonRecovered}, // penalty 1
			step{190 * ms, "ok", H, ""},
			step{200 * ms, "miss", H, ""}, step{210 * ms, "miss", S, ReasonMisses}, run("miss", 220*ms, 280*ms, S), // run 9 > 6, silence < 100
			step{290 * ms, "ok", S, ""},
			run("miss", 500*ms, 540*ms, S), // run 5 with silence and dwell: not enough after a flap
			step{550 * ms, "miss", A, ReasonEvidence})},
		{"late replies are anomalous but alive", seq(
			step{0, "ok", H, ""}, step{5 * ms, "late", H, ""}, step{10 * ms, "late", S, ReasonAnomaly}, run("ok", 20*ms, 100*ms, S),
			step{110 * ms, "ok", H, ReasonRecovered})},
		{"one anomalous reply is not evidence", seq(
			step{0, "ok", H, ""}, step{10 * ms, "pfail", H, ""}, step{20 * ms, "ok", H, ""},
			step{30 * ms, "thr", H, ""}, step{40 * ms, "ok", H, ""}, step{50 * ms, "late", H, ""})},
		{"a slow ping is one bad result, not two", seq(
			step{0, "ok", H, ""}, step{10 * ms, "miss", H, ""}, step{12 * ms, "late-of-miss", H, ""},
			step{20 * ms, "ok", H, ""}, step{30 * ms, "miss", H, ""}, step{32 * ms, "late-of-miss", H, ""},
			step{40 * ms, "miss", H, ""}, // the run goes on: 2 of 3 (the misses raised the loss estimate)
			step{50 * ms, "miss", S, ReasonMisses})},
		{"a slow ping does not restart the quiet", seq(
			step{0, "late", H, ""}, step{5 * ms, "late", S, ReasonAnomaly},
			run("ok", 10*ms, 50*ms, S), step{55 * ms, "miss", S, ""}, step{57 * ms, "late-of-miss", S, ""},
			run("ok", 60*ms, 100*ms, S), step{105 * ms, "ok", H, ReasonRecovered})},
		{"a slow ping withdraws an accusation", seq(
			step{0, "miss", H, ""}, step{10 * ms, "miss", S, ReasonMisses}, run("miss", 20*ms, 90*ms, S),
			step{100 * ms, "miss", A, ReasonEvidence}, step{105 * ms, "late-of-miss", S, ReasonReply})},
		{"high PFail is anomalous", seq(step{0, "ok", H, ""}, step{10 * ms, "pfail", H, ""}, step{20 * ms, "pfail", S, ReasonAnomaly})},
		{"over threshold is anomalous", seq(step{0, "ok", H, ""}, step{10 * ms, "thr", H, ""}, step{20 * ms, "thr", S, ReasonAnomaly})},
		{"misses and anomalies make one run", seq(
			step{0, "ok", H, ""}, step{10 * ms, "pfail", H, ""}, step{20 * ms, "miss", S, ReasonAnomaly})},
		{"a run of anomalies keeps a suspect from recovering", seq(
			step{0, "late", H, ""}, step{5 * ms, "late", S, ReasonAnomaly},
			run("ok", 10*ms, 90*ms, S), step{92 * ms, "pfail", S, ""}, step{95 * ms, "pfail", S, ""},
			run("ok", 100*ms, 190*ms, S), step{195 * ms, "ok", H, ReasonRecovered})},
		{"a lone miss or anomaly does not restart the quiet", seq(
			step{0, "late", H, ""}, step{5 * ms, "late", S, ReasonAnomaly},
			run("ok", 10*ms, 50*ms, S), step{55 * ms, "miss", S, ""},
			run("ok", 60*ms, 80*ms, S), step{85 * ms, "pfail", S, ""},
			run("ok", 90*ms, 100*ms, S), step{105 * ms, "ok", H, ReasonRecovered})},
		{"serf failed alone never accuses", seq(
			step{0, "ok", H, ""}, step{10 * ms, "serf-fail", S, ReasonSerfFailed},
			step{time.Minute, "serf-fail", S, ""}, step{2 * time.Minute, "miss", S, ""}, step{2*time.Minute + 5*ms, "miss", S, ""},
			run("ok", 2*time.Minute+10*ms, 2*time.Minute+100*ms, S),
			step{2*time.Minute + 105*ms, "ok", H, ReasonRecovered}, // 100 ms quiet after the run
			step{2*time.Minute + 120*ms, "serf-fail", H, ""},       // still failed: not a new report
			step{2*time.Minute + 130*ms, "serf-ok", H, ""},
			step{2*time.Minute + 140*ms, "serf-fail", S, ReasonSerfFailed})},
		{"time never runs backwards", seq(
			step{100 * ms, "miss", H, ""}, step{50 * ms, "miss", S, ReasonMisses},
			run("miss", 60*ms, 90*ms, S),  // clamped to 100 ms: no dwell, no silence yet
			step{150 * ms, "miss", S, ""}, // silence 50 ms since the first result
			step{120 * ms, "miss", S, ""}, // clamped to 150 ms
			step{200 * ms, "miss", A, ReasonEvidence})},
		{"accused stays accused on more misses", seq(
			step{0, "miss", H, ""}, step{10 * ms, "miss", S, ReasonMisses}, run("miss", 20*ms, 90*ms, S),
			step{100 * ms, "miss", A, ReasonEvidence},
			run("miss", 110*ms, 500*ms, A))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tk := newTracker(t, small())
			for i, s := range tc.steps {
				from := tk.State()
				tr := apply(tk, s)
				if tk.State() != s.want || tr.To != tk.State() || tr.From != from {
					t.Fatalf("step %d (%s at %v): state %v, transition %+v, want %v\n%+v", i, s.op, s.at, tk.State(), tr, s.want, tk.Explain(s.at))
				}
				if s.why != "" && (!tr.Changed() || tr.Reason != s.why) {
					t.Fatalf("step %d (%s at %v): transition %+v, want reason %q", i, s.op, s.at, tr, s.why)
				}
				if s.why == "" && tr.Changed() {
					t.Fatalf("step %d (%s at %v): unexpected transition %+v", i, s.op, s.at, tr)
				}
			}
		})
	}
}

func TestDwellZeroGoesStraightToAccused(t *testing.T) {
	c := small()
	c.MinDwell = 0
	c.SuspectMisses = 5
	tk := newTracker(t, c)
	for i := range 4 {
		apply(tk, step{at: time.Duration(i) * 100 * ms, op: "miss"})
	}
	tr := apply(tk, step{at: 400 * ms, op: "miss"})
	if tr.From != Healthy || tr.To != Accused || tr.Reason != ReasonEvidence {
		t.Fatalf("transition %+v, want healthy → accused", tr)
	}
	if e := tk.Explain(400 * ms); e.Transitions != 2 {
		t.Errorf("Transitions = %d, want 2", e.Transitions)
	}
}

func TestProbesWanted(t *testing.T) {
	c := small()
	c.Burst = 8
	tk := newTracker(t, c)
	if n, g := tk.ProbesWanted(0), tk.ProbeGap(0); n != 1 || g != 200*ms || tk.Urgent() {
		t.Fatalf("fresh tracker: %d probes, gap %v", n, g)
	}
	apply(tk, step{at: 0, op: "miss"})
	if n, g := tk.ProbesWanted(0), tk.ProbeGap(0); n != 8 || g != 25*ms || !tk.Urgent() {
		t.Fatalf("after one miss: %d probes, gap %v, want 8, 25ms", n, g)
	}
	apply(tk, step{at: 10 * ms, op: "ok"})
	if tk.ProbesWanted(10*ms) != 1 {
		t.Fatalf("after a reply: %d probes", tk.ProbesWanted(10*ms))
	}
	tk.SerfStatus(20*ms, true)
	if tk.ProbesWanted(20*ms) != 8 {
		t.Fatalf("serf failed: %d probes", tk.ProbesWanted(20*ms))
	}
}

func accuse(t *testing.T, tk *Tracker, from time.Duration) time.Duration {
	t.Helper()
	at := from
	for tk.State() != Accused {
		if at > from+time.Minute {
			t.Fatalf("never accused: %+v", tk.Explain(at))
		}
		tk.Observe(at, Observation{Miss: true})
		at += 10 * ms
	}
	return at - 10*ms
}

func TestShouldPropose(t *testing.T) {
	tk := newTracker(t, small())
	if tk.ShouldPropose(0) {
		t.Fatal("healthy tracker proposes")
	}
	apply(tk, step{at: 0, op: "ok"})
	at := accuse(t, tk, 10*ms)
	if !tk.ShouldPropose(at) {
		t.Fatalf("accused tracker does not propose: %+v", tk.Explain(at))
	}
	// Back-off 1 s, 2 s, 4 s, 4 s, while fresh misses keep coming.
	tk.MarkProposed(at)
	var got []time.Duration
	last, end := at, at+12*time.Second
	for now := at; now < end; now += 10 * ms {
		tk.Observe(now, Observation{Miss: true})
		if tk.ShouldPropose(now) {
			got = append(got, now-last)
			last = now
			tk.MarkProposed(now)
		}
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	if len(got) != len(want) {
		t.Fatalf("proposal gaps %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("proposal gaps %v, want %v", got, want)
		}
	}
	tk.ResetProposals()
	if !tk.ShouldPropose(end) {
		t.Fatal("no proposal after ResetProposals")
	}
	// Stale evidence: the prober stopped.
	if tk.ShouldPropose(end + 201*ms) {
		t.Fatal("proposes on stale evidence")
	}
	// A reply withdraws the accusation and clears the back-off.
	tk.MarkProposed(end)
	apply(tk, step{at: end + 300*ms, op: "ok"})
	if tk.ShouldPropose(end+300*ms) || tk.proposals != 0 {
		t.Fatalf("proposes after a reply (proposals %d)", tk.proposals)
	}
}

func TestVerdict(t *testing.T) {
	check := func(t *testing.T, tk *Tracker, now time.Duration, wantUnreach, wantFresh bool) {
		t.Helper()
		u, f := tk.Verdict(now)
		if u != wantUnreach || f != wantFresh {
			t.Fatalf("Verdict(%v) = %v, %v; want %v, %v\n%+v", now, u, f, wantUnreach, wantFresh, tk.Explain(now))
		}
	}
	t.Run("no evidence", func(t *testing.T) {
		check(t, newTracker(t, small()), 0, false, false)
	})
	t.Run("recent reply", func(t *testing.T) {
		tk := newTracker(t, small())
		apply(tk, step{at: 0, op: "ok"})
		check(t, tk, 200*ms, false, true)
		check(t, tk, 201*ms, false, false) // stale
	})
	t.Run("short run is inconclusive", func(t *testing.T) {
		tk := newTracker(t, small())
		apply(tk, step{at: 0, op: "ok"})
		apply(tk, step{at: 10 * ms, op: "miss"})
		apply(tk, step{at: 60 * ms, op: "miss"})
		check(t, tk, 60*ms, false, false)
	})
	t.Run("run without silence is inconclusive", func(t *testing.T) {
		tk := newTracker(t, small())
		apply(tk, step{at: 0, op: "ok"})
		for _, at := range []time.Duration{10 * ms, 20 * ms, 30 * ms} {
			apply(tk, step{at: at, op: "miss"})
		}
		check(t, tk, 30*ms, false, false)
		apply(tk, step{at: 50 * ms, op: "miss"})
		check(t, tk, 50*ms, true, true)
	})
	t.Run("accused", func(t *testing.T) {
		tk := newTracker(t, small())
		apply(tk, step{at: 0, op: "ok"})
		at := accuse(t, tk, 10*ms)
		check(t, tk, at, true, true)
		check(t, tk, at+300*ms, false, false)
	})
	t.Run("after ping", func(t *testing.T) {
		for _, tc := range []struct {
			ok, miss int
			want     bool
		}{{0, 3, true}, {0, 2, false}, {1, 9, false}, {0, 0, false}, {-1, -1, false}} {
			tk := newTracker(t, small())
			if got := tk.VerdictAfterPing(time.Second, tc.ok, tc.miss); got != tc.want {
				t.Errorf("VerdictAfterPing(ok=%d, miss=%d) = %v, want %v", tc.ok, tc.miss, got, tc.want)
			}
		}
		// An observer with a run: the burst extends it.
		tk := newTracker(t, small())
		apply(tk, step{at: 0, op: "ok"})
		apply(tk, step{at: 10 * ms, op: "miss"})
		apply(tk, step{at: 20 * ms, op: "miss"})
		if !tk.VerdictAfterPing(300*ms, 0, 1) {
			t.Errorf("run 2 + burst 1 ≥ 3: want unreachable")
		}
		if u, f := tk.Verdict(300 * ms); !u || !f {
			t.Errorf("Verdict after the burst = %v, %v", u, f)
		}
	})
	t.Run("default burst meets the default verdict bar", func(t *testing.T) {
		c := DefaultConfig()
		tk := newTracker(t, c)
		if !tk.VerdictAfterPing(time.Second, 0, c.VerdictBurst) {
			t.Errorf("VerdictBurst %d misses do not reach the verdict bar %d", c.VerdictBurst, tk.needVerdict())
		}
	})
}

func TestPenaltyDecays(t *testing.T) {
	c := small()
	c.FlapHalfLife = time.Second
	c.MaxPenalty = 1.5
	tk := newTracker(t, c)
	tk.addPenalty(0)
	tk.addPenalty(0)
	if p := tk.penaltyNow(0); p != 1.5 {
		t.Fatalf("penalty %v, want capped at 1.5", p)
	}
	if p := tk.penaltyNow(time.Second); math.Abs(p-0.75) > 1e-9 {
		t.Fatalf("penalty after one half-life %v, want 0.75", p)
	}
	if n := tk.needMisses(time.Second); n != 5+1 {
		t.Fatalf("needMisses = %d, want 6", n)
	}
	if n := tk.needMisses(time.Hour); n != 5 {
		t.Fatalf("needMisses after decay = %d, want 5", n)
	}
}

func TestLossEstimateRaisesTheBar(t *testing.T) {
	c := DefaultConfig()
	tk := newTracker(t, c)
	if n := tk.needMisses(0); n != 30 {
		t.Fatalf("clean link bar %d, want 30", n)
	}
	// Alternate miss, miss, reply: about 67 % loss.
	at := time.Duration(0)
	for range 500 {
		tk.Observe(at, Observation{Miss: true})
		tk.Observe(at+ms, Observation{Miss: true})
		tk.Observe(at+2*ms, Observation{})
		at += 3 * ms
	}
	if e := tk.Explain(at); e.LossEstimate < 0.6 || e.LossEstimate > 0.7 || e.NeedMisses < 80 {
		t.Fatalf("lossy link: estimate %.3f, bar %d", e.LossEstimate, e.NeedMisses)
	}
	// A dead peer's misses do not raise its own bar.
	before := tk.needMisses(at)
	for range 200 {
		tk.Observe(at, Observation{Miss: true})
		at += ms
	}
	if after := tk.needMisses(at); after != before {
		t.Fatalf("bar moved during a run: %d → %d", before, after)
	}
}

func TestExplainIsReadOnly(t *testing.T) {
	tk := newTracker(t, small())
	apply(tk, step{at: 0, op: "ok"})
	at := accuse(t, tk, 10*ms)
	before := *tk
	e := tk.Explain(at + 50*ms)
	if *tk != before {
		t.Fatal("Explain changed the tracker")
	}
	if e.State != Accused || !e.ShouldPropose || !e.VerdictUnreach || !e.VerdictFresh ||
		e.Misses < e.NeedMisses || e.Silence < e.NeedSilence || e.LastReplyAge != at+50*ms ||
		e.LastResultAge != 50*ms || e.ProbesWanted != small().Burst || e.Transitions != 2 {
		t.Fatalf("Explain = %+v", e)
	}
	if e := newTracker(t, small()).Explain(0); e.LastReplyAge != -1 || e.LastResultAge != -1 || e.FreshEvidence {
		t.Fatalf("empty Explain = %+v", e)
	}
}

func TestReset(t *testing.T) {
	tk := newTracker(t, small())
	apply(tk, step{at: 0, op: "ok"})
	accuse(t, tk, 10*ms)
	tk.Observe(time.Second, Observation{}) // flap
	tk.Reset()
	e := tk.Explain(time.Second)
	if e.State != Healthy || e.Penalty != 0 || e.Flaps != 0 || e.Misses != 0 || e.LastResultAge != -1 {
		t.Fatalf("after Reset: %+v", e)
	}
	// The clock survives a reset.
	tk.Observe(0, Observation{Miss: true})
	if tk.firstObs != time.Second {
		t.Fatalf("clock ran backwards after Reset: first result at %v", tk.firstObs)
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Healthy: "healthy", Suspect: "suspect", Accused: "accused", 7: "state(7)"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig: %v", err)
	}
	if err := small().Validate(); err != nil {
		t.Fatalf("small: %v", err)
	}
	tests := []struct {
		field string
		edit  func(*Config)
	}{
		{"ProbeInterval", func(c *Config) { c.ProbeInterval = 0 }},
		{"Burst", func(c *Config) { c.Burst = 0 }},
		{"SuspectMisses", func(c *Config) { c.SuspectMisses = 0 }},
		{"SuspectPFail", func(c *Config) { c.SuspectPFail = math.NaN() }},
		{"FalseAccuseProb", func(c *Config) { c.FalseAccuseProb = 1 }},
		{"VerdictFalseProb", func(c *Config) { c.VerdictFalseProb = 0 }},
		{"FalseAccuseProb", func(c *Config) { c.VerdictFalseProb = c.FalseAccuseProb / 2 }},
		{"LossWeight", func(c *Config) { c.LossWeight = 0 }},
		{"LossMargin", func(c *Config) { c.LossMargin = -0.1 }},
		{"LossFloor", func(c *Config) { c.LossFloor = 0 }},
		{"LossCeil", func(c *Config) { c.LossCeil = 1 }},
		{"LossFloor", func(c *Config) { c.LossCeil = c.LossFloor / 2 }},
		{"MinSilence", func(c *Config) { c.MinSilence = 0 }},
		{"SilenceTimeouts", func(c *Config) { c.SilenceTimeouts = -1 }},
		{"MinDwell", func(c *Config) { c.MinDwell = -1 }},
		{"RecoverSuccesses", func(c *Config) { c.RecoverSuccesses = 0 }},
		{"RecoverQuiet", func(c *Config) { c.RecoverQuiet = -1 }},
		{"FlapPenalty", func(c *Config) { c.FlapPenalty = math.Inf(1) }},
		{"MaxPenalty", func(c *Config) { c.MaxPenalty = -1 }},
		{"FlapHalfLife", func(c *Config) { c.FlapHalfLife = 0 }},
		{"PenaltyMisses", func(c *Config) { c.PenaltyMisses = math.NaN() }},
		{"PenaltySilence", func(c *Config) { c.PenaltySilence = -1 }},
		{"IdleInterval", func(c *Config) { c.IdleInterval = c.ProbeInterval - 1 }},
		{"StaleAfter", func(c *Config) { c.StaleAfter = c.IdleInterval - 1 }},
		{"VerdictSilence", func(c *Config) { c.VerdictSilence = -1 }},
		{"MinSilence", func(c *Config) { c.VerdictSilence = c.MinSilence + 1 }},
		{"VerdictBurst", func(c *Config) { c.VerdictBurst = 0 }},
		{"ProposeBackoff", func(c *Config) { c.ProposeBackoff = 0 }},
		{"MaxProposeBackoff", func(c *Config) { c.MaxProposeBackoff = c.ProposeBackoff - 1 }},
		{"JoinGrace", func(c *Config) { c.JoinGrace = -1 }},
	}
	for _, tc := range tests {
		c := DefaultConfig()
		tc.edit(&c)
		err := c.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field) ||
			!strings.HasPrefix(err.Error(), "suspicion: ") {
			t.Errorf("%s: Validate() = %v", tc.field, err)
		}
		if _, err := NewTracker(c); err == nil {
			t.Errorf("%s: NewTracker accepted an invalid config", tc.field)
		}
		if _, err := NewSet(c); err == nil {
			t.Errorf("%s: NewSet accepted an invalid config", tc.field)
		}
	}
}

func TestRunNeeded(t *testing.T) {
	for _, tc := range []struct {
		loss, prob float64
		want       int
	}{
		{0.5, 1.0 / 32, 5}, {0.5, 1e-9, 30}, {0.5, 1e-3, 10}, {0.51, 1e-9, 31},
		{0.65, 1e-9, 49}, {0.74, 1e-9, 69}, {0.85, 1e-9, 128}, {0.1, 0.5, 1},
	} {
		got := RunNeeded(tc.loss, tc.prob)
		if got != tc.want {
			t.Errorf("RunNeeded(%v, %v) = %d, want %d", tc.loss, tc.prob, got, tc.want)
		}
		if math.Pow(tc.loss, float64(got)) > tc.prob*(1+1e-9) || (got > 1 && math.Pow(tc.loss, float64(got-1)) <= tc.prob) {
			t.Errorf("RunNeeded(%v, %v) = %d is not the least n with loss^n ≤ prob", tc.loss, tc.prob, got)
		}
	}
}

func TestSet(t *testing.T) {
	s, err := NewSet(small())
	if err != nil {
		t.Fatal(err)
	}
	a := s.Peer("b-node")
	if s.Peer("b-node") != a {
		t.Fatal("Peer returned a new tracker for a known name")
	}
	s.Peer("a-node")
	if got := s.Names(); len(got) != 2 || got[0] != "a-node" || got[1] != "b-node" || s.Len() != 2 {
		t.Fatalf("Names() = %v", got)
	}
	apply(a, step{at: 0, op: "ok"})
	at := accuse(t, a, 10*ms)
	if got := s.ToPropose(at); len(got) != 1 || got[0] != "b-node" {
		t.Fatalf("ToPropose = %v", got)
	}
	s.Remove("b-node")
	if _, ok := s.Lookup("b-node"); ok || s.Len() != 1 {
		t.Fatal("Remove kept the peer")
	}
	if s.Peer("b-node").State() != Healthy {
		t.Fatal("a removed peer came back with its old state")
	}
}

// A peer that just joined and has not answered is not accused within
// JoinGrace, however silent; the evidence still counts, and it is accused
// when the grace ends. Its first timely answer ends the grace.
func TestJoinGrace(t *testing.T) {
	c := small()
	c.JoinGrace = 2 * time.Second
	tk := newTracker(t, c)
	tk.Joined(0)
	if e := tk.Explain(500 * ms); e.GraceLeft != 1500*ms {
		t.Fatalf("GraceLeft = %v, want 1.5s", e.GraceLeft)
	}
	var at time.Duration
	for at = 10 * ms; at < 2*time.Second; at += 10 * ms {
		tk.Observe(at, Observation{Miss: true})
		if tk.State() == Accused {
			t.Fatalf("accused at %v, within the grace", at)
		}
	}
	if tk.State() != Suspect {
		t.Fatalf("state %v after 2 s of misses, want suspect", tk.State())
	}
	if u, fresh := tk.Verdict(at); !u || !fresh {
		t.Fatalf("Verdict within the grace = %v, %v; the evidence still answers", u, fresh)
	}
	tk.Observe(2*time.Second, Observation{Miss: true})
	if tk.State() != Accused {
		t.Fatalf("not accused when the grace ended: %+v", tk.Explain(2*time.Second))
	}
	// No blanket grace: a peer that answered in time once since it was
	// added and then died is accused as fast as one that was never in a
	// grace.
	tk.Reset()
	tk.Joined(3 * time.Second)
	apply(tk, step{at: 3 * time.Second, op: "ok"})
	if e := tk.Explain(3 * time.Second); e.GraceLeft != 0 {
		t.Fatalf("GraceLeft after a timely answer = %v", e.GraceLeft)
	}
	control := newTracker(t, c)
	apply(control, step{at: 3 * time.Second, op: "ok"})
	want := accuse(t, control, 3*time.Second+10*ms)
	if got := accuse(t, tk, 3*time.Second+10*ms); got != want {
		t.Fatalf("a peer that answered after joining was accused at %v, one never in a grace at %v", got, want)
	}
	if want >= 5*time.Second {
		t.Fatalf("accused at %v: the test needs an accusation inside the old grace", want)
	}
	// A late answer is not proof that it is up: the grace stays.
	tk.Reset()
	tk.Joined(0)
	tk.Observe(100*ms, Observation{RTT: 900 * ms, Timeout: 500 * ms})
	if e := tk.Explain(200 * ms); e.GraceLeft == 0 {
		t.Fatal("a late answer ended the grace")
	}
}

// Set.For keeps one incarnation's evidence: a new boot id starts afresh,
// and a lookup for another boot finds nothing.
func TestSetIncarnations(t *testing.T) {
	s, err := NewSet(small())
	if err != nil {
		t.Fatal(err)
	}
	old := s.For("n2", "boot-1")
	apply(old, step{at: 0, op: "ok"})
	accuse(t, old, 10*ms)
	if tk, ok := s.LookupFor("n2", "boot-1"); !ok || tk.State() != Accused {
		t.Fatal("LookupFor lost the accused incarnation")
	}
	if _, ok := s.LookupFor("n2", "boot-2"); ok {
		t.Fatal("LookupFor found another incarnation's evidence")
	}
	tk := s.For("n2", "boot-2")
	if e := tk.Explain(time.Second); e.State != Healthy || e.Misses != 0 || e.Flaps != 0 || e.LastResultAge != -1 {
		t.Fatalf("new incarnation inherited evidence: %+v", e)
	}
	if s.For("n2", "boot-2") != tk {
		t.Fatal("For made a new tracker for the same incarnation")
	}
	if _, ok := s.LookupFor("n2", "boot-1"); ok {
		t.Fatal("the old incarnation is still found")
	}
	if _, ok := s.LookupFor("n3", ""); ok {
		t.Fatal("LookupFor found an unknown peer")
	}
}

// TestSuspectBarFollowsTheLoss: a live peer behind a lossy link, scored by
// a percentile, gives a bad result every few pings; the run that makes it
// Suspect grows with the estimated loss so that suspicion stays rare.
func TestSuspectBarFollowsTheLoss(t *testing.T) {
	c := DefaultConfig()
	tk := newTracker(t, c)
	ok := Observation{RTT: ms, Timeout: 10 * ms}
	at := time.Duration(0)
	next := func() time.Duration { at += 25 * ms; return at }
	tk.Observe(next(), ok)
	if got := tk.Explain(at).NeedSuspect; got != 4 {
		t.Fatalf("clean link: NeedSuspect = %d, want 4 (0.16^4 ≤ 1e-3)", got)
	}
	// One miss in ten for a while: an estimate near 10 %.
	for i := range 2000 {
		if i%10 == 0 {
			tk.Observe(next(), Observation{Miss: true})
		} else {
			tk.Observe(next(), ok)
		}
		if tk.State() != Healthy {
			t.Fatalf("a lone miss in ten made the peer %v at %d: %+v", tk.State(), i, tk.Explain(at))
		}
	}
	x := tk.Explain(at)
	if x.LossEstimate < 0.07 || x.LossEstimate > 0.13 || x.NeedSuspect != 6 {
		t.Fatalf("loss estimate %.3f, NeedSuspect %d: want about 0.1 and 6", x.LossEstimate, x.NeedSuspect)
	}
	for i := 1; i < 6; i++ {
		tk.Observe(next(), Observation{Miss: true})
		if tk.State() != Healthy || !tk.Urgent() {
			t.Fatalf("after %d misses: %v, urgent %v; want healthy and urgent", i, tk.State(), tk.Urgent())
		}
	}
	if tr := tk.Observe(next(), Observation{Miss: true}); tr.To != Suspect || tr.Reason != ReasonMisses {
		t.Fatalf("sixth miss: %+v, want suspect for misses", tr)
	}
}
