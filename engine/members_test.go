package engine

import (
	"slices"
	"testing"
	"time"
)

// TestSetMembersFollowsTheList: the list is read in place when only
// statuses and tags change, and read again when names come, go or repeat;
// either way the engine holds exactly the list, and Tick looks for
// membership changes only when something changed.
func TestSetMembersFollowsTheList(t *testing.T) {
	s := newSimulation(1, simConfig{n: 3, duration: time.Minute, executors: allExecutors(3)}, false)
	e := s.nodes[0].eng
	now := e.now
	m := func(name, status, boot string) Member {
		return Member{Name: name, Addr: name + ":7946", Status: status, Tags: map[string]string{BootTag: boot}}
	}
	check := func(step string, list []Member, dirty bool) {
		t.Helper()
		e.membersDirty = false
		e.SetMembers(now, list)
		want := map[string]Member{}
		for _, x := range list {
			want[x.Name] = x
		}
		var names []string
		for name := range want {
			names = append(names, name)
		}
		slices.Sort(names)
		if !slices.Equal(e.gossipNames, names) || len(e.gossip) != len(want) {
			t.Fatalf("%s: names %v (%d held), want %v", step, e.gossipNames, len(e.gossip), names)
		}
		for name, x := range want {
			if got := e.gossip[name]; got.Status != x.Status || got.Boot() != x.Boot() || got.Addr != x.Addr {
				t.Fatalf("%s: %s is %+v, want %+v", step, name, got, x)
			}
		}
		if e.membersDirty != dirty {
			t.Fatalf("%s: dirty %v, want %v", step, e.membersDirty, dirty)
		}
	}
	check("first list", []Member{m("a", "alive", "1"), m("b", "alive", "1")}, true)
	check("the same again", []Member{m("b", "alive", "1"), m("a", "alive", "1")}, false)
	check("a status", []Member{m("a", "alive", "1"), m("b", "failed", "1")}, true)
	check("a boot id", []Member{m("a", "alive", "2"), m("b", "failed", "1")}, true)
	check("a name comes", []Member{m("a", "alive", "2"), m("b", "failed", "1"), m("c", "alive", "1")}, true)
	check("a name goes", []Member{m("a", "alive", "2"), m("c", "alive", "1")}, true)
	check("one for another", []Member{m("a", "alive", "2"), m("d", "alive", "1")}, true)
	// As long as the engine's list, but one name twice and one missing.
	check("a name twice", []Member{m("a", "alive", "2"), m("a", "alive", "3")}, true)
	check("back to two", []Member{m("a", "alive", "3"), m("d", "alive", "1")}, true)
}
