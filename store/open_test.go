package store

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestInUseSameProcess(t *testing.T) {
	dir := t.TempDir()
	openT(t, dir, Options{})
	start := time.Now()
	_, err := Open(dir, Options{Timeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open = %v, want ErrInUse", err)
	}
	if want := "store: data dir " + dir + " is in use by another agent"; err.Error() != want {
		t.Errorf("message = %q, want %q", err.Error(), want)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("second Open took %v with a 200ms timeout", el)
	}
}

// helperCmd re-executes the test binary as a helper (see TestHelperProcess).
func helperCmd(t *testing.T, mode, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "VIGIL_STORE_HELPER="+mode, "VIGIL_STORE_DIR="+dir)
	cmd.Stderr = os.Stderr
	return cmd
}

func TestInUseAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	cmd := helperCmd(t, "hold", dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}

	start := time.Now()
	_, err = Open(dir, Options{Timeout: 300 * time.Millisecond})
	el := time.Since(start)
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("Open while another process holds it = %v, want ErrInUse", err)
	}
	if !strings.Contains(err.Error(), dir+" is in use by another agent") {
		t.Errorf("unclear message: %q", err)
	}
	if el < 200*time.Millisecond || el > 10*time.Second {
		t.Errorf("Open returned after %v, want about the 300ms timeout", el)
	}

	// Once the holder exits, the lock is free.
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	openT(t, dir, Options{})
}

func TestNotWritable(t *testing.T) {
	root := t.TempDir()
	blocker := filepath.Join(root, "file")
	if err := os.WriteFile(blocker, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{
		blocker,                          // a file where the dir should be
		filepath.Join(blocker, "data"),   // the parent is a regular file
		filepath.Join(blocker, "a", "b"), // further down
	} {
		_, err := Open(dir, Options{})
		if !errors.Is(err, ErrNotWritable) {
			t.Errorf("Open(%s) = %v, want ErrNotWritable", dir, err)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "store: data dir "+dir+" is not writable: ") || strings.Contains(msg, "\n") {
			t.Errorf("message = %q", msg)
		}
	}

	if os.Geteuid() == 0 {
		t.Skip("permission bits do not stop root: the mode-0500 dir case needs a non-root user")
	}
	ro := filepath.Join(root, "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(ro, 0o700) })
	if _, err := Open(ro, Options{}); !errors.Is(err, ErrNotWritable) {
		t.Errorf("Open(0500 dir) = %v, want ErrNotWritable", err)
	}
}

// validDB writes a vigil store with enough data to span many pages.
func validDB(t *testing.T, dir string) {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 1000)
	err = s.Batch(func(tx *Tx) error {
		for e := range uint64(300) {
			big[0] = byte(e)
			if err := tx.AppendDecision(e, big); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// rawBolt writes a bbolt file with fn, bypassing our schema.
func rawBolt(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if fn != nil {
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCorrupt(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	randomBytes := func(n int) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			b := make([]byte, n)
			rng.Read(b)
			if err := os.WriteFile(filepath.Join(dir, FileName), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	// size gets the bytes the pages need (bbolt's high-water mark; the
	// file is usually longer: bbolt grows it ahead).
	truncated := func(size func(used int64) int64) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			validDB(t, dir)
			p := filepath.Join(dir, FileName)
			var used int64
			db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			_ = db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
			_ = db.Close()
			if err := os.Truncate(p, size(used)); err != nil {
				t.Fatal(err)
			}
		}
	}
	withSchema := func(v []byte, extra func(tx *bolt.Tx) error) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			validDB(t, dir)
			rawBolt(t, filepath.Join(dir, FileName), func(tx *bolt.Tx) error {
				m := tx.Bucket([]byte(bucketMeta))
				if v == nil {
					if err := m.Delete([]byte(keySchema)); err != nil {
						return err
					}
				} else if err := m.Put([]byte(keySchema), v); err != nil {
					return err
				}
				if extra != nil {
					return extra(tx)
				}
				return nil
			})
		}
	}
	for _, tc := range []struct {
		name string
		make func(t *testing.T, dir string)
		want error
		msg  string
	}{
		{"random 100 bytes", randomBytes(100), ErrCorrupt, "invalid database"},
		{"random 64KiB", randomBytes(64 << 10), ErrCorrupt, "invalid database"},
		{"truncated to 1000 bytes", truncated(func(int64) int64 { return 1000 }), ErrCorrupt, ""},
		{"truncated to one page", truncated(func(int64) int64 { return 4096 }), ErrCorrupt, ""},
		{"truncated to half", truncated(func(n int64) int64 { return n / 2 }), ErrCorrupt, "truncated"},
		{"last used page cut", truncated(func(n int64) int64 { return n - 4096 }), ErrCorrupt, "truncated"},
		{"bbolt without meta bucket", func(t *testing.T, dir string) {
			rawBolt(t, filepath.Join(dir, FileName), func(tx *bolt.Tx) error {
				_, err := tx.CreateBucket([]byte("someone-elses"))
				return err
			})
		}, ErrCorrupt, "not a vigil store"},
		{"no schema version", withSchema(nil, nil), ErrCorrupt, "no schema version"},
		{"short schema version", withSchema([]byte{1}, nil), ErrCorrupt, "schema version is 1 bytes"},
		{"missing bucket", withSchema(u64(1), func(tx *bolt.Tx) error {
			return tx.DeleteBucket([]byte(bucketJobs))
		}), ErrCorrupt, `missing bucket "jobs"`},
		{"bad decision key", withSchema(u64(1), func(tx *bolt.Tx) error {
			return tx.Bucket([]byte(bucketDecisions)).Put([]byte("x"), []byte("y"))
		}), ErrCorrupt, `bucket "decisions"`},
		{"event count drift", withSchema(u64(1), func(tx *bolt.Tx) error {
			return tx.Bucket([]byte(bucketEvents)).SetSequence(3)
		}), ErrCorrupt, "count says 3"},
		{"future version", withSchema(u64(SchemaVersion+1), nil), ErrNewerSchema, "newer than this vigil supports"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.make(t, dir)
			path := filepath.Join(dir, FileName)
			before := fileSum(t, path)
			fi0, _ := os.Stat(path)
			for range 2 { // twice: the first attempt must not change what the second sees
				_, err := Open(dir, Options{})
				if !errors.Is(err, tc.want) {
					t.Fatalf("Open = %v, want %v", err, tc.want)
				}
				msg := err.Error()
				if !strings.HasPrefix(msg, "store: "+path+" ") || strings.Contains(msg, "\n") || !strings.Contains(msg, tc.msg) {
					t.Errorf("message = %q, want one line naming %s containing %q", msg, path, tc.msg)
				}
				if tc.want == ErrCorrupt && !strings.HasSuffix(msg, "; move it away to start afresh") {
					t.Errorf("message = %q lacks the advice", msg)
				}
			}
			if fileSum(t, path) != before {
				t.Error("Open modified the file")
			}
			if fi, _ := os.Stat(path); fi.Size() != fi0.Size() || !fi.ModTime().Equal(fi0.ModTime()) {
				t.Errorf("size/mtime changed: %d %v -> %d %v", fi0.Size(), fi0.ModTime(), fi.Size(), fi.ModTime())
			}
		})
	}
}

func TestEmptyFilesAreFresh(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(t *testing.T, path string)
	}{
		{"zero bytes", func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"bbolt with no buckets", func(t *testing.T, path string) { rawBolt(t, path, nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.make(t, filepath.Join(dir, FileName))
			s := openT(t, dir, Options{})
			if err := s.AppendDecision(1, []byte("d")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestHelperProcess is not a test: other tests re-execute the test binary
// to run it as a separate process (flock is per open file description, so
// "another agent" must be another process).
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv("VIGIL_STORE_HELPER")
	if mode == "" {
		t.Skip("helper process for other tests")
	}
	dir := os.Getenv("VIGIL_STORE_DIR")
	var err error
	switch mode {
	case "hold":
		err = helperHold(dir)
	case "crash":
		err = helperCrash(dir)
	case "diskfull":
		err = helperDiskFull(dir)
	default:
		err = errors.New("unknown helper mode " + mode)
	}
	if err != nil {
		os.Stderr.WriteString("helper: " + err.Error() + "\n")
		os.Exit(3)
	}
	os.Exit(0)
}

// helperHold opens the store, says "locked", and holds it until stdin closes.
func helperHold(dir string) error {
	s, err := Open(dir, Options{})
	if err != nil {
		return err
	}
	if _, err := os.Stdout.WriteString("locked\n"); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return s.Close()
}
