package consensus

import (
	"math"
	"slices"
	"time"
)

// MaxClockRate bounds how far any agent's clock may run fast or slow
// against real time: a duration d measured on one agent's monotonic clock
// lasts between d/(1+ρ) and d/(1−ρ) of real time. NTP slews by at most
// 500 ppm; 5 % leaves room for a badly behaved virtual machine.
const MaxClockRate = 0.05

// LeaseExpiry is when a member's lease on its membership runs out, on its
// own clock. contacts holds, for each acceptor of its view other than
// itself, the send time of the latest ping that acceptor acknowledged (a
// zero time: none); self tells whether the member is itself an acceptor
// (it counts itself as heard from now). The lease lasts lease from the
// q-th most recent contact, where q is the quorum: from then on at least a
// quorum of acceptors had heard from the member. ok is false when fewer
// than q acceptors were ever heard from.
//
// Why this fences before a recovery starts (Gray and Cheriton, "Leases",
// 1989; Raft's check-quorum): a removal is decided by a quorum of the same
// acceptors voting the member unreachable, each having had no reply from
// it for a while. Any quorum the member renews with shares one of those
// voters, whose last ack was to a ping sent before it voted, so the lease
// started before the decision and ends, on the member's clock, at most
// lease after it: in real time at most lease/(1−ρ) after the decision. A
// recovery that waits RecoveryDelay(lease) on its own clock after it learns
// the decision waits at least that long in real time. This assumes round
// trips fail both ways alike over the verdict window (a cut link, a pause, a
// crash, one-way loss); under random loss the verdict itself requires a run
// of misses a live link would not produce.
func LeaseExpiry(now time.Time, contacts []time.Time, self bool, q int, lease time.Duration) (expiry time.Time, ok bool) {
	times := make([]time.Time, 0, len(contacts)+1)
	if self {
		times = append(times, now)
	}
	for _, c := range contacts {
		if !c.IsZero() {
			times = append(times, c)
		}
	}
	if q < 1 || len(times) < q {
		return time.Time{}, false
	}
	slices.SortFunc(times, func(a, b time.Time) int { return b.Compare(a) })
	return times[q-1].Add(lease), true
}

// RecoveryDelay is how long, on its own clock, an agent waits after it
// learns that a member was removed before it acts for that member (runs
// its recovery, or takes over its jobs): long enough in real time for the
// member's lease to have run out on a clock as slow as MaxClockRate
// allows, measured on a clock as fast as it allows, and for the member to
// have noticed (leaseSlack).
func RecoveryDelay(lease time.Duration) time.Duration {
	return time.Duration(math.Ceil(float64(lease)*(1+MaxClockRate)/(1-MaxClockRate))) + leaseSlack(lease)
}

// leaseSlack is the time a member may take to notice that its lease ran
// out and kill its handlers (its loop checks before every event, and
// handles events in milliseconds): a tenth of the lease.
func leaseSlack(lease time.Duration) time.Duration {
	return lease / 10
}
