package engine

import (
	"time"

	"github.com/vigil-project/vigil/consensus"
)

// checkLease renews or ends this node's lease on its membership
// (consensus.LeaseExpiry) and fences the node the moment it runs out: the
// majority may decide without it, and will start a recovery for it once
// the lease has provably ended. Every input calls it first, so a node
// back from a pause fences before it acts on anything else.
func (e *Engine) checkLease() {
	v, acc := e.current()
	if m, ok := e.cur.self, e.cur.member; !ok || m.Boot != e.boot {
		// Not a member under this incarnation (never added, removed, or
		// restarted under a new boot id): nothing to hold until the view
		// adds it.
		e.leaseHeld, e.leaseFenced, e.leaseSet = false, false, false
		clear(e.ahead)
		return
	}
	e.caughtUp(v.Epoch)
	// An acceptor counts itself, unless it accepted its own removal (it
	// can, in phase 2): then it may be one of the quorum that chose it,
	// and vouches for itself no more than the others of that quorum do.
	// The expiry changes only with a new contact, a new view or what this
	// node says of itself (or with the time itself when this node alone
	// is a quorum): it is computed again only then.
	vouch := e.cn.Vouches(e.self())
	var exp time.Time
	if v.Epoch == e.leaseEpoch && e.acks == e.leaseAcks && vouch == e.leaseVouch && e.leaseSet && !e.leaseSolo {
		exp = e.leaseOwn
	} else {
		self := false
		contacts := make([]time.Time, 0, len(acc))
		for _, m := range acc {
			if m.Name == e.self() {
				self = vouch
				continue
			}
			contacts = append(contacts, e.acked[m.Name])
		}
		q := consensus.QuorumSize(len(acc), e.cfg.Quorum)
		exp, _ = consensus.LeaseExpiry(e.now, contacts, self, q, e.cfg.FenceAfter)
		e.leaseAcks, e.leaseSolo, e.leaseVouch = e.acks, self && q == 1, vouch
	}
	// The lease the previous views granted holds into the next one, not
	// renewed: the new acceptors may not have been pinged yet (a member
	// just added, a council seat passed on). It is no more than a node
	// has that has not learned the decisions yet, and keeps renewing from
	// the old acceptors: no safety argument can rely on a node learning a
	// decision promptly. It carries over a chain of changes learned one
	// by one (a cluster forming adds a member every 100 ms, faster than
	// the new ones are pinged): the longest lease of any view on the way,
	// no more than a member that stopped learning at that view would
	// hold; it never grows on the way, and ends FenceAfter after the last
	// answers that renewed it. Never over a snapshot.
	switch {
	case v.Epoch == e.leaseEpoch:
	case v.Epoch == e.leaseEpoch+1 && e.leaseSet:
		e.leasePrev = e.leaseExpiry
	default:
		e.leasePrev = time.Time{}
	}
	e.leaseSet = true
	e.leaseEpoch, e.leaseOwn = v.Epoch, exp
	if e.leasePrev.After(exp) {
		exp = e.leasePrev
	}
	e.leaseExpiry = exp
	valid := e.now.Before(exp)
	switch {
	case valid && e.leaseFenced:
		// The replies may come from members that have removed this node
		// and not told it yet: until it has checked with the cluster, it
		// runs no job it had not started (maybeRun asks first).
		e.leaseFenced, e.wasFenced = false, true
		e.log(Warn, "lease renewed: a quorum answers again and this node is still a member as far as it knows; what the fence handler stopped stays stopped",
			"epoch", v.Epoch)
	case valid:
		e.leaseHeld = true
	case e.leaseHeld && !e.leaseFenced:
		e.leaseFenced = true
		e.log(Warn, "lease expired: no quorum of the view answered within the lease; fencing",
			"expired", exp, "lease", e.cfg.FenceAfter, "epoch", v.Epoch)
		e.fence("lease-expired", v.Epoch)
	}
}

// LeaseValid reports whether this node holds its lease at now: only then
// may it act for the cluster (run a recovery, feed a watchdog).
func (e *Engine) LeaseValid(now time.Time) bool {
	return e.leaseHeld && !e.leaseFenced && now.Before(e.leaseExpiry)
}

// Fenced reports whether this incarnation ran out of its lease.
func (e *Engine) Fenced() bool { return e.leaseFenced || e.wasFenced }

// Lease is when this node's lease ends (zero: it holds none).
func (e *Engine) Lease() time.Time {
	if !e.leaseHeld {
		return time.Time{}
	}
	return e.leaseExpiry
}

// CheckLease is an input of its own: the caller calls it before it acts
// on anything that is not an input (an API request), so that a node back
// from a pause fences first.
func (e *Engine) CheckLease(now time.Time) { e.step(now) }
