package consensus

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// MessageType identifies a Message.
type MessageType uint8

const (
	// Paxos, instance Epoch (Paxos Made Simple §2.2).
	MsgPrepare  MessageType = 1 // proposer → acceptor: Ballot, Change (the proposal, for the verdict)
	MsgPromise  MessageType = 2 // acceptor → proposer: Ballot, Verdict, Accepted + Change if a value was accepted
	MsgNack     MessageType = 3 // acceptor → proposer: Ballot rejected, Accepted = the higher promised ballot
	MsgAccept   MessageType = 4 // proposer → acceptor: Ballot, Change (the value)
	MsgAccepted MessageType = 5 // acceptor → proposer: Ballot
	// Learning.
	MsgDecided  MessageType = 6 // a Decision: Epoch, Ballot, Change; Head = sender's view epoch
	MsgCatchup  MessageType = 7 // Epoch = requester's view epoch; SnapEpoch/Offset = snapshot being fetched
	MsgSnapshot MessageType = 8 // one page of view Epoch: Total members, Members[Offset:Offset+len]
)

func (t MessageType) String() string {
	switch t {
	case MsgPrepare:
		return "Prepare"
	case MsgPromise:
		return "Promise"
	case MsgNack:
		return "Nack"
	case MsgAccept:
		return "Accept"
	case MsgAccepted:
		return "Accepted"
	case MsgDecided:
		return "Decided"
	case MsgCatchup:
		return "Catchup"
	case MsgSnapshot:
		return "Snapshot"
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// Message is one consensus message. Which fields are meaningful depends on
// Type (see the MessageType constants); the codec carries only those.
type Message struct {
	Type     MessageType
	From, To string
	Epoch    uint64
	Ballot   Ballot
	Change   Change
	Verdict  bool // Promise: the acceptor agrees with the proposed change
	// Note (Promise, with Verdict): the acceptor's note of its evidence.
	Note []byte
	// Stale (Promise): the accepted Change has waited undecided for
	// Config.StaleAccepted ticks or more, or since before a restart.
	Stale    bool
	Accepted Ballot // Promise: ballot of the accepted Change (zero: none); Nack: the promised ballot
	Head     uint64 // Decided, Snapshot: the sender's view epoch
	// SnapEpoch is, in Catchup, the epoch of the snapshot the requester is
	// assembling (0: none); Offset is its first missing member.
	SnapEpoch uint64
	Offset    uint32 // Catchup, Snapshot: index of the first member
	Total     uint32 // Snapshot: members in the view
	Members   []Member
}

func (m Message) String() string {
	s := fmt.Sprintf("%s→%s %s e%d", m.From, m.To, m.Type, m.Epoch)
	switch m.Type {
	case MsgPrepare, MsgAccept:
		s += fmt.Sprintf(" b=%s [%s]", m.Ballot, m.Change)
	case MsgPromise:
		s += fmt.Sprintf(" b=%s verdict=%t", m.Ballot, m.Verdict)
		if !m.Accepted.IsZero() {
			s += fmt.Sprintf(" accepted=%s [%s]", m.Accepted, m.Change)
			if m.Stale {
				s += " stale"
			}
		}
	case MsgNack:
		s += fmt.Sprintf(" b=%s promised=%s", m.Ballot, m.Accepted)
	case MsgAccepted:
		s += fmt.Sprintf(" b=%s", m.Ballot)
	case MsgDecided:
		s += fmt.Sprintf(" b=%s [%s] head=%d", m.Ballot, m.Change, m.Head)
	case MsgCatchup:
		if m.SnapEpoch != 0 {
			s += fmt.Sprintf(" snap=e%d@%d", m.SnapEpoch, m.Offset)
		}
	case MsgSnapshot:
		s += fmt.Sprintf(" members[%d:%d]/%d", m.Offset, int(m.Offset)+len(m.Members), m.Total)
	}
	return s
}

const (
	flagVerdict  = 1
	flagAccepted = 2
	flagStale    = 4
	flagNote     = 8
	// Version 2 of the stored forms carries evidence notes; version 1 is
	// still read.
	decisionVer  = 2
	stateVer     = 2
	maxPageCount = 128
)

// Encode returns the wire form of m, or ErrTooLarge beyond MaxMessageLen.
func Encode(m Message) ([]byte, error) {
	var w writer
	w.b = make([]byte, 0, 256)
	w.byte(byte(m.Type))
	w.str(m.From)
	w.str(m.To)
	w.uvarint(m.Epoch)
	switch m.Type {
	case MsgPrepare, MsgAccept:
		w.ballot(m.Ballot)
		w.change(m.Change)
	case MsgPromise:
		w.ballot(m.Ballot)
		var f byte
		if m.Verdict {
			f |= flagVerdict
		}
		if !m.Accepted.IsZero() {
			f |= flagAccepted
			if m.Stale {
				f |= flagStale
			}
		}
		if len(m.Note) > 0 {
			f |= flagNote
		}
		w.byte(f)
		if f&flagAccepted != 0 {
			w.ballot(m.Accepted)
			w.change(m.Change)
		}
		if f&flagNote != 0 {
			w.note(m.Note)
		}
	case MsgNack:
		w.ballot(m.Ballot)
		w.ballot(m.Accepted)
	case MsgAccepted:
		w.ballot(m.Ballot)
	case MsgDecided:
		w.ballot(m.Ballot)
		w.change(m.Change)
		w.uvarint(m.Head)
	case MsgCatchup:
		w.uvarint(m.SnapEpoch)
		w.uvarint(uint64(m.Offset))
	case MsgSnapshot:
		w.uvarint(m.Head)
		w.uvarint(uint64(m.Total))
		w.uvarint(uint64(m.Offset))
		if len(m.Members) > maxPageCount {
			return nil, fmt.Errorf("%w: %d members in a page", ErrTooLarge, len(m.Members))
		}
		w.uvarint(uint64(len(m.Members)))
		for _, mb := range m.Members {
			w.member(mb)
		}
	default:
		return nil, fmt.Errorf("%w: message type %d", ErrInvalid, m.Type)
	}
	if w.err != nil {
		return nil, w.err
	}
	if len(w.b) > MaxMessageLen {
		return nil, fmt.Errorf("%w: %s is %d bytes", ErrTooLarge, m.Type, len(w.b))
	}
	return w.b, nil
}

// Decode parses a Message. It never panics and rejects anything Encode
// would not produce in structure: unknown types, over-long strings or counts,
// truncation and trailing bytes.
func Decode(b []byte) (Message, error) {
	if len(b) > MaxMessageLen {
		return Message{}, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	r := reader{b: b}
	var m Message
	m.Type = MessageType(r.byte())
	m.From = r.str(MaxNameLen)
	m.To = r.str(MaxNameLen)
	m.Epoch = r.uvarint()
	switch m.Type {
	case MsgPrepare, MsgAccept:
		m.Ballot = r.ballot()
		m.Change = r.change()
	case MsgPromise:
		m.Ballot = r.ballot()
		f := r.byte()
		if f&^(flagVerdict|flagAccepted|flagStale|flagNote) != 0 || (f&flagStale != 0 && f&flagAccepted == 0) {
			r.fail("promise flags")
		}
		m.Verdict = f&flagVerdict != 0
		m.Stale = f&flagStale != 0
		if f&flagAccepted != 0 {
			m.Accepted = r.ballot()
			m.Change = r.change()
			if m.Accepted.IsZero() {
				r.fail("zero accepted ballot")
			}
		}
		if f&flagNote != 0 {
			if m.Note = r.noteBytes(); len(m.Note) == 0 {
				r.fail("empty note")
			}
		}
	case MsgNack:
		m.Ballot = r.ballot()
		m.Accepted = r.ballot()
	case MsgAccepted:
		m.Ballot = r.ballot()
	case MsgDecided:
		m.Ballot = r.ballot()
		m.Change = r.change()
		m.Head = r.uvarint()
	case MsgCatchup:
		m.SnapEpoch = r.uvarint()
		m.Offset = r.u32()
	case MsgSnapshot:
		m.Head = r.uvarint()
		m.Total = r.u32()
		m.Offset = r.u32()
		n := r.uvarint()
		if n > maxPageCount {
			r.fail("page count")
			break
		}
		if n > 0 {
			m.Members = make([]Member, 0, n)
		}
		for i := uint64(0); i < n && r.err == nil; i++ {
			m.Members = append(m.Members, r.member())
		}
	default:
		r.fail("message type")
	}
	if r.err == nil && r.off != len(r.b) {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return Message{}, r.err
	}
	return m, nil
}

// EncodeDecision returns the wire form of d (≤ MaxDecision bytes for fields
// within the size caps), for the agent's decision announcement.
func EncodeDecision(d Decision) ([]byte, error) {
	var w writer
	w.b = make([]byte, 0, 128)
	w.byte(decisionVer)
	w.uvarint(d.Epoch)
	w.ballot(d.Ballot)
	w.change(d.Change)
	if w.err != nil {
		return nil, w.err
	}
	if len(w.b) > MaxDecision {
		return nil, fmt.Errorf("%w: decision is %d bytes", ErrTooLarge, len(w.b))
	}
	return w.b, nil
}

// DecodeDecision parses EncodeDecision's output; it never panics.
func DecodeDecision(b []byte) (Decision, error) {
	r := reader{b: b}
	switch v := r.byte(); {
	case r.err != nil:
	case v == 1:
		r.v1 = true
	case v != decisionVer:
		r.fail("decision version")
	}
	var d Decision
	d.Epoch = r.uvarint()
	d.Ballot = r.ballot()
	d.Change = r.change()
	if r.err == nil && r.off != len(r.b) {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return Decision{}, r.err
	}
	return d, nil
}

// EncodeAcceptorState returns a compact form of s for the store.
func EncodeAcceptorState(s AcceptorState) ([]byte, error) {
	var w writer
	w.byte(stateVer)
	w.uvarint(s.Epoch)
	w.ballot(s.Promised)
	w.ballot(s.Accepted)
	if !s.Accepted.IsZero() {
		w.change(s.Value)
	}
	w.uvarint(s.Round)
	if s.VoteFrom != 0 {
		w.uvarint(s.VoteFrom)
	}
	return w.b, w.err
}

// DecodeAcceptorState parses EncodeAcceptorState's output.
func DecodeAcceptorState(b []byte) (AcceptorState, error) {
	r := reader{b: b}
	switch v := r.byte(); {
	case r.err != nil:
	case v == 1:
		r.v1 = true
	case v != stateVer:
		r.fail("state version")
	}
	var s AcceptorState
	s.Epoch = r.uvarint()
	s.Promised = r.ballot()
	s.Accepted = r.ballot()
	if !s.Accepted.IsZero() {
		s.Value = r.change()
	}
	s.Round = r.uvarint()
	if r.err == nil && r.off < len(r.b) {
		s.VoteFrom = r.uvarint() // absent in states written before it existed
	}
	if r.err == nil && r.off != len(r.b) {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return AcceptorState{}, r.err
	}
	return s, nil
}

type writer struct {
	b   []byte
	err error
	// v1 writes the stored form before evidence notes (tests only).
	v1 bool
}

func (w *writer) byte(c byte)      { w.b = append(w.b, c) }
func (w *writer) uvarint(x uint64) { w.b = binary.AppendUvarint(w.b, x) }

func (w *writer) strMax(s string, max int) {
	if len(s) > max {
		if w.err == nil {
			w.err = fmt.Errorf("%w: string of %d bytes, limit %d", ErrTooLarge, len(s), max)
		}
		s = s[:max]
	}
	w.b = append(w.b, byte(len(s)))
	w.b = append(w.b, s...)
}

func (w *writer) str(s string) { w.strMax(s, MaxNameLen) }

func (w *writer) ballot(b Ballot) {
	w.uvarint(b.Round)
	w.str(b.Node)
}

func (w *writer) member(m Member) {
	w.str(m.Name)
	w.strMax(m.Boot, MaxBootLen)
	w.strMax(m.Addr, MaxAddrLen)
}

func (w *writer) change(c Change) {
	w.byte(byte(c.Kind)<<4 | byte(c.Reason)&0x0f)
	w.member(c.Member)
	w.str(c.Executor)
	w.str(c.Evidence.Proposer)
	if len(c.Evidence.Votes) > MaxAcceptors/8 && w.err == nil {
		w.err = fmt.Errorf("%w: evidence bitmap of %d bytes", ErrTooLarge, len(c.Evidence.Votes))
	}
	v := c.Evidence.Votes
	if len(v) > MaxAcceptors/8 {
		v = v[:MaxAcceptors/8]
	}
	w.b = append(w.b, byte(len(v)))
	w.b = append(w.b, v...)
	if w.v1 {
		return // the stored form before notes (tests of reading it)
	}
	w.note(c.Evidence.ProposerNote)
	notes := c.Evidence.Notes
	if len(notes) > MaxNotes {
		if w.err == nil {
			w.err = fmt.Errorf("%w: %d notes", ErrTooLarge, len(notes))
		}
		notes = notes[:MaxNotes]
	}
	w.byte(byte(len(notes)))
	for _, n := range notes {
		w.byte(n.Acceptor)
		w.note(n.Data)
	}
}

func (w *writer) note(b []byte) {
	if len(b) > MaxNote {
		if w.err == nil {
			w.err = fmt.Errorf("%w: note of %d bytes", ErrTooLarge, len(b))
		}
		b = b[:MaxNote]
	}
	w.b = append(w.b, byte(len(b)))
	w.b = append(w.b, b...)
}

type reader struct {
	b   []byte
	off int
	err error
	// v1: the stored form before evidence notes.
	v1 bool
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s at byte %d", ErrMalformed, what, r.off)
	}
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail("truncated")
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail("uvarint")
		return 0
	}
	r.off += n
	return x
}

func (r *reader) u32() uint32 {
	x := r.uvarint()
	if x > 1<<32-1 {
		r.fail("u32 overflow")
		return 0
	}
	return uint32(x)
}

func (r *reader) bytes(max int) []byte {
	n := int(r.byte())
	if r.err != nil {
		return nil
	}
	if n > max {
		r.fail("length over limit")
		return nil
	}
	if len(r.b)-r.off < n {
		r.fail("truncated")
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) str(max int) string { return string(r.bytes(max)) }

func (r *reader) ballot() Ballot {
	return Ballot{Round: r.uvarint(), Node: r.str(MaxNameLen)}
}

func (r *reader) member() Member {
	return Member{Name: r.str(MaxNameLen), Boot: r.str(MaxBootLen), Addr: r.str(MaxAddrLen)}
}

func (r *reader) change() Change {
	var c Change
	kr := r.byte()
	c.Kind, c.Reason = Kind(kr>>4), Reason(kr&0x0f)
	c.Member = r.member()
	c.Executor = r.str(MaxNameLen)
	c.Evidence.Proposer = r.str(MaxNameLen)
	if v := r.bytes(MaxAcceptors / 8); len(v) > 0 {
		c.Evidence.Votes = append([]byte(nil), v...)
	}
	if r.v1 {
		return c
	}
	c.Evidence.ProposerNote = r.noteBytes()
	n := int(r.byte())
	if n > MaxNotes {
		r.fail("note count")
		return c
	}
	for i := 0; i < n && r.err == nil; i++ {
		acc := r.byte()
		if int(acc) >= MaxAcceptors {
			r.fail("note acceptor")
		}
		c.Evidence.Notes = append(c.Evidence.Notes, Note{Acceptor: acc, Data: r.noteBytes()})
	}
	return c
}

// noteBytes reads a note: a copy, nil when empty.
func (r *reader) noteBytes() []byte {
	if b := r.bytes(MaxNote); len(b) > 0 {
		return append([]byte(nil), b...)
	}
	return nil
}
