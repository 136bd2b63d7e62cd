package membership

import (
	"bytes"
	"fmt"
	"math/rand"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// wire is an in-memory network of directs with seeded loss and
// duplication; frames are delivered when flushed.
type wire struct {
	rng   *rand.Rand
	loss  float64
	dup   float64
	nodes map[string]*direct // by address
	addrs map[string]string  // name → address
	queue []wframe
}

type wframe struct {
	from, to string
	b        []byte
}

func (w *wire) add(t *testing.T, name string, key []byte) *direct {
	t.Helper()
	var kr *memberlist.Keyring
	if key != nil {
		var err error
		if kr, err = memberlist.NewKeyring(nil, key); err != nil {
			t.Fatal(err)
		}
	}
	d := newDirect(name, kr)
	addr := fmt.Sprintf("10.0.0.%d:7946", len(w.nodes)+1)
	d.addrOf = func(n string) (string, bool) { a, ok := w.addrs[n]; return a, ok }
	d.write = func(b []byte, to string) { w.queue = append(w.queue, wframe{addr, to, append([]byte(nil), b...)}) }
	d.deliver = func(Inbound) bool { return true }
	w.nodes[addr] = d
	w.addrs[name] = addr
	return d
}

// flush delivers (or loses, or duplicates) what is queued, and what that
// sends, until nothing is left.
func (w *wire) flush() {
	for len(w.queue) > 0 {
		q := w.queue
		w.queue = nil
		for _, f := range q {
			if w.rng.Float64() < w.loss {
				continue
			}
			n := 1
			if w.rng.Float64() < w.dup {
				n = 2
			}
			from, err := net.ResolveUDPAddr("udp", f.from)
			if err != nil {
				panic(err)
			}
			for range n {
				if d := w.nodes[f.to]; d != nil {
					d.onFrame(&memberlist.Packet{Buf: f.b, From: from})
				}
			}
		}
	}
}

func TestDirectDeliversEachMessageOnceUnderLoss(t *testing.T) {
	for _, key := range [][]byte{nil, bytes.Repeat([]byte{7}, 32)} {
		for seed := int64(1); seed <= 50; seed++ {
			w := &wire{rng: rand.New(rand.NewSource(seed)), loss: 0.3, dup: 0.2, nodes: map[string]*direct{}, addrs: map[string]string{}}
			a := w.add(t, "a", key)
			b := w.add(t, "b", key)
			var got []string
			b.deliver = func(in Inbound) bool {
				if in.From != "a" {
					t.Fatalf("seed %d: from %q", seed, in.From)
				}
				got = append(got, string(in.Payload))
				return true
			}
			now := time.Unix(0, 0)
			const n = 20
			for i := range n {
				if err := a.send("b", []byte(fmt.Sprint(i)), now); err != nil {
					t.Fatal(err)
				}
			}
			for range 20 {
				w.flush()
				now = now.Add(100 * time.Millisecond)
				a.resend(now)
			}
			w.flush()
			// A message and its ack both pass with p = 0.49 a try, over
			// 8 tries: a message is given up with p ≈ 0.5 %, and never
			// delivered twice.
			seen := map[string]bool{}
			for _, g := range got {
				if seen[g] {
					t.Fatalf("seed %d: %q delivered twice", seed, g)
				}
				seen[g] = true
			}
			if len(got) < n-2 {
				t.Errorf("seed %d (key %v): %d of %d delivered", seed, key != nil, len(got), n)
			}
			if a.pending() != 0 {
				t.Errorf("seed %d: %d still pending after the timeout", seed, a.pending())
			}
			if st := a.stats; st.Resent == 0 || st.Acked+st.GivenUp != n {
				t.Errorf("seed %d: stats %+v", seed, st)
			}
		}
	}
}

func TestDirectFramesAreAuthenticated(t *testing.T) {
	k1 := bytes.Repeat([]byte{1}, 16)
	k2 := bytes.Repeat([]byte{2}, 16)
	mk := func(keys ...[]byte) *direct {
		if len(keys) == 0 {
			return newDirect("n1", nil)
		}
		kr, err := memberlist.NewKeyring(keys, keys[0])
		if err != nil {
			t.Fatal(err)
		}
		return newDirect("n1", kr)
	}
	plain, sealed1, sealed2, both := mk(), mk(k1), mk(k2), mk(k2, k1)
	for _, tc := range []struct {
		name     string
		from, to *direct
		ok       bool
	}{
		{"plain to plain", plain, plain, true},
		{"sealed to same key", sealed1, sealed1, true},
		{"sealed with an installed second key", sealed1, both, true},
		{"plain to a keyed agent", plain, sealed1, false},
		{"sealed to an agent without a key", sealed1, plain, false},
		{"sealed with another key", sealed1, sealed2, false},
	} {
		f, err := tc.from.frame(kindMsg, 42, []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		kind, seq, from, payload, err := tc.to.open(f)
		if ok := err == nil; ok != tc.ok {
			t.Errorf("%s: open err %v, want ok=%v", tc.name, err, tc.ok)
			continue
		}
		if tc.ok && (kind != kindMsg || seq != 42 || from != "n1" || string(payload) != "hello") {
			t.Errorf("%s: got %d %d %q %q", tc.name, kind, seq, from, payload)
		}
		if tc.ok && tc.from.keyring != nil {
			// Any changed byte, header included, is refused.
			for i := range f {
				g := append([]byte(nil), f...)
				g[i] ^= 0x40
				if _, _, _, _, err := tc.to.open(g); err == nil {
					t.Errorf("%s: a frame changed at byte %d was opened", tc.name, i)
				}
			}
		}
	}
}

// Malformed datagrams are dropped and counted, never delivered, never a
// panic.
func FuzzDirectOpen(f *testing.F) {
	d := newDirect("n1", nil)
	good, _ := d.frame(kindMsg, 1, []byte("x"))
	f.Add(good)
	f.Add([]byte{directMagic})
	f.Add([]byte{directMagic, 0, kindMsg, 0, 0, 0, 0, 0, 0, 0, 1, 0})
	f.Add([]byte{directMagic, 0, kindMsg, 0, 0, 0, 0, 0, 0, 0, 1, 200, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := newDirect("n2", nil)
		var got []Inbound
		r.deliver = func(in Inbound) bool { got = append(got, in); return true }
		r.write = func([]byte, string) {}
		r.onFrame(&memberlist.Packet{Buf: b, From: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}})
		_, _, from, payload, err := r.open(b)
		if err != nil && len(got) > 0 {
			t.Fatalf("a malformed frame was delivered: %q", b)
		}
		if err == nil && (from == "" || len(payload) > MaxMessage) {
			t.Fatalf("open took %q", b)
		}
	})
}

// A ping is answered at once with a pong of its seq carrying the
// answerer's load; the pinger learns the load and gets the pong. A ping
// with a payload, and pings under another key, are not answered.
func TestDirectPingIsAnsweredWithLoad(t *testing.T) {
	for _, key := range [][]byte{nil, bytes.Repeat([]byte{7}, 16)} {
		w := &wire{rng: rand.New(rand.NewSource(1)), nodes: map[string]*direct{}, addrs: map[string]string{}}
		a := w.add(t, "a", key)
		b := w.add(t, "b", key)
		a.loads, b.loads = newLoads(), newLoads()
		b.loads.self = Load{CPU: 42, Mem: 7, Load: 1.5}.encode()
		var pongs []Pong
		a.onPong = func(p Pong) { pongs = append(pongs, p) }
		seq, err := a.ping(w.addrs["b"])
		if err != nil {
			t.Fatal(err)
		}
		w.flush()
		if len(pongs) != 1 || pongs[0].Seq != seq || pongs[0].From != "b" {
			t.Fatalf("key %v: pongs %+v, want one from b for seq %d", key != nil, pongs, seq)
		}
		if ld, ok := a.loads.peers["b"]; !ok || ld.CPU != 42 || ld.Mem != 7 || ld.Load != 1.5 {
			t.Errorf("key %v: load of b %+v %v", key != nil, ld, ok)
		}
		if a.stats.Pings != 1 || a.stats.Pongs != 1 || b.stats.Answered != 1 {
			t.Errorf("key %v: stats a %+v b %+v", key != nil, a.stats, b.stats)
		}
		// Before b says what it vouches for, its pongs vouch for no one.
		if pongs[0].Epoch != 0 || pongs[0].Vouched {
			t.Errorf("key %v: a pong before SetVouching: %+v", key != nil, pongs[0])
		}
		// Its pongs carry its epoch, and vouch only for the members it
		// names.
		b.vouching.Store(&vouching{epoch: 7, members: map[string]bool{"a": true}})
		c := w.add(t, "c", key)
		c.onPong = func(p Pong) { pongs = append(pongs, p) }
		for _, d := range []*direct{a, c} {
			if _, err := d.ping(w.addrs["b"]); err != nil {
				t.Fatal(err)
			}
		}
		w.flush()
		if len(pongs) != 3 || pongs[1].Epoch != 7 || !pongs[1].Vouched || pongs[2].Epoch != 7 || pongs[2].Vouched {
			t.Fatalf("key %v: pongs to a (vouched) and c (not): %+v", key != nil, pongs[1:])
		}
		pongs = pongs[:1]
		b.stats = DirectStats{Answered: 1}
		// A pong without the epoch and vouch header is malformed.
		f, err := b.frame(kindPong, 5, Load{CPU: 1}.encode())
		if err != nil {
			t.Fatal(err)
		}
		w.queue = append(w.queue, wframe{w.addrs["b"], w.addrs["a"], f})
		w.flush()
		if len(pongs) != 1 || a.stats.Dropped != 1 {
			t.Errorf("key %v: a pong without its header: pongs %d, stats %+v", key != nil, len(pongs), a.stats)
		}

		// A "ping" with a payload is malformed: dropped, not answered.
		f, err = a.frame(kindPing, 99, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		w.queue = append(w.queue, wframe{w.addrs["a"], w.addrs["b"], f})
		w.flush()
		if len(pongs) != 1 || b.stats.Answered != 1 || b.stats.Dropped != 1 {
			t.Errorf("key %v: a ping with a payload: pongs %d, stats %+v", key != nil, len(pongs), b.stats)
		}
	}
	// A ping under another key, or none, is not answered.
	w := &wire{rng: rand.New(rand.NewSource(1)), nodes: map[string]*direct{}, addrs: map[string]string{}}
	a := w.add(t, "a", nil)
	b := w.add(t, "b", bytes.Repeat([]byte{7}, 16))
	if _, err := a.ping(w.addrs["b"]); err != nil {
		t.Fatal(err)
	}
	w.flush()
	if b.stats.Answered != 0 || b.stats.Dropped != 1 {
		t.Errorf("an unsealed ping to a keyed agent: stats %+v", b.stats)
	}
}
