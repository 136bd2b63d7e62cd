package membership

import (
	"fmt"
	"time"

	"github.com/hashicorp/serf/serf"
)

// ConsensusQuery names the consensus messages in Inbound. They travel
// point to point (Send), not as serf queries: a query is gossiped to the
// whole cluster, so its cost grows with N for every message.
const ConsensusQuery = "vigil-consensus"

// JournalQuery asks every agent for its journal entry of one recovery job
// (see Ask).
const JournalQuery = "vigil-journal"

// JournalPutQuery carries an executor's journal entry of a job to every
// agent; an agent that takes it answers "ok". The executor repeats it
// until a quorum has taken it, so a takeover that asks a quorum learns it.
const JournalPutQuery = "vigil-journal-put"

// MaxMessage is the largest consensus message the mesh carries: with its
// frame, it stays in one datagram under the path MTU.
const MaxMessage = 1024

// Inbound is a message that arrived: a query from a peer (which may be
// answered once with Reply) or an answer to one of ours. Query is the serf
// query name: ConsensusQuery or JournalQuery.
type Inbound struct {
	Query   string
	From    string
	Payload []byte
	reply   func([]byte) error
}

// CanReply reports whether the message came as a query that is still
// waiting for its one answer.
func (in *Inbound) CanReply() bool { return in.reply != nil }

// Reply answers the query the message came in; only once.
func (in *Inbound) Reply(b []byte) error {
	if in.reply == nil {
		return fmt.Errorf("membership: message from %s cannot be answered", in.From)
	}
	r := in.reply
	in.reply = nil
	return r(b)
}

// TakeInbound returns the consensus messages waiting, oldest first.
func (m *Mesh) TakeInbound() []Inbound {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.inbound
	m.inbound = nil
	return q
}

// Send delivers one consensus message to one node, point to point on the
// gossip port (see direct.go), and repeats it until the node acknowledges
// it or directTimeout passes: call Resend regularly. It does not block.
func (m *Mesh) Send(to string, payload []byte) error {
	return m.direct.send(to, payload, time.Now())
}

// Resend repeats the messages whose acknowledgement is overdue.
func (m *Mesh) Resend() { m.direct.resend(time.Now()) }

// Unacked reports whether a point-to-point message waits for its ack: the
// caller calls Resend every consensus tick until none does.
func (m *Mesh) Unacked() bool { return m.direct.pending() > 0 }

// DirectStats counts the point-to-point messages so far.
func (m *Mesh) DirectStats() DirectStats { return m.direct.counts() }

// offerInbound queues a message (from the direct transport, or a journal
// query), unless the queue is full: then it reports false.
func (m *Mesh) offerInbound(in Inbound) bool {
	m.mu.Lock()
	if len(m.inbound) >= maxInbound {
		m.mu.Unlock()
		return false
	}
	m.inbound = append(m.inbound, in)
	m.mu.Unlock()
	m.wake()
	return true
}

// addrOf is where a member's gossip, and so its direct messages, go.
func (m *Mesh) addrOf(name string) (string, bool) {
	if a, ok := m.addrs.get(name); ok {
		return a, true
	}
	// Not yet seen in an event (the agent knows it from its view log):
	// ask serf.
	for _, sm := range m.serf.Members() {
		if sm.Name == name {
			m.addrs.set(sm.Name, sm.Addr, sm.Port)
			return m.addrs.get(name)
		}
	}
	return "", false
}

// Answer is one agent's answer to Ask; an empty Payload says it has
// nothing to tell.
type Answer struct {
	From    string
	Payload []byte
}

// Ask sends a query to every agent and returns the answers that came
// within timeout, empty ones included, so the caller can tell who
// answered. Gossip may miss some agents. It blocks.
func (m *Mesh) Ask(name string, payload []byte, timeout time.Duration) ([]Answer, error) {
	qr, err := m.query(name, payload, &serf.QueryParam{Timeout: timeout})
	if err != nil {
		return nil, err
	}
	var out []Answer
	for r := range qr.ResponseCh() {
		out = append(out, Answer{From: r.From, Payload: append([]byte(nil), r.Payload...)})
	}
	return out, nil
}

// query starts a serf query. serf stamps a query with its query clock
// without advancing it; the clock moves on only when the query is handled
// locally, inside Query. Two queries started at once can therefore get the
// same Lamport time, and serf keys its pending queries by that time: the
// second replaces the first, every answer to the first is dropped ("query
// reply ID mismatch"), and the first one's expiry removes the second. One
// query at a time gives each its own time.
func (m *Mesh) query(name string, payload []byte, p *serf.QueryParam) (*serf.QueryResponse, error) {
	m.queryMu.Lock()
	defer m.queryMu.Unlock()
	return m.serf.Query(name, payload, p)
}
