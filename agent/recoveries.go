package agent

// The recovery runners, the journal's questions to the cluster, and the
// fence handler: the I/O of what the engine decides about recoveries.

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/vigil-project/vigil/engine"
	"github.com/vigil-project/vigil/membership"
	"github.com/vigil-project/vigil/recovery"
)

// recoveries is the runner state the loop owns.
type recoveries struct {
	running map[string]context.CancelFunc // job id → its runner's cancel
	reports chan engine.Report
	checked chan engine.JournalCheck
}

func newRecoveries() *recoveries {
	return &recoveries{
		running: map[string]context.CancelFunc{}, reports: make(chan engine.Report, 16),
		checked: make(chan engine.JournalCheck, 4),
	}
}

// jobs reads the whole journal, oldest decision first.
func (a *Agent) jobs() ([]engine.Job, error) {
	recs, err := a.store.Jobs()
	if err != nil {
		return nil, err
	}
	out := make([]engine.Job, 0, len(recs))
	for _, r := range recs {
		j, err := engine.DecodeJob(r.Bytes)
		if err != nil {
			a.log.Error().Err(err).Str("id", r.ID).Msg("unreadable journal entry")
			continue
		}
		out = append(out, j)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Epoch < out[j].Epoch })
	return out, nil
}

// askJournal asks the cluster what it knows of a job and reports the
// answers to the loop (engine.JournalChecked).
func (a *Agent) askJournal(id string) {
	a.spawn(func() {
		c := engine.JournalCheck{ID: id, Answered: map[string]bool{}}
		answers, err := a.mesh.Ask(membership.JournalQuery, []byte(id), engine.JournalAskTimeout)
		if err != nil {
			a.log.Warn().Err(err).Str("id", id).Msg("cannot ask the cluster about a recovery")
			// Wait as long as an answered question would have before the
			// engine asks again.
			if !pause(engine.JournalAskTimeout, a.stopping) {
				return
			}
		}
		for _, an := range answers {
			c.Answered[an.From] = true
			if len(an.Payload) == 0 {
				continue
			}
			if other, err := engine.DecodeJob(an.Payload); err == nil && other.ID == id {
				c.Answers = append(c.Answers, engine.JournalAnswer{From: an.From, Job: other})
			}
		}
		select {
		case a.rec.checked <- c:
		case <-a.stopping:
		}
	})
}

// answerJournal answers another agent's question about one job.
func (a *Agent) answerJournal(in membership.Inbound) {
	j, ok := a.det.eng.JournalQuestion(string(in.Payload))
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

// answerJournalPut takes an executor's entry of a job, if the engine
// takes it, and says so only once it is on disk.
func (a *Agent) answerJournalPut(in membership.Inbound) {
	o, err := engine.DecodeJob(in.Payload)
	if err != nil {
		a.log.Warn().Err(err).Str("from", in.From).Msg("ignoring a malformed journal entry")
		_ = in.Reply(nil)
		return
	}
	took := a.det.eng.JournalPut(time.Now(), in.From, o)
	a.det.handle()
	if !took || a.fatalErr != nil {
		_ = in.Reply(nil) // not on disk: not taken
		return
	}
	_ = in.Reply([]byte(engine.JournalTaken))
}

// startRunner starts the runner of a job.
func (a *Agent) startRunner(r engine.Run) {
	if _, ok := a.rec.running[r.Job.ID]; ok || a.fatalErr != nil {
		return
	}
	ctx, cancel := context.WithCancel(a.hctx)
	a.rec.running[r.Job.ID] = cancel
	a.spawn(func() { a.runRecovery(ctx, r.Job, r.First) })
}

// runRecovery runs attempts first, first+1, ... of a job until one
// succeeds or --recovery-retries retries failed, waiting 1 s, 2 s, 4 s ...
// between them. It reports to the loop and never touches its state.
func (a *Agent) runRecovery(ctx context.Context, j engine.Job, first int) {
	report := func(r engine.Report) {
		select {
		case a.rec.reports <- r:
		case <-a.stopping:
		}
	}
	defer report(engine.Report{ID: j.ID, Exited: true})
	for n := first; ; n++ {
		report(engine.Report{ID: j.ID, N: n, Started: true})
		cmd := recovery.RecoveryCommand(a.cfg.RecoveryHandler, j, a.cfg.NodeName, n, a.cfg.HandlerTimeout)
		res := recovery.Run(ctx, cmd)
		a.metrics.recoveryRun(res, res.Err == nil && res.ExitCode == 0)
		ok := res.ExitCode == 0 && res.Err == nil
		final := ok || n-first >= a.cfg.RecoveryRetries
		if ctx.Err() != nil {
			final = false // fenced or stopping: the job is not over
		}
		report(engine.Report{ID: j.ID, N: n, Outcome: res.Outcome(), Final: final})
		if final || ctx.Err() != nil {
			return
		}
		if !pause(min(time.Second<<(n-first), engine.MaxRecoveryBackoff), ctx.Done()) {
			return
		}
	}
}

// onRecoveryReport hands what a runner reported to the engine.
func (a *Agent) onRecoveryReport(r engine.Report) {
	if r.Exited {
		delete(a.rec.running, r.ID)
	}
	a.det.eng.Reported(time.Now(), r)
	a.det.handle()
}

// replicate sends this executor's entry of a job to the other members of
// the view until all of them have taken it, or engine.JournalPutTries.
func (a *Agent) replicate(r engine.Replicate) {
	b, err := journalWire(r.Job)
	if err != nil {
		a.log.Error().Err(err).Str("id", r.Job.ID).Msg("cannot send the journal entry to the cluster")
		return
	}
	others := map[string]bool{}
	for _, o := range r.Others {
		others[o] = true
	}
	a.spawn(func() {
		took := map[string]bool{}
		for try := 1; try <= engine.JournalPutTries; try++ {
			answers, err := a.mesh.Ask(membership.JournalPutQuery, b, engine.JournalAskTimeout)
			for _, an := range answers {
				if others[an.From] && string(an.Payload) == engine.JournalTaken {
					took[an.From] = true
				}
			}
			if len(took) == len(others) {
				return // everyone has it; a quorum would do for a takeover
			}
			if err != nil || len(answers) == 0 {
				if !pause(engine.JournalAskTimeout, a.stopping) {
					return
				}
			}
			select {
			case <-a.stopping:
				return
			default:
			}
		}
		if len(took) < r.Need {
			a.log.Warn().Str("id", r.Job.ID).Int("took", len(took)).Int("need", r.Need).
				Msg("too few members took the journal entry; a takeover may run the job again")
		}
	})
}

// journalWire is a job as it travels between agents: without outputs,
// tags and votes, which every agent has from the decision or keeps first
// hand, so that it fits a serf query.
func journalWire(j engine.Job) ([]byte, error) {
	j.Tags, j.Votes = nil, nil
	j.Attempts = append([]engine.Attempt(nil), j.Attempts...)
	for i := range j.Attempts {
		j.Attempts[i].Output = ""
	}
	b, err := j.Encode()
	if err == nil && len(b) > membership.MaxMessage {
		err = fmt.Errorf("journal entry of %d bytes exceeds %d", len(b), membership.MaxMessage)
	}
	return b, err
}

// fence runs the fence handler (the engine has killed this node's
// recovery handlers already).
func (a *Agent) fence(reason string, epoch uint64) {
	a.metrics.fences.WithLabelValues(reason).Inc()
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
	var jobs []engine.Job
	if err := a.inLoop(r.Context(), func() { jobs = a.det.eng.Jobs() }); err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, http.StatusOK, jobs)
}
