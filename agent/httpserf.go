package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vigil-project/vigil/membership"
)

// QueryRequest is the body of POST /v1/query.
type QueryRequest struct {
	Name    string `json:"name"`
	Payload string `json:"payload"`
	// Nodes, if set, are the only nodes asked; Tags, if set, keeps those
	// whose tags match each regular expression.
	Nodes []string          `json:"nodes,omitempty"`
	Tags  map[string]string `json:"tags,omitempty"`
	// RequestAck asks each node to acknowledge the query on receipt.
	RequestAck  bool `json:"request_ack"`
	RelayFactor int  `json:"relay_factor,omitempty"`
	// Timeout is a duration ("3s"); empty: serf's default for the
	// cluster's size.
	Timeout string `json:"timeout,omitempty"`
}

// QueryRecord is one line of POST /v1/query's answer (JSON lines): an
// "ack" or a "response" from a node, and a last "done".
type QueryRecord struct {
	Type    string `json:"type"`
	From    string `json:"from,omitempty"`
	Payload string `json:"payload,omitempty"`
}

// KeysRequest is the body of POST /v1/keys: Op is install, use, remove or
// list; Key the base64 key (not for list).
type KeysRequest struct {
	Op  string `json:"op"`
	Key string `json:"key,omitempty"`
}

// KeysResponse answers it, as serf's key commands do: how many members
// there are, answered and failed, each failure's message, and for list
// how many members hold each key.
type KeysResponse struct {
	NumNodes int               `json:"num_nodes"`
	NumResp  int               `json:"num_resp"`
	NumErr   int               `json:"num_err"`
	Messages map[string]string `json:"messages,omitempty"`
	Keys     map[string]int    `json:"keys,omitempty"`
	Primary  map[string]int    `json:"primary_keys,omitempty"`
	// Error is set when some member failed.
	Error string `json:"error,omitempty"`
}

// TagsRequest is the body of POST /v1/tags.
type TagsRequest struct {
	Set    map[string]string `json:"set,omitempty"`
	Delete []string          `json:"delete,omitempty"`
}

// TagsResponse is the agent's tags afterwards (vigil's reserved ones left
// out).
type TagsResponse struct {
	Tags map[string]string `json:"tags"`
}

func (a *Agent) apiQuery(w http.ResponseWriter, r *http.Request) {
	var req QueryRequest
	if err := readJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var timeout time.Duration
	if req.Timeout != "" {
		var err error
		if timeout, err = time.ParseDuration(req.Timeout); err != nil || timeout < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("timeout %q: want a duration ≥ 0, like 5s", req.Timeout))
			return
		}
	}
	if req.RelayFactor < 0 || req.RelayFactor > 5 {
		writeError(w, http.StatusBadRequest, errors.New("relay_factor: want 0 to 5"))
		return
	}
	qr, err := a.query(req.Name, []byte(req.Payload), membership.QueryParams{
		FilterNodes: req.Nodes, FilterTags: req.Tags, RequestAck: req.RequestAck,
		RelayFactor: uint8(req.RelayFactor), Timeout: timeout,
	})
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	streamQuery(qr, r.Context().Done(), a.draining, func(rec rpcQueryRecord) error {
		if err := enc.Encode(QueryRecord{Type: rec.Type, From: rec.From, Payload: string(rec.Payload)}); err != nil {
			return err
		}
		if fl != nil {
			fl.Flush()
		}
		return nil
	})
}

func (a *Agent) apiKeys(w http.ResponseWriter, r *http.Request) {
	var req KeysRequest
	if err := readJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	switch req.Op {
	case "install", "use", "remove", "list":
	default:
		writeError(w, http.StatusBadRequest, fmt.Errorf("op %q: want install, use, remove or list", req.Op))
		return
	}
	kr, err := a.keys(req.Op, req.Key)
	if kr == nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	resp := KeysResponse{NumNodes: kr.NumNodes, NumResp: kr.NumResp, NumErr: kr.NumErr,
		Messages: kr.Messages, Keys: kr.Keys, Primary: kr.PrimaryKeys, Error: errString(err)}
	writeJSON(w, http.StatusOK, resp)
}

func (a *Agent) apiTags(w http.ResponseWriter, r *http.Request) {
	var req TagsRequest
	if err := readJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := a.setTags(r.Context(), req.Set, req.Delete); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	tags := map[string]string{}
	for k, v := range a.mesh.Local().Tags {
		if !membership.Reserved(k) {
			tags[k] = v
		}
	}
	writeJSON(w, http.StatusOK, TagsResponse{Tags: tags})
}

// apiMonitor streams the agent's log lines at ?level= (default info) as
// text, one per line, until the client goes away.
func (a *Agent) apiMonitor(w http.ResponseWriter, r *http.Request) {
	level := r.URL.Query().Get("level")
	if level == "" {
		level = "info"
	}
	lvl, err := ParseMonitorLevel(level)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	sub := a.logs.subscribe(lvl)
	defer a.logs.unsubscribe(sub)
	// The events too, as serf's monitor shows them: what the handlers see.
	events := a.rpc.events.subscribe([]streamFilter{{event: "*"}})
	defer a.rpc.events.unsubscribe(events)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	for {
		select {
		case line := <-sub.lines:
			if _, err := io.WriteString(w, line+"\n"); err != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		case ev := <-events.events:
			if _, err := io.WriteString(w, eventLine(ev)+"\n"); err != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		case <-r.Context().Done():
			return
		case <-a.draining:
			return
		}
	}
}

// eventLine is an event as `vigil monitor` prints it.
func eventLine(ev membership.Event) string {
	s := ev.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00") + " [EVENT] " + ev.Type.String()
	switch ev.Type {
	case membership.User, membership.Query:
		s += fmt.Sprintf(" %s ltime=%d payload=%q", ev.Name, ev.LTime, ev.Payload)
	default:
		for _, m := range ev.Members {
			s += fmt.Sprintf(" %s@%s", m.Name, m.Addr)
		}
	}
	return s
}

// Query sends a query and calls each with every ack and answer as it
// comes; it returns after the query's deadline.
func (c *Client) Query(ctx context.Context, req QueryRequest, each func(QueryRecord)) error {
	return c.stream(ctx, http.MethodPost, "/v1/query", req, func(line []byte) error {
		var rec QueryRecord
		if err := json.Unmarshal(line, &rec); err != nil {
			return fmt.Errorf("agent at %s: bad answer line: %v", c.Addr, err)
		}
		each(rec)
		return nil
	})
}

// Keys runs a keyring operation across the cluster. A response with
// failed members comes with an error too.
func (c *Client) Keys(ctx context.Context, op, key string) (KeysResponse, error) {
	var out KeysResponse
	if err := c.do(ctx, http.MethodPost, "/v1/keys", KeysRequest{Op: op, Key: key}, &out); err != nil {
		return out, err
	}
	if out.Error != "" {
		return out, errors.New(out.Error)
	}
	return out, nil
}

// Tags sets and deletes tags of the agent and returns its tags.
func (c *Client) Tags(ctx context.Context, set map[string]string, del []string) (map[string]string, error) {
	var out TagsResponse
	err := c.do(ctx, http.MethodPost, "/v1/tags", TagsRequest{Set: set, Delete: del}, &out)
	return out.Tags, err
}

// Monitor calls each with every log line at level until ctx ends.
func (c *Client) Monitor(ctx context.Context, level string, each func(string)) error {
	return c.stream(ctx, http.MethodGet, "/v1/monitor?level="+url.QueryEscape(level), nil, func(line []byte) error {
		each(string(line))
		return nil
	})
}

// stream makes a request whose answer is read line by line as it comes.
func (c *Client) stream(ctx context.Context, method, path string, in any, each func([]byte) error) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = strings.NewReader(string(b))
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// A stream has no overall deadline: the caller's ctx ends it.
	hc := *c.HTTP
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return c.explain(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return c.answerError(resp, data)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if err := each(sc.Bytes()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("agent at %s: %v", c.Addr, err)
	}
	return nil
}
