package suspicion

import (
	"slices"
	"time"
)

// Set holds one Tracker per peer name. It is a plain map: not safe for
// concurrent use, no goroutines.
type Set struct {
	cfg   Config
	peers map[string]*Tracker
}

// NewSet returns an empty Set whose trackers use cfg.
func NewSet(cfg Config) (*Set, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Set{cfg: cfg, peers: make(map[string]*Tracker)}, nil
}

// Peer returns the tracker for name, creating a Healthy one if absent.
func (s *Set) Peer(name string) *Tracker {
	t, ok := s.peers[name]
	if !ok {
		t = &Tracker{cfg: s.cfg}
		s.peers[name] = t
	}
	return t
}

// For returns the tracker of name's incarnation boot (its boot id). The
// evidence about another incarnation is forgotten: a peer that comes back
// under a new boot id starts afresh, and what was seen of its old
// incarnation never counts against the new one.
func (s *Set) For(name, boot string) *Tracker {
	t := s.Peer(name)
	if t.incarnation != boot {
		t.incarnation = boot
		t.Reset()
	}
	return t
}

// LookupFor returns the tracker of name's incarnation boot, if there is one.
func (s *Set) LookupFor(name, boot string) (*Tracker, bool) {
	t, ok := s.peers[name]
	if !ok || t.incarnation != boot {
		return nil, false
	}
	return t, true
}

// Lookup returns the tracker for name, if there is one.
func (s *Set) Lookup(name string) (*Tracker, bool) {
	t, ok := s.peers[name]
	return t, ok
}

// Remove forgets name, as when the peer leaves the view.
func (s *Set) Remove(name string) { delete(s.peers, name) }

// Len returns the number of tracked peers.
func (s *Set) Len() int { return len(s.peers) }

// Names returns the tracked peer names, sorted.
func (s *Set) Names() []string {
	names := make([]string, 0, len(s.peers))
	for n := range s.peers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ToPropose returns, sorted, the peers for which ShouldPropose(now) holds.
func (s *Set) ToPropose(now time.Duration) []string {
	var names []string
	for n, t := range s.peers {
		if t.ShouldPropose(now) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}
