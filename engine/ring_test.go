package engine

import (
	"reflect"
	"slices"
	"testing"
)

func TestExecutor(t *testing.T) {
	ms := []string{"n3", "n1", "n5", "n2", "n4"}
	down := func(set ...string) func(string) bool {
		return func(n string) bool {
			for _, s := range set {
				if s == n {
					return true
				}
			}
			return false
		}
	}
	tests := []struct {
		subject string
		down    func(string) bool
		want    string
	}{
		{"n2", nil, "n3"},
		{"n5", nil, "n1"},        // wraps around
		{"n2", down("n3"), "n4"}, // skips a member that is down
		{"n2", down("n3", "n4", "n5", "n1"), ""},
		{"n0", nil, "n1"}, // a subject outside the view
	}
	for _, tt := range tests {
		if got := Executor(ms, tt.subject, tt.down); got != tt.want {
			t.Errorf("Executor(%s) = %q, want %q", tt.subject, got, tt.want)
		}
	}
}

func TestRingNeighbours(t *testing.T) {
	ms := []string{"a", "b", "c", "d", "e"}
	if got := Successors(ms, "d", 3); !reflect.DeepEqual(got, []string{"e", "a", "b"}) {
		t.Errorf("Successors = %v", got)
	}
	if got := Predecessors(ms, "b", 3); !reflect.DeepEqual(got, []string{"a", "e", "d"}) {
		t.Errorf("Predecessors = %v", got)
	}
	if got := Successors(ms, "a", 10); len(got) != 4 {
		t.Errorf("Successors beyond the ring = %v", got)
	}
	// Every member is observed by exactly k others when each watches its k successors.
	count := map[string]int{}
	for _, m := range ms {
		for _, s := range Successors(ms, m, 2) {
			count[s]++
		}
	}
	for _, m := range ms {
		if count[m] != 2 {
			t.Errorf("%s has %d observers, want 2", m, count[m])
		}
		if got := Predecessors(ms, m, 2); len(got) != 2 {
			t.Errorf("Predecessors(%s) = %v", m, got)
		}
	}
}

// A takeover's executor: Executor from the executor that left, the failed
// node (subject) skipped.
func TestTakeoverExecutor(t *testing.T) {
	ms := []string{"n1", "n2", "n3", "n4", "n5", "n6"}
	none := func(string) bool { return false }
	for _, c := range []struct {
		subject, from string
		down          []string
		want          string
	}{
		{"n3", "n4", nil, "n5"},
		{"n3", "n5", nil, "n6"}, // not back to n4, which precedes n5
		{"n3", "n6", nil, "n1"}, // round the ring
		{"n3", "n5", []string{"n6"}, "n1"},
		{"n3", "n2", nil, "n4"}, // the last one before the subject: round to the start
		{"n5", "n1", []string{"n2", "n3", "n4", "n6"}, ""},
		{"n3", "gone", nil, "n1"}, // a name no longer in the view, after n6 on the ring
		{"n6", "n5", []string{"n1", "n2", "n3", "n4"}, ""},
	} {
		down := none
		if c.down != nil {
			down = func(o string) bool { return slices.Contains(c.down, o) }
		}
		skip := func(o string) bool { return o == c.subject || down(o) }
		if got := Executor(ms, c.from, skip); got != c.want {
			t.Errorf("takeover of subject %s from %s, down %v: %q, want %q", c.subject, c.from, c.down, got, c.want)
		}
	}
}
