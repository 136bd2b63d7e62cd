package main

// Acceptance tests of failure verdicts by agreement, with real agents on
// 127.0.x.y: a crash, a long pause, a slow node.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-project/vigil/agent"
	"github.com/vigil-project/vigil/consensus"
)

// handlerLog is a member-event handler that appends
// "<unix nanos> <event> <member line>" to dir/events.<self>.
func handlerLog(t *testing.T, dir string) string {
	return writeScript(t, filepath.Join(dir, "record.sh"),
		`while IFS= read -r line; do echo "$(date +%s%N) $SERF_EVENT $line" >> "`+dir+`/events.$SERF_SELF_NAME"; done`+"\n")
}

// handlerRuns returns the lines of node's handler log for event and member.
func handlerRuns(dir, self, event, member string) []string {
	b, _ := os.ReadFile(filepath.Join(dir, "events."+self))
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[1] == event && f[2] == member {
			out = append(out, l)
		}
	}
	return out
}

// startAgreedCluster starts n agents joined through n1, each with the
// recording handler, and waits until every one agrees on all n members.
func startAgreedCluster(t *testing.T, c *cluster, n int, dir string, extra ...string) []*node {
	t.Helper()
	return startAgreed(t, n, dir, c.ip(1), c.add, extra...)
}

// startAgreed is startAgreedCluster for any way of adding node i (on
// loopback, or in a network namespace); seed is n1's address.
func startAgreed(t *testing.T, n int, dir, seed string, add func(i int, extra ...string) *node, extra ...string) []*node {
	t.Helper()
	h := handlerLog(t, dir)
	var nodes []*node
	for i := 1; i <= n; i++ {
		args := append(recording(h), extra...)
		if i > 1 {
			args = append(args, "--join", seed)
		}
		nd := add(i, args...)
		nd.start()
		nodes = append(nodes, nd)
	}
	waitAllAgreed(t, nodes, 90*time.Second)
	return nodes
}

// recording is the flags that run h, the handler handlerLog wrote, for
// the events handlerRuns reads.
func recording(h string) []string {
	return []string{"--event-handler", "member-failed,member-recovered,member-join=" + h}
}

// waitAllAgreed waits until every node agrees on all of them as members
// (each up to agree) and gossips with all of them (each up to a minute).
func waitAllAgreed(t *testing.T, nodes []*node, agree time.Duration) {
	t.Helper()
	var names []string
	for _, nd := range nodes {
		names = append(names, nd.name)
	}
	for _, nd := range nodes {
		waitFor(t, agree, nd.name+" agrees on all members", func() error { return allAgreed(nd, names...) })
		waitFor(t, 60*time.Second, nd.name+" gossips with all members", func() error { return allAlive(nd, names...) })
	}
}

// agreedStatus returns the status and epoch that n reports for member.
func agreedStatus(n *node, member string) (agent.MemberInfo, error) {
	ms, err := n.members()
	if err != nil {
		return agent.MemberInfo{}, err
	}
	for _, m := range ms {
		if m.Name == member {
			return m, nil
		}
	}
	return agent.MemberInfo{}, fmt.Errorf("%s does not list %s", n.name, member)
}

func waitAgreed(t *testing.T, n *node, member, status string, d time.Duration) agent.MemberInfo {
	t.Helper()
	var got agent.MemberInfo
	waitFor(t, d, n.name+" agrees "+member+" is "+status, func() error {
		m, err := agreedStatus(n, member)
		if err != nil || m.Status != status && !(status == "alive" && inView(m.Status)) {
			return fmt.Errorf("%s is %q (%v)", member, m.Status, err)
		}
		got = m
		return nil
	})
	return got
}

func TestKillNineAgreedOnceAtOneEpoch(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	nodes := startAgreedCluster(t, c, 5, dir)
	victim := nodes[2]
	killedAt := time.Now()
	victim.kill()

	var epoch uint64
	for _, n := range nodes {
		if n == victim {
			continue
		}
		m := waitAgreed(t, n, victim.name, "failed", 90*time.Second)
		if epoch == 0 {
			epoch = m.Epoch
		} else if m.Epoch != epoch {
			t.Errorf("%s reports %s failed at epoch %d, another survivor at %d", n.name, victim.name, m.Epoch, epoch)
		}
		waitFor(t, 30*time.Second, n.name+"'s member-failed handler", func() error {
			if runs := handlerRuns(dir, n.name, "member-failed", victim.name); len(runs) == 0 {
				return fmt.Errorf("no run yet")
			}
			return nil
		})
	}
	// Give any second decision or replay every chance, then count.
	time.Sleep(3 * time.Second)
	for _, n := range nodes {
		if n == victim {
			continue
		}
		runs := handlerRuns(dir, n.name, "member-failed", victim.name)
		if len(runs) != 1 {
			t.Errorf("%s ran member-failed for %s %d times, want once: %q", n.name, victim.name, len(runs), runs)
			continue
		}
		var ns int64
		fmt.Sscan(strings.Fields(runs[0])[0], &ns)
		t.Logf("%s: kill → member-failed handler %v", n.name, time.Unix(0, ns).Sub(killedAt).Round(time.Millisecond))
	}
	// A restarted survivor does not run member-failed again for the old
	// decision: it restores the log, it does not re-apply it.
	again := nodes[0]
	again.kill()
	again.start()
	waitFor(t, 60*time.Second, again.name+" back in the view", func() error { return allAgreed(nodes[1], again.name) })
	time.Sleep(2 * time.Second)
	if runs := handlerRuns(dir, again.name, "member-failed", victim.name); len(runs) != 1 {
		t.Errorf("after a restart %s has run member-failed for %s %d times, want still once", again.name, victim.name, len(runs))
	}

	// The survivors' logs agree epoch by epoch (compared by decision id: a
	// node may learn a value at another ballot), once every survivor has
	// caught up with the same head. A node that joined later started from a
	// snapshot and holds only a suffix; a lagging one holds a prefix.
	var survivors []*node
	for _, n := range nodes {
		if n != victim {
			survivors = append(survivors, n)
		}
	}
	waitFor(t, 60*time.Second, "the survivors' views at one epoch", func() error {
		var first uint64
		for _, n := range survivors {
			v, err := n.views()
			if err != nil {
				return err
			}
			if first == 0 {
				first = v.Epoch
			} else if v.Epoch != first {
				return fmt.Errorf("%s at epoch %d, another at %d", n.name, v.Epoch, first)
			}
		}
		return nil
	})
	byEpoch := map[uint64]string{}
	for _, n := range survivors {
		v, err := n.views()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range v.Log {
			if id, ok := byEpoch[e.Epoch]; ok && id != e.ID {
				t.Errorf("%s decided %s at epoch %d, another survivor %s", n.name, e.ID, e.Epoch, id)
			}
			byEpoch[e.Epoch] = e.ID
		}
	}
}

func TestPausedTenSecondsIsFailedThenBackWithNewBoot(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	nodes := startAgreedCluster(t, c, 4, dir)
	p := nodes[1]
	before, err := p.info()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	failedAt := waitAgreed(t, nodes[0], p.name, "failed", 60*time.Second)
	if d := time.Since(stopped); d < 10*time.Second {
		time.Sleep(10*time.Second - d)
	}
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		m := waitAgreed(t, n, p.name, "alive", 90*time.Second)
		if m.Boot == before.Boot {
			t.Errorf("%s sees %s back with its old boot id", n.name, p.name)
		}
		if m.Epoch <= failedAt.Epoch {
			t.Errorf("%s sees %s alive at epoch %d, not after its failure at %d", n.name, p.name, m.Epoch, failedAt.Epoch)
		}
	}
	for _, n := range nodes {
		if n == p {
			continue
		}
		waitFor(t, 30*time.Second, n.name+" ran member-recovered", func() error {
			if len(handlerRuns(dir, n.name, "member-recovered", p.name)) != 1 {
				return fmt.Errorf("member-recovered runs: %q", handlerRuns(dir, n.name, "member-recovered", p.name))
			}
			return nil
		})
		if runs := handlerRuns(dir, n.name, "member-failed", p.name); len(runs) != 1 {
			t.Errorf("%s ran member-failed for %s %d times, want once", n.name, p.name, len(runs))
		}
	}
}

func TestSlowNodeCausesNoVerdict(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	nodes := startAgreedCluster(t, c, 5, dir)
	slow := nodes[3]
	// SIGSTOP for 100 ms of every 300 ms, for 20 s.
	end := time.Now().Add(20 * time.Second)
	for time.Now().Before(end) {
		slow.cmd.Process.Signal(syscall.SIGSTOP)
		time.Sleep(100 * time.Millisecond)
		slow.cmd.Process.Signal(syscall.SIGCONT)
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	for _, n := range nodes {
		out, err := n.vigil("views", "--format", "json")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, `"remove"`) {
			t.Errorf("%s's log has a removal:\n%s", n.name, out)
		}
		for _, m := range nodes {
			if runs := handlerRuns(dir, n.name, "member-failed", m.name); len(runs) > 0 {
				t.Errorf("%s ran member-failed for %s: %q", n.name, m.name, runs)
			}
		}
	}
}

// A view larger than the council: only the council (three of seven here)
// accepts, and a council member's failure and an ordinary member's are
// each decided once, at one epoch everywhere, with the council seat passed
// on to the next member by hash.
func TestCouncilDecidesForALargerView(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	nodes := startAgreedCluster(t, c, 7, dir, "--council-size", "3")
	byName := map[string]*node{}
	for _, n := range nodes {
		byName[n.name] = n
	}
	council := func(of *node) []string {
		t.Helper()
		vs, err := of.views()
		if err != nil {
			t.Fatal(err)
		}
		var v consensus.View
		v.Epoch = vs.Epoch
		for _, m := range vs.Members {
			v.Members = append(v.Members, consensus.Member{Name: m.Name})
		}
		var names []string
		for _, m := range consensus.Acceptors(v, 3) {
			names = append(names, m.Name)
		}
		return names
	}
	first := council(nodes[0])
	if len(first) != 3 {
		t.Fatalf("council %v, want three members", first)
	}
	var outsider *node
	for _, n := range nodes {
		if !slices.Contains(first, n.name) {
			outsider = n
			break
		}
	}
	for _, victim := range []*node{byName[first[0]], outsider} {
		victim.kill()
		var epoch uint64
		for _, n := range nodes {
			if n.cmd.ProcessState != nil {
				continue // killed
			}
			m := waitAgreed(t, n, victim.name, "failed", 90*time.Second)
			if epoch == 0 {
				epoch = m.Epoch
			} else if m.Epoch != epoch {
				t.Errorf("%s reports %s failed at epoch %d, another survivor at %d", n.name, victim.name, m.Epoch, epoch)
			}
		}
		t.Logf("%s (council %v) decided failed at epoch %d", victim.name, first, epoch)
	}
	after := council(nodes[len(nodes)-1])
	if len(after) != 3 || slices.Contains(after, first[0]) {
		t.Errorf("council after %s failed: %v", first[0], after)
	}
	// Each survivor ran member-failed once for each victim.
	time.Sleep(2 * time.Second)
	for _, n := range nodes {
		if n.cmd.ProcessState != nil {
			continue
		}
		for _, victim := range []string{first[0], outsider.name} {
			if runs := handlerRuns(dir, n.name, "member-failed", victim); len(runs) != 1 {
				t.Errorf("%s ran member-failed for %s %d times, want once", n.name, victim, len(runs))
			}
		}
	}
}

// A node removed for failure and back is added again only after gossip has
// seen it alive for --rejoin-stable, twice that after its second failure:
// per name, across its boot ids.
func TestRejoinIsDampedPerName(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	const base = 4 * time.Second
	nodes := startAgreedCluster(t, c, 3, dir, "--rejoin-stable", base.String())
	victim := nodes[2]
	for i, need := range []time.Duration{base, 2 * base} {
		victim.kill()
		waitAgreed(t, nodes[0], victim.name, "failed", 90*time.Second)
		back := time.Now()
		victim.start()
		waitAgreed(t, nodes[0], victim.name, "alive", need+60*time.Second)
		took := time.Since(back)
		t.Logf("failure %d: added back %v after the restart (damping %v)", i+1, took.Round(time.Millisecond), need)
		if took < need {
			t.Errorf("failure %d: added back %v after the restart, before the %v of damping", i+1, took, need)
		}
	}
	for _, n := range nodes[:2] {
		if runs := handlerRuns(dir, n.name, "member-failed", victim.name); len(runs) != 2 {
			t.Errorf("%s ran member-failed for %s %d times, want 2", n.name, victim.name, len(runs))
		}
	}
}
