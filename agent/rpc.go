package agent

// serf's RPC protocol (serf cmd/serf/command/agent/ipc.go), so that serf's
// CLI and programs built on github.com/hashicorp/serf/client talk to vigil
// unchanged: msgpack with serf's own codec and handle, a request header
// {Command, Seq} and a body, a response header {Seq, Error} and a body,
// a handshake first and, with --rpc-auth, an auth. Members carry vigil's
// agreed status in serf's words; streams carry the events vigil's handlers
// see. Unlike serf's agent, a command that fails answers with its error and
// the body the client waits for, and keeps the connection.

import (
	"bufio"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/serf/coordinate"

	"github.com/vigil-project/vigil/membership"
)

// The RPC protocol's words, as serf's agent has them.
const (
	rpcUnsupportedCommand = "Unsupported command"
	rpcUnsupportedVersion = "Unsupported IPC version"
	rpcDuplicateHandshake = "Handshake already performed"
	rpcHandshakeRequired  = "Handshake required"
	rpcMonitorExists      = "Monitor already exists"
	rpcInvalidFilter      = "Invalid event filter"
	rpcStreamExists       = "Stream with given sequence exists"
	rpcInvalidQueryID     = "No pending queries matching ID"
	rpcAuthRequired       = "Authentication required"
	rpcInvalidAuthToken   = "Invalid authentication token"
)

// rpcMaxClients bounds the RPC connections; one more is closed at once.
const rpcMaxClients = 256

// rpcMaxRequest bounds one request's bytes (header and body): every
// request of the protocol is small, and a length prefix from a broken or
// hostile client must not make the agent allocate gigabytes.
const rpcMaxRequest = 1 << 20

type rpcRequestHeader struct {
	Command string
	Seq     uint64
}

type rpcResponseHeader struct {
	Seq   uint64
	Error string
}

type rpcHandshake struct{ Version int32 }
type rpcAuth struct{ AuthKey string }
type rpcCoordinateRequest struct{ Node string }
type rpcCoordinateResponse struct {
	Coord coordinate.Coordinate
	Ok    bool
}
type rpcEvent struct {
	Name     string
	Payload  []byte
	Coalesce bool
}
type rpcForceLeave struct {
	Node  string
	Prune bool
}
type rpcJoin struct {
	Existing []string
	Replay   bool
}
type rpcJoinResponse struct{ Num int32 }
type rpcMembersFiltered struct {
	Tags   map[string]string
	Status string
	Name   string
}
type rpcMembersResponse struct{ Members []rpcMember }
type rpcKey struct{ Key string }
type rpcKeyResponse struct {
	Messages map[string]string
	Keys     map[string]int
	NumNodes int
	NumErr   int
	NumResp  int
}
type rpcMonitor struct{ LogLevel string }
type rpcStream struct{ Type string }
type rpcStop struct{ Stop uint64 }
type rpcTags struct {
	Tags       map[string]string
	DeleteTags []string
}
type rpcQuery struct {
	FilterNodes []string
	FilterTags  map[string]string
	RequestAck  bool
	RelayFactor uint8
	Timeout     time.Duration
	Name        string
	Payload     []byte
}
type rpcRespond struct {
	ID      uint64
	Payload []byte
}
type rpcQueryRecord struct {
	Type    string
	From    string
	Payload []byte
}
type rpcLogRecord struct{ Log string }
type rpcUserEventRecord struct {
	Event    string
	LTime    uint64
	Name     string
	Payload  []byte
	Coalesce bool
}
type rpcQueryEventRecord struct {
	Event   string
	ID      uint64
	LTime   uint64
	Name    string
	Payload []byte
}
type rpcMember struct {
	Name        string
	Addr        net.IP
	Port        uint16
	Tags        map[string]string
	Status      string
	ProtocolMin uint8
	ProtocolMax uint8
	ProtocolCur uint8
	DelegateMin uint8
	DelegateMax uint8
	DelegateCur uint8
}
type rpcMemberEventRecord struct {
	Event   string
	Members []rpcMember
}

// rpcServer serves serf's RPC protocol on --rpc-addr. The accept loop is
// one of the agent's goroutines; the connections' goroutines are its own,
// and close ends them, waiting a bounded time (as the HTTP server's
// Shutdown does): a join of unreachable seeds may take longer than the
// agent should take to stop.
type rpcServer struct {
	a  *Agent
	ln net.Listener

	mu      sync.Mutex
	clients map[*rpcClient]struct{}
	closed  bool
	events  eventHub
	// conns counts the connections' goroutines; busy the requests being
	// handled, which close lets finish (a leave's answer) before it
	// closes the connections.
	conns sync.WaitGroup
	busy  sync.WaitGroup
}

// rpcMaxStreams bounds a connection's event streams and queries in flight.
const rpcMaxStreams = 16

// rpcHandshakeTimeout is how long a new connection may take to shake
// hands (and authenticate): idle connections do not hold the slots.
const rpcHandshakeTimeout = 10 * time.Second

// rpcCloseWait bounds how long close waits for requests and streams.
const rpcCloseWait = 5 * time.Second

// go starts f on a goroutine of the server's.
func (s *rpcServer) goConn(f func()) {
	s.conns.Add(1)
	go func() { defer s.conns.Done(); f() }()
}

func newRPCHandle() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{WriteExt: true}
	// serf's agent and client default to the old time format.
	h.TimeNotBuiltin = true
	h.MaxInitLen = 64 << 10
	return h
}

// rpcClient is one connection. Its reader handles requests in order; the
// streams write to it concurrently under wmu.
type rpcClient struct {
	conn    net.Conn
	limit   *limitReader
	dec     *codec.Decoder
	w       *bufio.Writer
	enc     *codec.Encoder
	wmu     sync.Mutex
	version int32
	authed  bool
	done    chan struct{} // closed when the connection ends

	// The reader's own: the monitor and streams by seq, each with its
	// stop channel.
	monitorSeq uint64
	monitor    chan struct{}
	streams    map[uint64]chan struct{}
	// queriesOut counts this client's queries still streaming answers.
	queriesOut atomic.Int32

	qmu     sync.Mutex
	queries map[uint64]membership.Event
	nextID  uint64
}

// limitReader fails a request that reads more than its allowance.
type limitReader struct {
	r    io.Reader
	left int
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, fmt.Errorf("request larger than %d bytes", rpcMaxRequest)
	}
	if len(p) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= n
	return n, err
}

// send writes one answer. A write that fails leaves half a message on the
// connection: the connection is closed, so the client sees it end rather
// than wait for the rest.
func (c *rpcClient) send(h rpcResponseHeader, body any) (err error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	defer func() {
		if err != nil {
			c.conn.Close()
		}
	}()
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.enc.Encode(&h); err != nil {
		return err
	}
	if body != nil {
		if err := c.enc.Encode(body); err != nil {
			return err
		}
	}
	return c.w.Flush()
}

// serve accepts clients until the listener closes. An accept error (out
// of file descriptors, say) is waited out, as net/http does.
func (s *rpcServer) serve() {
	var backoff time.Duration
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.a.log.Error().Err(err).Dur("retry_in", backoff).Msg("rpc: accept failed")
			if !pause(backoff, s.a.draining) {
				return
			}
			continue
		}
		backoff = 0
		h := newRPCHandle()
		c := &rpcClient{conn: conn, w: bufio.NewWriter(conn), done: make(chan struct{}),
			streams: map[uint64]chan struct{}{}, queries: map[uint64]membership.Event{}}
		c.limit = &limitReader{r: bufio.NewReader(conn)}
		c.dec = codec.NewDecoder(c.limit, h)
		c.enc = codec.NewEncoder(c.w, h)
		s.mu.Lock()
		if s.closed || len(s.clients) >= rpcMaxClients {
			s.mu.Unlock()
			s.a.log.Warn().Str("client", conn.RemoteAddr().String()).Msg("rpc: too many clients; closing the new one")
			conn.Close()
			continue
		}
		s.clients[c] = struct{}{}
		s.mu.Unlock()
		s.a.log.Debug().Str("client", conn.RemoteAddr().String()).Msg("rpc: client connected")
		s.goConn(func() { s.handle(c) })
	}
}

// close stops accepting, lets the requests being handled finish (a
// leave's answer is sent after the agent left), ends every connection and
// stream, and waits for their goroutines, each wait bounded.
func (s *rpcServer) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.ln.Close()
	s.mu.Unlock()
	waitBounded(&s.busy, rpcCloseWait)
	s.mu.Lock()
	for c := range s.clients {
		c.conn.Close()
	}
	s.mu.Unlock()
	if !waitBounded(&s.conns, rpcCloseWait) {
		s.a.log.Warn().Msg("rpc: requests still running at shutdown (a join of unreachable seeds?); not waiting for them")
	}
}

// waitBounded waits for wg at most d and reports whether it finished.
func waitBounded(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func (s *rpcServer) handle(c *rpcClient) {
	defer func() {
		c.conn.Close()
		close(c.done)
		s.mu.Lock()
		delete(s.clients, c)
		s.mu.Unlock()
	}()
	_ = c.conn.SetReadDeadline(time.Now().Add(rpcHandshakeTimeout))
	for {
		if c.version != 0 && (s.a.cfg.RPCAuth == "" || c.authed) {
			_ = c.conn.SetReadDeadline(time.Time{})
		}
		c.limit.left = rpcMaxRequest
		var h rpcRequestHeader
		if err := c.dec.Decode(&h); err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if !closed && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "EOF") {
				s.a.log.Warn().Err(err).Str("client", c.conn.RemoteAddr().String()).Msg("rpc: bad request header; closing the connection")
			}
			return
		}
		s.busy.Add(1)
		err := s.request(c, h)
		s.busy.Done()
		if err != nil {
			s.a.log.Warn().Err(err).Str("command", h.Command).Str("client", c.conn.RemoteAddr().String()).Msg("rpc: closing the connection")
			return
		}
	}
}

// decode reads the body of a request; a body that does not decode ends
// the connection, since the stream can no longer be followed.
func (c *rpcClient) decode(v any) error {
	if err := c.dec.Decode(v); err != nil {
		return fmt.Errorf("bad request body: %v", err)
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// request handles one command. An error return closes the connection.
func (s *rpcServer) request(c *rpcClient, h rpcRequestHeader) error {
	ok := rpcResponseHeader{Seq: h.Seq}
	fail := func(msg string) rpcResponseHeader { return rpcResponseHeader{Seq: h.Seq, Error: msg} }
	if h.Command != "handshake" && c.version == 0 {
		_ = c.send(fail(rpcHandshakeRequired), nil)
		return errors.New(rpcHandshakeRequired)
	}
	if s.a.cfg.RPCAuth != "" && !c.authed && h.Command != "auth" && h.Command != "handshake" {
		// serf answers without reading the body, and the next header is
		// then read from the body; vigil skips the body of the commands
		// that have one, so the connection stays in step.
		switch h.Command {
		case "members", "leave", "list-keys", "stats":
		default:
			var skip any
			if err := c.decode(&skip); err != nil {
				return err
			}
		}
		return c.send(fail(rpcAuthRequired), nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	switch h.Command {
	case "handshake":
		var req rpcHandshake
		if err := c.decode(&req); err != nil {
			return err
		}
		switch {
		case req.Version != 1:
			return c.send(fail(rpcUnsupportedVersion), nil)
		case c.version != 0:
			return c.send(fail(rpcDuplicateHandshake), nil)
		}
		c.version = req.Version
		return c.send(ok, nil)

	case "auth":
		var req rpcAuth
		if err := c.decode(&req); err != nil {
			return err
		}
		if subtle.ConstantTimeCompare([]byte(req.AuthKey), []byte(s.a.cfg.RPCAuth)) != 1 {
			s.a.log.Warn().Str("client", c.conn.RemoteAddr().String()).Msg("rpc: invalid authentication token")
			return c.send(fail(rpcInvalidAuthToken), nil)
		}
		c.authed = true
		return c.send(ok, nil)

	case "members", "members-filtered":
		var req rpcMembersFiltered
		if h.Command == "members-filtered" {
			if err := c.decode(&req); err != nil {
				return err
			}
		}
		ms, err := s.members(ctx, req)
		if ms == nil {
			ms = []rpcMember{}
		}
		return c.send(rpcResponseHeader{Seq: h.Seq, Error: errString(err)}, rpcMembersResponse{Members: ms})

	case "join":
		var req rpcJoin
		if err := c.decode(&req); err != nil {
			return err
		}
		n, err := s.a.mesh.JoinReplay(req.Existing, req.Replay)
		return c.send(rpcResponseHeader{Seq: h.Seq, Error: errString(err)}, rpcJoinResponse{Num: int32(n)})

	case "leave":
		s.a.log.Info().Msg("rpc: graceful leave asked for")
		err := s.a.leave(ctx)
		return c.send(rpcResponseHeader{Seq: h.Seq, Error: errString(err)}, nil)

	case "force-leave":
		var req rpcForceLeave
		if err := c.decode(&req); err != nil {
			return err
		}
		return c.send(rpcResponseHeader{Seq: h.Seq, Error: errString(s.a.mesh.ForceLeave(req.Node, req.Prune))}, nil)

	case "event":
		var req rpcEvent
		if err := c.decode(&req); err != nil {
			return err
		}
		return c.send(rpcResponseHeader{Seq: h.Seq, Error: errString(s.a.userEvent(req.Name, req.Payload, req.Coalesce))}, nil)

	case "tags":
		var req rpcTags
		if err := c.decode(&req); err != nil {
			return err
		}
		return c.send(rpcResponseHeader{Seq: h.Seq, Error: errString(s.a.setTags(ctx, req.Tags, req.DeleteTags))}, nil)

	case "install-key", "use-key", "remove-key", "list-keys":
		var req rpcKey
		if h.Command != "list-keys" {
			if err := c.decode(&req); err != nil {
				return err
			}
		}
		op := map[string]string{"install-key": "install", "use-key": "use", "remove-key": "remove", "list-keys": "list"}[h.Command]
		kr, err := s.a.keys(op, req.Key)
		resp := rpcKeyResponse{Messages: map[string]string{}, Keys: map[string]int{}}
		if kr != nil {
			resp = rpcKeyResponse{Messages: kr.Messages, Keys: kr.Keys, NumNodes: kr.NumNodes, NumErr: kr.NumErr, NumResp: kr.NumResp}
		}
		return c.send(rpcResponseHeader{Seq: h.Seq, Error: errString(err)}, resp)

	case "monitor":
		var req rpcMonitor
		if err := c.decode(&req); err != nil {
			return err
		}
		lvl, err := ParseMonitorLevel(req.LogLevel)
		if err != nil {
			return c.send(fail(err.Error()), nil)
		}
		if c.monitor != nil {
			return c.send(fail(rpcMonitorExists), nil)
		}
		sub := s.a.logs.subscribe(lvl)
		stop := make(chan struct{})
		c.monitor, c.monitorSeq = stop, h.Seq
		if err := c.send(ok, nil); err != nil {
			s.a.logs.unsubscribe(sub)
			return err
		}
		seq := h.Seq
		s.goConn(func() {
			defer s.a.logs.unsubscribe(sub)
			pump(sub.lines, stop, c.done, s.a.draining, func(line string) error {
				return c.send(rpcResponseHeader{Seq: seq}, rpcLogRecord{Log: line})
			})
		})
		return nil

	case "stream":
		var req rpcStream
		if err := c.decode(&req); err != nil {
			return err
		}
		fs, valid := parseStreamFilter(req.Type)
		if !valid {
			return c.send(fail(rpcInvalidFilter), nil)
		}
		if _, dup := c.streams[h.Seq]; dup {
			return c.send(fail(rpcStreamExists), nil)
		}
		if len(c.streams) >= rpcMaxStreams {
			return c.send(fail(fmt.Sprintf("at most %d event streams per connection", rpcMaxStreams)), nil)
		}
		stop := make(chan struct{})
		c.streams[h.Seq] = stop
		if err := c.send(ok, nil); err != nil {
			return err
		}
		sub := s.events.subscribe(fs)
		seq := h.Seq
		s.goConn(func() {
			defer func() {
				if n := s.events.unsubscribe(sub); n > 0 {
					s.a.log.Warn().Int("dropped", n).Msg("rpc: the client read the event stream too slowly; events were dropped")
				}
			}()
			pump(sub.events, stop, c.done, s.a.draining, func(ev membership.Event) error {
				return c.send(rpcResponseHeader{Seq: seq}, c.eventRecord(ev))
			})
		})
		return nil

	case "stop":
		var req rpcStop
		if err := c.decode(&req); err != nil {
			return err
		}
		if c.monitor != nil && c.monitorSeq == req.Stop {
			close(c.monitor)
			c.monitor = nil
		}
		if stop, found := c.streams[req.Stop]; found {
			close(stop)
			delete(c.streams, req.Stop)
		}
		return c.send(ok, nil)

	case "query":
		var req rpcQuery
		if err := c.decode(&req); err != nil {
			return err
		}
		if c.queriesOut.Load() >= rpcMaxStreams {
			return c.send(fail(fmt.Sprintf("at most %d queries in flight per connection", rpcMaxStreams)), nil)
		}
		qr, err := s.a.query(req.Name, req.Payload, membership.QueryParams{
			FilterNodes: req.FilterNodes, FilterTags: req.FilterTags, RequestAck: req.RequestAck,
			RelayFactor: req.RelayFactor, Timeout: req.Timeout,
		})
		if err := c.send(rpcResponseHeader{Seq: h.Seq, Error: errString(err)}, nil); err != nil || qr == nil {
			return err
		}
		seq := h.Seq
		c.queriesOut.Add(1)
		s.goConn(func() {
			defer c.queriesOut.Add(-1)
			streamQuery(qr, c.done, s.a.draining, func(r rpcQueryRecord) error { return c.send(rpcResponseHeader{Seq: seq}, r) })
		})
		return nil

	case "respond":
		var req rpcRespond
		if err := c.decode(&req); err != nil {
			return err
		}
		c.qmu.Lock()
		ev, found := c.queries[req.ID]
		delete(c.queries, req.ID)
		c.qmu.Unlock()
		err := errors.New(rpcInvalidQueryID)
		if found {
			err = ev.Respond(req.Payload)
		}
		return c.send(rpcResponseHeader{Seq: h.Seq, Error: errString(err)}, nil)

	case "stats":
		st, err := s.a.stats(ctx)
		if err != nil {
			return c.send(fail(err.Error()), map[string]map[string]string{})
		}
		return c.send(ok, st)

	case "get-coordinate":
		var req rpcCoordinateRequest
		if err := c.decode(&req); err != nil {
			return err
		}
		// vigil runs serf without network coordinates (memberlist's ping
		// delegate carries vigil's load report): no node has one, which is
		// what serf answers for a node it has no coordinate of.
		return c.send(ok, rpcCoordinateResponse{Ok: false})
	}
	// An unknown command may have a body that cannot be skipped: as serf,
	// answer and close.
	_ = c.send(fail(rpcUnsupportedCommand), nil)
	return fmt.Errorf("unknown command %q", h.Command)
}

// pump sends what comes on ch until stop, gone or draining is closed or a
// send fails.
func pump[T any](ch <-chan T, stop, gone, draining <-chan struct{}, send func(T) error) {
	for {
		select {
		case v := <-ch:
			if send(v) != nil {
				return
			}
		case <-stop:
			return
		case <-gone:
			return
		case <-draining:
			return
		}
	}
}

// streamQuery sends each ack and answer of a query as it comes, then
// "done" at its deadline, as serf's query response stream does.
func streamQuery(qr *membership.QueryResponse, gone, draining <-chan struct{}, send func(rpcQueryRecord) error) {
	acks, answers := qr.AckCh(), qr.ResponseCh()
	deadline := time.NewTimer(time.Until(qr.Deadline()))
	defer deadline.Stop()
	for {
		select {
		case from, open := <-acks:
			if !open {
				acks = nil
				continue
			}
			if send(rpcQueryRecord{Type: "ack", From: from}) != nil {
				return
			}
		case r, open := <-answers:
			if !open {
				answers = nil
				continue
			}
			if send(rpcQueryRecord{Type: "response", From: r.From, Payload: r.Payload}) != nil {
				return
			}
		case <-deadline.C:
			_ = send(rpcQueryRecord{Type: "done"})
			return
		case <-gone:
			return
		case <-draining:
			return
		}
	}
}

// eventRecord is ev as serf's stream sends it; a query is registered so
// that the client can respond to it by ID.
func (c *rpcClient) eventRecord(ev membership.Event) any {
	switch ev.Type {
	case membership.User:
		return rpcUserEventRecord{Event: "user", LTime: ev.LTime, Name: ev.Name, Payload: ev.Payload, Coalesce: ev.Coalesce}
	case membership.Query:
		c.qmu.Lock()
		c.nextID++
		id := c.nextID
		now := time.Now()
		for qid, q := range c.queries {
			if now.After(q.Deadline) {
				delete(c.queries, qid)
			}
		}
		c.queries[id] = ev
		c.qmu.Unlock()
		return rpcQueryEventRecord{Event: "query", ID: id, LTime: ev.LTime, Name: ev.Name, Payload: ev.Payload}
	}
	status := map[membership.EventType]string{
		membership.MemberJoin: "alive", membership.MemberRecovered: "alive", membership.MemberUpdate: "alive",
		membership.MemberLeave: "left", membership.MemberFailed: "failed",
	}[ev.Type]
	ms := make([]rpcMember, 0, len(ev.Members))
	for _, m := range ev.Members {
		st := status
		if st == "" {
			st = m.Status
		}
		ms = append(ms, toRPCMember(m, st))
	}
	return rpcMemberEventRecord{Event: serfEventName(ev), Members: ms}
}

func toRPCMember(m membership.Member, status string) rpcMember {
	p := m.Protocol
	return rpcMember{Name: m.Name, Addr: m.Addr, Port: m.Port, Tags: m.Tags, Status: status,
		ProtocolMin: p[0], ProtocolMax: p[1], ProtocolCur: p[2], DelegateMin: p[3], DelegateMax: p[4], DelegateCur: p[5]}
}

// serfStatus says an agreed status in serf's words (alive, leaving, left,
// failed): a suspect is still a member, so alive; a member gossip shows
// but the view has not added yet has its gossip status.
func serfStatus(agreed, gossip string) string {
	switch agreed {
	case "alive", "suspect":
		if gossip == "leaving" {
			return "leaving"
		}
		return "alive"
	case "failed", "left":
		return agreed
	}
	switch gossip {
	case "alive", "leaving", "left", "failed":
		return gossip
	}
	return "none"
}

// members lists the members for the RPC protocol, filtered as serf does:
// each filter is a regular expression anchored at both ends, the status
// one matched against the serf status.
func (s *rpcServer) members(ctx context.Context, f rpcMembersFiltered) ([]rpcMember, error) {
	compile := func(what, expr string) (*regexp.Regexp, error) {
		re, err := regexp.Compile("^" + expr + "$")
		if err != nil {
			return nil, fmt.Errorf("Failed to compile regex: %v (%s filter)", err, what)
		}
		return re, nil
	}
	tagRe := map[string]*regexp.Regexp{}
	for k, expr := range f.Tags {
		re, err := compile("tag "+k, expr)
		if err != nil {
			return nil, err
		}
		tagRe[k] = re
	}
	statusRe, err := compile("status", f.Status)
	if err != nil {
		return nil, err
	}
	nameRe, err := compile("name", f.Name)
	if err != nil {
		return nil, err
	}
	var infos []MemberInfo
	var gossip map[string]membership.Member
	if err := s.a.inLoop(ctx, func() {
		infos = s.a.det.members()
		gossip = map[string]membership.Member{}
		for _, m := range s.a.mesh.Members() {
			gossip[m.Name] = m
		}
	}); err != nil {
		return nil, err
	}
	var out []rpcMember
next:
	for _, info := range infos {
		m, known := gossip[info.Name]
		if !known {
			m = membership.Member{Name: info.Name, Tags: map[string]string{}}
			setAddr(&m, info.Addr)
		}
		st := serfStatus(info.Status, info.Gossip)
		for k, re := range tagRe {
			if !re.MatchString(m.Tags[k]) {
				continue next
			}
		}
		if f.Status != "" && !statusRe.MatchString(st) || f.Name != "" && !nameRe.MatchString(m.Name) {
			continue
		}
		out = append(out, toRPCMember(m, st))
	}
	return out, nil
}

// stats is serf's `info`: agent, runtime, serf, tags and event handlers,
// and vigil's own section.
func (a *Agent) stats(ctx context.Context) (map[string]map[string]string, error) {
	var epoch uint64
	var counts map[string]int
	handlers := map[string]string{}
	if err := a.inLoop(ctx, func() {
		epoch = a.det.eng.Epoch()
		counts = map[string]int{}
		for _, m := range a.det.members() {
			counts[m.Status]++
		}
		// The loop's: a reload changes them.
		for _, h := range a.cfg.EventHandlers {
			for _, f := range h.Filters {
				handlers[f.Event+":"+f.Name] = h.Script
			}
		}
	}); err != nil {
		return nil, err
	}
	local := a.mesh.Local()
	v := map[string]string{
		"epoch": strconv.FormatUint(epoch, 10), "cluster": a.clusterID(), "boot": local.Tags[membership.BootTag],
		"version": Version, "quorum": a.cfg.Quorum, "council_size": strconv.Itoa(a.cfg.CouncilSize),
	}
	for st, n := range counts {
		v["members_"+st] = strconv.Itoa(n)
	}
	return map[string]map[string]string{
		"agent": {"name": a.cfg.NodeName},
		"runtime": {
			"os": runtime.GOOS, "arch": runtime.GOARCH, "version": runtime.Version(),
			"max_procs": strconv.Itoa(runtime.GOMAXPROCS(0)), "goroutines": strconv.Itoa(runtime.NumGoroutine()),
			"cpu_count": strconv.Itoa(runtime.NumCPU()),
		},
		"serf":           a.mesh.Stats(),
		"tags":           local.Tags,
		"event_handlers": handlers,
		"vigil":          v,
	}, nil
}
