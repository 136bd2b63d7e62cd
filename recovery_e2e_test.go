package main

// Acceptance tests of recovery exactly once: one run per failure on the
// executor the decision names, takeover, timeouts and retries, fencing.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-project/vigil/engine"
)

// recoveryRecorder writes a recovery handler that appends
// "start|done <self> <node> <id> <attempt> <epoch>" to dir/recovery.log,
// sleeping sleepSecs between the two (0: no sleep). Its stdin (the
// decision JSON) goes to dir/recovery.stdin.
func recoveryRecorder(t *testing.T, dir string, sleepSecs int) string {
	body := fmt.Sprintf(`cat >> "%[1]s/recovery.stdin"
echo "start $VIGIL_SELF $VIGIL_NODE $VIGIL_DECISION_ID $VIGIL_ATTEMPT $VIGIL_EPOCH" >> "%[1]s/recovery.log"
echo "$(date +%%s%%N) recovery $VIGIL_NODE $VIGIL_SELF" >> "%[1]s/times"
sleep %[2]d
echo "done $VIGIL_SELF $VIGIL_NODE $VIGIL_DECISION_ID $VIGIL_ATTEMPT $VIGIL_EPOCH" >> "%[1]s/recovery.log"
`, dir, sleepSecs)
	return writeScript(t, filepath.Join(dir, "recover.sh"), body)
}

// fenceRecorder writes a fence handler that records its reason, and the
// time it ran in dir/times.
func fenceRecorder(t *testing.T, dir string) string {
	return writeScript(t, filepath.Join(dir, "fence.sh"),
		`echo "$VIGIL_REASON $VIGIL_EPOCH" >> "`+dir+`/fence.$VIGIL_SELF"`+"\n"+
			`echo "$(date +%s%N) fence $VIGIL_SELF $VIGIL_REASON" >> "`+dir+`/times"`+"\n")
}

// firstTime returns when dir/times first recorded kind ("fence",
// "recovery") about node (zero: never).
func firstTime(dir, kind, node string) time.Time {
	b, _ := os.ReadFile(filepath.Join(dir, "times"))
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[1] == kind && f[2] == node {
			var ns int64
			fmt.Sscan(f[0], &ns)
			return time.Unix(0, ns)
		}
	}
	return time.Time{}
}

func fenced(dir, self string) bool {
	_, err := os.Stat(filepath.Join(dir, "fence."+self))
	return err == nil
}

// recoveryLines returns the handler's log lines of one kind (start, done).
func recoveryLines(t *testing.T, dir, kind string) [][]string {
	b, _ := os.ReadFile(filepath.Join(dir, "recovery.log"))
	var out [][]string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 6 && f[0] == kind {
			out = append(out, f[1:])
		}
	}
	return out
}

// recoveryRuns maps each failed node to the executors that started its
// recovery.
func recoveryRuns(t *testing.T, dir string) map[string][]string {
	runs := map[string][]string{}
	for _, f := range recoveryLines(t, dir, "start") {
		runs[f[1]] = append(runs[f[1]], f[0])
	}
	return runs
}

// journal returns n's recovery journal.
func (n *node) journal() ([]engine.Job, error) {
	out, err := n.vigil("recoveries", "--format", "json")
	if err != nil {
		return nil, err
	}
	var jobs []engine.Job
	return jobs, jsonUnmarshal(out, &jobs)
}

func waitJob(t *testing.T, n *node, subject string, state engine.JobState, d time.Duration) engine.Job {
	t.Helper()
	var job engine.Job
	waitFor(t, d, n.name+" journals the recovery of "+subject+" as "+string(state), func() error {
		jobs, err := n.journal()
		if err != nil {
			return err
		}
		for _, j := range jobs {
			if j.Node == subject && j.State == state {
				job = j
				return nil
			}
		}
		return fmt.Errorf("journal %+v", jobs)
	})
	return job
}

func TestRecoveryRunsOncePerFailureOnTheNamedExecutor(t *testing.T) {
	const failures = 20
	c := newCluster(t)
	dir := t.TempDir()
	nodes := startAgreedCluster(t, c, 5, dir, "--recovery-handler", recoveryRecorder(t, dir, 0))
	ids := map[string]bool{}
	for i := 0; i < failures; i++ {
		victim := nodes[1+i%4] // n2..n5; n1 stays as the seed
		observer := nodes[0]
		victim.kill()
		waitAgreed(t, observer, victim.name, "failed", 90*time.Second)
		// Every failure is journaled, with the executor of the decision.
		var job engine.Job
		waitFor(t, 60*time.Second, fmt.Sprintf("failure %d of %s recovered", i+1, victim.name), func() error {
			jobs, err := observer.journal()
			if err != nil {
				return err
			}
			for _, j := range jobs {
				if j.Node == victim.name && !ids[j.ID] && j.State == engine.Succeeded {
					job = j
					return nil
				}
			}
			return fmt.Errorf("journal %+v", jobs)
		})
		ids[job.ID] = true
		if len(job.Attempts) != 1 || job.Attempts[0].Executor != job.Executor {
			t.Errorf("failure %d: attempts %+v, want one, on the executor %s the decision named", i+1, job.Attempts, job.Executor)
		}
		// Bring the victim back under a new boot id before the next kill.
		victim.start()
		waitAgreed(t, observer, victim.name, "alive", 90*time.Second)
	}
	// The handler's own log: exactly one run per decision, on its executor.
	time.Sleep(2 * time.Second)
	starts := recoveryLines(t, dir, "start")
	byID := map[string][]string{}
	for _, f := range starts {
		byID[f[2]] = append(byID[f[2]], f[0])
	}
	if len(byID) != failures {
		t.Errorf("handler ran for %d decisions, want %d", len(byID), failures)
	}
	jobs, err := nodes[0].journal()
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if got := byID[j.ID]; len(got) != 1 || got[0] != j.Executor {
			t.Errorf("decision %s (%s): handler ran on %v, want once on %s", j.ID, j.Node, got, j.Executor)
		}
	}
	t.Logf("%d failures, %d recovery handler runs (serf's handler runs on every survivor: %d per failure here)", failures, len(starts), 4)
}

func TestRecoveryTakeoverWhenTheExecutorDies(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	nodes := startAgreedCluster(t, c, 5, dir, "--recovery-handler", recoveryRecorder(t, dir, 10))
	byName := map[string]*node{}
	for _, n := range nodes {
		byName[n.name] = n
	}
	victim := nodes[2]
	victim.kill()
	var exec string
	waitFor(t, 60*time.Second, "the executor starts the handler", func() error {
		for _, f := range recoveryLines(t, dir, "start") {
			if f[1] == victim.name {
				exec = f[0]
				return nil
			}
		}
		return fmt.Errorf("no start yet")
	})
	byName[exec].kill() // mid-handler
	var watcher *node
	for _, n := range nodes {
		if n != victim && n.name != exec {
			watcher = n
			break
		}
	}
	job := waitJob(t, watcher, victim.name, engine.Succeeded, 120*time.Second)
	if len(job.Attempts) != 2 || job.Attempts[0].N != 1 || job.Attempts[0].Executor != exec ||
		job.Attempts[1].N != 2 || job.Attempts[1].Executor == exec || job.Attempts[1].Executor != job.Executor {
		t.Errorf("journal of %s: executor %s, attempts %+v; want 1 on %s, then 2 on the new executor", job.ID, job.Executor, job.Attempts, exec)
	}
	// The killed executor's handler died with it: no "done" from it.
	for _, f := range recoveryLines(t, dir, "done") {
		if f[1] == victim.name && f[0] == exec {
			t.Errorf("the killed executor's handler finished anyway: %v", f)
		}
	}
	for _, f := range recoveryLines(t, dir, "start") {
		if f[1] == victim.name && f[2] != job.ID {
			t.Errorf("a run with another decision id: %v", f)
		}
	}
}

func TestRecoveryHandlerThatHangsIsKilledRetriedAndFails(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	hang := writeScript(t, filepath.Join(dir, "hang.sh"), "echo trying; sleep 60\n")
	nodes := startAgreedCluster(t, c, 4, dir, "--recovery-handler", hang, "--handler-timeout", "1s", "--recovery-retries", "2")
	nodes[3].kill()
	job := waitJob(t, nodes[0], nodes[3].name, engine.Failed, 120*time.Second)
	if len(job.Attempts) != 3 {
		t.Errorf("attempts %+v, want 3 (1 + 2 retries)", job.Attempts)
	}
	// The executor's own journal has each attempt's exit and output tail.
	var execNode *node
	for _, n := range nodes {
		if n.name == job.Executor {
			execNode = n
		}
	}
	ej := waitJob(t, execNode, nodes[3].name, engine.Failed, 30*time.Second)
	for _, a := range ej.Attempts {
		if !a.TimedOut || !strings.Contains(a.Output, "trying") || a.Ended.Sub(a.Started) > 20*time.Second {
			t.Errorf("attempt %+v: want timed out after ~1s with its output", a)
		}
	}
	for _, n := range nodes[:3] {
		if _, err := n.info(); err != nil {
			t.Errorf("%s unhealthy after the hanging handler: %v", n.name, err)
		}
	}
}

func TestRemovedNodeRunsItsFenceHandler(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	nodes := startAgreedCluster(t, c, 3, dir, "--fence-handler", fenceRecorder(t, dir))
	p := nodes[2]
	p.cmd.Process.Signal(syscall.SIGSTOP)
	paused := time.Now()
	waitAgreed(t, nodes[0], p.name, "failed", 60*time.Second)
	// A paused node can be decided failed before its lease (--fence-after,
	// 2 s) has run out: the recovery waits for the lease, not the decision.
	// Stay paused past the lease so that it has run out on resume.
	time.Sleep(time.Until(paused.Add(4 * time.Second)))
	p.cmd.Process.Signal(syscall.SIGCONT)
	// Back from the pause its lease has run out: it fences first thing,
	// once (learning its removal a moment later does not fence it again).
	waitFor(t, 60*time.Second, p.name+" runs its fence handler", func() error {
		b, err := os.ReadFile(filepath.Join(dir, "fence."+p.name))
		if err != nil || !strings.HasPrefix(string(b), "lease-expired ") {
			return fmt.Errorf("fence log %q (%v)", b, err)
		}
		return nil
	})
	waitAgreed(t, nodes[0], p.name, "alive", 60*time.Second)
	if b, _ := os.ReadFile(filepath.Join(dir, "fence."+p.name)); strings.Count(string(b), "\n") != 1 {
		t.Errorf("fence handler runs: %q, want one", b)
	}
}
