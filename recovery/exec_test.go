package recovery

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/quick"
	"time"
)

// bound is the generous slack allowed on top of a timeout before Run must
// have returned: it covers the SIGTERM grace and a loaded CI machine.
const bound = 5 * time.Second

func TestRunExitCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cmd  Command
		want int
	}{
		{"shell zero", Command{Shell: "exit 0"}, 0},
		{"shell three", Command{Shell: "exit 3"}, 3},
		{"path", Command{Path: "/bin/sh", Args: []string{"-c", "exit 7"}}, 7},
		{"path no args", Command{Path: "/bin/true"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := Run(context.Background(), tc.cmd)
			if res.ExitCode != tc.want || res.Err != nil || res.TimedOut {
				t.Fatalf("Run = exit %d, err %v, timedOut %v; want exit %d, no error", res.ExitCode, res.Err, res.TimedOut, tc.want)
			}
			if res.Started.IsZero() || res.Duration <= 0 {
				t.Errorf("Started %v, Duration %v: want both set", res.Started, res.Duration)
			}
		})
	}
}

func TestRunNotStarted(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		cmd  Command
		is   error
	}{
		{"missing program", context.Background(), Command{Path: "/nonexistent/handler"}, os.ErrNotExist},
		{"empty", context.Background(), Command{}, ErrBadCommand},
		{"shell and path", context.Background(), Command{Shell: "true", Path: "/bin/true"}, ErrBadCommand},
		{"canceled before start", canceled, Command{Shell: "true"}, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := Run(tc.ctx, tc.cmd)
			if res.ExitCode != -1 || !errors.Is(res.Err, tc.is) {
				t.Fatalf("Run = exit %d, err %v; want -1 and an error wrapping %v", res.ExitCode, res.Err, tc.is)
			}
		})
	}
}

func TestRunKilledBySignal(t *testing.T) {
	t.Parallel()
	res := Run(context.Background(), Command{Shell: "kill -9 $$"})
	if res.ExitCode != -1 || res.Err == nil || res.TimedOut {
		t.Fatalf("Run = exit %d, err %v, timedOut %v; want -1, an error, not timed out", res.ExitCode, res.Err, res.TimedOut)
	}
}

func TestRunOutput(t *testing.T) {
	t.Parallel()
	t.Run("stdout and stderr combined", func(t *testing.T) {
		t.Parallel()
		res := Run(context.Background(), Command{Shell: "echo out; echo err >&2"})
		if got := string(res.Output); got != "out\nerr\n" || res.Truncated {
			t.Fatalf("Output = %q, Truncated %v; want %q, false", got, res.Truncated, "out\nerr\n")
		}
	})
	t.Run("tail kept", func(t *testing.T) {
		t.Parallel()
		// 100 000 bytes of 'a' then "END", in many writes.
		res := Run(context.Background(), Command{
			Shell:       `i=0; while [ $i -lt 1000 ]; do printf '%0100d' 0 | tr 0 a; i=$((i+1)); done; printf END >&2`,
			OutputLimit: 100,
		})
		want := strings.Repeat("a", 97) + "END"
		if got := string(res.Output); got != want || !res.Truncated || res.ExitCode != 0 {
			t.Fatalf("Output = %q (len %d), Truncated %v, exit %d; want the last 100 bytes, true, 0", got, len(got), res.Truncated, res.ExitCode)
		}
	})
	t.Run("default limit", func(t *testing.T) {
		t.Parallel()
		res := Run(context.Background(), Command{Shell: "head -c 10000 /dev/zero"})
		if len(res.Output) != DefaultOutputLimit || !res.Truncated {
			t.Fatalf("len(Output) = %d, Truncated %v; want %d, true", len(res.Output), res.Truncated, DefaultOutputLimit)
		}
	})
}

// TestTail compares the ring with a naive "keep everything, slice the end".
func TestTail(t *testing.T) {
	f := func(size uint8, writes [][]byte) bool {
		n := int(size)%50 + 1
		r := newTail(n)
		var all []byte
		for _, w := range writes {
			if k, err := r.Write(w); k != len(w) || err != nil {
				return false
			}
			all = append(all, w...)
		}
		want := all
		if len(want) > n {
			want = want[len(want)-n:]
		}
		got, trunc := r.bytes()
		return bytes.Equal(got, want) && trunc == (len(all) > n)
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 2000}); err != nil {
		t.Fatal(err)
	}
}

func TestRunEnvStdinDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	res := Run(context.Background(), Command{
		Shell: `echo "$VIGIL_TEST_A $HOME"; pwd; cat`,
		Env:   []string{"VIGIL_TEST_A=one two", "HOME=/overridden"},
		Stdin: []byte("line1\nline2"),
		Dir:   dir,
	})
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := "one two /overridden\n" + real + "\nline1\nline2"
	if got := string(res.Output); got != want || res.ExitCode != 0 {
		t.Fatalf("Output = %q, exit %d; want %q, 0", got, res.ExitCode, want)
	}
}

// A handler that exits without reading a stdin larger than a pipe buffer
// must neither hang Run nor turn into an error (EPIPE is ignored).
func TestRunStdinNotRead(t *testing.T) {
	t.Parallel()
	res := Run(context.Background(), Command{
		Shell:   "exit 0",
		Stdin:   bytes.Repeat([]byte("x"), 4<<20),
		Timeout: 30 * time.Second,
	})
	if res.ExitCode != 0 || res.Err != nil {
		t.Fatalf("Run = exit %d, err %v; want 0, nil", res.ExitCode, res.Err)
	}
}

// TestRunTimeoutKillsGroup: every handler prints its pid (= its process
// group id) first, then hangs in some way.
func TestRunTimeoutKillsGroup(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second // long enough for sh to print its pid
	for _, tc := range []struct {
		name string
		cmd  Command
	}{
		{"hang", Command{Shell: "echo $$; sleep 60"}},
		{"grandchild holds stdout", Command{Shell: "echo $$; sleep 60 & sleep 60"}},
		{"path form", Command{Path: "/bin/sh", Args: []string{"-c", "echo $$; sleep 60 & sleep 60"}}},
		{"ignores SIGTERM", Command{Shell: "echo $$; trap '' TERM; sleep 60 & sleep 60"}},
		{"unread stdin", Command{Shell: "echo $$; sleep 60", Stdin: bytes.Repeat([]byte("x"), 1<<20)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cmd.Timeout = timeout
			start := time.Now()
			res := Run(context.Background(), tc.cmd)
			elapsed := time.Since(start)
			if elapsed > timeout+bound {
				t.Errorf("Run took %v; want < %v", elapsed, timeout+bound)
			}
			if elapsed < timeout {
				t.Errorf("Run took %v; want >= the timeout %v", elapsed, timeout)
			}
			if !res.TimedOut || res.ExitCode != -1 || !errors.Is(res.Err, ErrTimeout) {
				t.Errorf("Run = timedOut %v, exit %d, err %v; want true, -1, ErrTimeout", res.TimedOut, res.ExitCode, res.Err)
			}
			assertGroupGone(t, pidFrom(t, res.Output))
		})
	}
}

func TestRunContextDone(t *testing.T) {
	t.Parallel()
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		stop := time.AfterFunc(2*time.Second, cancel)
		defer stop.Stop()
		start := time.Now()
		res := Run(ctx, Command{Shell: "echo $$; sleep 60 & sleep 60", Timeout: time.Minute})
		if elapsed := time.Since(start); elapsed > 2*time.Second+bound {
			t.Errorf("Run took %v after a cancel at 2s", elapsed)
		}
		if res.TimedOut || res.ExitCode != -1 || !errors.Is(res.Err, context.Canceled) {
			t.Errorf("Run = timedOut %v, exit %d, err %v; want false, -1, context.Canceled", res.TimedOut, res.ExitCode, res.Err)
		}
		assertGroupGone(t, pidFrom(t, res.Output))
	})
	t.Run("parent deadline", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		res := Run(ctx, Command{Shell: "echo $$; sleep 60"})
		if res.TimedOut || res.ExitCode != -1 || !errors.Is(res.Err, context.DeadlineExceeded) {
			t.Errorf("Run = timedOut %v, exit %d, err %v; want false (not our Timeout), -1, DeadlineExceeded", res.TimedOut, res.ExitCode, res.Err)
		}
		assertGroupGone(t, pidFrom(t, res.Output))
	})
}

// A handler that exits at once but leaves a background job holding stdout:
// Run returns after the grace, reports the handler's own exit, and kills
// the job.
func TestRunExitLeavesBackgroundJob(t *testing.T) {
	t.Parallel()
	start := time.Now()
	res := Run(context.Background(), Command{Shell: "echo $$; sleep 60 & exit 4", Timeout: time.Minute})
	if elapsed := time.Since(start); elapsed > bound {
		t.Errorf("Run took %v; want < %v", elapsed, bound)
	}
	if res.ExitCode != 4 || res.Err != nil || res.TimedOut {
		t.Errorf("Run = exit %d, err %v, timedOut %v; want 4, nil, false", res.ExitCode, res.Err, res.TimedOut)
	}
	assertGroupGone(t, pidFrom(t, res.Output))
}

func pidFrom(t *testing.T, out []byte) int {
	t.Helper()
	line, _, _ := strings.Cut(string(out), "\n")
	pid, err := strconv.Atoi(line)
	if err != nil || pid <= 1 {
		t.Fatalf("no pid in handler output %q", out)
	}
	return pid
}

// assertGroupGone waits briefly for process group pgid to have no live
// member. Killed orphans are reparented to an init that may be slow to reap
// them (or never does, in some containers), so zombies count as gone.
func assertGroupGone(t *testing.T, pgid int) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		live := liveMembers(pgid)
		if len(live) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process group %d still has live members %v", pgid, live)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func liveMembers(pgid int) []int {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	var live []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces or ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			live = append(live, pid)
		}
	}
	return live
}

func TestCheckExecutable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // umask
			t.Fatal(err)
		}
		return p
	}
	exe := write("exe", 0o755)
	ownerOnly := write("owner", 0o700)
	plain := write("plain", 0o644)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "gone"), dangling); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")

	for _, tc := range []struct {
		name string
		path string
		is   error  // nil: no error
		msg  string // exact message, if set
	}{
		{"executable", exe, nil, ""},
		{"owner x only", ownerOnly, nil, ""},
		{"symlink to executable", link, nil, ""},
		{"missing", missing, ErrNoHandler, "recovery: handler " + missing + ": no such file"},
		{"dangling symlink", dangling, ErrNoHandler, "recovery: handler " + dangling + ": no such file"},
		{"no x bit", plain, ErrNotExecutable, "recovery: handler " + plain + " is not executable (mode 0644)"},
		{"directory", dir, ErrNotExecutable, "recovery: handler " + dir + " is a directory"},
		{"fifo", fifo, ErrNotExecutable, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckExecutable(tc.path)
			if tc.is == nil {
				if err != nil {
					t.Fatalf("CheckExecutable = %v; want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.is) {
				t.Fatalf("CheckExecutable = %v; want an error wrapping %v", err, tc.is)
			}
			if tc.msg != "" && err.Error() != tc.msg {
				t.Fatalf("CheckExecutable = %q; want %q", err, tc.msg)
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Fatalf("CheckExecutable = %q; want it to name %s", err, tc.path)
			}
		})
	}
}
