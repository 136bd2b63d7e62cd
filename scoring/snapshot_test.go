package scoring

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func TestSnapshotRoundTrip(t *testing.T) {
	for _, n := range []int{0, 3, 50, 1500} { // empty, baseline only, pre-GMM, wrapped ring
		p := trained(t, DefaultConfig(), n)
		b, err := p.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		q, err := DecodeSnapshot(b)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		b2, _ := q.MarshalBinary()
		if !bytes.Equal(b, b2) {
			t.Fatalf("n=%d: encode(decode(b)) != b", n)
		}
		// Both behave the same from here on, refits included.
		more := synth(rand.New(rand.NewPCG(5, 5)), 300)
		more = append(more, Sample{Miss: true, RTT: 3 * time.Millisecond, Gap: 3 * time.Second})
		for i, s := range more {
			r1, _ := p.Observe(s)
			r2, _ := q.Observe(s)
			if r1 != r2 {
				t.Fatalf("n=%d sample %d: %+v != %+v", n, i, r1, r2)
			}
			if p.NeedsRefit() != q.NeedsRefit() {
				t.Fatalf("n=%d sample %d: NeedsRefit differs", n, i)
			}
			if p.NeedsRefit() {
				p.Refit()
				q.Refit()
			}
		}
		var u Peer
		if err := u.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSnapshotRejects(t *testing.T) {
	p := trained(t, DefaultConfig(), 500)
	good, _ := p.MarshalBinary()
	bad := map[string][]byte{
		"empty":    nil,
		"magic":    []byte("XXXX\x01"),
		"version":  append([]byte("VGSC\x02"), good[5:]...),
		"trailing": append(append([]byte{}, good...), 0),
	}
	for i := 0; i < len(good); i += 97 {
		bad["truncated"] = good[:i]
		if _, err := DecodeSnapshot(good[:i]); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("truncated at %d: %v", i, err)
		}
	}
	for name, b := range bad {
		if _, err := DecodeSnapshot(b); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%s: %v", name, err)
		}
	}
	var q Peer
	if err := q.UnmarshalBinary(bad["magic"]); err == nil {
		t.Error("UnmarshalBinary accepted bad bytes")
	}
}

func FuzzDecodeSnapshot(f *testing.F) {
	for _, n := range []int{0, 10, 150} {
		cfg := DefaultConfig()
		cfg.Window, cfg.MinSamples, cfg.Kmax = 150, 100, 2
		p := trained(f, cfg, n)
		b, _ := p.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte("VGSC\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeSnapshot(b)
		if err != nil {
			return
		}
		b2, err := p.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		q, err := DecodeSnapshot(b2)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		b3, _ := q.MarshalBinary()
		if !bytes.Equal(b2, b3) {
			t.Fatal("decode → encode → decode does not round-trip")
		}
		// A decoded peer must score without panicking or leaving [0, 1].
		for _, s := range []Sample{{RTT: time.Millisecond, Gap: time.Second}, {Miss: true, RTT: time.Second, Gap: time.Hour}} {
			r, _ := p.Score(s)
			if !(r.PFail >= 0 && r.PFail <= 1) {
				t.Fatalf("PFail %v", r.PFail)
			}
		}
	})
}
