package agent

// The evidence that convicted a node, kept with the decision: each voting
// acceptor's note (consensus.Config.Note), and the proposer's, travel in
// the decided value; every agent that applies the decision names the
// notes' acceptors and keeps them, so `vigil why` shows them as long as the
// decision is in the log.

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"time"

	"github.com/vigil-project/vigil/consensus"
	"github.com/vigil-project/vigil/suspicion"
)

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
func (d *detector) note(c consensus.Change) []byte {
	if c.Kind != consensus.Remove || c.Reason != consensus.Failed {
		return nil
	}
	t, ok := d.sus.LookupFor(c.Member.Name, c.Member.Boot)
	if !ok {
		return nil
	}
	e := t.Explain(d.now())
	p, monitored := d.probes[c.Member.Name]
	monitored = monitored && !p.leaseOnly
	cv, burst := d.verdicts[c.Member.Name]
	burst = burst && cv.boot == c.Member.Boot && time.Since(cv.at) < verdictTTL
	n := EvidenceNote{Monitored: monitored, Burst: burst, State: e.State.String(), Misses: e.Misses,
		Silence: e.Silence, Loss: e.LossEstimate}
	if monitored {
		n.PFail, n.Threshold = p.scored.PFail, p.scored.Threshold
	}
	return encodeNote(n)
}

var noteStates = []string{suspicion.Healthy.String(), suspicion.Suspect.String(), suspicion.Accused.String()}

// encodeNote packs n (observer and role aside) in 11 bytes: version,
// flags and state, misses (≤ 255), silence in 10 ms (≤ 655 s), loss and
// pfail in 1/10000, threshold in 1/100 (≤ 655).
func encodeNote(n EvidenceNote) []byte {
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

// decodeNote reads encodeNote's bytes; ok is false for anything else (a
// note of another version).
func decodeNote(b []byte) (n EvidenceNote, ok bool) {
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

// evidenceMeta is the store's key of a decision's evidence.
func evidenceMeta(id string) string { return "evidence/" + id }

// evidenceRecord names the notes of a decided failure with the acceptors
// of the view it was decided in (before): the store's key and value, kept
// with the decision.
func (d *detector) evidenceRecord(dec consensus.Decision, before consensus.View) (string, []byte, bool) {
	ev := dec.Change.Evidence
	if dec.Change.Kind != consensus.Remove || ev.ProposerNote == nil && len(ev.Notes) == 0 {
		return "", nil, false
	}
	var out []EvidenceNote
	if n, ok := decodeNote(ev.ProposerNote); ok {
		n.Observer, n.Role = ev.Proposer, "proposer"
		out = append(out, n)
	}
	acc := d.acceptors(before)
	for _, note := range ev.Notes {
		n, ok := decodeNote(note.Data)
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
	return evidenceMeta(dec.ID()), b, true
}

// evidence reads the evidence kept for a decision, nil if none.
func (a *Agent) evidence(id string) []EvidenceNote {
	b, err := a.store.Meta(evidenceMeta(id))
	if err != nil || len(b) == 0 {
		return nil
	}
	var out []EvidenceNote
	if json.Unmarshal(b, &out) != nil {
		return nil
	}
	return out
}
