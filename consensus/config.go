package consensus

import (
	"fmt"
	"hash/fnv"
	"math/rand"
	"slices"
)

// Judge gives this node's own verdict on a proposed change. It is called
// synchronously from Step when a prepare arrives: for a removal it answers
// "is the subject unreachable from here", for an add "is the subject
// reachable from here". The caller makes its evidence fresh before it steps
// the message; Verdict must not call back into the Node.
type Judge interface {
	Verdict(c Change) bool
}

// JudgeFunc adapts a function to Judge.
type JudgeFunc func(c Change) bool

// Verdict calls f.
func (f JudgeFunc) Verdict(c Change) bool { return f(c) }

// Quorum selects the quorum rule. Every node of a cluster must use the same.
type Quorum uint8

const (
	// Majority: q = ⌊N/2⌋+1.
	Majority Quorum = iota
	// TwoThirds: q = ⌊(2N−1)/3⌋+1, a stricter vote.
	TwoThirds
)

func (q Quorum) String() string {
	if q == TwoThirds {
		return "two-thirds"
	}
	return "majority"
}

// QuorumSize returns the quorum for n acceptors. For both rules 2q > n, so
// any two quorums of the same acceptor set share an acceptor (see doc.go).
func QuorumSize(n int, rule Quorum) int {
	if n <= 0 {
		return 1
	}
	if rule == TwoThirds {
		return (2*n-1)/3 + 1
	}
	return n/2 + 1
}

// Config configures a Node. Durations are in ticks: the caller calls Tick at
// a steady cadence (the agent uses its gossip interval).
type Config struct {
	// ID is this node's member name (≤ MaxNameLen bytes).
	ID string
	// Boot is this incarnation's boot id: a Fresh node becomes a voter
	// when the view adds ID@Boot.
	Boot string
	// Quorum is the quorum rule; it must be the same on every node.
	Quorum Quorum
	// CouncilSize bounds the acceptors of an instance: views with more
	// members use a council of CouncilSize chosen by rendezvous hashing of
	// the names (Acceptors). 0 means all members (still capped at
	// MaxAcceptors). Must
	// be the same on every node. 0 ≤ CouncilSize ≤ MaxAcceptors.
	CouncilSize int
	// ProposalTimeout is how many ticks a phase waits for a quorum before
	// the proposer backs off and retries with a higher ballot; also how long
	// an acceptor waits on an accepted but undecided value before it drives
	// the instance itself. ≥ 1.
	ProposalTimeout int
	// BackoffMin and BackoffMax bound the random backoff, in ticks, after a
	// rejected or timed-out ballot. 1 ≤ BackoffMin ≤ BackoffMax.
	BackoffMin, BackoffMax int
	// CatchupInterval is how many ticks pass between anti-entropy requests
	// to a random peer, and how long a catch-up request is outstanding. ≥ 1.
	CatchupInterval int
	// StaleAccepted is how many ticks an accepted value may wait undecided
	// before it is stale (a value restored after a restart is stale at
	// once): its acceptor no longer drives it, and a proposer that hears a
	// quorum of promises without stale values ignores it (see
	// proposal.tryAccept). 0: values never go stale. ≥ 0.
	StaleAccepted int
	// TellAll: in a view of at most TellAll members the proposer sends
	// its decision to every member, so all learn it one hop after the
	// quorum; in a larger one it tells the acceptors, the subject and the
	// executor, and the others learn by catch-up (the agent's
	// announcement starts it at once). 0: never every member. ≥ 0.
	TellAll int
	// LogTail is how many recent decisions the node keeps to serve
	// catch-up; peers further behind get a snapshot. ≥ 1.
	LogTail int
	// Rand is the only source of randomness (backoff, peer choice). It is
	// used from Step/Tick only, never concurrently. Required.
	Rand *rand.Rand
	// Verdict judges proposals in phase 1. Required.
	Verdict Judge
	// Note, if set, describes this node's evidence about a change it
	// agrees with, in at most MaxNote bytes (longer is cut): it travels
	// with the promise and, for the first MaxNotes agreeing acceptors, in
	// the decided value, so the evidence outlives the verdict. The
	// proposer adds its own. Like Verdict, it must not call the Node.
	Note func(c Change) []byte
}

// DefaultConfig returns defaults for everything but ID, Rand and Verdict.
func DefaultConfig() Config {
	return Config{
		Quorum:          Majority,
		ProposalTimeout: 10,
		BackoffMin:      1,
		BackoffMax:      10,
		CatchupInterval: 20,
		StaleAccepted:   50,
		LogTail:         1024,
		TellAll:         128,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.ID == "" || len(c.ID) > MaxNameLen:
		return fmt.Errorf("%w: Config.ID %q must be 1..%d bytes", ErrInvalid, c.ID, MaxNameLen)
	case c.Quorum != Majority && c.Quorum != TwoThirds:
		return fmt.Errorf("%w: Config.Quorum %d unknown", ErrInvalid, c.Quorum)
	case c.CouncilSize < 0 || c.CouncilSize > MaxAcceptors:
		return fmt.Errorf("%w: Config.CouncilSize %d must be 0..%d", ErrInvalid, c.CouncilSize, MaxAcceptors)
	case c.ProposalTimeout < 1:
		return fmt.Errorf("%w: Config.ProposalTimeout %d must be ≥ 1 tick", ErrInvalid, c.ProposalTimeout)
	case c.BackoffMin < 1:
		return fmt.Errorf("%w: Config.BackoffMin %d must be ≥ 1 tick", ErrInvalid, c.BackoffMin)
	case c.BackoffMax < c.BackoffMin:
		return fmt.Errorf("%w: Config.BackoffMax %d is below Config.BackoffMin %d", ErrInvalid, c.BackoffMax, c.BackoffMin)
	case c.CatchupInterval < 1:
		return fmt.Errorf("%w: Config.CatchupInterval %d must be ≥ 1 tick", ErrInvalid, c.CatchupInterval)
	case c.StaleAccepted < 0:
		return fmt.Errorf("%w: Config.StaleAccepted %d must be ≥ 0", ErrInvalid, c.StaleAccepted)
	case c.TellAll < 0:
		return fmt.Errorf("%w: Config.TellAll %d must be ≥ 0", ErrInvalid, c.TellAll)
	case c.LogTail < 1:
		return fmt.Errorf("%w: Config.LogTail %d must be ≥ 1", ErrInvalid, c.LogTail)
	case c.Rand == nil:
		return fmt.Errorf("%w: Config.Rand must be set", ErrInvalid)
	case c.Verdict == nil:
		return fmt.Errorf("%w: Config.Verdict must be set", ErrInvalid)
	}
	return nil
}

// Acceptors returns the acceptors of the instance at v.Epoch, sorted by name:
// all members, or when the view has more than the council size (councilSize,
// or MaxAcceptors when it is 0) the council chosen by rendezvous hashing of
// the members' names. Every node computes the same set from the same view.
// The council is stable: it changes only when a council member leaves the
// view (the next name by hash takes its seat) or a member whose name ranks
// higher joins, so the leases it grants (LeaseExpiry) and the pings that
// renew them do not move with every decision.
func Acceptors(v View, councilSize int) []Member {
	k := councilSize
	if k <= 0 || k > MaxAcceptors {
		k = MaxAcceptors
	}
	if len(v.Members) <= k {
		return v.Members
	}
	type scored struct {
		score uint64
		i     int
	}
	s := make([]scored, len(v.Members))
	for i, m := range v.Members {
		h := fnv.New64a()
		h.Write([]byte(m.Name))
		s[i] = scored{mix64(h.Sum64()), i}
	}
	slices.SortFunc(s, func(a, b scored) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return a.i - b.i
	})
	idx := make([]int, k)
	for i := range idx {
		idx[i] = s[i].i
	}
	slices.Sort(idx)
	out := make([]Member, k)
	for i, j := range idx {
		out[i] = v.Members[j]
	}
	return out
}

// mix64 is the splitmix64 finalizer; it spreads FNV's weak low bits.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
