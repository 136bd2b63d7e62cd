package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"time"
)

// Boot is one start of an agent.
type Boot struct {
	ID      string    `json:"id"`
	Node    string    `json:"node"`
	Started time.Time `json:"started"`
}

// MemberRecord is one change seen for a member.
type MemberRecord struct {
	Time time.Time `json:"time"`
	Node string    `json:"node"`
	Addr string    `json:"addr"`
	Boot string    `json:"boot"`
	// Event is what happened: join, leave, failed, update, reap,
	// recovered, … (not interpreted here).
	Event string `json:"event"`
	// Source is "serf" (gossip evidence) or "view" (an agreed change).
	Source string `json:"source"`
}

// EventKey identifies a serf user event.
type EventKey struct {
	Name    string
	LTime   uint64
	Payload []byte
}

// EpochBytes is one decided view-log entry.
type EpochBytes struct {
	Epoch uint64
	Bytes []byte
}

// IDBytes is one recovery-journal entry.
type IDBytes struct {
	ID    string
	Bytes []byte
}

// key is LTime (8 bytes, big-endian, so keys sort by LTime) followed by
// sha256(uvarint(len(name)) ‖ name ‖ payload); the length prefix keeps
// ("ab","c") and ("a","bc") apart.
func (k EventKey) key() []byte {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(k.Name)))])
	h.Write([]byte(k.Name))
	h.Write(k.Payload)
	out := make([]byte, 8, eventKeyLen)
	binary.BigEndian.PutUint64(out, k.LTime)
	return h.Sum(out)
}

func encodeJSON(v any) ([]byte, error) { return json.Marshal(v) }
