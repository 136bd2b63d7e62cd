package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/vigil-project/vigil/consensus"
	"github.com/vigil-project/vigil/membership"
	"github.com/vigil-project/vigil/recovery"
)

// maxRecoveryBackoff caps the wait between two attempts on one executor.
const maxRecoveryBackoff = 30 * time.Second

// recoveryReport is what a runner tells the loop: an attempt started, an
// attempt ended (final: no attempt follows on this executor), or the
// runner exited.
type recoveryReport struct {
	id      string
	n       int
	started bool
	exited  bool
	res     recovery.Result
	final   bool
}

// recoveries is the recovery state the loop owns: the runners of the jobs
// this node executes.
type recoveries struct {
	running map[string]context.CancelFunc // job id → its runner's cancel
	reports chan recoveryReport
	// checking holds the inherited jobs whose state is being asked of the
	// cluster before this node runs them; checked brings the answers.
	checking map[string]bool
	checked  chan journalCheck
	// due holds the jobs waiting out consensus.RecoveryDelay before this
	// node may run them: the removed node's lease must have ended first.
	due map[string]dueJob
}

// dueJob is a job that may run from at on; inherited says it must first
// be checked with the cluster (maybeRun).
type dueJob struct {
	at        time.Time
	inherited bool
}

// journalCheck is what the cluster said of one job: the entries of the
// agents that knew it, and who answered at all.
type journalCheck struct {
	id       string
	answers  []journalAnswer
	answered map[string]bool
}

type journalAnswer struct {
	from string
	job  recovery.Job
}

func newRecoveries() *recoveries {
	return &recoveries{
		running: map[string]context.CancelFunc{}, reports: make(chan recoveryReport, 16),
		checking: map[string]bool{}, checked: make(chan journalCheck, 4), due: map[string]dueJob{},
	}
}

// journalAskTimeout bounds the question to the cluster before a takeover.
const journalAskTimeout = 2 * time.Second

func (a *Agent) loadJob(id string) (recovery.Job, bool) {
	b, err := a.store.Job(id)
	if err != nil || b == nil {
		return recovery.Job{}, false
	}
	j, err := recovery.DecodeJob(b)
	if err != nil {
		a.log.Error().Err(err).Str("id", id).Msg("unreadable journal entry")
		return recovery.Job{}, false
	}
	return j, true
}

// saveJob writes a journal entry; false means the write failed and the
// agent is stopping: nothing that depends on the entry may follow.
func (a *Agent) saveJob(j recovery.Job) bool {
	if a.fatalErr != nil {
		return false
	}
	b, err := j.Encode()
	if err == nil {
		err = a.store.PutJob(j.ID, b)
	}
	if err != nil {
		a.fatal(fmt.Errorf("write the recovery journal (%s): %w", j.ID, err))
		return false
	}
	return true
}

// jobs reads the whole journal, oldest decision first.
func (a *Agent) jobs() ([]recovery.Job, error) {
	recs, err := a.store.Jobs()
	if err != nil {
		return nil, err
	}
	out := make([]recovery.Job, 0, len(recs))
	for _, r := range recs {
		j, err := recovery.DecodeJob(r.Bytes)
		if err != nil {
			a.log.Error().Err(err).Str("id", r.ID).Msg("unreadable journal entry")
			continue
		}
		out = append(out, j)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Epoch < out[j].Epoch })
	return out, nil
}

// onFailureDecided journals a decided failure on every node, and starts
// the handler on the executor the decision names. prev is the view the
// decision was taken in.
func (a *Agent) onFailureDecided(dec consensus.Decision, prev consensus.View) {
	c := dec.Change
	id := dec.ID()
	if _, ok := a.loadJob(id); ok {
		return // journaled already: from an earlier run of this agent
	}
	job := recovery.Job{
		ID: id, Epoch: dec.Epoch + 1, Token: dec.Epoch + 1, Node: c.Member.Name, Boot: c.Member.Boot, Addr: c.Member.Addr,
		Executor: c.Executor, Proposer: c.Evidence.Proposer, State: recovery.Pending, Updated: time.Now(),
	}
	if sm, ok := a.det.serfMember(c.Member.Name); ok {
		job.Tags = map[string]string{}
		for k, v := range sm.Tags {
			if !membership.Reserved(k) {
				job.Tags[k] = v
			}
		}
	}
	for i, m := range a.det.acceptors(prev) {
		if c.Evidence.Voted(i) {
			job.Votes = append(job.Votes, m.Name)
		}
	}
	a.saveJob(job)
	a.log.Info().Str("id", id).Str("node", job.Node).Str("executor", job.Executor).Uint64("epoch", job.Epoch).Msg("recovery journaled")
	a.schedule(job, false)
}

// schedule runs a job this node executes once the lease of the node it
// recovers (or took over from) has provably ended: RecoveryDelay after
// this node learned of the removal. After a restart the wait starts again:
// this node cannot know how long it was down.
func (a *Agent) schedule(j recovery.Job, inherited bool) {
	if j.State.Final() || j.Executor != a.cfg.NodeName || a.cfg.RecoveryHandler == "" {
		return
	}
	if _, ok := a.rec.due[j.ID]; ok {
		return
	}
	wait := consensus.RecoveryDelay(a.cfg.FenceAfter)
	a.rec.due[j.ID] = dueJob{at: time.Now().Add(wait), inherited: inherited}
	a.log.Info().Str("id", j.ID).Str("node", j.Node).Dur("after", wait).
		Msg("recovery waits for the removed node's lease to end")
}

// runDue starts the scheduled jobs whose wait is over.
func (a *Agent) runDue(now time.Time) {
	for id, d := range a.rec.due {
		if now.Before(d.at) {
			continue
		}
		delete(a.rec.due, id)
		if j, ok := a.loadJob(id); ok {
			a.maybeRun(j, d.inherited)
		}
	}
}

// onMemberRemoved hands the unfinished jobs of a removed executor to the
// executor of the new view, with the same decision id: every node computes
// the same one from the view alone.
//
// The new executor runs with the epoch of view as its fencing token, above
// the old executor's, and only after the old executor's lease has ended.
func (a *Agent) onMemberRemoved(name string, view consensus.View) {
	jobs, err := a.jobs()
	if err != nil {
		return
	}
	for _, j := range jobs {
		if j.State.Final() || j.Executor != name {
			continue
		}
		next := recovery.Executor(viewNames(view), j.Node, a.det.ineligible)
		if next == "" {
			a.log.Error().Str("id", j.ID).Str("node", j.Node).Msg("no member with a recovery handler is left to take the recovery over")
			continue
		}
		j.HandOver(name, next, view.Epoch, time.Now())
		a.log.Warn().Str("id", j.ID).Str("node", j.Node).Str("from", name).Str("to", next).
			Int("next_attempt", j.NextAttempt()).Msg("recovery taken over: its executor left the view")
		a.saveJob(j)
		a.schedule(j, true)
	}
}

// resumeRecoveries starts, after a restart, the unfinished jobs this node
// executes.
func (a *Agent) resumeRecoveries() {
	jobs, err := a.jobs()
	if err != nil {
		return
	}
	for _, j := range jobs {
		a.schedule(j, true)
	}
}

// maybeRun starts the runner of a job this node executes, if it has none.
// A job this node inherited (a takeover, or its own job after a restart)
// may be over already without this node having heard: the announcements
// travel by gossip and can be late or lost. So it first asks the cluster,
// and runs only once a quorum of the view has answered and nobody knows
// the job to be over.
func (a *Agent) maybeRun(j recovery.Job, inherited bool) {
	if j.State.Final() || j.Executor != a.cfg.NodeName || a.cfg.RecoveryHandler == "" {
		return
	}
	if _, ok := a.rec.running[j.ID]; ok || a.rec.checking[j.ID] {
		return
	}
	if !a.det.cn.View().Contains(a.cfg.NodeName) || !a.det.leaseValid(time.Now()) {
		// Fenced, or not yet in contact with a quorum: try again later.
		a.rec.due[j.ID] = dueJob{at: time.Now().Add(a.cfg.FenceAfter / 4), inherited: inherited}
		return
	}
	if inherited || a.det.wasFenced {
		a.rec.checking[j.ID] = true
		id := j.ID
		a.spawn(func() {
			c := journalCheck{id: id, answered: map[string]bool{}}
			answers, err := a.mesh.Ask(membership.JournalQuery, []byte(id), journalAskTimeout)
			if err != nil {
				a.log.Warn().Err(err).Str("id", id).Msg("cannot ask the cluster about a recovery")
				// Wait as long as an answered question would have before
				// the loop asks again.
				if !pause(journalAskTimeout, a.stopping) {
					return
				}
			}
			for _, an := range answers {
				c.answered[an.From] = true
				if len(an.Payload) == 0 {
					continue
				}
				if other, err := recovery.DecodeJob(an.Payload); err == nil && other.ID == id {
					c.answers = append(c.answers, journalAnswer{from: an.From, job: other})
				}
			}
			select {
			case a.rec.checked <- c:
			case <-a.stopping:
			}
		})
		return
	}
	a.startRunner(j)
}

// onJournalChecked merges what the cluster knows of an inherited job and
// runs it if it is still not over. Too few answers (gossip missed the
// members, or they were busy) is no answer: it asks again.
func (a *Agent) onJournalChecked(c journalCheck) {
	delete(a.rec.checking, c.id)
	j, ok := a.loadJob(c.id)
	if !ok {
		return
	}
	v := a.det.cn.View()
	for _, o := range c.answers {
		if !v.Contains(o.from) {
			continue // only members' journals count
		}
		// A later takeover, or another executor for the same token, that
		// this node has not heard of: it must not run the job.
		if t := o.job.FencingToken(); t > j.FencingToken() || t == j.FencingToken() && o.job.Executor != j.Executor {
			a.log.Warn().Str("id", j.ID).Str("from", o.from).Str("executor", o.job.Executor).Uint64("token", t).
				Msg("a member's journal names another executor for this job: not running it")
			return
		}
		j.Merge(o.job)
	}
	a.saveJob(j)
	if j.State.Final() {
		a.log.Info().Str("id", j.ID).Str("state", string(j.State)).Int("answered", len(c.answered)).
			Msg("inherited recovery is over already: not running it")
		return
	}
	if j.Executor != a.cfg.NodeName || !v.Contains(a.cfg.NodeName) {
		return
	}
	members := 0
	for _, m := range v.Members {
		if c.answered[m.Name] {
			members++
		}
	}
	if need := consensus.QuorumSize(len(v.Members), a.det.quorum); members < need {
		a.log.Warn().Str("id", j.ID).Int("answered", members).Int("need", need).
			Msg("too few members answered about an inherited recovery: asking again")
		a.maybeRun(j, true)
		return
	}
	a.log.Info().Str("id", j.ID).Int("answered", members).Int("attempt", j.NextAttempt()).Msg("inherited recovery is not over: running it")
	a.startRunner(j)
}

// answerJournal answers another agent's question about one job.
func (a *Agent) answerJournal(in membership.Inbound) {
	j, ok := a.loadJob(string(in.Payload))
	if !ok {
		_ = in.Reply(nil) // an empty answer: this agent knows nothing of it
		return
	}
	b, err := journalWire(j)
	if err != nil {
		_ = in.Reply(nil)
		return
	}
	_ = in.Reply(b)
}

// startRunner starts the runner of a job.
func (a *Agent) startRunner(j recovery.Job) {
	if _, ok := a.rec.running[j.ID]; ok || a.fatalErr != nil {
		return
	}
	ctx, cancel := context.WithCancel(a.hctx)
	a.rec.running[j.ID] = cancel
	first := j.NextAttempt()
	a.spawn(func() { a.runRecovery(ctx, j, first) })
}

// runRecovery runs attempts first, first+1, ... of a job until one
// succeeds or --recovery-retries retries failed, waiting 1 s, 2 s, 4 s ...
// between them. It reports to the loop and never touches its state.
func (a *Agent) runRecovery(ctx context.Context, j recovery.Job, first int) {
	report := func(r recoveryReport) {
		select {
		case a.rec.reports <- r:
		case <-a.stopping:
		}
	}
	defer report(recoveryReport{id: j.ID, exited: true})
	for n := first; ; n++ {
		report(recoveryReport{id: j.ID, n: n, started: true})
		cmd := recovery.RecoveryCommand(a.cfg.RecoveryHandler, j, a.cfg.NodeName, n, a.cfg.HandlerTimeout)
		res := recovery.Run(ctx, cmd)
		ok := res.ExitCode == 0 && res.Err == nil
		final := ok || n-first >= a.cfg.RecoveryRetries
		if ctx.Err() != nil {
			final = false // fenced or stopping: the job is not over
		}
		report(recoveryReport{id: j.ID, n: n, res: res, final: final})
		if final || ctx.Err() != nil {
			return
		}
		if !pause(min(time.Second<<(n-first), maxRecoveryBackoff), ctx.Done()) {
			return
		}
	}
}

// onRecoveryReport journals and announces what a runner reported.
func (a *Agent) onRecoveryReport(r recoveryReport) {
	if r.exited {
		delete(a.rec.running, r.id)
		return
	}
	j, ok := a.loadJob(r.id)
	if !ok {
		return
	}
	now := time.Now()
	ann := recovery.Announcement{ID: j.ID, Node: j.Node, Epoch: j.Epoch, Executor: a.cfg.NodeName, Attempt: r.n}
	name := recovery.EventStarted
	if r.started {
		j.Started(r.n, a.cfg.NodeName, now)
		a.log.Info().Str("id", j.ID).Str("node", j.Node).Int("attempt", r.n).Msg("recovery handler started")
	} else {
		j.Ended(r.n, a.cfg.NodeName, r.res, r.final, now)
		a.metrics.recoveryRun(r.res, r.res.Err == nil && r.res.ExitCode == 0)
		ann.Exit, ann.TimedOut, ann.Final = r.res.ExitCode, r.res.TimedOut, r.final
		name = recovery.EventDone
		if j.State != recovery.Succeeded {
			name = recovery.EventFailed
		}
		e := a.log.Info()
		if name == recovery.EventFailed {
			e = a.log.Warn()
		}
		e.Str("id", j.ID).Str("node", j.Node).Int("attempt", r.n).Int("exit", r.res.ExitCode).
			Bool("timed_out", r.res.TimedOut).AnErr("error", r.res.Err).Str("state", string(j.State)).
			Str("output", string(r.res.Output)).Msg("recovery handler ended")
	}
	if !a.saveJob(j) {
		return
	}
	a.replicate(j)
	// The user event is for operators' `user` handlers; no agent journals
	// it (anyone can send a user event).
	if b, err := json.Marshal(ann); err == nil {
		if err := a.mesh.UserEvent(name, b, false); err != nil {
			a.log.Warn().Err(err).Str("event", name).Msg("cannot announce the recovery")
		}
	}
}

// journalPutTries bounds how often an executor sends one journal entry
// before it gives up on a quorum taking it.
const journalPutTries = 10

// replicate sends this executor's entry of a job to the other members of
// the view until all of them have taken it, or journalPutTries: once a
// quorum has it, a takeover, which reads a quorum of the next view
// (onJournalChecked), cannot miss the outcome; the rest is for the
// journals every agent shows. An outcome the executor could not replicate before it
// died is unknown to the cluster and the job is run again: make handlers
// idempotent by VIGIL_DECISION_ID.
func (a *Agent) replicate(j recovery.Job) {
	b, err := journalWire(j)
	if err != nil {
		a.log.Error().Err(err).Str("id", j.ID).Msg("cannot send the journal entry to the cluster")
		return
	}
	others := map[string]bool{}
	for _, m := range a.det.cn.View().Members {
		if m.Name != a.cfg.NodeName {
			others[m.Name] = true
		}
	}
	if len(others) == 0 {
		return
	}
	need := consensus.QuorumSize(len(others), a.det.quorum)
	a.spawn(func() {
		took := map[string]bool{}
		for try := 1; try <= journalPutTries; try++ {
			answers, err := a.mesh.Ask(membership.JournalPutQuery, b, journalAskTimeout)
			for _, an := range answers {
				if others[an.From] && string(an.Payload) == journalTaken {
					took[an.From] = true
				}
			}
			if len(took) == len(others) {
				return // everyone has it; a quorum would do for a takeover
			}
			if err != nil || len(answers) == 0 {
				if !pause(journalAskTimeout, a.stopping) {
					return
				}
			}
			select {
			case <-a.stopping:
				return
			default:
			}
		}
		if len(took) < need {
			a.log.Warn().Str("id", j.ID).Int("took", len(took)).Int("need", need).
				Msg("too few members took the journal entry; a takeover may run the job again")
		}
	})
}

// journalTaken is a member's answer to a JournalPutQuery it took.
const journalTaken = "ok"

// journalWire is a job as it travels between agents: without outputs,
// tags and votes, which every agent has from the decision or keeps first
// hand, so that it fits a serf query.
func journalWire(j recovery.Job) ([]byte, error) {
	j.Tags, j.Votes = nil, nil
	j.Attempts = append([]recovery.Attempt(nil), j.Attempts...)
	for i := range j.Attempts {
		j.Attempts[i].Output = ""
	}
	b, err := j.Encode()
	if err == nil && len(b) > membership.MaxMessage {
		err = fmt.Errorf("journal entry of %d bytes exceeds %d", len(b), membership.MaxMessage)
	}
	return b, err
}

// answerJournalPut takes an executor's entry of a job into this agent's
// journal, if the sender is the job's executor by this agent's own journal
// (which follows the decisions): a forged entry changes nothing.
func (a *Agent) answerJournalPut(in membership.Inbound) {
	o, err := recovery.DecodeJob(in.Payload)
	if err != nil {
		a.log.Warn().Err(err).Str("from", in.From).Msg("ignoring a malformed journal entry")
		_ = in.Reply(nil)
		return
	}
	j, ok := a.loadJob(o.ID)
	if !ok || j.Executor != in.From {
		a.log.Debug().Str("id", o.ID).Str("from", in.From).Str("executor", j.Executor).
			Msg("not taking a journal entry from a member that is not the job's executor here")
		_ = in.Reply(nil)
		return
	}
	j.Merge(o)
	if !a.saveJob(j) {
		return // not on disk: not taken
	}
	_ = in.Reply([]byte(journalTaken))
}

// stopRecoveries kills every recovery handler this node runs: it may no
// longer act for the cluster.
func (a *Agent) stopRecoveries() {
	for id, cancel := range a.rec.running {
		a.log.Warn().Str("id", id).Msg("fenced: killing the recovery handler")
		cancel()
	}
}

// fence stops every recovery this node runs (it is no longer a member, so
// its epoch is stale) and runs the fence handler.
func (a *Agent) fence(reason string, epoch uint64) {
	a.metrics.fences.WithLabelValues(reason).Inc()
	a.stopRecoveries()
	if a.cfg.FenceHandler == "" {
		return
	}
	cmd := recovery.FenceCommand(a.cfg.FenceHandler, a.cfg.NodeName, reason, epoch, a.cfg.HandlerTimeout)
	a.log.Warn().Str("reason", reason).Uint64("epoch", epoch).Msg("running the fence handler")
	a.spawn(func() {
		res := recovery.Run(a.hctx, cmd)
		a.metrics.handlerTime.WithLabelValues("fence").Observe(res.Duration.Seconds())
		a.log.Info().Str("reason", reason).Int("exit", res.ExitCode).Bool("timed_out", res.TimedOut).
			AnErr("error", res.Err).Str("output", string(res.Output)).Msg("fence handler ended")
	})
}

func (a *Agent) apiRecoveries(w http.ResponseWriter, r *http.Request) {
	jobs, err := a.jobs()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, jobs)
}
