package recovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// State is where a recovery job stands.
type State string

// The states of a job. Pending: decided, no attempt running; Running: an
// attempt is running on the executor; Succeeded and Failed are final.
const (
	Pending   State = "pending"
	Running   State = "running"
	Succeeded State = "succeeded"
	Failed    State = "failed"
)

// Final reports whether no attempt will follow.
func (s State) Final() bool { return s == Succeeded || s == Failed }

// Attempt is one run of the recovery handler.
type Attempt struct {
	N        int       `json:"n"`
	Executor string    `json:"executor"`
	Started  time.Time `json:"started"`
	Ended    time.Time `json:"ended,omitempty"`
	Exit     int       `json:"exit"`
	TimedOut bool      `json:"timed_out,omitempty"`
	Error    string    `json:"error,omitempty"`
	// Output is the tail of the handler's output; only the executor has it.
	Output string `json:"output,omitempty"`
}

// Job is the journal entry of one confirmed failure. Its ID is the
// decision id, the same on every node; Epoch is the view epoch the
// decision produced. Token is the fencing token of the current executor:
// Epoch at first, and at each takeover the epoch of the view that removed
// the previous executor, so it only grows.
type Job struct {
	ID       string            `json:"id"`
	Epoch    uint64            `json:"epoch"`
	Token    uint64            `json:"token"`
	Node     string            `json:"node"`
	Boot     string            `json:"boot"`
	Addr     string            `json:"addr"`
	Tags     map[string]string `json:"tags,omitempty"`
	Executor string            `json:"executor"`
	Proposer string            `json:"proposer,omitempty"`
	Votes    []string          `json:"votes,omitempty"`
	State    State             `json:"state"`
	Attempts []Attempt         `json:"attempts"`
	Updated  time.Time         `json:"updated"`
}

// NextAttempt is the number the next attempt gets: one more than any
// attempt known, whoever ran it.
func (j *Job) NextAttempt() int {
	n := 0
	for _, a := range j.Attempts {
		n = max(n, a.N)
	}
	return n + 1
}

// attempt returns the attempt numbered n, adding it if it is new.
func (j *Job) attempt(n int, executor string) *Attempt {
	for i := range j.Attempts {
		if j.Attempts[i].N == n {
			return &j.Attempts[i]
		}
	}
	j.Attempts = append(j.Attempts, Attempt{N: n, Executor: executor})
	sort.Slice(j.Attempts, func(a, b int) bool { return j.Attempts[a].N < j.Attempts[b].N })
	for i := range j.Attempts {
		if j.Attempts[i].N == n {
			return &j.Attempts[i]
		}
	}
	panic("unreachable")
}

// Started records that attempt n began on executor at t. A job already
// final stays final (announcements may arrive out of order).
func (j *Job) Started(n int, executor string, t time.Time) {
	a := j.attempt(n, executor)
	a.Executor = executor
	if a.Started.IsZero() {
		a.Started = t
	}
	if !j.State.Final() && (a.Ended.IsZero()) {
		j.State = Running
	}
	j.Updated = t
}

// Ended records the end of attempt n. final says no attempt follows (a
// success, or the last retry failed).
func (j *Job) Ended(n int, executor string, r Result, final bool, t time.Time) {
	a := j.attempt(n, executor)
	a.Executor = executor
	if a.Started.IsZero() {
		a.Started = r.Started
	}
	a.Error = ""
	a.Ended = t
	a.Exit, a.TimedOut = r.ExitCode, r.TimedOut
	if r.Err != nil {
		a.Error = r.Err.Error()
	}
	if len(r.Output) > 0 {
		a.Output = string(r.Output)
	}
	switch {
	case j.State == Succeeded:
	case r.ExitCode == 0 && r.Err == nil:
		j.State = Succeeded
	case final:
		j.State = Failed
	default:
		j.State = Pending
	}
	j.Updated = t
}

// HandOver records that executor from left the view before the job was
// over, and names the next executor. from may have run an attempt nobody
// heard of (its announcement can be lost with it): an attempt of its that
// never ended is closed with an unknown outcome, and if it has none, one is
// recorded. The next executor then runs the next attempt number, so the
// journal shows every runner the job may have had.
//
// token is the fencing token of the next executor: the epoch of the view
// that removed from, greater than any token from held.
func (j *Job) HandOver(from, next string, token uint64, t time.Time) {
	unknown := "executor left the view before it reported; outcome unknown"
	found := false
	for i := range j.Attempts {
		a := &j.Attempts[i]
		if a.Executor != from {
			continue
		}
		found = true
		if a.Ended.IsZero() {
			a.Ended, a.Exit, a.Error = t, -1, unknown
		}
	}
	if !found {
		j.Attempts = append(j.Attempts, Attempt{N: j.NextAttempt(), Executor: from, Ended: t, Exit: -1, Error: unknown})
	}
	j.Executor, j.State, j.Updated = next, Pending, t
	j.Token = max(j.Token, token)
}

// FencingToken is the token the current executor runs with: Token, or
// Epoch for an entry written before tokens were kept.
func (j *Job) FencingToken() uint64 { return max(j.Token, j.Epoch) }

// Merge takes in what another agent's journal says of the same job: its
// attempts, and its state if that is final. What this journal knows first
// hand (an attempt's output) is kept.
func (j *Job) Merge(o Job) {
	if o.ID != j.ID {
		return
	}
	for _, oa := range o.Attempts {
		a := j.attempt(oa.N, oa.Executor)
		if a.Started.IsZero() {
			a.Started = oa.Started
		}
		// A first-hand end beats a handover's "outcome unknown".
		if !oa.Ended.IsZero() && (a.Ended.IsZero() || (a.Exit == -1 && oa.Exit != -1)) {
			a.Ended, a.Exit, a.TimedOut, a.Error = oa.Ended, oa.Exit, oa.TimedOut, oa.Error
		}
		if a.Executor == "" {
			a.Executor = oa.Executor
		}
	}
	if o.State.Final() && !j.State.Final() {
		j.State = o.State
	}
	if o.Updated.After(j.Updated) {
		j.Updated = o.Updated
	}
}

// Encode and DecodeJob are the journal's storage format.
func (j *Job) Encode() ([]byte, error) { return json.Marshal(j) }

// DecodeJob reads a stored job.
func DecodeJob(b []byte) (Job, error) {
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		return Job{}, fmt.Errorf("recovery: bad journal entry: %w", err)
	}
	if j.ID == "" || j.Node == "" {
		return Job{}, errors.New("recovery: bad journal entry: no id or node")
	}
	return j, nil
}

// The serf user events executors announce attempts with.
const (
	EventStarted = "recovery-started"
	EventDone    = "recovery-done"
	EventFailed  = "recovery-failed"
)

// Announcement is the payload of a recovery event: small enough for a
// serf user event (name and payload ≤ 512 bytes).
type Announcement struct {
	ID       string `json:"id"`
	Node     string `json:"node"`
	Epoch    uint64 `json:"epoch"`
	Executor string `json:"executor"`
	Attempt  int    `json:"attempt"`
	Exit     int    `json:"exit,omitempty"`
	TimedOut bool   `json:"timed_out,omitempty"`
	Final    bool   `json:"final,omitempty"`
}

// HandlerInput is the decision as the recovery handler reads it on stdin.
type HandlerInput struct {
	ID string `json:"id"`
	// Epoch is the fencing token (VIGIL_EPOCH); DecisionEpoch the epoch
	// the failure decision produced. They differ after a takeover.
	Epoch         uint64            `json:"epoch"`
	DecisionEpoch uint64            `json:"decision_epoch"`
	Node          string            `json:"node"`
	Boot          string            `json:"boot"`
	Addr          string            `json:"addr"`
	Tags          map[string]string `json:"tags"`
	Executor      string            `json:"executor"`
	Proposer      string            `json:"proposer"`
	Votes         []string          `json:"votes"`
	Attempt       int               `json:"attempt"`
}

// RecoveryCommand builds the run of the recovery handler at path for
// attempt n of job on self. The handler is executed directly (no shell):
// names and tags that came over the network reach it only as environment
// values and JSON on stdin.
func RecoveryCommand(path string, job Job, self string, n int, timeout time.Duration) Command {
	env := []string{
		"VIGIL_EVENT=recovery",
		"VIGIL_NODE=" + job.Node,
		"VIGIL_NODE_ADDR=" + job.Addr,
		"VIGIL_SELF=" + self,
		"VIGIL_EPOCH=" + strconv.FormatUint(job.FencingToken(), 10),
		"VIGIL_DECISION_ID=" + job.ID,
		"VIGIL_ATTEMPT=" + strconv.Itoa(n),
	}
	keys := make([]string, 0, len(job.Tags))
	for k := range job.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, "VIGIL_NODE_TAG_"+sanitizeTagKey.ReplaceAllString(strings.ToUpper(k), "_")+"="+job.Tags[k])
	}
	in, _ := json.Marshal(HandlerInput{
		ID: job.ID, Epoch: job.FencingToken(), DecisionEpoch: job.Epoch, Node: job.Node, Boot: job.Boot, Addr: job.Addr, Tags: nonNil(job.Tags),
		Executor: job.Executor, Proposer: job.Proposer, Votes: job.Votes, Attempt: n,
	})
	return Command{Path: path, Env: env, Stdin: append(in, '\n'), Timeout: timeout}
}

// FenceCommand builds the run of the fence handler: this node's lease ran
// out (reason "lease-expired") or it learned it was removed from the view
// ("removed").
func FenceCommand(path, self, reason string, epoch uint64, timeout time.Duration) Command {
	return Command{Path: path, Timeout: timeout, Env: []string{
		"VIGIL_EVENT=fence",
		"VIGIL_SELF=" + self,
		"VIGIL_REASON=" + reason,
		"VIGIL_EPOCH=" + strconv.FormatUint(epoch, 10),
	}}
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
