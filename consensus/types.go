package consensus

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// Size caps. They bound every string the codec accepts, so that a Decision
// always fits the 400-byte budget of a serf user event payload and every
// Message fits a 1 KiB serf query.
const (
	MaxNameLen    = 64   // bytes in a member name (also Config.ID, Executor, Ballot.Node)
	MaxBootLen    = 32   // bytes in a boot id
	MaxAddrLen    = 64   // bytes in an address ("host:port")
	MaxAcceptors  = 128  // acceptors of one instance; larger views always use a council
	MaxViewSize   = 8192 // members of one view
	MaxMessageLen = 1024 // encoded bytes of one Message (serf query limit)
	// MaxDecision bounds one encoded Decision, notes included. The agent
	// announces decisions as serf user events (512 bytes with the name and
	// msgpack's framing) without the notes: at most 399 bytes then.
	MaxDecision = 490
	// MaxNote bounds one acceptor's note of its evidence, and MaxNotes the
	// notes a decided value carries (the first agreeing acceptors').
	MaxNote  = 11
	MaxNotes = 6
)

// Sentinel errors. Callers match them with errors.Is.
var (
	ErrNotMember     = errors.New("consensus: not a member of the current view")
	ErrInFlight      = errors.New("consensus: a proposal is already in flight")
	ErrNotApplicable = errors.New("consensus: change does not apply to the view")
	ErrInvalid       = errors.New("consensus: invalid value")
	ErrStale         = errors.New("consensus: stale message")
	ErrFuture        = errors.New("consensus: message from a future epoch")
	ErrNotAcceptor   = errors.New("consensus: not an acceptor of this instance")
	ErrMisdirected   = errors.New("consensus: message addressed to another node")
	ErrConflict      = errors.New("consensus: decision conflicts with the log")
	ErrInconsistent  = errors.New("consensus: persisted state is inconsistent")
	ErrTooLarge      = errors.New("consensus: encoded message exceeds its limit")
	ErrMalformed     = errors.New("consensus: malformed encoding")
)

// Member is one agent incarnation: a name and the boot id of the process.
type Member struct {
	Name string
	Boot string
	Addr string
}

func (m Member) String() string { return m.Name + "@" + m.Boot }

func (m Member) validate() error {
	switch {
	case m.Name == "" || len(m.Name) > MaxNameLen:
		return fmt.Errorf("%w: member name %q", ErrInvalid, m.Name)
	case len(m.Boot) > MaxBootLen:
		return fmt.Errorf("%w: boot of %q longer than %d bytes", ErrInvalid, m.Name, MaxBootLen)
	case len(m.Addr) > MaxAddrLen:
		return fmt.Errorf("%w: addr of %q longer than %d bytes", ErrInvalid, m.Name, MaxAddrLen)
	}
	return nil
}

// View is the agreed membership at an epoch. Members are sorted by name and
// names are unique. Epoch 0 is "no view yet" (a node that has not joined).
type View struct {
	Epoch   uint64
	Members []Member
}

// Bootstrap returns the first view of a new cluster: epoch 1, one member.
func Bootstrap(self Member) View {
	return View{Epoch: 1, Members: []Member{self}}
}

func (v View) find(name string) (int, bool) {
	return slices.BinarySearchFunc(v.Members, name, func(m Member, n string) int {
		switch {
		case m.Name < n:
			return -1
		case m.Name > n:
			return 1
		}
		return 0
	})
}

// Contains reports whether name is a member of v.
func (v View) Contains(name string) bool {
	_, ok := v.find(name)
	return ok
}

// Lookup returns the member called name.
func (v View) Lookup(name string) (Member, bool) {
	if i, ok := v.find(name); ok {
		return v.Members[i], true
	}
	return Member{}, false
}

// Clone returns a deep copy of v.
func (v View) Clone() View {
	return View{Epoch: v.Epoch, Members: slices.Clone(v.Members)}
}

// Equal reports whether v and o are the same view.
func (v View) Equal(o View) bool {
	return v.Epoch == o.Epoch && slices.Equal(v.Members, o.Members)
}

// Validate checks that members are sorted, unique and within the size caps.
func (v View) Validate() error {
	if len(v.Members) > MaxViewSize {
		return fmt.Errorf("%w: view has %d members, more than %d", ErrInvalid, len(v.Members), MaxViewSize)
	}
	if v.Epoch == 0 && len(v.Members) > 0 {
		return fmt.Errorf("%w: view at epoch 0 has members", ErrInvalid)
	}
	for i, m := range v.Members {
		if err := m.validate(); err != nil {
			return err
		}
		if i > 0 && v.Members[i-1].Name >= m.Name {
			return fmt.Errorf("%w: view members not sorted and unique at %q", ErrInvalid, m.Name)
		}
	}
	return nil
}

// Apply returns the view of epoch v.Epoch+1 that c produces, or
// ErrNotApplicable. An Add of a name already present with another boot
// replaces that member: a restarted agent rejoins in one decision.
func (v View) Apply(c Change) (View, error) {
	if err := c.Validate(); err != nil {
		return View{}, err
	}
	if v.Epoch == 0 {
		return View{}, fmt.Errorf("%w: no view yet", ErrNotApplicable)
	}
	i, ok := v.find(c.Member.Name)
	out := View{Epoch: v.Epoch + 1}
	switch c.Kind {
	case Remove:
		if !ok || v.Members[i].Boot != c.Member.Boot {
			return View{}, fmt.Errorf("%w: %s is not a member", ErrNotApplicable, c.Member)
		}
		if len(v.Members) == 1 {
			return View{}, fmt.Errorf("%w: removing the last member", ErrNotApplicable)
		}
		out.Members = make([]Member, 0, len(v.Members)-1)
		out.Members = append(out.Members, v.Members[:i]...)
		out.Members = append(out.Members, v.Members[i+1:]...)
	case Add:
		if ok && v.Members[i].Boot == c.Member.Boot {
			return View{}, fmt.Errorf("%w: %s is already a member", ErrNotApplicable, c.Member)
		}
		if !ok && len(v.Members) >= MaxViewSize {
			return View{}, fmt.Errorf("%w: view is full", ErrNotApplicable)
		}
		out.Members = make([]Member, 0, len(v.Members)+1)
		out.Members = append(out.Members, v.Members[:i]...)
		out.Members = append(out.Members, c.Member)
		if ok {
			i++ // replace the old incarnation
		}
		out.Members = append(out.Members, v.Members[i:]...)
	}
	return out, nil
}

// Ballot numbers a proposal attempt. Ballots are totally ordered by
// (Round, Node); the zero Ballot is lower than every real one.
type Ballot struct {
	Round uint64
	Node  string
}

// Less reports whether b orders before o.
func (b Ballot) Less(o Ballot) bool {
	if b.Round != o.Round {
		return b.Round < o.Round
	}
	return b.Node < o.Node
}

// IsZero reports whether b is the zero ballot (no ballot).
func (b Ballot) IsZero() bool { return b.Round == 0 && b.Node == "" }

func (b Ballot) String() string { return strconv.FormatUint(b.Round, 10) + "." + b.Node }

// Kind says whether a Change adds or removes a member.
type Kind uint8

const (
	Add    Kind = 1
	Remove Kind = 2
)

func (k Kind) String() string {
	switch k {
	case Add:
		return "add"
	case Remove:
		return "remove"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Reason says why a Change is proposed.
type Reason uint8

const (
	Failed Reason = 1 // Remove: the subject was found unreachable
	Left   Reason = 2 // Remove: the subject left on purpose
	Joined Reason = 3 // Add
)

func (r Reason) String() string {
	switch r {
	case Failed:
		return "failed"
	case Left:
		return "left"
	case Joined:
		return "joined"
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Evidence records who backed a value a proposer chose freely: bit i of
// Votes is set when acceptor i of the instance (Acceptors order) gave an
// agreeing verdict in phase 1 (for a removal: subject unreachable; for an
// add: subject reachable). Proposer is the node that gathered the votes.
type Evidence struct {
	Proposer string
	Votes    []byte // bitmap, len = ceil(acceptors/8)
	// ProposerNote is the proposer's own note (Config.Note) about the
	// change; Notes are those of agreeing acceptors, by acceptor index,
	// at most MaxNotes. Opaque to consensus.
	ProposerNote []byte
	Notes        []Note
}

// Note is one acceptor's note: Acceptor is its index (its bit in Votes).
type Note struct {
	Acceptor uint8
	Data     []byte
}

// Count returns the number of agreeing votes.
func (e Evidence) Count() int {
	n := 0
	for _, b := range e.Votes {
		for ; b != 0; b &= b - 1 {
			n++
		}
	}
	return n
}

// Voted reports whether acceptor i voted for the change.
func (e Evidence) Voted(i int) bool {
	return i >= 0 && i/8 < len(e.Votes) && e.Votes[i/8]&(1<<(i%8)) != 0
}

// Change is the value of one instance: one member added or removed.
type Change struct {
	Kind     Kind
	Reason   Reason
	Member   Member // the subject
	Executor string // for Failed: the member that runs the recovery handler
	Evidence Evidence
}

// Validate checks the shape of c (not whether it applies to a view).
func (c Change) Validate() error {
	switch {
	case c.Kind == Remove && (c.Reason == Failed || c.Reason == Left):
	case c.Kind == Add && c.Reason == Joined:
	default:
		return fmt.Errorf("%w: change %v/%v", ErrInvalid, c.Kind, c.Reason)
	}
	if err := c.Member.validate(); err != nil {
		return err
	}
	if c.Reason == Failed && c.Executor == "" {
		return fmt.Errorf("%w: a failure needs an executor", ErrInvalid)
	}
	if len(c.Executor) > MaxNameLen || len(c.Evidence.Proposer) > MaxNameLen {
		return fmt.Errorf("%w: executor or proposer name too long", ErrInvalid)
	}
	if len(c.Evidence.Votes) > MaxAcceptors/8 {
		return fmt.Errorf("%w: evidence bitmap too long", ErrInvalid)
	}
	if len(c.Evidence.ProposerNote) > MaxNote || len(c.Evidence.Notes) > MaxNotes {
		return fmt.Errorf("%w: evidence notes too long", ErrInvalid)
	}
	for _, n := range c.Evidence.Notes {
		if len(n.Data) > MaxNote || int(n.Acceptor) >= MaxAcceptors {
			return fmt.Errorf("%w: evidence note too long or of no acceptor", ErrInvalid)
		}
	}
	return nil
}

// Same reports whether c and o propose the same change, ignoring evidence.
func (c Change) Same(o Change) bool {
	return c.Kind == o.Kind && c.Reason == o.Reason && c.Member == o.Member && c.Executor == o.Executor
}

// Equal reports whether c and o are the same value, evidence included.
func (c Change) Equal(o Change) bool {
	if !c.Same(o) || c.Evidence.Proposer != o.Evidence.Proposer || !bytes.Equal(c.Evidence.Votes, o.Evidence.Votes) ||
		!bytes.Equal(c.Evidence.ProposerNote, o.Evidence.ProposerNote) || len(c.Evidence.Notes) != len(o.Evidence.Notes) {
		return false
	}
	for i, n := range c.Evidence.Notes {
		if n.Acceptor != o.Evidence.Notes[i].Acceptor || !bytes.Equal(n.Data, o.Evidence.Notes[i].Data) {
			return false
		}
	}
	return true
}

func (c Change) String() string {
	s := c.Kind.String() + " " + c.Member.String() + " " + c.Reason.String()
	if c.Executor != "" {
		s += " exec=" + c.Executor
	}
	if c.Evidence.Proposer != "" {
		s += fmt.Sprintf(" by=%s votes=%d", c.Evidence.Proposer, c.Evidence.Count())
	}
	return s
}

func (c Change) clone() Change {
	c.Evidence.Votes = bytes.Clone(c.Evidence.Votes)
	c.Evidence.ProposerNote = bytes.Clone(c.Evidence.ProposerNote)
	if c.Evidence.Notes != nil {
		notes := make([]Note, len(c.Evidence.Notes))
		for i, n := range c.Evidence.Notes {
			notes[i] = Note{Acceptor: n.Acceptor, Data: bytes.Clone(n.Data)}
		}
		c.Evidence.Notes = notes
	}
	return c
}

// Decision is a decided instance: view Epoch+1 is view Epoch with Change
// applied. Ballot is the ballot at which this node learned it; two nodes may
// learn the same value at different ballots, so compare decisions by Epoch and
// Change (or ID), never by Ballot.
type Decision struct {
	Epoch  uint64
	Ballot Ballot
	Change Change
}

// ID is a stable identifier of the decided value, the same on every node:
// "e<epoch>-<16 hex digits of SHA-256 over the encoded change>". The recovery
// handler uses it as an idempotency key.
func (d Decision) ID() string {
	// The notes are left out: an id does not change with the stored form.
	w := writer{v1: true}
	w.uvarint(d.Epoch)
	w.change(d.Change)
	sum := sha256.Sum256(w.b)
	return "e" + strconv.FormatUint(d.Epoch, 10) + "-" + hex.EncodeToString(sum[:8])
}

func (d Decision) String() string {
	return fmt.Sprintf("e%d %s @%s", d.Epoch, d.Change, d.Ballot)
}

// AcceptorState is what a node must keep durable for the instance of its
// current epoch (Paxos Made Simple §2.3: "an acceptor must remember this
// information even if it fails and then restarts").
type AcceptorState struct {
	Epoch    uint64
	Promised Ballot // highest ballot promised in phase 1
	Accepted Ballot // ballot of Value; zero if nothing accepted
	Value    Change
	// Round is the highest round this node has used for its own ballots in
	// Epoch, so that a restarted proposer never reuses a ballot.
	Round uint64
	// VoteFrom is the first epoch this node may vote in as an acceptor: 0
	// for a node whose store has been with it since it joined, NoVote for
	// a node that came back with an empty store (it may have promised
	// something under the same name before and forgotten it) until the
	// view adds its current incarnation, then the epoch after that add.
	VoteFrom uint64
}

// NoVote is AcceptorState.VoteFrom of a node that may not vote yet.
const NoVote = ^uint64(0)

// PersistentState is what NewNode restores from: the latest acceptor state,
// the current view, and optionally the tail of the view log (decisions
// ending at View.Epoch-1) so the node can serve catch-up.
type PersistentState struct {
	Acceptor AcceptorState
	View     View
	Log      []Decision
	// Fresh says the store is new and the node did not create the cluster:
	// it votes only from the epoch after the view adds it (VoteFrom).
	Fresh bool
}
