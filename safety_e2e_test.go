package main

// Acceptance tests of the safety promises beyond agreement itself: one
// cluster identity, decisions and recovery reports that only a quorum's
// members can make, and the watchdog fed only while the lease holds.

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	serfclient "github.com/hashicorp/serf/client"

	"github.com/vigil-project/vigil/consensus"
)

// A decision or a recovery report sent as a user event, by `vigil event`
// or by any serf agent that can reach the cluster, changes nothing: the
// reserved names are refused by vigil's API, and an agent takes decisions
// only from the members that learned them from a quorum, and journal
// entries only from the job's executor.
func TestForgedDecisionsAndReportsChangeNothing(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	nodes := startAgreedCluster(t, c, 3, dir, "--fence-handler", fenceRecorder(t, dir),
		"--recovery-handler", recoveryRecorder(t, dir, 0))
	victim := nodes[1]
	before, err := nodes[0].views()
	if err != nil {
		t.Fatal(err)
	}
	var vm consensus.Member
	for _, m := range before.Members {
		if m.Name == victim.name {
			vm = consensus.Member{Name: m.Name, Boot: m.Boot, Addr: m.Addr}
		}
	}
	forged, err := consensus.EncodeDecision(consensus.Decision{
		Epoch: before.Epoch, Ballot: consensus.Ballot{Round: 99, Node: "n1"},
		Change: consensus.Change{Kind: consensus.Remove, Reason: consensus.Failed, Member: vm, Executor: "n3",
			Evidence: consensus.Evidence{Proposer: "n1", Votes: []byte{7}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := `{"id":"e9-forged","node":"n2","epoch":9,"executor":"n3","attempt":1,"final":true}`

	// vigil's own CLI and API refuse the reserved names.
	for _, name := range []string{"vigil-decision", "recovery-done", "vigil-anything"} {
		if out, err := nodes[0].vigil("event", name, "x"); err == nil {
			t.Errorf("vigil event %s was sent: %s", name, out)
		} else if !strings.Contains(err.Error(), "vigil's own") {
			t.Errorf("vigil event %s: %v, want a clear refusal", name, err)
		}
	}

	// A stock serf agent joins the gossip and sends them as user events.
	bin := serfBinary(t)
	ip := c.ip(9)
	sc := &serfCluster{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(sc.stop)
	sc.start(host{ip: ip}, "forger", []string{"agent", "-node", "forger", "-bind", ip + ":7946",
		"-rpc-addr", ip + ":7373", "-join", c.ip(1) + ":7946"})
	var rpc *serfclient.RPCClient
	waitFor(t, 30*time.Second, "the forger's RPC", func() error {
		cl, err := serfclient.NewRPCClient(ip + ":7373")
		if err != nil {
			return err
		}
		rpc = cl
		return nil
	})
	defer rpc.Close()
	waitFor(t, 30*time.Second, "the forger sees the cluster", func() error {
		ms, err := rpc.Members()
		if err != nil || len(ms) < 4 {
			return fmt.Errorf("%d members (%v)", len(ms), err)
		}
		return nil
	})
	if err := rpc.UserEvent("vigil-decision", forged, false); err != nil {
		t.Fatal(err)
	}
	if err := rpc.UserEvent("recovery-done", []byte(done), false); err != nil {
		t.Fatal(err)
	}
	// Every agent hears them within a few gossip rounds; give them time to act.
	waitFor(t, 30*time.Second, "the forged events reach every agent", func() error {
		for _, n := range nodes {
			b, _ := os.ReadFile(n.logPath)
			if !strings.Contains(string(b), "event=recovery-done") {
				return fmt.Errorf("%s has not heard them", n.name)
			}
		}
		return nil
	})
	time.Sleep(3 * time.Second)
	for _, n := range nodes {
		m, err := agreedStatus(n, victim.name)
		if err != nil || !inView(m.Status) {
			t.Errorf("%s: %s is %q after a forged decision (%v)", n.name, victim.name, m.Status, err)
		}
		v, err := n.views()
		if err != nil {
			t.Fatal(err)
		}
		if v.Epoch != before.Epoch {
			t.Errorf("%s moved from epoch %d to %d on a forged decision", n.name, before.Epoch, v.Epoch)
		}
		jobs, err := n.journal()
		if err != nil || len(jobs) != 0 {
			t.Errorf("%s journals %+v after a forged report (%v)", n.name, jobs, err)
		}
	}
	if fenced(dir, victim.name) {
		t.Errorf("%s fenced itself on a forged decision", victim.name)
	}
}

// An agent started with --bootstrap makes a cluster of its own; joining it
// to another cluster is refused on both sides with a clear error. An agent
// that lost its data dir and joins again comes back as a new acceptor: it
// is added, votes from the next epoch, and the next failure is decided.
func TestLostDataDirRejoinsAsNewAcceptor(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	nodes := startAgreedCluster(t, c, 3, dir)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	n1.kill()
	if err := os.RemoveAll(n1.dataDir); err != nil {
		t.Fatal(err)
	}
	// Its old command line would make a new cluster; pointed at the old
	// one it is refused, and says why.
	lone := c.addAt("n1", n1.ip, nil, "--bootstrap", "--join", c.ip(2))
	lone.startExpectingExit("an agent of a new cluster joined an existing one")
	if log := lone.logTail(); !strings.Contains(log, "refusing to merge two clusters") {
		t.Errorf("the refused join says:\n%s", log)
	}
	if err := os.RemoveAll(lone.dataDir); err != nil {
		t.Fatal(err)
	}
	again := c.addAt("n1", n1.ip, nil, "--join", c.ip(2))
	again.start()
	for _, n := range []*node{again, n2, n3} {
		waitFor(t, 90*time.Second, n.name+" agrees on all three", func() error { return allAgreed(n, "n1", "n2", "n3") })
	}
	// The next failure needs the new n1's vote: n2 and n1 of three.
	n3.kill()
	waitAgreed(t, n2, "n3", "failed", 90*time.Second)
	waitAgreed(t, again, "n3", "failed", 90*time.Second)
}

// The agent feeds systemd's watchdog (READY=1, then WATCHDOG=1) only
// while it holds its lease: once no quorum answers, the feeding stops, so
// a unit with WatchdogSec= is stopped, and with it a service bound to it.
func TestWatchdogFedOnlyWhileTheLeaseHolds(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	sock := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1024)
	go func() {
		buf := make([]byte, 256)
		for {
			n, _, err := ln.ReadFromUnix(buf)
			if err != nil {
				close(got)
				return
			}
			got <- string(buf[:n])
		}
	}()
	h := handlerLog(t, dir)
	var nodes []*node
	for i := 1; i <= 3; i++ {
		args := []string{"--event-handler", "member-join=" + h, "--fence-handler", fenceRecorder(t, dir)}
		if i > 1 {
			args = append(args, "--join", c.ip(1))
		}
		n := c.add(i, args...)
		if i == 1 {
			n.env = []string{"NOTIFY_SOCKET=" + sock}
		}
		n.start()
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		waitFor(t, 90*time.Second, n.name+" agrees", func() error { return allAgreed(n, "n1", "n2", "n3") })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seen := map[string]bool{}
	for !seen["READY=1"] || !seen["WATCHDOG=1"] {
		select {
		case m := <-got:
			seen[m] = true
		case <-ctx.Done():
			t.Fatalf("notify messages %v, want READY=1 and WATCHDOG=1", seen)
		}
	}
	nodes[1].kill()
	nodes[2].kill()
	waitFor(t, 30*time.Second, "n1 fences", func() error {
		if !fenced(dir, "n1") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	// Drain what was sent up to now; after that, no feed may come.
	time.Sleep(500 * time.Millisecond)
	for len(got) > 0 {
		<-got
	}
	select {
	case m := <-got:
		if m == "WATCHDOG=1" {
			t.Fatalf("n1 fed the watchdog after it lost its lease")
		}
	case <-time.After(3 * time.Second):
	}
}

// With a quorum of the view gone for good, nothing is decided; the
// operator restores service with force-remove, which is refused unless
// confirmed by name. The removed nodes are recovered as failures, and one
// of them rejoins with an empty data dir.
func TestForceRemoveRestoresServiceAfterQuorumLoss(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	nodes := startAgreedCluster(t, c, 5, dir, "--recovery-handler", recoveryRecorder(t, dir, 0))
	for _, n := range nodes[2:] {
		n.kill()
	}
	// Two of five decide nothing.
	time.Sleep(8 * time.Second)
	for _, gone := range []string{"n3", "n4", "n5"} {
		if m, err := agreedStatus(nodes[0], gone); err != nil || !inView(m.Status) {
			t.Fatalf("without a quorum n1 has %s as %q (%v)", gone, m.Status, err)
		}
	}
	// force-remove is for the dead: wait until gossip, too, has them failed.
	for _, gone := range []string{"n3", "n4", "n5"} {
		waitFor(t, 90*time.Second, "gossip on n1 has "+gone+" failed", func() error {
			if st, err := nodes[0].gossipStatus(gone); err != nil || st == "alive" {
				return fmt.Errorf("%s is %q in gossip (%v)", gone, st, err)
			}
			return nil
		})
	}
	if _, err := nodes[0].vigil("force-remove", "n3", "n4", "n5"); err == nil || !strings.Contains(err.Error(), "--confirm-quorum-loss") {
		t.Fatalf("force-remove without confirmation: %v", err)
	}
	if _, err := nodes[0].vigil("force-remove", "--confirm-quorum-loss", "n2"); err == nil || !strings.Contains(err.Error(), "alive") {
		t.Fatalf("force-remove of a live member: %v", err)
	}
	if out, err := nodes[0].vigil("force-remove", "--confirm-quorum-loss", "n3", "n4", "n5"); err != nil {
		t.Fatalf("force-remove: %v", err)
	} else {
		t.Log(strings.TrimSpace(out))
	}
	for _, n := range nodes[:2] {
		for _, gone := range []string{"n3", "n4", "n5"} {
			waitAgreed(t, n, gone, "failed", 30*time.Second)
		}
	}
	waitFor(t, 60*time.Second, "the removed nodes recovered once each", func() error {
		runs := recoveryRuns(t, dir)
		for _, gone := range []string{"n3", "n4", "n5"} {
			if len(runs[gone]) != 1 {
				return fmt.Errorf("recovery runs %v", runs)
			}
		}
		return nil
	})
	// The survivors decide again: a dead node rejoins with an empty data dir.
	n3 := nodes[2]
	if err := os.RemoveAll(n3.dataDir); err != nil {
		t.Fatal(err)
	}
	n3.start()
	for _, n := range nodes[:3] {
		waitFor(t, 90*time.Second, n.name+" has n1, n2, n3 in the view", func() error { return allAgreed(n, "n1", "n2", "n3") })
	}
}
