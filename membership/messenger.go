package membership

import (
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/serf/serf"
)

// ConsensusQuery is the serf query that carries consensus messages. serf
// owns memberlist's delegate and drops user messages it does not know, so
// queries are the way to reach one node: FilterNodes names it, the gossip
// keyring encrypts it, and its answer comes straight back over UDP.
const ConsensusQuery = "vigil-consensus"

// JournalQuery asks every agent for its journal entry of one recovery job
// (see Ask).
const JournalQuery = "vigil-journal"

// JournalPutQuery carries an executor's journal entry of a job to every
// agent; an agent that takes it answers "ok". The executor repeats it
// until a quorum has taken it, so a takeover that asks a quorum learns it.
const JournalPutQuery = "vigil-journal-put"

// MaxMessage is the largest consensus message the mesh carries: it must
// fit, with the query's own header and filter, in one gossip packet.
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

func (m *Mesh) enqueueInbound(in Inbound) {
	m.mu.Lock()
	m.inbound = append(m.inbound, in)
	m.mu.Unlock()
	m.wake()
}

// Exchange sends one consensus message to one node as a serf query and
// queues its answer. A query travels by gossip, and gossip gives each
// broadcast only RetransmitMult·⌈log10(N+1)⌉ transmissions to random
// members (2 with the local profile), dead ones included for
// GossipToTheDeadTime: a query may never reach its one addressee. So every
// consensus query is answered (an empty answer is an ack), and Exchange
// sends the message again every retry until an answer comes or timeout
// passes. Consensus messages are idempotent. It blocks: run it on a
// goroutine; stop ends it early.
func (m *Mesh) Exchange(to string, payload []byte, retry, timeout time.Duration, stop <-chan struct{}) error {
	if len(payload) > MaxMessage {
		return fmt.Errorf("membership: consensus message of %d bytes exceeds %d", len(payload), MaxMessage)
	}
	deadline := time.Now().Add(timeout)
	answers := make(chan serf.NodeResponse, 4)
	var open []*serf.QueryResponse
	var wg sync.WaitGroup
	defer func() {
		for _, qr := range open {
			qr.Close()
		}
		wg.Wait()
	}()
	var lastErr error
	for time.Now().Before(deadline) {
		qr, err := m.query(ConsensusQuery, payload, &serf.QueryParam{
			FilterNodes: []string{to},
			Timeout:     time.Until(deadline),
		})
		if err != nil {
			lastErr = err
		} else {
			open = append(open, qr)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := range qr.ResponseCh() {
					select {
					case answers <- r:
					default:
					}
				}
			}()
		}
		t := time.NewTimer(min(retry, time.Until(deadline)))
		select {
		case r := <-answers:
			t.Stop()
			if r.From == to && len(r.Payload) > 0 {
				m.enqueueInbound(Inbound{Query: ConsensusQuery, From: r.From, Payload: append([]byte(nil), r.Payload...)})
			}
			return nil
		case <-stop:
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	if lastErr != nil {
		return fmt.Errorf("send to %s: %w", to, lastErr)
	}
	return fmt.Errorf("send to %s: no answer within %v", to, timeout)
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
