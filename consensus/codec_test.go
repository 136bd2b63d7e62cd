package consensus

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

var flagRewrite = flag.Bool("rewrite", false, "rewrite golden transcripts and the fuzz seed corpus in testdata/")

func name(c byte, n int) string { return strings.Repeat(string(c), n) }

// maxChange has every field at its size cap.
func maxChange() Change {
	votes := make([]byte, MaxAcceptors/8)
	for i := range votes {
		votes[i] = 0xff
	}
	return Change{
		Kind: Remove, Reason: Failed,
		Member:   Member{Name: name('x', MaxNameLen), Boot: name('b', MaxBootLen), Addr: name('a', MaxAddrLen)},
		Executor: name('e', MaxNameLen),
		Evidence: Evidence{Proposer: name('p', MaxNameLen), Votes: votes, ProposerNote: []byte(name('q', MaxNote)), Notes: maxNotes()},
	}
}

func maxNotes() []Note {
	var notes []Note
	for i := range MaxNotes {
		notes = append(notes, Note{Acceptor: uint8(MaxAcceptors - 1 - i), Data: []byte(name(byte('0'+i), MaxNote))})
	}
	return notes
}

func sampleMessages() []Message {
	small := Change{Kind: Add, Reason: Joined, Member: Member{Name: "n4", Boot: "b1", Addr: "10.0.0.4:7946"}}
	big := maxChange()
	hdr := func(t MessageType) Message {
		return Message{Type: t, From: name('f', MaxNameLen), To: name('t', MaxNameLen), Epoch: 1<<64 - 1}
	}
	bb := Ballot{Round: 1<<64 - 1, Node: name('f', MaxNameLen)}
	var out []Message
	for _, ch := range []Change{small, big} {
		m := hdr(MsgPrepare)
		m.Ballot, m.Change = bb, ch
		out = append(out, m)
		m.Type = MsgAccept
		out = append(out, m)
		m = hdr(MsgPromise)
		m.Ballot, m.Verdict, m.Accepted, m.Change, m.Note = bb, true, bb, ch, []byte(name('n', MaxNote))
		out = append(out, m)
		m = hdr(MsgDecided)
		m.Ballot, m.Change, m.Head = bb, ch, 1<<64-1
		out = append(out, m)
	}
	m := hdr(MsgPromise)
	m.Ballot = bb
	out = append(out, m)
	m = hdr(MsgNack)
	m.Ballot, m.Accepted = bb, bb
	out = append(out, m)
	m = hdr(MsgAccepted)
	m.Ballot = bb
	out = append(out, m)
	m = hdr(MsgCatchup)
	m.SnapEpoch, m.Offset = 1<<64-1, 1<<32-1
	out = append(out, m)
	out = append(out, Message{Type: MsgCatchup, From: "a", To: "b", Epoch: 3})
	// The largest snapshot page a node builds: members at their caps.
	v := View{Epoch: 1<<64 - 1}
	for i := range 40 {
		v.Members = append(v.Members, Member{Name: fmt.Sprintf("%064d", i), Boot: name('b', MaxBootLen), Addr: name('a', MaxAddrLen)})
	}
	n := &Node{cfg: Config{ID: name('f', MaxNameLen)}, view: v}
	n.sendPages(name('t', MaxNameLen), 0)
	out = append(out, n.rd.Messages...)
	return out
}

func TestCodecRoundTripAndSizes(t *testing.T) {
	largest := map[MessageType]int{}
	for _, m := range sampleMessages() {
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("%s: %v", m.Type, err)
		}
		largest[m.Type] = max(largest[m.Type], len(b))
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", m.Type, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("%s round trip:\n got %+v\nwant %+v", m.Type, got, m)
		}
		for i := range b { // every truncation is an error, never a panic
			if _, err := Decode(b[:i]); err == nil {
				t.Fatalf("%s truncated to %d decoded", m.Type, i)
			}
		}
		if _, err := Decode(append(b, 0)); err == nil {
			t.Fatalf("%s with a trailing byte decoded", m.Type)
		}
	}
	for ty := MsgPrepare; ty <= MsgSnapshot; ty++ {
		t.Logf("%-8s max %4d bytes", ty, largest[ty])
		if largest[ty] > MaxMessageLen {
			t.Errorf("%s: %d bytes > %d", ty, largest[ty], MaxMessageLen)
		}
	}
	if _, err := Encode(Message{Type: MsgPrepare, From: name('x', MaxNameLen+1)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over-long name: %v", err)
	}
}

func TestDecisionCodec(t *testing.T) {
	d := Decision{Epoch: 1<<64 - 1, Ballot: Ballot{Round: 1<<64 - 1, Node: name('n', MaxNameLen)}, Change: maxChange()}
	b, err := EncodeDecision(d)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("largest decision: %d bytes", len(b))
	if len(b) > MaxDecision {
		t.Fatalf("decision is %d bytes > %d", len(b), MaxDecision)
	}
	// Without its notes (the agent's announcement) it fits serf's 512-byte
	// user events with the name and msgpack's ~48 bytes of framing.
	hint := d
	hint.Change.Evidence.ProposerNote, hint.Change.Evidence.Notes = nil, nil
	if hb, err := EncodeDecision(hint); err != nil || len(hb)+len("vigil-decision")+48 > 512 {
		t.Fatalf("the announcement is %d bytes: %v", len(hb), err)
	}
	got, err := DecodeDecision(b)
	if err != nil || !reflect.DeepEqual(got, d) || got.ID() != d.ID() {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	for i := range b {
		if _, err := DecodeDecision(b[:i]); err == nil {
			t.Fatalf("truncated decision decoded")
		}
	}
	// The stored forms before notes (version 1) are still read, and give
	// the same decision id.
	old := d
	old.Change.Evidence.ProposerNote, old.Change.Evidence.Notes = nil, nil
	w := writer{v1: true}
	w.byte(1)
	w.uvarint(old.Epoch)
	w.ballot(old.Ballot)
	w.change(old.Change)
	if got, err := DecodeDecision(w.b); err != nil || !reflect.DeepEqual(got, old) || got.ID() != d.ID() {
		t.Fatalf("version 1 decision: %v %+v", err, got)
	}
	st := AcceptorState{Epoch: 9, Promised: Ballot{4, "a"}, Accepted: Ballot{3, "b"}, Value: maxChange(), Round: 2}
	sb, err := EncodeAcceptorState(st)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeAcceptorState(sb); err != nil || !reflect.DeepEqual(got, st) {
		t.Fatalf("acceptor state: %v %+v", err, got)
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages() {
		b, _ := Encode(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		b2, err := Encode(m)
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		m2, err := Decode(b2)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip:\n%+v\n%+v", m, m2)
		}
	})
}

func FuzzDecodeDecision(f *testing.F) {
	b, _ := EncodeDecision(Decision{Epoch: 3, Ballot: Ballot{1, "a"}, Change: maxChange()})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeDecision(b)
		if err != nil {
			return
		}
		b2, err := EncodeDecision(d)
		if err != nil {
			t.Fatalf("decoded decision does not encode: %v", err)
		}
		if d2, err := DecodeDecision(b2); err != nil || !reflect.DeepEqual(d, d2) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// TestFuzzCorpus keeps the checked-in seed corpus decodable and, with
// -rewrite, regenerates it from sampleMessages.
func TestFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if *flagRewrite {
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, m := range sampleMessages() {
			b, _ := Encode(m)
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d-%s", i, strings.ToLower(m.Type.String()))), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// Hostile inputs: empty, huge count, over-long string, unknown type.
		for name, b := range map[string][]byte{
			"hostile-empty":      {},
			"hostile-type":       {0xff, 0, 0, 0},
			"hostile-count":      {byte(MsgSnapshot), 1, 'a', 1, 'b', 1, 1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
			"hostile-longstring": {byte(MsgAccepted), 200, 'a'},
			"hostile-varint":     {byte(MsgCatchup), 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		} {
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) == 0 {
		t.Fatalf("seed corpus missing in %s (run with -rewrite): %v", dir, err)
	}
}
