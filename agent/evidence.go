package agent

import (
	"encoding/json"

	"github.com/vigil-project/vigil/engine"
)

// evidence reads the evidence kept for a decision, nil if none.
func (a *Agent) evidence(id string) []EvidenceNote {
	b, err := a.store.Meta(engine.EvidenceMeta(id))
	if err != nil || len(b) == 0 {
		return nil
	}
	var out []EvidenceNote
	if json.Unmarshal(b, &out) != nil {
		return nil
	}
	return out
}
