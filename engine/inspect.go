package engine

// What the engine shows: members, scores, why a node has its status, and
// the evidence kept with a decision.

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"sort"
	"time"

	"github.com/vigil-project/vigil/consensus"
	"github.com/vigil-project/vigil/suspicion"
)

// MemberInfo is one row of `vigil members`, the JSON of GET /v1/members.
type MemberInfo struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	// Status is the agreed status: alive, suspect, failed, left, joining.
	Status string `json:"status"`
	// Gossip is serf's own status: alive, leaving, left, failed.
	Gossip string            `json:"gossip"`
	Epoch  uint64            `json:"epoch"`
	Boot   string            `json:"boot"`
	Tags   map[string]string `json:"tags"`
}

// Members merges gossip's list (as last given to SetMembers) with the
// agreed view.
func (e *Engine) Members() []MemberInfo {
	v := e.cn.SharedView()
	seen := map[string]bool{}
	var out []MemberInfo
	for _, name := range e.gossipNames {
		m := e.gossip[name]
		seen[m.Name] = true
		boot := m.Boot()
		info := MemberInfo{Name: m.Name, Addr: m.Addr, Gossip: m.Status, Boot: boot, Tags: map[string]string{}}
		for k, val := range m.Tags {
			if !Reserved(k) {
				info.Tags[k] = val
			}
		}
		st, known := e.status[m.Name]
		vm, inView := v.Lookup(m.Name)
		switch {
		case inView && vm.Boot == boot:
			info.Status, info.Epoch = "alive", st.epoch
			if e.down(m.Name) {
				info.Status = "suspect"
			}
		case known && st.boot == boot && st.status != "alive":
			info.Status, info.Epoch = st.status, st.epoch
		case m.Status == "left" || m.Status == "leaving":
			info.Status = "left"
		default:
			info.Status = "joining"
		}
		out = append(out, info)
	}
	// Members of the view, and members the log removed, that serf does not
	// know (it never heard of them, or forgot them).
	for _, m := range v.Members {
		if !seen[m.Name] {
			seen[m.Name] = true
			out = append(out, MemberInfo{Name: m.Name, Addr: m.Addr, Status: "alive", Gossip: "unknown",
				Epoch: e.status[m.Name].epoch, Boot: m.Boot, Tags: map[string]string{}})
		}
	}
	for name, st := range e.status {
		if !seen[name] && st.status != "alive" {
			out = append(out, MemberInfo{Name: name, Addr: st.addr, Status: st.status, Gossip: "unknown",
				Epoch: st.epoch, Boot: st.boot, Tags: map[string]string{}})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

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

// NewLogEntry describes decision d.
func NewLogEntry(d consensus.Decision) LogEntry {
	c := d.Change
	return LogEntry{
		Epoch: d.Epoch + 1, ID: d.ID(), Kind: c.Kind.String(), Reason: c.Reason.String(),
		Node: c.Member.Name, Boot: c.Member.Boot, Addr: c.Member.Addr, Executor: c.Executor,
		Proposer: c.Evidence.Proposer, Votes: c.Evidence.Count(), Ballot: d.Ballot.String(),
	}
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

// Scores are the rows of `vigil scores`: the peers this node probes.
func (e *Engine) Scores() []Score {
	var out []Score
	for name, p := range e.probes {
		x := e.sus.For(name, p.boot).Explain(e.elapsed())
		out = append(out, Score{
			Peer: name, Boot: p.boot, State: x.State.String(), Threshold: p.last.Threshold, PFail: p.last.PFail,
			GMMReady: p.last.GMMReady, Timeout: e.scorer(name).Timeout(), LastRTT: x.LastRTT, Misses: x.Misses,
			Samples: len(p.samples),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
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
	Samples   []Sample               `json:"samples,omitempty"`
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

// Why is what this node knows of why node has its status, and whether
// it knows node at all. Decisions is left for the caller (the stored log).
func (e *Engine) Why(node string) (Why, bool) {
	out := Why{Node: node}
	v := e.cn.SharedView()
	found := false
	for _, m := range e.Members() {
		if m.Name == node {
			out.Status, out.Epoch, out.Boot, found = m.Status, m.Epoch, m.Boot, true
		}
	}
	vm, inView := v.Lookup(node)
	out.InView = inView
	if inView {
		out.Observers = Predecessors(viewNames(v), node, min(len(v.Members)-1, MonitorK))
		u, f := e.unreachable(vm)
		out.Verdict = &WhyVerdict{Unreachable: u, Fresh: f}
	}
	if p, ok := e.probes[node]; ok {
		out.Monitored = true
		out.Samples = append([]Sample(nil), p.samples...)
		for _, s := range e.Scores() {
			if s.Peer == node {
				s := s
				out.Score = &s
			}
		}
	}
	if t, ok := e.sus.LookupFor(node, vm.Boot); ok && inView {
		x := t.Explain(e.elapsed())
		out.Suspicion = &x
	}
	h := e.health()
	out.LocalHealth = LocalHealth{Slow: h.slow(), Silent: h.silent, Monitored: h.monitored, Fenced: e.leaseFenced}
	if e.leaseHeld {
		out.LocalHealth.Lease = e.leaseExpiry
	}
	st := e.cn.Status()
	out.Consensus = WhyConsensus{Epoch: st.Epoch, Phase: phaseNames[st.Phase]}
	if st.Phase != consensus.Idle {
		out.Consensus.Ballot, out.Consensus.Proposal = st.Ballot.String(), st.Proposal.String()
	}
	return out, found || inView
}

// EvidenceNote is one observer's evidence when it agreed that a node had
// failed.
type EvidenceNote struct {
	Observer string `json:"observer"`
	// Role is "proposer" or "acceptor" (a proposer that is also an
	// acceptor appears twice).
	Role string `json:"role"`
	// Monitored: the observer probes the node itself; otherwise its
	// verdict rests on a burst of pings it sent when asked.
	Monitored bool `json:"monitored"`
	// Burst: the observer pinged the node in a burst to answer the prepare.
	Burst bool `json:"burst"`
	// State is the observer's suspicion of the node: healthy, suspect or
	// accused.
	State string `json:"state"`
	// Misses is the run of consecutive probes the node did not answer.
	Misses int `json:"misses"`
	// Silence is the time since the node last answered this observer.
	Silence time.Duration `json:"silence_ns"`
	// Loss is the observer's estimate of the round-trip loss to the node.
	Loss float64 `json:"loss"`
	// PFail and Threshold are the scorer's failure probability and
	// threshold score at the last reply it scored (0: none, or the
	// observer does not probe the node).
	PFail     float64 `json:"pfail"`
	Threshold float64 `json:"threshold"`
}

const noteVersion = 1

// note is this agent's Config.Note: its evidence about a member whose
// failure it agrees with, in consensus.MaxNote bytes.
func (e *Engine) note(c consensus.Change) []byte {
	if c.Kind != consensus.Remove || c.Reason != consensus.Failed {
		return nil
	}
	t, ok := e.sus.LookupFor(c.Member.Name, c.Member.Boot)
	if !ok {
		return nil
	}
	x := t.Explain(e.elapsed())
	p, monitored := e.probes[c.Member.Name]
	monitored = monitored && !p.leaseOnly
	cv, burst := e.verdicts[c.Member.Name]
	burst = burst && cv.boot == c.Member.Boot && e.now.Sub(cv.at) < verdictTTL
	n := EvidenceNote{Monitored: monitored, Burst: burst, State: x.State.String(), Misses: x.Misses,
		Silence: x.Silence, Loss: x.LossEstimate}
	if monitored {
		n.PFail, n.Threshold = p.scored.PFail, p.scored.Threshold
	}
	return EncodeNote(n)
}

var noteStates = []string{suspicion.Healthy.String(), suspicion.Suspect.String(), suspicion.Accused.String()}

// EncodeNote packs n (observer and role aside) in 11 bytes: version,
// flags and state, misses (≤ 255), silence in 10 ms (≤ 655 s), loss and
// pfail in 1/10000, threshold in 1/100 (≤ 655).
func EncodeNote(n EvidenceNote) []byte {
	b := make([]byte, consensus.MaxNote)
	b[0] = noteVersion
	for i, s := range noteStates {
		if s == n.State {
			b[1] = byte(i)
		}
	}
	if n.Monitored {
		b[1] |= 4
	}
	if n.Burst {
		b[1] |= 8
	}
	b[2] = byte(min(max(n.Misses, 0), 255))
	binary.BigEndian.PutUint16(b[3:], clamp16(float64(n.Silence/(10*time.Millisecond))))
	binary.BigEndian.PutUint16(b[5:], clamp16(n.Loss*10000))
	binary.BigEndian.PutUint16(b[7:], clamp16(n.PFail*10000))
	binary.BigEndian.PutUint16(b[9:], clamp16(n.Threshold*100))
	return b
}

func clamp16(x float64) uint16 {
	if math.IsNaN(x) || x < 0 {
		return 0
	}
	return uint16(min(math.Round(x), math.MaxUint16))
}

// DecodeNote reads EncodeNote's bytes; ok is false for anything else (a
// note of another version).
func DecodeNote(b []byte) (n EvidenceNote, ok bool) {
	if len(b) != consensus.MaxNote || b[0] != noteVersion || int(b[1]&3) >= len(noteStates) {
		return n, false
	}
	n.State = noteStates[b[1]&3]
	n.Monitored, n.Burst = b[1]&4 != 0, b[1]&8 != 0
	n.Misses = int(b[2])
	n.Silence = time.Duration(binary.BigEndian.Uint16(b[3:])) * 10 * time.Millisecond
	n.Loss = float64(binary.BigEndian.Uint16(b[5:])) / 10000
	n.PFail = float64(binary.BigEndian.Uint16(b[7:])) / 10000
	n.Threshold = float64(binary.BigEndian.Uint16(b[9:])) / 100
	return n, true
}

// EvidenceMeta is the store's key of a decision's evidence.
func EvidenceMeta(id string) string { return "evidence/" + id }

// evidenceRecord names the notes of a decided failure with the acceptors
// of the view it was decided in (before): the store's key and value, kept
// with the decision.
func (e *Engine) evidenceRecord(dec consensus.Decision, before consensus.View) (string, []byte, bool) {
	ev := dec.Change.Evidence
	if dec.Change.Kind != consensus.Remove || ev.ProposerNote == nil && len(ev.Notes) == 0 {
		return "", nil, false
	}
	var out []EvidenceNote
	if n, ok := DecodeNote(ev.ProposerNote); ok {
		n.Observer, n.Role = ev.Proposer, "proposer"
		out = append(out, n)
	}
	acc := e.acceptors(before)
	for _, note := range ev.Notes {
		n, ok := DecodeNote(note.Data)
		if !ok || int(note.Acceptor) >= len(acc) {
			continue
		}
		n.Observer, n.Role = acc[note.Acceptor].Name, "acceptor"
		out = append(out, n)
	}
	b, err := json.Marshal(out)
	if err != nil || len(out) == 0 {
		return "", nil, false
	}
	return EvidenceMeta(dec.ID()), b, true
}
