package recovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vigil-project/vigil/engine"
)

// DefaultOutputLimit is the number of bytes of combined stdout and stderr
// that Run keeps when Command.OutputLimit is zero.
const DefaultOutputLimit = 4096

// killGrace is how long a handler's process group has between SIGTERM and
// SIGKILL, and how long Run waits for the output pipes to close after the
// handler itself has exited (a background grandchild may hold them open).
const killGrace = 2 * time.Second

// shell runs Command.Shell, as serf does for its handlers
// (serf cmd/serf/command/agent/invoke.go:55-59: /bin/sh -c script).
const shell = "/bin/sh"

// Sentinel errors. Test with errors.Is.
var (
	// ErrNoHandler: the handler does not exist (no such file, or not in PATH).
	ErrNoHandler = errors.New("recovery: no such handler")
	// ErrNotExecutable: the handler exists but cannot be executed (a
	// directory, not a regular file, or no x bit for this user).
	ErrNotExecutable = errors.New("recovery: handler is not executable")
	// ErrTimeout: the handler ran past Command.Timeout and was killed.
	ErrTimeout = errors.New("recovery: handler timed out")
	// ErrBadCommand: the Command sets neither Path nor Shell, or both.
	ErrBadCommand = errors.New("recovery: bad command")
)

// Command is one external handler invocation.
type Command struct {
	// Path and Args: the program and its arguments (Args excludes argv[0]).
	Path string
	Args []string
	// Shell, if set, runs via "/bin/sh -c Shell" instead of Path and Args.
	// Only for operator-configured, serf-style handler strings: never build
	// it from data received over the network.
	Shell string
	// Env is added to os.Environ(); a key here overrides the agent's.
	Env []string
	// Stdin is written to the handler's standard input, which is then
	// closed. Empty: stdin is /dev/null.
	Stdin []byte
	// Dir is the working directory; empty means the agent's.
	Dir string
	// Timeout bounds the run; on expiry the whole process group is killed.
	// Zero means no timeout other than the context's.
	Timeout time.Duration
	// OutputLimit is how many bytes of the tail of the combined stdout and
	// stderr are kept; zero means DefaultOutputLimit.
	OutputLimit int
}

// Result is what happened to one Run.
type Result struct {
	// ExitCode is the process's exit status, or -1 if it was killed (by
	// Run or by a signal) or never started.
	ExitCode int
	// Output is the last OutputLimit bytes of combined stdout and stderr.
	Output []byte
	// Truncated reports that more than OutputLimit bytes were written.
	Truncated bool
	// TimedOut reports that Command.Timeout expired and the group was killed.
	TimedOut bool
	// Started is when the process was started (or the start attempted).
	Started time.Time
	// Duration is from Started until Run had reaped the process and killed
	// what was left of its group.
	Duration time.Duration
	// Err is set if the process could not be started or was killed: it
	// wraps ErrTimeout, the context's error, or the start error. A non-zero
	// exit on its own is not an error: see ExitCode.
	Err error
}

// Run runs c and waits for it. It never returns before the process has been
// reaped, and it returns promptly on Timeout or when ctx is done even if a
// grandchild holds the output pipes open.
//
// The handler runs in its own process group. On Timeout or when ctx is done
// the group gets SIGTERM, then after a short grace the leader gets SIGKILL
// and the pipes are closed. Whatever way it ends, before returning Run sends
// SIGKILL to the whole group: nothing a handler started in its own group
// outlives Run (a handler that wants a daemon must detach it, e.g. setsid).
// A pid is not reused while a group of that id still has members, so the
// final kill cannot reach an unrelated process while a member is alive.
//
// Run starts no goroutine of its own; os/exec starts its copying and
// context-watching goroutines and ends them before Wait returns.
func Run(ctx context.Context, c Command) Result {
	res := Result{ExitCode: -1, Started: time.Now()}
	limit := c.OutputLimit
	if limit <= 0 {
		limit = DefaultOutputLimit
	}

	var name string
	var args []string
	switch {
	case c.Shell != "" && (c.Path != "" || len(c.Args) > 0):
		res.Err = fmt.Errorf("%w: both Shell and Path/Args set", ErrBadCommand)
		return res
	case c.Shell != "":
		name, args = shell, []string{"-c", c.Shell}
	case c.Path != "":
		name, args = c.Path, c.Args
	default:
		res.Err = fmt.Errorf("%w: neither Shell nor Path set", ErrBadCommand)
		return res
	}

	runCtx := ctx
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeoutCause(ctx, c.Timeout, ErrTimeout)
		defer cancel()
	}

	out := newTail(limit)
	cmd := exec.CommandContext(runCtx, name, args...)
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Dir = c.Dir
	if len(c.Stdin) > 0 {
		// os/exec copies this in its own goroutine and ignores EPIPE, so a
		// handler that exits without reading neither hangs nor fails Run.
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	// The same comparable writer for both: os/exec then uses one pipe and
	// one copying goroutine, so out needs no lock.
	cmd.Stdout = out
	cmd.Stderr = out
	// Pdeathsig: if the agent dies (kill -9), so does the handler, so that
	// an executor that takes a job over never runs beside a leftover.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	var signalled atomic.Bool
	cmd.Cancel = func() error {
		// Setpgid makes the leader's pid the group id.
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		if err == nil {
			signalled.Store(true)
		}
		return err
	}
	// After ctx is done (and Cancel sent SIGTERM), or after the leader
	// exited on its own, os/exec waits this long for the pipes, then kills
	// the leader and closes them.
	cmd.WaitDelay = killGrace

	res.Started = time.Now()
	if err := cmd.Start(); err != nil {
		res.Err = fmt.Errorf("recovery: start %s: %w", name, err)
		res.Duration = time.Since(res.Started)
		return res
	}
	pgid := cmd.Process.Pid
	waitErr := cmd.Wait()
	// Whatever is left of the group (background jobs, a leader-less group
	// after WaitDelay) dies now. ESRCH: nothing was left.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	res.Duration = time.Since(res.Started)

	res.Output, res.Truncated = out.bytes()
	if ps := cmd.ProcessState; ps != nil {
		res.ExitCode = ps.ExitCode()
	}

	switch {
	case signalled.Load() || (runCtx.Err() != nil && res.ExitCode < 0):
		res.ExitCode = -1
		if errors.Is(context.Cause(runCtx), ErrTimeout) {
			res.TimedOut = true
			res.Err = fmt.Errorf("%w after %v", ErrTimeout, c.Timeout)
		} else {
			res.Err = fmt.Errorf("recovery: handler canceled: %w", context.Cause(runCtx))
		}
	case res.ExitCode < 0:
		// Killed by a signal nobody here sent (OOM killer, the handler
		// itself, an operator).
		res.Err = fmt.Errorf("recovery: handler killed: %w", waitErr)
	}
	return res
}

// tail keeps the last len(buf) bytes written to it.
type tail struct {
	buf   []byte
	w     int  // next write index
	full  bool // buf has wrapped at least once
	total int64
}

func newTail(n int) *tail { return &tail{buf: make([]byte, n)} }

func (t *tail) Write(p []byte) (int, error) {
	n := len(p)
	t.total += int64(n)
	size := len(t.buf)
	if n >= size {
		copy(t.buf, p[n-size:])
		t.w, t.full = 0, true
		return n, nil
	}
	k := copy(t.buf[t.w:], p)
	copy(t.buf, p[k:])
	if t.w+n >= size {
		t.full = true
	}
	t.w = (t.w + n) % size
	return n, nil
}

// bytes returns a copy of the kept tail and whether anything was dropped.
func (t *tail) bytes() ([]byte, bool) {
	if !t.full {
		return append([]byte(nil), t.buf[:t.w]...), false
	}
	out := make([]byte, 0, len(t.buf))
	out = append(out, t.buf[t.w:]...)
	out = append(out, t.buf[:t.w]...)
	return out, t.total > int64(len(t.buf))
}

// handlerError names the handler and unwraps to a sentinel and, if any, the
// underlying error.
type handlerError struct {
	msg      string
	sentinel error
	err      error
}

func (e *handlerError) Error() string { return e.msg }

func (e *handlerError) Unwrap() []error {
	if e.err == nil {
		return []error{e.sentinel}
	}
	return []error{e.sentinel, e.err}
}

// CheckExecutable reports whether path names a regular file this process may
// execute. The errors wrap ErrNoHandler or ErrNotExecutable and read
// "recovery: handler /x: no such file" or
// "recovery: handler /x is not executable (mode 0644)".
//
// Root may execute a file with at least one x bit; any other user needs the
// x bit of its class (owner, group, other), as execve(2) checks it. ACLs
// are not consulted.
func CheckExecutable(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &handlerError{msg: "recovery: handler " + path + ": no such file", sentinel: ErrNoHandler, err: err}
	case err != nil:
		return &handlerError{msg: fmt.Sprintf("recovery: handler %s: %v", path, err), sentinel: ErrNotExecutable, err: err}
	}
	mode := fi.Mode()
	switch {
	case mode.IsDir():
		return &handlerError{msg: "recovery: handler " + path + " is a directory", sentinel: ErrNotExecutable}
	case !mode.IsRegular():
		return &handlerError{msg: fmt.Sprintf("recovery: handler %s is not a regular file (mode %v)", path, mode), sentinel: ErrNotExecutable}
	case mode&0o111 == 0:
		return &handlerError{msg: fmt.Sprintf("recovery: handler %s is not executable (mode %04o)", path, mode.Perm()), sentinel: ErrNotExecutable}
	}
	if !mayExec(fi) {
		return &handlerError{msg: fmt.Sprintf("recovery: handler %s is not executable by uid %d (mode %04o)", path, os.Geteuid(), mode.Perm()), sentinel: ErrNotExecutable}
	}
	return nil
}

// mayExec applies execve's permission classes for the effective user; the
// caller has checked that some x bit is set, which is all root needs.
func mayExec(fi fs.FileInfo) bool {
	euid := os.Geteuid()
	st, ok := fi.Sys().(*syscall.Stat_t)
	if euid == 0 || !ok {
		return true
	}
	perm := fi.Mode().Perm()
	if int(st.Uid) == euid {
		return perm&0o100 != 0
	}
	if inGroup(int(st.Gid)) {
		return perm&0o010 != 0
	}
	return perm&0o001 != 0
}

func inGroup(gid int) bool {
	if gid == os.Getegid() {
		return true
	}
	groups, _ := os.Getgroups()
	for _, g := range groups {
		if g == gid {
			return true
		}
	}
	return false
}

// Outcome is r as the recovery journal keeps it.
func (r Result) Outcome() engine.Outcome {
	o := engine.Outcome{Exit: r.ExitCode, TimedOut: r.TimedOut, Output: r.Output, Started: r.Started}
	if r.Err != nil {
		o.Err = r.Err.Error()
	}
	return o
}
