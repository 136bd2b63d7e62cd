package agent

import (
	"strings"
	"sync"

	"github.com/vigil-project/vigil/membership"
)

// streamFilter is one of serf's event stream filters: an event type
// ("member-join", "user", "query", "*"), and for user events and queries
// optionally a name ("user:deploy", "query:load").
type streamFilter struct {
	event, name string
}

// streamEvents are the types a stream filter may name: serf's.
var streamEvents = map[string]bool{
	"member-join": true, "member-leave": true, "member-failed": true,
	"member-update": true, "member-reap": true, "user": true, "query": true, "*": true,
}

// parseStreamFilter reads serf's comma list of filters; ok is false if one
// of them names no event type (serf's "Invalid event filter").
func parseStreamFilter(s string) (fs []streamFilter, ok bool) {
	if s == "" {
		s = "*" // serf's default
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		f := streamFilter{event: part}
		for _, kind := range []string{"user:", "query:"} {
			if name, found := strings.CutPrefix(part, kind); found {
				f = streamFilter{event: strings.TrimSuffix(kind, ":"), name: name}
			}
		}
		if !streamEvents[f.event] {
			return nil, false
		}
		fs = append(fs, f)
	}
	return fs, true
}

// serfEventName is the name of ev in serf's vocabulary: a member back in
// the view after a failure is a member-join to serf's tools.
func serfEventName(ev membership.Event) string {
	if ev.Type == membership.MemberRecovered {
		return membership.MemberJoin.String()
	}
	return ev.Type.String()
}

func (f streamFilter) matches(ev membership.Event) bool {
	if f.event == "*" {
		return true
	}
	if f.event != serfEventName(ev) {
		return false
	}
	return f.name == "" || f.name == ev.Name
}

// eventSub is one event stream: the events its filters match, as the
// handlers see them (agreed member events, user events, queries). An event
// it cannot take at once is dropped and counted, as serf does.
type eventSub struct {
	filters []streamFilter
	events  chan membership.Event
	dropped int
}

// eventHub hands the loop's events to the streams; the loop publishes,
// RPC clients subscribe.
type eventHub struct {
	mu   sync.Mutex
	subs map[*eventSub]struct{}
}

func (h *eventHub) subscribe(fs []streamFilter) *eventSub {
	s := &eventSub{filters: fs, events: make(chan membership.Event, 512)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[*eventSub]struct{}{}
	}
	h.subs[s] = struct{}{}
	return s
}

// unsubscribe removes s and reports how many events it missed.
func (h *eventHub) unsubscribe(s *eventSub) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, s)
	return s.dropped
}

func (h *eventHub) publish(ev membership.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		for _, f := range s.filters {
			if f.matches(ev) {
				select {
				case s.events <- ev:
				default:
					s.dropped++
				}
				break
			}
		}
	}
}
