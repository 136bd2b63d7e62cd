package scoring

// Trace generator and loader. The CSV files in ../testdata/traces are made by
//
//	go test ./scoring -run TestTraces -update
//
// and TestTraces checks that the files on disk are exactly what the generator
// produces, so they stay reproducible. See ../testdata/traces/README.md.

import (
	"bytes"
	"encoding/csv"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/traces")

const traceDir = "../testdata/traces"

// traceSpec describes one generated trace.
type traceSpec struct {
	name string
	seed uint64
	// rtt draws the RTT in ms of probe i, or NaN when no answer ever comes.
	rtt func(i int, r *rand.Rand) float64
	// up reports whether the node is running when probe i is sent.
	up  func(i int) bool
	cpu float64 // mean CPU fraction
}

const (
	traceRows     = 3000
	traceInterval = 1000.0 // ms between probes
	crashRow      = 2000   // first probe sent to the crashed node
)

func normal(r *rand.Rand) float64 { // Box–Muller on Float64, stable across Go releases
	u1 := 1 - r.Float64()
	u2 := r.Float64()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

func lognormal(r *rand.Rand, medianMS, sigma float64) float64 {
	return medianMS * math.Exp(sigma*normal(r))
}

func alwaysUp(int) bool { return true }

var traceSpecs = []traceSpec{
	{
		// A LAN peer whose runtime stops the world now and then: 96 % of
		// answers around 2 ms, 4 % around 80 ms.
		name: "healthy", seed: 101, up: alwaysUp, cpu: 0.3,
		rtt: func(i int, r *rand.Rand) float64 {
			if r.Float64() < 0.04 {
				return lognormal(r, 80, 0.35)
			}
			return lognormal(r, 2, 0.25)
		},
	},
	{
		// Quiet for 1000 probes, then over 200 probes the median moves from
		// 2 ms to 12 ms and the log-spread from 0.25 to 0.6, and stays.
		name: "congested", seed: 202, up: alwaysUp, cpu: 0.4,
		rtt: func(i int, r *rand.Rand) float64 {
			f := min(max(float64(i-1000)/200, 0), 1)
			med := math.Exp(math.Log(2) + f*(math.Log(12)-math.Log(2)))
			return lognormal(r, med, 0.25+f*0.35)
		},
	},
	{
		// A quiet LAN peer (2 ms, log-spread 0.25) that crashes just as
		// probe crashRow is sent: no answer from then on.
		name: "crash", seed: 303, cpu: 0.3,
		up: func(i int) bool { return i < crashRow },
		rtt: func(i int, r *rand.Rand) float64 {
			v := lognormal(r, 2, 0.25)
			if i >= crashRow {
				return math.NaN()
			}
			return v
		},
	},
	{
		// Overloaded but alive: 8 ms typical, and 10 % of answers stretched
		// by a Pareto(α=1.5) factor, capped at 1.5 s. Never silent.
		name: "slow", seed: 404, up: alwaysUp, cpu: 0.9,
		rtt: func(i int, r *rand.Rand) float64 {
			v := lognormal(r, 8, 0.3)
			if r.Float64() < 0.1 {
				v *= math.Pow(1-r.Float64(), -1/1.5)
			}
			return min(v, 1500)
		},
	},
}

// genTrace renders a trace as CSV.
func genTrace(s traceSpec) []byte {
	r := rand.New(rand.NewPCG(s.seed, 0x7ace))
	var buf bytes.Buffer
	buf.WriteString("seq,send_ms,rtt_ms,up,cpu,mem,load1\n")
	cpu, mem := s.cpu, 0.5
	for i := 0; i < traceRows; i++ {
		send := float64(i)*traceInterval + (2*r.Float64()-1)*1 // ±1 ms timer jitter
		rtt := s.rtt(i, r)
		cpu = min(max(s.cpu+0.9*(cpu-s.cpu)+0.03*normal(r), 0), 1)
		mem = min(max(0.5+0.95*(mem-0.5)+0.01*normal(r), 0), 1)
		load := 8 * cpu
		up := 0
		if s.up(i) {
			up = 1
		}
		if math.IsNaN(rtt) {
			fmt.Fprintf(&buf, "%d,%.3f,,%d,,,\n", i, send, up)
			continue
		}
		fmt.Fprintf(&buf, "%d,%.3f,%.3f,%d,%.3f,%.3f,%.2f\n", i, send, rtt, up, cpu, mem, load)
	}
	return buf.Bytes()
}

func TestTraces(t *testing.T) {
	for _, s := range traceSpecs {
		want := genTrace(s)
		path := filepath.Join(traceDir, s.name+".csv")
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the generator; run go test ./scoring -run TestTraces -update", path)
		}
	}
}

// probe is one row of a trace.
type probe struct {
	send   time.Duration
	rtt    time.Duration // < 0: never answered
	up     bool
	load   Load
	hasAck bool
}

func loadTrace(t testing.TB, name string) []probe {
	t.Helper()
	f, err := os.Open(filepath.Join(traceDir, name+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	ms := func(s string) time.Duration {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		return time.Duration(math.Round(v * 1e6))
	}
	fl := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	var out []probe
	for _, row := range rows[1:] {
		p := probe{send: ms(row[1]), rtt: -1, up: row[3] == "1"}
		if row[2] != "" {
			p.rtt = ms(row[2])
			p.hasAck = true
			p.load = Load{CPU: fl(row[4]), Mem: fl(row[5]), Load1: fl(row[6])}
		}
		out = append(out, p)
	}
	return out
}
