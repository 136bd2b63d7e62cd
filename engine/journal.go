package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

// JobState is where a recovery job stands.
type JobState string

// The states of a job. Pending: decided, no attempt running; Running: an
// attempt is running on the executor; Succeeded and Failed are final.
const (
	Pending   JobState = "pending"
	Running   JobState = "running"
	Succeeded JobState = "succeeded"
	Failed    JobState = "failed"
)

// Final reports whether no attempt will follow.
func (s JobState) Final() bool { return s == Succeeded || s == Failed }

// Outcome is how one attempt of the recovery handler ended, as its
// runner reports it.
type Outcome struct {
	Exit     int // the exit status, -1 if killed or never started
	TimedOut bool
	Err      string // why the handler could not run or was killed; "" if it ran
	Output   []byte // the tail of its output
	Started  time.Time
}

// OK reports a successful attempt: it ran and exited 0.
func (o Outcome) OK() bool { return o.Exit == 0 && o.Err == "" }

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
	State    JobState          `json:"state"`
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
func (j *Job) Ended(n int, executor string, r Outcome, final bool, t time.Time) {
	a := j.attempt(n, executor)
	a.Executor = executor
	if a.Started.IsZero() {
		a.Started = r.Started
	}
	a.Ended = t
	a.Exit, a.TimedOut, a.Error = r.Exit, r.TimedOut, r.Err
	if len(r.Output) > 0 {
		a.Output = string(r.Output)
	}
	switch {
	case j.State == Succeeded:
	case r.OK():
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
		return Job{}, fmt.Errorf("engine: bad journal entry: %w", err)
	}
	if j.ID == "" || j.Node == "" {
		return Job{}, errors.New("engine: bad journal entry: no id or node")
	}
	return j, nil
}

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

// Encode is the announcement's payload.
func (a Announcement) Encode() ([]byte, error) { return json.Marshal(a) }
