package scoring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// SnapshotVersion is the format version written by MarshalBinary.
const SnapshotVersion = 1

var snapshotMagic = [4]byte{'V', 'G', 'S', 'C'}

// ErrBadSnapshot is wrapped by every decoding error.
var ErrBadSnapshot = errors.New("scoring: bad snapshot")

// MarshalBinary encodes the whole state of p: config, window, baselines,
// mixture, calibration and counters. Format (little endian): "VGSC", a
// version byte, then the fields in the order of encode.
func (p *Peer) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 512+p.n*41)
	b = append(b, snapshotMagic[:]...)
	b = append(b, SnapshotVersion)
	c := &p.cfg
	f := func(v float64) { b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v)) }
	u := func(v uint64) { b = binary.AppendUvarint(b, v) }
	d := func(v time.Duration) { b = binary.AppendVarint(b, int64(v)) }
	flag := func(v bool) {
		if v {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	f(c.RTTAlpha)
	d(c.RTTBeta)
	f(c.GapAlpha)
	d(c.GapBeta)
	f(c.CPUAlpha)
	f(c.CPUBeta)
	f(c.MemAlpha)
	f(c.MemBeta)
	f(c.LoadAlpha)
	f(c.LoadBeta)
	for _, v := range []int{c.MinBaseline, c.Window, c.MinSamples, c.RefitEvery, c.LateRefit, c.Kmax, c.MaxIter} {
		u(uint64(v))
	}
	f(c.VarFloor)
	f(c.Tol)
	f(c.TimeoutQuantile)
	d(c.MinTimeout)
	d(c.MaxTimeout)
	b = binary.LittleEndian.AppendUint64(b, c.Seed)

	u(uint64(p.sinceRefit))
	u(uint64(p.late))
	u(p.refits)
	u(p.answered)
	u(p.misses)
	for m := MetricRTT; m < numMetrics; m++ {
		flag(p.baseOK[m])
		f(p.base[m])
	}
	u(uint64(p.n))
	start := (p.head - p.n + len(p.win)) % len(p.win)
	for i := 0; i < p.n; i++ {
		r := &p.win[(start+i)%len(p.win)]
		f(r.rtt)
		f(r.gap)
		f(r.cpu)
		f(r.mem)
		f(r.load1)
		flag(r.haveLoad)
	}
	d(p.timeout)
	flag(p.ready)
	if p.ready {
		u(uint64(p.model.k))
		for j := 0; j < p.model.k; j++ {
			cj := &p.model.c[j]
			f(cj.Weight)
			for k := 0; k < dim; k++ {
				f(cj.Mean[k])
				f(cj.Var[k])
			}
		}
		for _, cal := range []*calib{&p.calJ, &p.calR} {
			for _, q := range cal.q {
				f(q)
			}
			f(cal.scale)
		}
	}
	return b, nil
}

// UnmarshalBinary replaces the state of p with the decoded snapshot. On error
// p is unchanged.
func (p *Peer) UnmarshalBinary(b []byte) error {
	q, err := DecodeSnapshot(b)
	if err != nil {
		return err
	}
	*p = *q
	return nil
}

// decoder reads little-endian fields and remembers the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrBadSnapshot}, a...)...)
	}
}

func (d *decoder) f64() float64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail("truncated")
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func (d *decoder) u64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail("truncated")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// int reads a uvarint that must be at most limit.
func (d *decoder) int(name string, limit int) int {
	v := d.uvarint()
	if v > uint64(limit) {
		d.fail("%s = %d, want ≤ %d", name, v, limit)
		return 0
	}
	return int(v)
}

func (d *decoder) dur() time.Duration {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return time.Duration(v)
}

func (d *decoder) flag() bool {
	if d.err != nil {
		return false
	}
	if len(d.b) < 1 {
		d.fail("truncated")
		return false
	}
	v := d.b[0]
	d.b = d.b[1:]
	if v > 1 {
		d.fail("bad flag %d", v)
	}
	return v == 1
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// DecodeSnapshot decodes a snapshot written by MarshalBinary into a new Peer.
// Any malformed, truncated or inconsistent input returns an error wrapping
// ErrBadSnapshot (or ErrInvalidConfig); it never panics.
func DecodeSnapshot(b []byte) (*Peer, error) {
	if len(b) < len(snapshotMagic)+1 || [4]byte(b[:4]) != snapshotMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrBadSnapshot)
	}
	if b[4] != SnapshotVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrBadSnapshot, b[4], SnapshotVersion)
	}
	d := &decoder{b: b[5:]}
	var c Config
	c.RTTAlpha = d.f64()
	c.RTTBeta = d.dur()
	c.GapAlpha = d.f64()
	c.GapBeta = d.dur()
	c.CPUAlpha = d.f64()
	c.CPUBeta = d.f64()
	c.MemAlpha = d.f64()
	c.MemBeta = d.f64()
	c.LoadAlpha = d.f64()
	c.LoadBeta = d.f64()
	c.MinBaseline = d.int("MinBaseline", maxWindow)
	c.Window = d.int("Window", maxWindow)
	c.MinSamples = d.int("MinSamples", maxWindow)
	c.RefitEvery = d.int("RefitEvery", math.MaxInt32)
	c.LateRefit = d.int("LateRefit", math.MaxInt32)
	c.Kmax = d.int("Kmax", MaxK)
	c.MaxIter = d.int("MaxIter", math.MaxInt32)
	c.VarFloor = d.f64()
	c.Tol = d.f64()
	c.TimeoutQuantile = d.f64()
	c.MinTimeout = d.dur()
	c.MaxTimeout = d.dur()
	c.Seed = d.u64()
	if d.err != nil {
		return nil, d.err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	p := &Peer{cfg: c}
	p.sinceRefit = d.int("sinceRefit", math.MaxInt32)
	p.late = d.int("late", math.MaxInt32)
	p.refits = d.uvarint()
	p.answered = d.uvarint()
	p.misses = d.uvarint()
	for m := MetricRTT; m < numMetrics; m++ {
		p.baseOK[m] = d.flag()
		p.base[m] = d.f64()
		if d.err == nil && (!finite(p.base[m]) || p.base[m] < 0 || (!p.baseOK[m] && p.base[m] != 0)) {
			d.fail("baseline %v = %v", m, p.base[m])
		}
	}
	n := d.int("window length", c.Window)
	// Each record takes 41 bytes: refuse before allocating for it.
	if d.err == nil && len(d.b) < n*41 {
		d.fail("truncated window")
	}
	if d.err != nil {
		return nil, d.err
	}
	p.alloc()
	for i := 0; i < n && d.err == nil; i++ {
		r := rec{rtt: d.f64(), gap: d.f64(), cpu: d.f64(), mem: d.f64(), load1: d.f64(), haveLoad: d.flag()}
		s := Sample{
			RTT: time.Duration(r.rtt * 1e9), Gap: time.Duration(r.gap * 1e9),
			Load: Load{CPU: r.cpu, Mem: r.mem, Load1: r.load1}, HaveLoad: true,
		}
		switch {
		case !finite(r.rtt) || !finite(r.gap) || r.rtt < 0 || r.gap < 0 || r.rtt > 1e9 || r.gap > 1e9:
			d.fail("window record %d: bad duration", i)
		case s.Validate() != nil:
			d.fail("window record %d: bad load", i)
		case !r.haveLoad && (r.cpu != 0 || r.mem != 0 || r.load1 != 0):
			d.fail("window record %d: load without flag", i)
		}
		p.win[i] = r
		if r.gap > 0 {
			p.nGap++
		}
	}
	p.n = n
	p.head = n % c.Window
	p.timeout = d.dur()
	if d.err == nil && (p.timeout < c.MinTimeout || p.timeout > c.MaxTimeout) {
		d.fail("timeout %v outside [%v, %v]", p.timeout, c.MinTimeout, c.MaxTimeout)
	}
	p.ready = d.flag()
	if p.ready {
		k := d.int("K", c.Kmax)
		if d.err == nil && k < 1 {
			d.fail("K = 0")
		}
		var wsum float64
		for j := 0; j < k && d.err == nil; j++ {
			cj := &p.model.c[j]
			cj.Weight = d.f64()
			for x := 0; x < dim; x++ {
				cj.Mean[x] = d.f64()
				cj.Var[x] = d.f64()
				if !finite(cj.Mean[x]) || math.Abs(cj.Mean[x]) > 1e3 || !(cj.Var[x] >= c.VarFloor) || cj.Var[x] > 1e6 {
					d.fail("component %d: bad mean or variance", j)
				}
			}
			if !(cj.Weight > 0 && cj.Weight <= 1) {
				d.fail("component %d: weight %v", j, cj.Weight)
			}
			wsum += cj.Weight
		}
		if d.err == nil && math.Abs(wsum-1) > 1e-6 {
			d.fail("weights sum to %v", wsum)
		}
		p.model.k = k
		for _, cal := range []*calib{&p.calJ, &p.calR} {
			for j := range cal.q {
				cal.q[j] = d.f64()
			}
			cal.scale = d.f64()
			if d.err == nil && !cal.valid() {
				d.fail("bad calibration table")
			}
		}
		p.model.prepare()
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return p, nil
}
