package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func openT(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestOpenCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s := openT(t, dir, Options{})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("dir mode = %v, want 0700", got)
	}
	if want := filepath.Join(dir, FileName); s.Path() != want {
		t.Errorf("Path() = %q, want %q", s.Path(), want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen an existing, valid store.
	openT(t, dir, Options{})
}

func TestOptions(t *testing.T) {
	for _, o := range []Options{{Timeout: -1}, {MaxMembers: -1}, {MaxEvents: -2}, {MaxBoots: -3}} {
		if _, err := Open(t.TempDir(), o); err == nil || !strings.HasPrefix(err.Error(), "store: Options.") {
			t.Errorf("Open(%+v) = %v, want an Options error", o, err)
		}
	}
	if _, err := Open("", Options{}); err == nil {
		t.Error("Open(\"\") succeeded")
	}
	o, err := Options{}.withDefaults()
	if err != nil || o.Timeout != DefaultTimeout || o.MaxMembers != DefaultMaxMembers || o.MaxEvents != DefaultMaxEvents || o.MaxBoots != DefaultMaxBoots {
		t.Errorf("defaults = %+v, %v", o, err)
	}
}

func TestClosed(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveAcceptor([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("SaveAcceptor after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Decision(1); !errors.Is(err, ErrClosed) {
		t.Errorf("Decision after Close = %v, want ErrClosed", err)
	}
}

func TestBoots(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{MaxBoots: 3})
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	for i := range 5 {
		if err := s.RecordBoot(Boot{ID: fmt.Sprintf("b%d", i), Node: "n1", Started: t0.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		limit int
		want  []string
	}{
		{0, []string{"b4", "b3", "b2"}},
		{-1, []string{"b4", "b3", "b2"}},
		{2, []string{"b4", "b3"}},
		{10, []string{"b4", "b3", "b2"}},
	} {
		got, err := s.Boots(tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, b := range got {
			ids = append(ids, b.ID)
		}
		if !reflect.DeepEqual(ids, tc.want) {
			t.Errorf("Boots(%d) = %v, want %v", tc.limit, ids, tc.want)
		}
	}
	got, _ := s.Boots(1)
	if !got[0].Started.Equal(t0.Add(4*time.Second)) || got[0].Node != "n1" {
		t.Errorf("boot round trip = %+v", got[0])
	}
}

func TestMemberHistory(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{MaxMembers: 5})
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	nodes := []string{"a", "b", "c"}
	for i := range 12 { // seq 1..12; keep 8..12
		r := MemberRecord{Time: t0.Add(time.Duration(i) * time.Second), Node: nodes[i%3], Addr: "127.0.0.1:7946", Boot: "x", Event: fmt.Sprint("e", i), Source: "serf"}
		if err := s.AppendMember(r); err != nil {
			t.Fatal(err)
		}
	}
	events := func(rs []MemberRecord) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Event)
		}
		return out
	}
	for _, tc := range []struct {
		node  string
		limit int
		want  []string
	}{
		{"", 0, []string{"e11", "e10", "e9", "e8", "e7"}},
		{"", 2, []string{"e11", "e10"}},
		{"a", 0, []string{"e9"}}, // e0, e3, e6 trimmed
		{"b", 0, []string{"e10", "e7"}},
		{"b", 1, []string{"e10"}},
		{"zzz", 0, nil},
	} {
		got, err := s.MemberHistory(tc.node, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(events(got), tc.want) {
			t.Errorf("MemberHistory(%q, %d) = %v, want %v", tc.node, tc.limit, events(got), tc.want)
		}
	}
	// A smaller retention on reopen trims on the next append.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, Options{MaxMembers: 2})
	if err := s.AppendMember(MemberRecord{Node: "a", Event: "e12", Source: "view"}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.MemberHistory("", 0)
	if want := []string{"e12", "e11"}; !reflect.DeepEqual(events(got), want) {
		t.Errorf("after shrink: %v, want %v", events(got), want)
	}
	if got[0].Source != "view" || got[1].Addr != "127.0.0.1:7946" || !got[1].Time.Equal(t0.Add(11*time.Second)) {
		t.Errorf("round trip: %+v", got[:2])
	}
}

func TestMarkEvent(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	steps := []struct {
		k     EventKey
		first bool
	}{
		{EventKey{"deploy", 5, []byte("v1")}, true},
		{EventKey{"deploy", 5, []byte("v1")}, false},
		{EventKey{"deploy", 5, []byte("v2")}, true},  // other payload
		{EventKey{"deploy", 6, []byte("v1")}, true},  // other LTime
		{EventKey{"deploy2", 5, []byte("v1")}, true}, // other name
		{EventKey{"ab", 7, []byte("c")}, true},
		{EventKey{"a", 7, []byte("bc")}, true}, // name/payload boundary matters
		{EventKey{"", 0, nil}, true},
		{EventKey{"", 0, []byte{}}, false}, // nil and empty payload are the same
	}
	for i, st := range steps {
		first, err := s.MarkEvent(st.k)
		if err != nil || first != st.first {
			t.Errorf("step %d MarkEvent(%v) = %v, %v; want %v", i, st.k, first, err, st.first)
		}
		seen, err := s.SeenEvent(st.k)
		if err != nil || !seen {
			t.Errorf("step %d SeenEvent = %v, %v", i, seen, err)
		}
	}
	if seen, _ := s.SeenEvent(EventKey{"deploy", 9, nil}); seen {
		t.Error("unmarked event seen")
	}
	// Dedup survives Close/Open.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, Options{})
	for i, st := range steps {
		if first, err := s.MarkEvent(st.k); err != nil || first {
			t.Errorf("after reopen, step %d MarkEvent = %v, %v; want false", i, first, err)
		}
	}
}

func TestMarkEventRetention(t *testing.T) {
	s := openT(t, t.TempDir(), Options{MaxEvents: 4})
	mark := func(name string, lt uint64) bool {
		t.Helper()
		first, err := s.MarkEvent(EventKey{Name: name, LTime: lt})
		if err != nil {
			t.Fatal(err)
		}
		return first
	}
	for lt := uint64(1); lt <= 10; lt++ {
		if !mark("e", lt) {
			t.Fatalf("LTime %d not first", lt)
		}
	}
	count := func() (n int, seq uint64) {
		_ = s.view(func(tx *Tx) error {
			b := tx.bucket(bucketEvents)
			_ = b.ForEach(func(k, v []byte) error { n++; return nil })
			seq = b.Sequence()
			return nil
		})
		return n, seq
	}
	if n, seq := count(); n != 4 || seq != 4 {
		t.Errorf("kept %d keys (count %d), want 4", n, seq)
	}
	for lt := uint64(7); lt <= 10; lt++ {
		if seen, _ := s.SeenEvent(EventKey{Name: "e", LTime: lt}); !seen {
			t.Errorf("LTime %d not seen", lt)
		}
	}
	// At or below the trimmed floor (6): treated as seen, never run again.
	for _, tc := range []struct {
		name  string
		lt    uint64
		first bool
	}{
		{"e", 3, false},     // trimmed, old
		{"other", 6, false}, // never seen, but below the window
		{"other", 7, true},  // inside the window, new; trims one LTime-7 key
		{"late", 12, true},
		{"e", 7, false}, // now at the floor
	} {
		if got := mark(tc.name, tc.lt); got != tc.first {
			t.Errorf("MarkEvent(%s, %d) = %v, want %v", tc.name, tc.lt, got, tc.first)
		}
	}
	if n, seq := count(); n != 4 || seq != 4 {
		t.Errorf("kept %d keys (count %d), want 4", n, seq)
	}
}

func TestAcceptor(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	if b, err := s.LoadAcceptor(); b != nil || err != nil {
		t.Errorf("empty LoadAcceptor = %q, %v", b, err)
	}
	for _, v := range []string{"p1", "p2-longer", "p3"} {
		if err := s.SaveAcceptor([]byte(v)); err != nil {
			t.Fatal(err)
		}
		if b, err := s.LoadAcceptor(); string(b) != v || err != nil {
			t.Errorf("LoadAcceptor = %q, %v; want %q", b, err, v)
		}
	}
}

func TestDecisions(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	if e, ok, err := s.LastEpoch(); e != 0 || ok || err != nil {
		t.Errorf("empty LastEpoch = %d, %v, %v", e, ok, err)
	}
	steps := []struct {
		epoch uint64
		val   string
		err   error
	}{
		{0, "d0", nil},
		{1, "d1", nil},
		{1, "d1", nil}, // idempotent
		{1, "x1", ErrConflict},
		{3, "d3", nil}, // a gap is allowed
		{2, "d2", nil},
		{1 << 40, "big", nil},
	}
	for _, st := range steps {
		if err := s.AppendDecision(st.epoch, []byte(st.val)); !errors.Is(err, st.err) || (st.err == nil) != (err == nil) {
			t.Errorf("AppendDecision(%d, %q) = %v, want %v", st.epoch, st.val, err, st.err)
		}
	}
	if b, _ := s.Decision(1); string(b) != "d1" {
		t.Errorf("Decision(1) = %q after conflict, want d1", b)
	}
	if b, err := s.Decision(99); b != nil || err != nil {
		t.Errorf("Decision(99) = %q, %v", b, err)
	}
	if e, ok, _ := s.LastEpoch(); e != 1<<40 || !ok {
		t.Errorf("LastEpoch = %d, %v", e, ok)
	}
	for _, tc := range []struct {
		from  uint64
		limit int
		want  []uint64
	}{
		{0, 0, []uint64{0, 1, 2, 3, 1 << 40}},
		{1, 2, []uint64{1, 2}},
		{3, 0, []uint64{3, 1 << 40}},
		{4, 0, []uint64{1 << 40}},
		{1<<40 + 1, 0, nil},
	} {
		got, err := s.Decisions(tc.from, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		var eps []uint64
		for _, d := range got {
			eps = append(eps, d.Epoch)
			if want, _ := s.Decision(d.Epoch); !bytes.Equal(d.Bytes, want) {
				t.Errorf("Decisions bytes for %d = %q, want %q", d.Epoch, d.Bytes, want)
			}
		}
		if !reflect.DeepEqual(eps, tc.want) {
			t.Errorf("Decisions(%d, %d) = %v, want %v", tc.from, tc.limit, eps, tc.want)
		}
	}
}

func TestView(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	if e, b, err := s.LoadView(); e != 0 || b != nil || err != nil {
		t.Errorf("empty LoadView = %d, %q, %v", e, b, err)
	}
	steps := []struct {
		epoch uint64
		val   string
		err   error
	}{
		{3, "v3", nil},
		{3, "v3b", nil}, // same epoch overwrites
		{2, "v2", ErrStale},
		{7, "", nil},
	}
	for _, st := range steps {
		if err := s.SaveView(st.epoch, []byte(st.val)); !errors.Is(err, st.err) || (st.err == nil) != (err == nil) {
			t.Errorf("SaveView(%d) = %v, want %v", st.epoch, err, st.err)
		}
	}
	if e, b, err := s.LoadView(); e != 7 || b == nil || len(b) != 0 || err != nil {
		t.Errorf("LoadView = %d, %q, %v; want 7, empty", e, b, err)
	}
}

func TestJobsModelsMeta(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	for _, id := range []string{"j2", "j1", "j3"} {
		if err := s.PutJob(id, []byte("state-"+id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutJob("j2", []byte("done")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteJob("j3"); err != nil {
		t.Fatal(err)
	}
	jobs, err := s.Jobs()
	want := []IDBytes{{"j1", []byte("state-j1")}, {"j2", []byte("done")}}
	if err != nil || !reflect.DeepEqual(jobs, want) {
		t.Errorf("Jobs = %q, %v; want %q", jobs, err, want)
	}
	if b, _ := s.Job("j1"); string(b) != "state-j1" {
		t.Errorf("Job(j1) = %q", b)
	}
	if b, _ := s.Job("nope"); b != nil {
		t.Errorf("Job(nope) = %q", b)
	}
	if err := s.PutJob("", nil); err == nil {
		t.Error("PutJob with empty id succeeded")
	}

	if err := s.PutModel("peer1", []byte("gmm")); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.Model("peer1"); string(b) != "gmm" {
		t.Errorf("Model = %q", b)
	}
	if ms, err := s.Models(); err != nil || len(ms) != 1 || string(ms["peer1"]) != "gmm" {
		t.Errorf("Models = %q, %v", ms, err)
	}
	if err := s.DeleteModel("peer1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteModel("never"); err != nil {
		t.Errorf("DeleteModel(absent) = %v", err)
	}
	if b, _ := s.Model("peer1"); b != nil {
		t.Errorf("Model after delete = %q", b)
	}
	if err := s.PutModel("", nil); err == nil {
		t.Error("PutModel with empty peer succeeded")
	}

	if err := s.SetMeta("node", []byte("n1")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta("schema", []byte("not ours")); err != nil { // separate from store-internal meta
		t.Fatal(err)
	}
	if b, _ := s.Meta("node"); string(b) != "n1" {
		t.Errorf("Meta(node) = %q", b)
	}
	if b, _ := s.Meta("absent"); b != nil {
		t.Errorf("Meta(absent) = %q", b)
	}
	if err := s.SetMeta("", nil); err == nil {
		t.Error("SetMeta with empty key succeeded")
	}
	// Returned slices are copies.
	b, _ := s.Meta("node")
	b[0] = 'X'
	if b2, _ := s.Meta("node"); string(b2) != "n1" {
		t.Errorf("Meta aliased the db: %q", b2)
	}
	// Survives reopen, and the internal schema key was not clobbered.
	dir := s.Dir()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, Options{})
	if b, _ := s.Meta("schema"); string(b) != "not ours" {
		t.Errorf("Meta(schema) = %q", b)
	}
}

func TestBatch(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	errBoom := errors.New("boom")
	err := s.Batch(func(tx *Tx) error {
		if err := tx.SaveAcceptor([]byte("acc")); err != nil {
			return err
		}
		if err := tx.AppendDecision(0, []byte("d0")); err != nil {
			return err
		}
		if err := tx.SaveView(1, []byte("v1")); err != nil {
			return err
		}
		if first, err := tx.MarkEvent(EventKey{Name: "x", LTime: 1}); err != nil || !first {
			return fmt.Errorf("mark: %v %v", first, err)
		}
		// Reads inside the batch see its writes.
		if b, _ := tx.Decision(0); string(b) != "d0" {
			return fmt.Errorf("read own write: %q", b)
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Batch = %v, want boom", err)
	}
	if b, _ := s.LoadAcceptor(); b != nil {
		t.Errorf("acceptor survived a failed batch: %q", b)
	}
	if _, ok, _ := s.LastEpoch(); ok {
		t.Error("decision survived a failed batch")
	}
	if _, b, _ := s.LoadView(); b != nil {
		t.Error("view survived a failed batch")
	}
	if seen, _ := s.SeenEvent(EventKey{Name: "x", LTime: 1}); seen {
		t.Error("event survived a failed batch")
	}

	err = s.Batch(func(tx *Tx) error {
		if err := tx.SaveAcceptor([]byte("acc")); err != nil {
			return err
		}
		if err := tx.AppendDecision(0, []byte("d0")); err != nil {
			return err
		}
		return tx.SaveView(1, []byte("v1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	acc, _ := s.LoadAcceptor()
	d, _ := s.Decision(0)
	e, v, _ := s.LoadView()
	if string(acc) != "acc" || string(d) != "d0" || e != 1 || string(v) != "v1" {
		t.Errorf("after batch: %q %q %d %q", acc, d, e, v)
	}
	// A conflict inside a batch aborts all of it.
	err = s.Batch(func(tx *Tx) error {
		if err := tx.SaveAcceptor([]byte("acc2")); err != nil {
			return err
		}
		return tx.AppendDecision(0, []byte("other"))
	})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("Batch = %v, want ErrConflict", err)
	}
	if acc, _ := s.LoadAcceptor(); string(acc) != "acc" {
		t.Errorf("acceptor = %q after aborted batch", acc)
	}
}
