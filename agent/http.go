package agent

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strings"
	"time"

	"github.com/vigil-project/vigil/membership"
)

// Info is the JSON of GET /v1/info.
type Info struct {
	Node     string `json:"node"`
	Boot     string `json:"boot"`
	Cluster  string `json:"cluster"` // "" until the agent belongs to a cluster
	Addr     string `json:"addr"`
	HTTPAddr string `json:"http_addr"`
	Version  string `json:"version"`
	Profile  string `json:"profile"`
	Quorum   string `json:"quorum"`
	// Council is --council-size: the acceptors of views larger than it.
	Council int `json:"council_size"`
	// GoMaxProcs is the process's GOMAXPROCS (--gomaxprocs).
	GoMaxProcs int               `json:"gomaxprocs"`
	Encrypted  bool              `json:"encrypted"`
	DataDir    string            `json:"data_dir"`
	Started    time.Time         `json:"started"`
	Epoch      uint64            `json:"epoch"`
	Members    map[string]int    `json:"members"`
	Tags       map[string]string `json:"tags"`
	Serf       map[string]string `json:"serf"`
	// Consensus counts the point-to-point consensus messages.
	Consensus membership.DirectStats `json:"consensus_transport"`
}

// JoinRequest is the body of POST /v1/join.
type JoinRequest struct {
	Addrs []string `json:"addrs"`
}

// JoinResponse answers POST /v1/join.
type JoinResponse struct {
	Joined int `json:"joined"`
}

// EventRequest is the body of POST /v1/event.
type EventRequest struct {
	Name     string `json:"name"`
	Payload  string `json:"payload"`
	Coalesce bool   `json:"coalesce"`
}

// ForceRemoveRequest is the body of POST /v1/force-remove: remove these
// members without a quorum. Confirm must be true.
type ForceRemoveRequest struct {
	Nodes   []string `json:"nodes"`
	Confirm bool     `json:"confirm_quorum_loss"`
}

// ForceRemoveResponse answers it with the view epoch afterwards.
type ForceRemoveResponse struct {
	Epoch uint64 `json:"epoch"`
}

// ForceLeaveRequest is the body of POST /v1/force-leave.
type ForceLeaveRequest struct {
	Node string `json:"node"`
	// Prune also forgets the node at once (serf's force-leave -prune).
	Prune bool `json:"prune,omitempty"`
}

// ErrorResponse is the body of every non-2xx answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// maxBody bounds request bodies; every request of the API is small.
const maxBody = 64 << 10

func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/members", a.apiMembers)
	mux.HandleFunc("GET /v1/info", a.apiInfo)
	mux.HandleFunc("POST /v1/join", a.apiJoin)
	mux.HandleFunc("POST /v1/leave", a.apiLeave)
	mux.HandleFunc("POST /v1/force-leave", a.apiForceLeave)
	mux.HandleFunc("POST /v1/force-remove", a.apiForceRemove)
	mux.HandleFunc("POST /v1/event", a.apiEvent)
	mux.HandleFunc("GET /v1/views", a.apiViews)
	mux.HandleFunc("GET /v1/why/{node}", a.apiWhy)
	mux.HandleFunc("GET /v1/scores", a.apiScores)
	mux.HandleFunc("GET /v1/recoveries", a.apiRecoveries)
	mux.HandleFunc("POST /v1/query", a.apiQuery)
	mux.HandleFunc("POST /v1/keys", a.apiKeys)
	mux.HandleFunc("POST /v1/tags", a.apiTags)
	mux.HandleFunc("GET /v1/monitor", a.apiMonitor)
	mux.Handle("GET /metrics", a.metricsHandler())
	a.uiRoutes(mux)
	if a.cfg.EnableDebug {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return a.guard(mux)
}

// guard asks for --http-token on the calls that change something, and on
// the log stream and the profiler: 'Authorization: Bearer TOKEN',
// compared in constant time.
func (a *Agent) guard(next http.Handler) http.Handler {
	if a.cfg.HTTPToken == "" {
		return next
	}
	want := []byte("Bearer " + a.cfg.HTTPToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		guarded := r.Method != http.MethodGet && r.Method != http.MethodHead ||
			r.URL.Path == "/v1/monitor" || strings.HasPrefix(r.URL.Path, "/debug/")
		if guarded && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			a.log.Warn().Str("path", r.URL.Path).Str("from", r.RemoteAddr).Msg("http: a call without the right --http-token")
			writeError(w, http.StatusForbidden, errors.New("this call needs the agent's --http-token (give it with --http-token or VIGIL_HTTP_TOKEN)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, ErrorResponse{Error: err.Error()})
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad request body: %v", err)
	}
	return nil
}

// members is the member list as the loop sees it.
func (a *Agent) members(ctx context.Context) ([]MemberInfo, uint64, error) {
	var ms []MemberInfo
	var epoch uint64
	err := a.inLoop(ctx, func() { ms, epoch = a.det.members(), a.det.eng.Epoch() })
	return ms, epoch, err
}

func (a *Agent) apiMembers(w http.ResponseWriter, r *http.Request) {
	ms, _, err := a.members(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	if st := r.URL.Query().Get("status"); st != "" {
		want := map[string]bool{}
		for _, s := range strings.Split(st, ",") {
			want[strings.TrimSpace(s)] = true
		}
		kept := ms[:0]
		for _, m := range ms {
			if want[m.Status] {
				kept = append(kept, m)
			}
		}
		ms = kept
	}
	writeJSON(w, http.StatusOK, ms)
}

func (a *Agent) apiInfo(w http.ResponseWriter, r *http.Request) {
	local := a.mesh.Local()
	ms, epoch, err := a.members(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	counts := map[string]int{}
	for _, m := range ms {
		counts[m.Status]++
	}
	tags := map[string]string{}
	for k, v := range local.Tags {
		tags[k] = v
	}
	writeJSON(w, http.StatusOK, Info{
		Node: a.cfg.NodeName, Boot: local.Tags[membership.BootTag], Cluster: a.clusterID(), Addr: hostPort(local), HTTPAddr: a.cfg.HTTPAddr,
		Version: Version, Profile: a.cfg.Profile, Quorum: a.cfg.Quorum, Council: a.cfg.CouncilSize, GoMaxProcs: runtime.GOMAXPROCS(0), Encrypted: a.mesh.Encrypted(),
		DataDir: a.cfg.DataDir, Started: a.started, Epoch: epoch, Members: counts, Tags: tags, Serf: a.mesh.Stats(),
		Consensus: a.mesh.DirectStats(),
	})
}

func (a *Agent) apiJoin(w http.ResponseWriter, r *http.Request) {
	var req JoinRequest
	if err := readJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if len(req.Addrs) == 0 {
		writeError(w, http.StatusBadRequest, errors.New("no address to join"))
		return
	}
	for _, addr := range req.Addrs {
		if _, _, err := membership.ParseAddr(addr, membership.DefaultPort); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
	}
	n, err := a.mesh.Join(req.Addrs)
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, http.StatusOK, JoinResponse{Joined: n})
}

func (a *Agent) apiLeave(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := a.leave(ctx); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("leave: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (a *Agent) apiForceLeave(w http.ResponseWriter, r *http.Request) {
	var req ForceLeaveRequest
	if err := readJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if req.Node == "" {
		writeError(w, http.StatusBadRequest, errors.New("no node named"))
		return
	}
	if err := a.mesh.ForceLeave(req.Node, req.Prune); err != nil {
		writeError(w, http.StatusNotFound, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (a *Agent) apiForceRemove(w http.ResponseWriter, r *http.Request) {
	var req ForceRemoveRequest
	if err := readJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if !req.Confirm {
		writeError(w, http.StatusBadRequest, errors.New("force-remove decides without a quorum and can contradict what the lost members decided: confirm with --confirm-quorum-loss"))
		return
	}
	if len(req.Nodes) == 0 {
		writeError(w, http.StatusBadRequest, errors.New("no node named"))
		return
	}
	var epoch uint64
	var ferr error
	if err := a.inLoop(r.Context(), func() { epoch, ferr = a.det.forceRemove(req.Nodes) }); err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	if ferr != nil {
		writeError(w, http.StatusConflict, ferr)
		return
	}
	writeJSON(w, http.StatusOK, ForceRemoveResponse{Epoch: epoch})
}

func (a *Agent) apiEvent(w http.ResponseWriter, r *http.Request) {
	var req EventRequest
	if err := readJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := a.userEvent(req.Name, []byte(req.Payload), req.Coalesce); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}
