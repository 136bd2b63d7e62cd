package agent

import (
	"net/http"
	"time"

	"github.com/vigil-project/vigil/consensus"
	"github.com/vigil-project/vigil/engine"
)

// The API's types are the engine's.
type (
	LogEntry     = engine.LogEntry
	ViewMember   = engine.ViewMember
	Views        = engine.Views
	Score        = engine.Score
	Why          = engine.Why
	LocalHealth  = engine.LocalHealth
	WhyVerdict   = engine.WhyVerdict
	WhyConsensus = engine.WhyConsensus
	EvidenceNote = engine.EvidenceNote
	MemberInfo   = engine.MemberInfo
)

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
			e := engine.NewLogEntry(d)
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
	if err := a.inLoop(r.Context(), func() { v = a.det.eng.View() }); err != nil {
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

func (a *Agent) apiScores(w http.ResponseWriter, r *http.Request) {
	var out []Score
	if err := a.inLoop(r.Context(), func() { out = a.det.eng.Scores() }); err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	if out == nil {
		out = []Score{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *Agent) apiWhy(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	var out Why
	var ok bool
	if err := a.inLoop(r.Context(), func() {
		a.det.refreshMembers(time.Now())
		out, ok = a.det.eng.Why(node)
	}); err != nil {
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
