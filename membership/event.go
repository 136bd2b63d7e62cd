package membership

import (
	"net"
	"time"
)

// EventType names what happened, with serf's event names so that serf
// handler scripts keep working.
type EventType int

// The event types. The member events mirror serf's; MemberRecovered is
// vigil's own: a node that had been declared failed is back in the view.
const (
	MemberJoin EventType = iota + 1
	MemberLeave
	MemberFailed
	MemberUpdate
	MemberReap
	MemberRecovered
	User
	// Query is a serf query from another agent (or this one) that the
	// operator's query handlers and RPC streams may answer.
	Query
)

var eventNames = map[EventType]string{
	MemberJoin:      "member-join",
	MemberLeave:     "member-leave",
	MemberFailed:    "member-failed",
	MemberUpdate:    "member-update",
	MemberReap:      "member-reap",
	MemberRecovered: "member-recovered",
	User:            "user",
	Query:           "query",
}

// String returns the serf name of the event type ("member-join", "user", ...).
func (t EventType) String() string {
	if s, ok := eventNames[t]; ok {
		return s
	}
	return "unknown"
}

// Member is one node as an event or a listing shows it.
type Member struct {
	Name   string
	Addr   net.IP
	Port   uint16
	Tags   map[string]string
	Status string // serf's status: alive, leaving, left, failed
	// Protocol holds memberlist's and serf's protocol versions as serf
	// reports them: min, max, current of each.
	Protocol [6]uint8
}

// Event is a membership change or a user event, copied out of serf's event
// stream so that nothing downstream holds serf's types.
type Event struct {
	Type EventType
	Time time.Time // when this agent received it

	// Members is set for the member events.
	Members []Member

	// Name, Payload, LTime and Coalesce are set for user events; Name,
	// Payload and LTime for queries.
	Name     string
	Payload  []byte
	LTime    uint64
	Coalesce bool

	// Respond answers a query (once; later calls fail) before Deadline.
	Respond  func([]byte) error
	Deadline time.Time
}
