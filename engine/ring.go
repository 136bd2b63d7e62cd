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
