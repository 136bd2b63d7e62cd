package engine

// Recoveries: the journal every agent keeps of decided failures, the
// executor's runs, takeovers, and fencing.

import (
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/vigil-project/vigil/consensus"
)

// The serf user events executors announce attempts with, and the answer
// of a member that took a journal entry.
const (
	AnnounceStarted = "recovery-started"
	AnnounceDone    = "recovery-done"
	AnnounceFailed  = "recovery-failed"
	JournalTaken    = "ok"
)

func (e *Engine) saveJob(j Job) {
	c := j
	e.jobs[j.ID] = &c
	if !j.State.Final() {
		e.open[j.ID] = true
	}
	e.rd.Jobs = append(e.rd.Jobs, j)
}

func (e *Engine) sortedJobs() []*Job {
	out := make([]*Job, 0, len(e.jobs))
	for _, j := range e.jobs {
		out = append(out, j)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Epoch != out[j].Epoch {
			return out[i].Epoch < out[j].Epoch
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Jobs is the journal, oldest decision first.
func (e *Engine) Jobs() []Job {
	out := make([]Job, 0, len(e.jobs))
	for _, j := range e.sortedJobs() {
		out = append(out, *j)
	}
	return out
}

// Job is the journal entry id.
func (e *Engine) Job(id string) (Job, bool) {
	j, ok := e.jobs[id]
	if !ok {
		return Job{}, false
	}
	return *j, true
}

// onFailureDecided journals a decided failure on every node, and schedules
// the handler on the executor the decision names. prev is the view the
// decision was taken in.
func (e *Engine) onFailureDecided(dec consensus.Decision, prev consensus.View) {
	c := dec.Change
	id := dec.ID()
	if _, ok := e.jobs[id]; ok {
		return // journaled already: from an earlier run of this agent
	}
	job := Job{
		ID: id, Epoch: dec.Epoch + 1, Token: dec.Epoch + 1, Node: c.Member.Name, Boot: c.Member.Boot, Addr: c.Member.Addr,
		Executor: c.Executor, Proposer: c.Evidence.Proposer, State: Pending, Updated: e.now,
	}
	if sm, ok := e.member(c.Member.Name); ok {
		job.Tags = map[string]string{}
		for k, v := range sm.Tags {
			if !Reserved(k) {
				job.Tags[k] = v
			}
		}
	}
	for i, m := range e.acceptors(prev) {
		if c.Evidence.Voted(i) {
			job.Votes = append(job.Votes, m.Name)
		}
	}
	e.saveJob(job)
	e.log(Info, "recovery journaled", "id", id, "node", job.Node, "executor", job.Executor, "epoch", job.Epoch)
	e.schedule(job, false)
}

// Reserved reports whether a tag key is one of vigil's own.
func Reserved(key string) bool {
	return key == BootTag || key == ExecutorTag || key == ClusterTag || key == RulesTag
}

// schedule runs a job this node executes once the lease of the node it
// recovers (or took over from) has provably ended: RecoveryDelay after
// this node learned of the removal. After a restart the wait starts again:
// this node cannot know how long it was down.
func (e *Engine) schedule(j Job, inherited bool) {
	if j.State.Final() || j.Executor != e.self() || !e.cfg.Executor {
		return
	}
	if _, ok := e.due[j.ID]; ok {
		return
	}
	wait := consensus.RecoveryDelay(e.cfg.FenceAfter)
	if e.broken.noRecoveryDelay {
		wait = 0
	}
	e.due[j.ID] = dueJob{at: e.now.Add(wait), inherited: inherited}
	e.log(Info, "recovery waits for the removed node's lease to end", "id", j.ID, "node", j.Node, "after", wait)
}

// runDue starts the scheduled jobs whose wait is over.
func (e *Engine) runDue() {
	for _, id := range slices.Sorted(maps.Keys(e.due)) {
		d := e.due[id]
		if e.now.Before(d.at) {
			continue
		}
		delete(e.due, id)
		if j, ok := e.jobs[id]; ok {
			e.maybeRun(*j, d.inherited)
		}
	}
}

// onMemberRemoved hands the unfinished jobs of a removed executor to the
// executor of the new view, with the same decision id: every node computes
// the same one from the view alone.
//
// The new executor runs with the epoch of view as its fencing token, above
// the old executor's, and only after the old executor's lease has ended.
// A member that restarted under a new boot id counts as removed here: its
// old incarnation's jobs go to another member (the new one may have lost
// its journal with its data dir).
//
// The proposer of the decision (tell) sends each handed-over entry to its
// new executor: a member that joined by snapshot after the job was
// decided has no entry of it.
func (e *Engine) onMemberRemoved(name string, view consensus.View, tell bool) {
	for _, jp := range e.sortedJobs() {
		j := *jp
		if j.State.Final() || j.Executor != name {
			continue
		}
		// The next member on the ring after the executor that left, not
		// after the failed node: agents' views of who may execute (serf's
		// tags) can differ for a while, and moving only forward from the
		// executor it knew, no agent takes the job back behind the one the
		// others' takeovers moved to (two executors of one job).
		next := Executor(viewNames(view), name, func(o string) bool { return o == j.Node || e.ineligible(o) })
		if next == "" {
			e.log(Error, "no member with a recovery handler is left to take the recovery over", "id", j.ID, "node", j.Node)
			continue
		}
		j.HandOver(name, next, view.Epoch, e.now)
		e.log(Warn, "recovery taken over: its executor left the view", "id", j.ID, "node", j.Node, "from", name, "to", next,
			"next_attempt", j.NextAttempt())
		e.saveJob(j)
		if name == e.self() && e.running[j.ID] {
			// Removed while running it: stop at once.
			e.kill(j.ID, "removed from the view: killing the recovery handler")
		}
		if tell && next != e.self() {
			e.rd.Replicate = append(e.rd.Replicate, Replicate{Job: j, Others: []string{next}, Need: 1})
		}
		if next != e.self() && !e.checking[j.ID] {
			// The outcome may be known to members this journal did not
			// hear from (the old executor's report was lost to it).
			e.checking[j.ID] = true
			e.rd.AskJournal = append(e.rd.AskJournal, j.ID)
		}
		e.schedule(j, true)
	}
}

// maybeRun starts the runner of a job this node executes, if it has none.
// A job this node inherited (a takeover, or its own job after a restart)
// may be over already without this node having heard: the announcements
// travel by gossip and can be late or lost. So it first asks the cluster,
// and runs only once a quorum of the view has answered and nobody knows
// the job to be over.
func (e *Engine) maybeRun(j Job, inherited bool) {
	if j.State.Final() || j.Executor != e.self() || !e.cfg.Executor {
		return
	}
	if e.running[j.ID] || e.checking[j.ID] {
		return
	}
	if !e.cn.SharedView().Contains(e.self()) || !e.LeaseValid(e.now) {
		// Fenced, or not yet in contact with a quorum: try again later.
		e.due[j.ID] = dueJob{at: e.now.Add(e.cfg.FenceAfter / 4), inherited: inherited}
		return
	}
	if inherited || e.wasFenced {
		e.checking[j.ID] = true
		e.rd.AskJournal = append(e.rd.AskJournal, j.ID)
		return
	}
	e.startRunner(j)
}

// JournalChecked merges what the cluster knows of an inherited job and
// runs it if it is still not over. Too few answers (gossip missed the
// members, or they were busy) is no answer: it asks again.
func (e *Engine) JournalChecked(now time.Time, c JournalCheck) {
	e.step(now)
	delete(e.checking, c.ID)
	jp, ok := e.jobs[c.ID]
	if !ok {
		return
	}
	j := *jp
	v := e.cn.SharedView()
	for _, o := range c.Answers {
		if !v.Contains(o.From) {
			continue // only members' journals count
		}
		// A later takeover, or another executor for the same token, that
		// this node has not heard of: it must not run the job.
		if t := o.Job.FencingToken(); j.Executor == e.self() && (t > j.FencingToken() || t == j.FencingToken() && o.Job.Executor != j.Executor) {
			e.log(Warn, "a member's journal names another executor for this job: not running it",
				"id", j.ID, "from", o.From, "executor", o.Job.Executor, "token", t)
			return
		}
		j.Merge(o.Job)
	}
	e.saveJob(j)
	if j.State.Final() {
		if j.Executor == e.self() {
			// The members whose journals missed the outcome (it travels
			// point to point, and the old executor is gone) learn it now.
			e.replicate(j)
		}
		e.log(Info, "inherited recovery is over already: not running it", "id", j.ID, "state", string(j.State), "answered", len(c.Answered))
		return
	}
	members := 0
	for _, m := range v.Members {
		if c.Answered[m.Name] {
			members++
		}
	}
	need := consensus.QuorumSize(len(v.Members), e.cfg.Quorum)
	if j.Executor != e.self() || !v.Contains(e.self()) {
		if members < need && v.Contains(e.self()) {
			// Too few answers to know the outcome: ask again later. (With
			// a quorum's answers, an outcome none of them has reaches this
			// journal when the executor sends it.)
			e.recheck[j.ID] = e.now.Add(5 * JournalAskTimeout)
		}
		return
	}
	if members < need {
		e.log(Warn, "too few members answered about an inherited recovery: asking again", "id", j.ID, "answered", members, "need", need)
		e.maybeRun(j, true)
		return
	}
	if d, ok := e.due[j.ID]; ok && e.now.Before(d.at) {
		// Asked before this node became the executor: the job waits out
		// the old executor's lease first, and is checked again then.
		return
	}
	e.log(Info, "inherited recovery is not over: running it", "id", j.ID, "answered", members, "attempt", j.NextAttempt())
	e.startRunner(j)
}

// recheckJournal asks again about the jobs whose last answers were too
// few (JournalChecked).
func (e *Engine) recheckJournal() {
	ids := make([]string, 0, len(e.recheck))
	for id, at := range e.recheck {
		if !e.now.Before(at) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		delete(e.recheck, id)
		if j, ok := e.jobs[id]; ok && !j.State.Final() && !e.checking[id] {
			e.checking[id] = true
			e.rd.AskJournal = append(e.rd.AskJournal, id)
		}
	}
}

// refreshJournal asks the cluster about the unfinished jobs this node
// does not run, once the view has added it back: while it was out of the
// view, executors did not send it their entries.
func (e *Engine) refreshJournal() {
	for _, j := range e.sortedJobs() {
		if j.State.Final() || j.Executor == e.self() || e.checking[j.ID] {
			continue
		}
		e.checking[j.ID] = true
		e.rd.AskJournal = append(e.rd.AskJournal, j.ID)
	}
}

// startRunner starts the runner of a job, if this node may act.
func (e *Engine) startRunner(j Job) {
	if e.running[j.ID] {
		return
	}
	if !e.cn.SharedView().Contains(e.self()) || !e.LeaseValid(e.now) {
		e.due[j.ID] = dueJob{at: e.now.Add(e.cfg.FenceAfter / 4), inherited: true}
		return
	}
	e.running[j.ID] = true
	e.rd.Run = append(e.rd.Run, Run{Job: j, First: j.NextAttempt()})
}

// Reported journals and announces what a runner reported.
func (e *Engine) Reported(now time.Time, r Report) {
	e.step(now)
	if r.Exited {
		delete(e.running, r.ID)
		delete(e.killed, r.ID)
		if j, ok := e.jobs[r.ID]; ok && !j.State.Final() {
			// Killed (fenced, or stopping) before the job was over: it runs
			// again once this node may act, checked with the cluster first.
			e.schedule(*j, true)
		}
		return
	}
	jp, ok := e.jobs[r.ID]
	if !ok {
		return
	}
	j := *jp
	ann := Announcement{ID: j.ID, Node: j.Node, Epoch: j.Epoch, Executor: e.self(), Attempt: r.N}
	name := AnnounceStarted
	if r.Started {
		j.Started(r.N, e.self(), e.now)
		e.log(Info, "recovery handler started", "id", j.ID, "node", j.Node, "attempt", r.N)
	} else {
		j.Ended(r.N, e.self(), r.Outcome, r.Final, e.now)
		ann.Exit, ann.TimedOut, ann.Final = r.Outcome.Exit, r.Outcome.TimedOut, r.Final
		name = AnnounceDone
		l := Info
		if j.State != Succeeded {
			name, l = AnnounceFailed, Warn
		}
		e.log(l, "recovery handler ended", "id", j.ID, "node", j.Node, "attempt", r.N, "exit", r.Outcome.Exit,
			"timed_out", r.Outcome.TimedOut, "error", r.Outcome.Err, "state", string(j.State), "output", string(r.Outcome.Output))
	}
	e.saveJob(j)
	e.replicate(j)
	// The user event is for operators' `user` handlers; no agent journals
	// it (anyone can send a user event).
	if b, err := ann.Encode(); err == nil {
		e.rd.Announce = append(e.rd.Announce, UserEvent{Name: name, Payload: b})
	}
}

// replicate asks for this executor's entry of a job to be sent to the
// other members of the view until all of them have taken it: once a
// quorum has it, a takeover, which reads a quorum of the next view
// (JournalChecked), cannot miss the outcome; the rest is for the journals
// every agent shows. An outcome the executor could not replicate before
// it died is unknown to the cluster and the job is run again: handlers
// are idempotent by VIGIL_DECISION_ID.
func (e *Engine) replicate(j Job) {
	var others []string
	for _, m := range e.cn.SharedView().Members {
		if m.Name != e.self() {
			others = append(others, m.Name)
		}
	}
	if len(others) == 0 {
		return
	}
	e.rd.Replicate = append(e.rd.Replicate, Replicate{Job: j, Others: others, Need: consensus.QuorumSize(len(others), e.cfg.Quorum)})
}

// JournalQuestion answers another agent's question about one job: its
// entry here, or false.
func (e *Engine) JournalQuestion(id string) (Job, bool) { return e.Job(id) }

// JournalPut takes an executor's entry of a job into this agent's
// journal, if the sender is the job's executor by this agent's own journal
// (which follows the decisions): a forged entry changes nothing. It
// reports whether it took it: the answer may leave only once Ready is
// durable.
func (e *Engine) JournalPut(now time.Time, from string, o Job) bool {
	e.step(now)
	jp, ok := e.jobs[o.ID]
	if !ok && o.Executor == e.self() && e.cn.SharedView().Contains(from) && e.cn.SharedView().Contains(e.self()) && !o.State.Final() {
		// A job handed to this node that it never heard of (it joined by
		// snapshot after the decision), from a member of the view: it runs
		// only after a quorum of the view was asked (inherited).
		e.saveJob(o)
		e.log(Info, "recovery handed over to this node by a member", "id", o.ID, "node", o.Node, "from", from)
		e.schedule(o, true)
		return true
	}
	if ok && jp.Executor == e.self() && o.Executor == e.self() {
		// A handover this node knew of already: nothing to take, but the
		// sender may stop sending.
		return true
	}
	if !ok || jp.Executor != from {
		executor := ""
		if ok {
			executor = jp.Executor
		}
		e.log(Debug, "not taking a journal entry from a member that is not the job's executor here",
			"id", o.ID, "from", from, "executor", executor)
		return false
	}
	j := *jp
	j.Merge(o)
	e.saveJob(j)
	return true
}

func (e *Engine) kill(id, why string) {
	if !e.running[id] || e.killed[id] {
		return
	}
	e.killed[id] = true
	e.log(Warn, why, "id", id)
	e.rd.Kill = append(e.rd.Kill, id)
}

// stopRecoveries kills every recovery handler this node runs: it may no
// longer act for the cluster.
func (e *Engine) stopRecoveries() {
	for _, id := range slices.Sorted(maps.Keys(e.running)) {
		e.kill(id, "fenced: killing the recovery handler")
	}
}

// fence stops every recovery this node runs (it is no longer a member, so
// its epoch is stale) and asks for the fence handler.
func (e *Engine) fence(reason string, epoch uint64) {
	e.stopRecoveries()
	e.rd.Fences = append(e.rd.Fences, Fence{Reason: reason, Epoch: epoch, Boot: e.boot})
}
