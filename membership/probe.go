package membership

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Load is a node's coarse load: CPU and memory use in whole percent, the
// one-minute load average. Coarse on purpose: it travels in every ack.
type Load struct {
	CPU  float64 // percent of all cores busy, 0..100
	Mem  float64 // percent of memory in use, 0..100
	Load float64 // one-minute load average
}

// encode packs a Load into the 3 bytes an ack carries: CPU %, memory %,
// and the load average in tenths, capped at 25.5.
func (l Load) encode() []byte {
	clamp := func(v, max float64) byte { return byte(math.Max(0, math.Min(max, math.Round(v)))) }
	return []byte{clamp(l.CPU, 100), clamp(l.Mem, 100), clamp(l.Load*10, 255)}
}

func decodeLoad(b []byte) (Load, bool) {
	if len(b) != 3 || b[0] > 100 || b[1] > 100 {
		return Load{}, false
	}
	return Load{CPU: float64(b[0]), Mem: float64(b[1]), Load: float64(b[2]) / 10}, true
}

// loads is memberlist's ping delegate: it puts this node's load in the
// acks it sends and keeps the load that peers put in theirs. serf leaves
// the delegate free because coordinates are off.
type loads struct {
	// mu guards the fields below.
	mu    sync.Mutex
	self  []byte
	peers map[string]Load
}

func newLoads() *loads { return &loads{self: Load{}.encode(), peers: map[string]Load{}} }

func (l *loads) AckPayload() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.self
}

func (l *loads) NotifyPingComplete(other *memberlist.Node, _ time.Duration, payload []byte) {
	if ld, ok := decodeLoad(payload); ok { // else an older or foreign peer: no load figures
		l.set(other.Name, ld)
	}
}

func (l *loads) set(name string, ld Load) {
	l.mu.Lock()
	l.peers[name] = ld
	l.mu.Unlock()
}

// SetLoad sets the load this node reports in its acks.
func (m *Mesh) SetLoad(ld Load) {
	b := ld.encode()
	m.loads.mu.Lock()
	m.loads.self = b
	m.loads.mu.Unlock()
}

// PeerLoad is the last load a peer reported, if any.
func (m *Mesh) PeerLoad(name string) (Load, bool) {
	m.loads.mu.Lock()
	defer m.loads.mu.Unlock()
	ld, ok := m.loads.peers[name]
	return ld, ok
}

// SendPing sends one of vigil's own pings to a member's gossip address
// addr (IP:PORT), on the point-to-point transport, and returns its seq; it
// does not block. The caller checks that the pong's sender is the member it
// meant. Its pong, if any, comes out of
// TakePongs, and its load figures out of PeerLoad. A lost ping is not sent
// again: it is a miss.
func (m *Mesh) SendPing(addr string) (uint64, error) { return m.direct.ping(addr) }

// SetVouching sets what this node's pongs say from now on: its view's
// epoch, and the members whose pings they vouch for (whose lease they
// renew). members is kept, not copied: the caller gives a new map each
// time. Until it is first called, pongs carry epoch 0 and vouch for no
// one.
func (m *Mesh) SetVouching(epoch uint64, members map[string]bool) {
	m.direct.vouching.Store(&vouching{epoch: epoch, members: members})
}

// TakePongs returns the pongs that arrived, oldest first.
func (m *Mesh) TakePongs() []Pong {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.pongs
	m.pongs = nil
	return q
}

// burstPing is one ping of a PingBurst: whom it was sent to, and where
// its pong goes.
type burstPing struct {
	from string
	ch   chan<- struct{}
}

// PingBurst sends n of vigil's pings to the member name at addr (IP:PORT),
// gap apart, and counts those answered by the time the burst ends: wait
// after the last one, or as soon as every ping is answered. An early ping
// thus has the gaps after it as well to be answered. A ping that cannot
// be sent is neither answered nor missed: no evidence. It blocks for at
// most (n−1)·gap + wait.
func (m *Mesh) PingBurst(name, addr string, n int, gap, wait time.Duration) (ok, miss int) {
	ch := make(chan struct{}, n)
	var seqs []uint64
	defer func() {
		m.mu.Lock()
		for _, s := range seqs {
			delete(m.waiting, s)
		}
		m.mu.Unlock()
	}()
	for i := range n {
		if i > 0 {
			time.Sleep(gap)
		}
		// Waited for before it is sent: on loopback the pong can come
		// back before the send returns.
		seq := m.direct.nextSeq()
		m.mu.Lock()
		if m.waiting == nil {
			m.waiting = map[uint64]burstPing{}
		}
		m.waiting[seq] = burstPing{from: name, ch: ch}
		m.mu.Unlock()
		seqs = append(seqs, seq)
		if err := m.direct.pingSeq(seq, addr); err != nil {
			m.mu.Lock()
			delete(m.waiting, seq)
			m.mu.Unlock()
			seqs = seqs[:len(seqs)-1]
		}
	}
	end := time.NewTimer(wait)
	defer end.Stop()
	for ok < len(seqs) {
		select {
		case <-ch:
			ok++
		case <-end.C:
			return ok, len(seqs) - ok
		}
	}
	return ok, len(seqs) - ok
}

// offerPong queues a pong for the loop, or hands it to the PingBurst that
// waits for it; beyond the queue's bound it is dropped (a late answer,
// read as a miss).
func (m *Mesh) offerPong(p Pong) {
	m.mu.Lock()
	if w, ok := m.waiting[p.Seq]; ok && w.from == p.From {
		delete(m.waiting, p.Seq)
		m.mu.Unlock()
		w.ch <- struct{}{} // buffered for every ping of the burst
		return
	}
	if len(m.pongs) >= maxInbound {
		m.mu.Unlock()
		return
	}
	m.pongs = append(m.pongs, p)
	m.mu.Unlock()
	m.wake()
}

// ProbeTimeout is how long Ping waits for an ack.
func (m *Mesh) ProbeTimeout() time.Duration { return m.probeTimeout }

// CPUSampler turns /proc/stat readings into a busy percentage between
// two calls.
type CPUSampler struct {
	busy, total uint64
}

// ReadLoad reads this machine's load from /proc. CPU is the busy share
// since the previous call (0 on the first).
func (s *CPUSampler) ReadLoad() (Load, error) {
	var ld Load
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ld, err
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		ld.Load, _ = strconv.ParseFloat(f[0], 64)
	}
	mem, err := readMeminfo()
	if err != nil {
		return ld, err
	}
	ld.Mem = mem
	busy, total, err := readCPU()
	if err != nil {
		return ld, err
	}
	if s.total != 0 && total > s.total {
		ld.CPU = 100 * float64(busy-s.busy) / float64(total-s.total)
	}
	s.busy, s.total = busy, total
	return ld, nil
}

func readMeminfo() (float64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total, avail float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "MemTotal:":
			total = v
		case "MemAvailable:":
			avail = v
		}
	}
	if total == 0 {
		return 0, fmt.Errorf("/proc/meminfo: no MemTotal")
	}
	return 100 * (total - avail) / total, nil
}

func readCPU() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, s := range f[1:] {
		v, _ := strconv.ParseUint(s, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle and iowait
			busy += v
		}
	}
	return busy, total, nil
}
