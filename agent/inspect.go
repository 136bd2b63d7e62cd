package agent

import (
	"net/http"
	"sort"
	"time"

	"github.com/vigil-project/vigil/consensus"
	"github.com/vigil-project/vigil/recovery"
	"github.com/vigil-project/vigil/suspicion"
)

// LogEntry is one decided view change, as `vigil views` shows it.
type LogEntry struct {
	Epoch    uint64 `json:"epoch"` // the view epoch the change produced
	ID       string `json:"id"`
	Kind     string `json:"kind"`   // add, remove
	Reason   string `json:"reason"` // joined, failed, left
	Node     string `json:"node"`
	Boot     string `json:"boot"`
	Addr     string `json:"addr"`
	Executor string `json:"executor,omitempty"`
	Proposer string `json:"proposer,omitempty"`
	Votes    int    `json:"votes"`
	Ballot   string `json:"ballot"`
	// Evidence (in `vigil why`) is what the proposer and each voting
	// acceptor had seen of a node they agreed had failed.
	Evidence []EvidenceNote `json:"evidence,omitempty"`
}

// ViewMember is one member of the agreed view.
type ViewMember struct {
	Name string `json:"name"`
	Boot string `json:"boot"`
	Addr string `json:"addr"`
}

// Views is the JSON of GET /v1/views: the current agreed view and the log.
type Views struct {
	Epoch   uint64       `json:"epoch"`
	Members []ViewMember `json:"members"`
	Log     []LogEntry   `json:"log"`
}

func logEntry(d consensus.Decision) LogEntry {
	c := d.Change
	return LogEntry{
		Epoch: d.Epoch + 1, ID: d.ID(), Kind: c.Kind.String(), Reason: c.Reason.String(),
		Node: c.Member.Name, Boot: c.Member.Boot, Addr: c.Member.Addr, Executor: c.Executor,
		Proposer: c.Evidence.Proposer, Votes: c.Evidence.Count(), Ballot: d.Ballot.String(),
	}
}

// viewLog reads the decided log from the store, oldest first.
func (a *Agent) viewLog(node string) ([]LogEntry, error) {
	recs, err := a.store.Decisions(0, 0)
	if err != nil {
		return nil, err
	}
	var out []LogEntry
	for _, r := range recs {
		d, err := consensus.DecodeDecision(r.Bytes)
		if err != nil {
			return nil, err
		}
		if node == "" || d.Change.Member.Name == node {
			e := logEntry(d)
			if node != "" {
				e.Evidence = a.evidence(e.ID)
			}
			out = append(out, e)
		}
	}
	return out, nil
}

func (a *Agent) apiViews(w http.ResponseWriter, r *http.Request) {
	var v consensus.View
	if err := a.inLoop(r.Context(), func() { v = a.det.cn.View() }); err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	log, err := a.viewLog("")
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	out := Views{Epoch: v.Epoch, Log: log}
	for _, m := range v.Members {
		out.Members = append(out.Members, ViewMember(m))
	}
	writeJSON(w, http.StatusOK, out)
}

// Score is one peer's row of `vigil scores`.
type Score struct {
	Peer      string        `json:"peer"`
	Boot      string        `json:"boot"`
	State     string        `json:"state"`
	Threshold float64       `json:"threshold"`
	PFail     float64       `json:"pfail"`
	GMMReady  bool          `json:"gmm_ready"`
	Timeout   time.Duration `json:"timeout_ns"`
	LastRTT   time.Duration `json:"last_rtt_ns"`
	Misses    int           `json:"misses"`
	Samples   int           `json:"samples"`
}

func (d *detector) scores() []Score {
	var out []Score
	for name, p := range d.probes {
		e := d.sus.For(name, p.boot).Explain(d.now())
		out = append(out, Score{
			Peer: name, Boot: p.boot, State: e.State.String(), Threshold: p.last.Threshold, PFail: p.last.PFail,
			GMMReady: p.last.GMMReady, Timeout: d.scorer(name).Timeout(), LastRTT: e.LastRTT, Misses: e.Misses,
			Samples: len(p.samples),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

func (a *Agent) apiScores(w http.ResponseWriter, r *http.Request) {
	var out []Score
	if err := a.inLoop(r.Context(), func() { out = a.det.scores() }); err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	if out == nil {
		out = []Score{}
	}
	writeJSON(w, http.StatusOK, out)
}

// Why is the JSON of GET /v1/why/NODE: everything this agent knows about
// why a node has the status it has.
type Why struct {
	Node      string   `json:"node"`
	Status    string   `json:"status"`
	Epoch     uint64   `json:"epoch"`
	InView    bool     `json:"in_view"`
	Boot      string   `json:"boot,omitempty"`
	Observers []string `json:"observers"`
	// Monitored: this agent is one of the observers and probes the node.
	Monitored bool                   `json:"monitored"`
	Samples   []sample               `json:"samples,omitempty"`
	Score     *Score                 `json:"score,omitempty"`
	Suspicion *suspicion.Explanation `json:"suspicion,omitempty"`
	Verdict   *WhyVerdict            `json:"verdict,omitempty"`
	Consensus WhyConsensus           `json:"consensus"`
	Decisions []LogEntry             `json:"decisions"`
	// LocalHealth is this agent's view of itself as an observer: a slow
	// observer's evidence convicts no one.
	LocalHealth LocalHealth `json:"local_health"`
}

// LocalHealth says whether this agent has heard from none of the peers it
// probes for a while, and so trusts its own evidence less (health.slow).
type LocalHealth struct {
	Slow bool `json:"slow"`
	// Silent of Monitored peers have not answered for a while.
	Silent    int `json:"silent"`
	Monitored int `json:"monitored"`
	// Lease is when this agent's lease on its membership ends (zero: it
	// holds none); Fenced, that it ran out and the fence ran.
	Lease  time.Time `json:"lease,omitempty"`
	Fenced bool      `json:"fenced,omitempty"`
}

// WhyVerdict is what this agent would answer a prepare about the node.
type WhyVerdict struct {
	Unreachable bool `json:"unreachable"`
	Fresh       bool `json:"fresh"`
}

// WhyConsensus is this agent's proposer state.
type WhyConsensus struct {
	Epoch    uint64 `json:"epoch"`
	Phase    string `json:"phase"`
	Ballot   string `json:"ballot,omitempty"`
	Proposal string `json:"proposal,omitempty"`
}

var phaseNames = map[consensus.Phase]string{
	consensus.Idle: "idle", consensus.Backoff: "backoff", consensus.Preparing: "preparing", consensus.Accepting: "accepting",
}

func (d *detector) why(node string) (Why, bool) {
	out := Why{Node: node}
	v := d.cn.View()
	found := false
	for _, m := range d.members() {
		if m.Name == node {
			out.Status, out.Epoch, out.Boot, found = m.Status, m.Epoch, m.Boot, true
		}
	}
	vm, inView := v.Lookup(node)
	out.InView = inView
	if inView {
		out.Observers = recovery.Predecessors(viewNames(v), node, min(len(v.Members)-1, monitorK))
		u, f := d.unreachable(vm)
		out.Verdict = &WhyVerdict{Unreachable: u, Fresh: f}
	}
	if p, ok := d.probes[node]; ok {
		out.Monitored = true
		out.Samples = append([]sample(nil), p.samples...)
		for _, s := range d.scores() {
			if s.Peer == node {
				s := s
				out.Score = &s
			}
		}
	}
	if t, ok := d.sus.LookupFor(node, vm.Boot); ok && inView {
		e := t.Explain(d.now())
		out.Suspicion = &e
	}
	h := d.health()
	out.LocalHealth = LocalHealth{Slow: h.slow(), Silent: h.silent, Monitored: h.monitored, Fenced: d.leaseFenced}
	if d.leaseHeld {
		out.LocalHealth.Lease = d.leaseExpiry
	}
	st := d.cn.Status()
	out.Consensus = WhyConsensus{Epoch: st.Epoch, Phase: phaseNames[st.Phase]}
	if st.Phase != consensus.Idle {
		out.Consensus.Ballot, out.Consensus.Proposal = st.Ballot.String(), st.Proposal.String()
	}
	return out, found || inView
}

func (a *Agent) apiWhy(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	var out Why
	var ok bool
	if err := a.inLoop(r.Context(), func() { out, ok = a.det.why(node) }); err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, errNoMember(node))
		return
	}
	log, err := a.viewLog(node)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	out.Decisions = log
	if out.Decisions == nil {
		out.Decisions = []LogEntry{}
	}
	writeJSON(w, http.StatusOK, out)
}

type errNoMember string

func (e errNoMember) Error() string { return "no member named " + string(e) }
