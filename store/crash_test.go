package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"os/signal"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The crash workload: epoch e is a decision; odd epochs also save acceptor
// state, view and a member record in one Batch; every epoch marks a user
// event. Sizes vary so commits split pages and use overflow pages.
func crashDecision(e uint64) []byte {
	head := fmt.Sprintf("decision-%d-", e)
	return append([]byte(head), bytes.Repeat([]byte{byte(e)}, int(e*37%5000))...)
}
func crashAcceptor(e uint64) []byte { return []byte(fmt.Sprintf("acc-%d", e)) }
func crashView(e uint64) []byte     { return []byte(fmt.Sprintf("view-%d", e)) }
func crashEvent(e uint64) EventKey {
	return EventKey{Name: "ev", LTime: e, Payload: []byte(strconv.FormatUint(e, 10))}
}

var crashOpts = Options{MaxMembers: 50, MaxEvents: 1 << 20}

// helperCrash appends until killed, printing "ack <epoch>" after each
// epoch's writes have returned.
func helperCrash(dir string) error {
	s, err := Open(dir, crashOpts)
	if err != nil {
		return err
	}
	next := uint64(0)
	if e, ok, err := s.LastEpoch(); err != nil {
		return err
	} else if ok {
		next = e + 1
	}
	for e := next; ; e++ {
		if e%2 == 0 {
			if err := s.AppendDecision(e, crashDecision(e)); err != nil {
				return err
			}
		} else {
			err := s.Batch(func(tx *Tx) error {
				if err := tx.SaveAcceptor(crashAcceptor(e)); err != nil {
					return err
				}
				if err := tx.AppendDecision(e, crashDecision(e)); err != nil {
					return err
				}
				if err := tx.SaveView(e, crashView(e)); err != nil {
					return err
				}
				return tx.AppendMember(MemberRecord{Node: "n", Event: "failed", Boot: strconv.FormatUint(e, 10), Source: "view"})
			})
			if err != nil {
				return err
			}
		}
		if first, err := s.MarkEvent(crashEvent(e)); err != nil {
			return err
		} else if !first {
			return fmt.Errorf("event %d already marked", e)
		}
		if _, err := fmt.Fprintf(os.Stdout, "ack %d\n", e); err != nil {
			return err
		}
	}
}

// TestCrash SIGKILLs a writer at varied points and checks, after each kill,
// that the file opens cleanly (including bbolt's consistency check) and
// that every acknowledged write is present. SIGKILL loses the process, not
// the page cache: this tests transaction atomicity and our ordering, not
// fsync against power loss.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)
	dir := t.TempDir()
	acked := map[uint64]bool{}
	var maxAcked, maxAckedOdd uint64
	deadline := time.Now().Add(8 * time.Second)
	iters, unackedCommits := 0, 0
	for ; iters < 12 && time.Now().Before(deadline); iters++ {
		cmd := helperCmd(t, "crash", dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		guard := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
		target := 1 + rng.Intn(80)
		delay := time.Duration(rng.Intn(3000)) * time.Microsecond
		r := bufio.NewReader(stdout)
		n := 0
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break // EOF, or a partial line the kill cut short: not acknowledged
			}
			e, perr := strconv.ParseUint(strings.TrimPrefix(strings.TrimSuffix(line, "\n"), "ack "), 10, 64)
			if perr != nil {
				t.Fatalf("helper said %q", line)
			}
			acked[e] = true
			maxAcked = max(maxAcked, e)
			if e%2 == 1 {
				maxAckedOdd = max(maxAckedOdd, e)
			}
			if n++; n == target {
				time.AfterFunc(delay, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
			}
		}
		err = cmd.Wait()
		guard.Stop()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("iteration %d: helper ended with %v, want SIGKILL", iters, err)
		}
		if len(acked) == 0 {
			continue
		}

		s, err := Open(dir, crashOpts)
		if err != nil {
			t.Fatalf("iteration %d: reopen after kill: %v", iters, err)
		}
		last, ok, err := s.LastEpoch()
		if err != nil || !ok || last < maxAcked {
			t.Fatalf("iteration %d: LastEpoch = %d, %v, %v; acknowledged up to %d", iters, last, ok, err, maxAcked)
		}
		if last > maxAcked {
			unackedCommits++ // committed, killed before the ack: allowed
		}
		// Every stored epoch, acknowledged or not, is whole and contiguous.
		ds, err := s.Decisions(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(ds)) != last+1 {
			t.Fatalf("iteration %d: %d decisions for epochs 0..%d", iters, len(ds), last)
		}
		for i, d := range ds {
			if d.Epoch != uint64(i) || !bytes.Equal(d.Bytes, crashDecision(d.Epoch)) {
				t.Fatalf("iteration %d: decision %d wrong (%d bytes)", iters, d.Epoch, len(d.Bytes))
			}
		}
		for e := range acked {
			if seen, err := s.SeenEvent(crashEvent(e)); err != nil || !seen {
				t.Fatalf("iteration %d: acknowledged event %d lost (%v)", iters, e, err)
			}
		}
		if maxAckedOdd > 0 {
			acc, _ := s.LoadAcceptor()
			ve, vb, _ := s.LoadView()
			var ae uint64
			if _, err := fmt.Sscanf(string(acc), "acc-%d", &ae); err != nil || ae < maxAckedOdd || ae > last {
				t.Fatalf("iteration %d: acceptor %q, acknowledged %d", iters, acc, maxAckedOdd)
			}
			// Acceptor and view were written in one Batch: same epoch.
			if ve != ae || !bytes.Equal(vb, crashView(ve)) {
				t.Fatalf("iteration %d: view %d %q, acceptor %d: torn batch", iters, ve, vb, ae)
			}
			recs, _ := s.MemberHistory("n", 1)
			if len(recs) != 1 || recs[0].Boot != strconv.FormatUint(ae, 10) {
				t.Fatalf("iteration %d: newest member record %+v, acceptor %d: torn batch", iters, recs, ae)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d kills, %d epochs acknowledged, %d kills landed between commit and ack", iters, len(acked), unackedCommits)
}

var errInjected = errors.New("injected write failure")

// failOps is a workload of transactions touching every bucket, with small
// retention limits so that trimming runs too.
var failOpts = Options{MaxMembers: 3, MaxEvents: 3, MaxBoots: 2}

func failOps() []func(s *Store) error {
	mark := func(name string, lt uint64) func(s *Store) error {
		return func(s *Store) error { _, err := s.MarkEvent(EventKey{Name: name, LTime: lt}); return err }
	}
	member := func(i int) func(s *Store) error {
		return func(s *Store) error {
			return s.AppendMember(MemberRecord{Time: time.Unix(int64(i), 0).UTC(), Node: fmt.Sprint("n", i%2), Event: "join", Source: "serf"})
		}
	}
	boot := func(id string) func(s *Store) error {
		return func(s *Store) error { return s.RecordBoot(Boot{ID: id, Node: "self", Started: time.Unix(1, 0).UTC()}) }
	}
	batch := func(e uint64) func(s *Store) error {
		return func(s *Store) error {
			return s.Batch(func(tx *Tx) error {
				for _, f := range []func() error{
					func() error { return tx.SaveAcceptor([]byte(fmt.Sprint("acc", e))) },
					func() error { return tx.AppendDecision(e, []byte(fmt.Sprint("dec", e))) },
					func() error { return tx.SaveView(e+1, []byte(fmt.Sprint("view", e+1))) },
					func() error { _, err := tx.MarkEvent(EventKey{Name: "decided", LTime: 100 + e}); return err },
					func() error { return tx.PutJob(fmt.Sprint("job", e), []byte("pending")) },
					func() error { return tx.AppendMember(MemberRecord{Node: "x", Event: "failed", Source: "view"}) },
				} {
					if err := f(); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}
	return []func(s *Store) error{
		boot("b1"), boot("b2"), boot("b3"),
		batch(0),
		member(1), member(2), member(3), member(4),
		mark("e", 1), mark("e", 2), mark("e", 3), mark("e", 4), mark("f", 4),
		batch(1),
		func(s *Store) error { return s.PutModel("p1", []byte("gmm1")) },
		func(s *Store) error { return s.PutModel("p2", []byte("gmm2")) },
		func(s *Store) error { return s.DeleteModel("p1") },
		func(s *Store) error { return s.SetMeta("node", []byte("self")) },
		func(s *Store) error { return s.PutJob("job0", []byte("done")) },
		func(s *Store) error { return s.DeleteJob("job1") },
		func(s *Store) error { return s.AppendDecision(2, []byte("dec2")) },
		batch(3),
	}
}

// dump is every bucket's keys, values and sequence.
func dump(t *testing.T, s *Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			out[fmt.Sprintf("%s#seq", name)] = fmt.Sprint(b.Sequence())
			return b.ForEach(func(k, v []byte) error {
				out[fmt.Sprintf("%s/%x", name, k)] = fmt.Sprintf("%x", v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFailIthWrite fails the i-th Put/Delete/SetSequence of a workload,
// for every i, then reopens and compares the whole file with a run that
// simply skipped the failed transaction: a failed transaction leaves
// nothing behind, and the others are all there (pebble's errorfs idea, at
// the level of our writes).
func TestFailIthWrite(t *testing.T) {
	ops := failOps()
	refs := map[int]map[string]string{}
	reference := func(skip int) map[string]string {
		if r, ok := refs[skip]; ok {
			return r
		}
		s := openT(t, t.TempDir(), failOpts)
		for j, op := range ops {
			if j != skip {
				if err := op(s); err != nil {
					t.Fatalf("reference op %d: %v", j, err)
				}
			}
		}
		refs[skip] = dump(t, s)
		return refs[skip]
	}
	for i := 1; ; i++ {
		dir := t.TempDir()
		s, err := Open(dir, failOpts)
		if err != nil {
			t.Fatal(err)
		}
		writes := 0
		s.failWrite = func() error {
			if writes++; writes == i {
				return errInjected
			}
			return nil
		}
		failed := -1
		for j, op := range ops {
			if err := op(s); errors.Is(err, errInjected) {
				failed = j
			} else if err != nil {
				t.Fatalf("write %d: op %d: %v", i, j, err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if failed < 0 { // i is past the last write: done
			if i < 50 {
				t.Fatalf("only %d writes in the workload", i-1)
			}
			t.Logf("failed each of %d writes in %d transactions", i-1, len(ops))
			return
		}
		s, err = Open(dir, failOpts) // runs the full check
		if err != nil {
			t.Fatalf("write %d: reopen: %v", i, err)
		}
		got := dump(t, s)
		_ = s.Close()
		if want := reference(failed); !reflect.DeepEqual(got, want) {
			t.Fatalf("write %d (op %d) failed: store differs from skipping op %d\ngot  %v\nwant %v", i, failed, failed, got, want)
		}
	}
}

// helperDiskFull caps the file size (RLIMIT_FSIZE, so growing the file
// fails with EFBIG like a full disk), appends until a write fails, lifts
// the cap and retries the failed epoch. Output: "ack <e>" per acknowledged
// epoch, "fail <e> <error>" once.
func helperDiskFull(dir string) error {
	s, err := Open(dir, Options{})
	if err != nil {
		return err
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		return err
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		return err
	}
	signal.Ignore(syscall.SIGXFSZ)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: uint64(fi.Size()) + 100<<10, Max: old.Max}); err != nil {
		return err
	}
	payload := bytes.Repeat([]byte("x"), 3000)
	failed := uint64(0)
	for e := uint64(0); ; e++ {
		if e == 100000 {
			return errors.New("no write failed under RLIMIT_FSIZE")
		}
		if err := s.AppendDecision(e, payload); err != nil {
			fmt.Printf("fail %d %s\n", e, strings.ReplaceAll(err.Error(), "\n", " "))
			failed = e
			break
		}
		fmt.Printf("ack %d\n", e)
	}
	// The same store keeps working once there is room again.
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		return err
	}
	if err := s.AppendDecision(failed, payload); err != nil {
		return fmt.Errorf("retry after the cap was lifted: %w", err)
	}
	fmt.Printf("ack %d\n", failed)
	return s.Close()
}

// TestDiskFull fails real writes (EFBIG from RLIMIT_FSIZE in a child
// process): the failed transaction must not be half-applied, and the file
// must reopen cleanly with every acknowledged epoch.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := helperCmd(t, "diskfull", dir).Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	acked := map[uint64]bool{}
	fails := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var e uint64
		switch {
		case strings.HasPrefix(line, "ack "):
			if _, err := fmt.Sscanf(line, "ack %d", &e); err != nil {
				t.Fatalf("helper said %q", line)
			}
			acked[e] = true
		case strings.HasPrefix(line, "fail "):
			fails++
			t.Logf("injected failure: %s", line)
		default:
			t.Fatalf("helper said %q", line)
		}
	}
	if fails != 1 || len(acked) < 2 {
		t.Fatalf("%d failures, %d acks", fails, len(acked))
	}
	s = openT(t, dir, Options{})
	ds, err := s.Decisions(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != len(acked) {
		t.Errorf("%d decisions stored, %d acknowledged", len(ds), len(acked))
	}
	for _, d := range ds {
		if !acked[d.Epoch] || len(d.Bytes) != 3000 {
			t.Errorf("decision %d: acked %v, %d bytes", d.Epoch, acked[d.Epoch], len(d.Bytes))
		}
	}
}
