package engine

// Simulate: one cluster of engines in the simulation, for an operator's
// question (vigil simulate): how fast are crashes decided, are healthy
// nodes ever removed, and what does consensus cost, for this cluster size,
// loss rate and these settings.

import (
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"time"

	"github.com/vigil-project/vigil/consensus"
)

// SimConfig is a cluster and the faults Simulate puts it through.
type SimConfig struct {
	Nodes int
	// Loss is the share of packets lost, each way, over the whole run.
	Loss float64
	// Crashes nodes are killed for good, Partitions times a random
	// minority is cut off two ways for 5 to 15 s, Pauses times a node
	// stops for 1 to 10 s: all within the first two thirds of Duration.
	Crashes, Partitions, Pauses int
	Duration                    time.Duration
	Seed                        int64
	Quorum                      consensus.Quorum
	Council                     int
	FenceAfter                  time.Duration // 0: 2 s
}

// Percentiles of a set of durations.
type Percentiles struct {
	N    int           `json:"n"`
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
	Mean time.Duration `json:"mean_ns"`
}

func percentiles(ds []time.Duration) Percentiles {
	p := Percentiles{N: len(ds)}
	if len(ds) == 0 {
		return p
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	p.P50, p.P99, p.Max, p.Mean = at(0.5), at(0.99), ds[len(ds)-1], sum/time.Duration(len(ds))
	return p
}

// SimReport is what Simulate measured.
type SimReport struct {
	Nodes    int           `json:"nodes"`
	Duration time.Duration `json:"duration_ns"`
	Seed     int64         `json:"seed"`
	Loss     float64       `json:"loss"`
	// CrashToDecision is from each crash to the decision that removed the
	// node; Undecided counts crashes never decided.
	CrashToDecision Percentiles `json:"crash_to_decision"`
	Undecided       int         `json:"undecided_crashes"`
	// FalseRemovals are removals of nodes that were running, not paused
	// and not cut off when the removal was decided.
	FalseRemovals int `json:"false_removals"`
	// DecisionLatency is from the first proposal of a change to its
	// decision.
	DecisionLatency Percentiles `json:"decision_latency"`
	Decisions       int         `json:"decisions"`
	Recoveries      int         `json:"recoveries"`
	Fences          int         `json:"fences"`
	// Per node and second: consensus and journal messages, pings (each a
	// ping and its ack), and their bytes (consensus as encoded; a ping and
	// its ack counted as PingBytes). serf's own gossip is not simulated.
	MessagesPerNodeSec float64 `json:"messages_per_node_sec"`
	PingsPerNodeSec    float64 `json:"pings_per_node_sec"`
	BytesPerNodeSec    float64 `json:"bytes_per_node_sec"`
	// TicksPerNodeSec counts the engine's Ticks (NextTick), each a wake-up
	// of an agent's loop: 1 / TickInterval while anything is in flight,
	// down to 1 / IdleTick while nothing is.
	TicksPerNodeSec float64 `json:"ticks_per_node_sec"`
	// Violation is a safety property that broke, with when: a bug to
	// report with the seed.
	Violation string `json:"violation,omitempty"`
}

// PingBytes is what one ping and its ack are counted as: memberlist's ping
// and ack headers, names and the load payload, without UDP/IP.
const PingBytes = 96

// Validate names the first field that is wrong.
func (c SimConfig) Validate() error {
	switch {
	case c.Nodes < 1 || c.Nodes > 5000:
		return fmt.Errorf("nodes %d: want 1..5000", c.Nodes)
	case c.Loss < 0 || c.Loss > 0.5:
		return fmt.Errorf("loss %v: want 0..0.5", c.Loss)
	case c.Crashes < 0 || c.Crashes >= c.Nodes:
		return fmt.Errorf("crashes %d: want 0..%d (fewer than the nodes)", c.Crashes, c.Nodes-1)
	case c.Partitions < 0 || c.Pauses < 0:
		return errors.New("partitions and pauses must be ≥ 0")
	case c.Duration < 10*time.Second:
		return fmt.Errorf("duration %v: want at least 10s", c.Duration)
	case c.Council < 0 || c.Council == 1 || c.Council == 2:
		return fmt.Errorf("council %d: want 0 or ≥ 3", c.Council)
	case c.FenceAfter < 0:
		return fmt.Errorf("fence-after %v: want ≥ 0", c.FenceAfter)
	}
	return nil
}

// Simulate runs one cluster through its faults and reports.
func Simulate(c SimConfig) (SimReport, error) {
	if err := c.Validate(); err != nil {
		return SimReport{}, err
	}
	r := rand.New(rand.NewSource(c.Seed))
	cfg := simConfig{n: c.Nodes, quorum: c.Quorum, council: c.Council, duration: c.Duration, fenceAfter: c.FenceAfter}
	cfg.executors = allExecutors(c.Nodes)
	window := func() time.Duration { return c.Duration/10 + time.Duration(r.Int63n(int64(c.Duration*6/10))) }
	for _, i := range r.Perm(c.Nodes)[:c.Crashes] {
		cfg.faults = append(cfg.faults, simFault{at: window(), kind: "crash", a: []int{i}})
	}
	for k := 0; k < c.Partitions; k++ {
		perm := r.Perm(c.Nodes)
		side := 1 + r.Intn(max((c.Nodes-1)/2, 1))
		at := window()
		cfg.faults = append(cfg.faults, simFault{at: at, until: at + time.Duration(5+r.Intn(11))*time.Second,
			kind: "cut", a: perm[:side], b: perm[side:]})
	}
	for k := 0; k < c.Pauses; k++ {
		at := window()
		cfg.faults = append(cfg.faults, simFault{at: at, until: at + time.Duration(1+r.Intn(10))*time.Second,
			kind: "pause", a: []int{r.Intn(c.Nodes)}})
	}
	if c.Loss > 0 {
		cfg.faults = append(cfg.faults, simFault{at: 0, until: c.Duration + time.Hour, kind: "loss", loss: c.Loss})
	}
	s := newSimulation(c.Seed, cfg, false)
	s.run(c.Duration)
	rep := SimReport{Nodes: c.Nodes, Duration: c.Duration, Seed: c.Seed, Loss: c.Loss, Violation: s.err,
		Decisions: len(s.decided), Recoveries: s.runs, Fences: s.fences, FalseRemovals: s.falseRemovals}
	var crashes []time.Duration
	for key, at := range s.crashAt {
		if d, ok := s.removedAt[key]; ok {
			crashes = append(crashes, d-at)
		} else {
			rep.Undecided++
		}
	}
	rep.CrashToDecision = percentiles(crashes)
	rep.DecisionLatency = percentiles(s.latencies)
	secs := float64(c.Nodes) * c.Duration.Seconds()
	rep.MessagesPerNodeSec = float64(s.msgs) / secs
	rep.PingsPerNodeSec = float64(s.pings) / secs
	rep.BytesPerNodeSec = float64(s.bytes+s.pings*PingBytes) / secs
	rep.TicksPerNodeSec = float64(s.ticks) / secs
	return rep, nil
}

func allExecutors(n int) []bool {
	out := make([]bool, n)
	for i := range out {
		out[i] = true
	}
	return out
}
