package engine

import "sort"

// Executor chooses who runs the recovery handler for a failed subject: the
// first member after the subject on the ring of member names (sorted,
// wrapping around) that is not the subject and not down. It is a pure
// function of its inputs, so every node that knows the view and the same
// suspicions picks the same executor; the choice is then fixed inside the
// decision. It returns "" when no member is left.
func Executor(members []string, subject string, down func(name string) bool) string {
	ring := append([]string(nil), members...)
	sort.Strings(ring)
	start := sort.SearchStrings(ring, subject)
	for i := 0; i < len(ring); i++ {
		m := ring[(start+i)%len(ring)]
		if m == subject || (down != nil && down(m)) {
			continue
		}
		return m
	}
	return ""
}

// ExecutorAfter is the member that takes a job over from executor from when
// from leaves: the first member after from on the ring, in ring order from
// subject (subject and the members down excluded), wrapping round to the
// ones before from only when none after it is left. Each agent's view of
// who may execute (serf's tags) can differ for a while; moving only forward
// from the executor it knew, no agent jumps back to a member that the
// others' takeovers have already passed (two executors of one job).
func ExecutorAfter(members []string, subject, from string, down func(name string) bool) string {
	// key orders names round the ring from subject: those after it first.
	type key struct {
		wrapped bool
		name    string
	}
	keyOf := func(x string) key { return key{x <= subject, x} }
	less := func(a, b key) bool {
		return a.wrapped != b.wrapped && !a.wrapped || a.wrapped == b.wrapped && a.name < b.name
	}
	var after, before []string
	for _, m := range members {
		switch {
		case m == subject || m == from || (down != nil && down(m)):
		case less(keyOf(from), keyOf(m)):
			after = append(after, m)
		default:
			before = append(before, m)
		}
	}
	for _, l := range [][]string{after, before} {
		if len(l) == 0 {
			continue
		}
		best := l[0]
		for _, m := range l[1:] {
			if less(keyOf(m), keyOf(best)) {
				best = m
			}
		}
		return best
	}
	return ""
}

// Successors returns up to k members that follow name on the ring of
// member names, name itself excluded: the peers name monitors. Every
// member then has up to k observers, its predecessors.
func Successors(members []string, name string, k int) []string {
	ring := append([]string(nil), members...)
	sort.Strings(ring)
	start := sort.SearchStrings(ring, name)
	var out []string
	for i := 0; i < len(ring) && len(out) < k; i++ {
		m := ring[(start+i)%len(ring)]
		if m != name {
			out = append(out, m)
		}
	}
	return out
}

// Predecessors returns up to k members that precede name on the ring,
// nearest first: the observers of name.
func Predecessors(members []string, name string, k int) []string {
	ring := append([]string(nil), members...)
	sort.Strings(ring)
	start := sort.SearchStrings(ring, name)
	var out []string
	for i := 1; i <= len(ring) && len(out) < k; i++ {
		m := ring[((start-i)%len(ring)+len(ring))%len(ring)]
		if m != name {
			out = append(out, m)
		}
	}
	return out
}
