package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-project/vigil/agent"
)

// waitGossip waits until n sees member name in serf status want.
func waitGossip(t *testing.T, n *node, name, want string, d time.Duration) {
	t.Helper()
	waitFor(t, d, n.name+" sees "+name+" "+want, func() error {
		st, err := n.gossipStatus(name)
		if err != nil || st != want {
			return fmt.Errorf("%s is %q (%v)", name, st, err)
		}
		return nil
	})
}

// allAgreed checks that n lists want, all alive in the agreed view.
func allAgreed(n *node, want ...string) error {
	ms, err := n.members()
	if err != nil {
		return err
	}
	st := map[string]string{}
	for _, m := range ms {
		st[m.Name] = m.Status
	}
	for _, w := range want {
		if !inView(st[w]) {
			return fmt.Errorf("%s: %s is %q in the agreed view", n.name, w, st[w])
		}
	}
	return nil
}

// inView reports whether an agreed status says the member is in the view:
// "suspect" is a member this agent's own prober doubts right now, a local
// state that the agreed view does not share.
func inView(status string) bool { return status == "alive" || status == "suspect" }

// allAlive checks that n lists exactly want, all alive in gossip.
func allAlive(n *node, want ...string) error {
	ms, err := n.members()
	if err != nil {
		return err
	}
	alive := map[string]bool{}
	for _, m := range ms {
		if m.Gossip == "alive" {
			alive[m.Name] = true
		}
	}
	for _, w := range want {
		if !alive[w] {
			return fmt.Errorf("%s: %s not alive in %+v", n.name, w, ms)
		}
	}
	return nil
}

func TestThreeAgentsConvergeFromOneSeed(t *testing.T) {
	c := newCluster(t)
	n1 := c.add(1, "--tag", "role=db")
	n1.start()
	n2 := c.add(2, "--join", c.ip(1))
	n2.start()
	n3 := c.add(3, "--join", c.ip(1)+":7946", "--tag", "role=web", "--tag", "dc=east")
	n3.start()
	for _, n := range []*node{n1, n2, n3} {
		waitFor(t, 30*time.Second, n.name+" sees all three", func() error { return allAlive(n, "n1", "n2", "n3") })
		waitFor(t, 60*time.Second, n.name+" agrees all three are members", func() error { return allAgreed(n, "n1", "n2", "n3") })
	}
	// One view, the same everywhere: the bootstrap (epoch 1) and two adds.
	for _, n := range []*node{n1, n2, n3} {
		waitFor(t, 30*time.Second, n.name+" at epoch 3", func() error {
			info, err := n.info()
			if err != nil || info.Epoch != 3 {
				return fmt.Errorf("epoch %d (%v)", info.Epoch, err)
			}
			return nil
		})
	}
	ms, err := n2.members()
	if err != nil {
		t.Fatal(err)
	}
	boots := map[string]bool{}
	for _, m := range ms {
		if m.Boot == "" || boots[m.Boot] {
			t.Errorf("member %s: boot id %q empty or not unique", m.Name, m.Boot)
		}
		boots[m.Boot] = true
		if !inView(m.Status) || m.Epoch < 1 || m.Epoch > 3 || m.Addr != c.ip(int(m.Name[1]-'0'))+":7946" {
			t.Errorf("member %+v: want status alive, epoch 1..3, its gossip address", m)
		}
		if m.Name == "n3" && (m.Tags["role"] != "web" || m.Tags["dc"] != "east") {
			t.Errorf("n3 tags = %v", m.Tags)
		}
	}
	// --status filters on the agreed status; the table format names the columns.
	out, err := n1.vigil("members", "--status", "failed")
	if err != nil || strings.Contains(out, "n2") || !strings.Contains(out, "NAME") {
		t.Errorf("members --status failed: %q %v", out, err)
	}

	// A restart makes a new boot id.
	info, err := n3.info()
	if err != nil {
		t.Fatal(err)
	}
	if err := n3.stop(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, n3.logTail())
	}
	waitGossip(t, n1, "n3", "left", 30*time.Second)
	waitFor(t, 60*time.Second, "n1 agrees n3 left", func() error {
		ms, err := n1.members()
		for _, m := range ms {
			if m.Name == "n3" && m.Status == "left" {
				return nil
			}
		}
		return fmt.Errorf("members %+v (%v)", ms, err)
	})
	n3.start()
	info2, err := n3.info()
	if err != nil {
		t.Fatal(err)
	}
	if info2.Boot == info.Boot {
		t.Errorf("restart kept boot id %s", info.Boot)
	}
	waitFor(t, 30*time.Second, "n1 sees n3 back", func() error { return allAlive(n1, "n3") })
	waitFor(t, 60*time.Second, "n1 agrees n3 is back", func() error { return allAgreed(n1, "n3") })
}

func TestUserEventRunsHandlerOncePerNodeAndNotAfterRestart(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	h := writeScript(t, filepath.Join(dir, "deploy.sh"),
		`printf '%s|%s|%s|%s\n' "$SERF_EVENT" "$SERF_USER_EVENT" "$VIGIL_SELF_NAME" "$(cat)" >> "`+dir+`/ran.$SERF_SELF_NAME"`+"\n")
	other := writeScript(t, filepath.Join(dir, "other.sh"), `echo other >> "`+dir+`/other.$SERF_SELF_NAME"`+"\n")
	var nodes []*node
	for i := 1; i <= 3; i++ {
		args := []string{"--event-handler", "user:deploy=" + h, "--event-handler", "user:other=" + other}
		if i > 1 {
			args = append(args, "--join", c.ip(1))
		}
		n := c.add(i, args...)
		n.start()
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		waitFor(t, 30*time.Second, n.name+" sees all", func() error { return allAlive(n, "n1", "n2", "n3") })
	}
	if _, err := nodes[0].vigil("event", "deploy", "v1.2.3"); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		path := filepath.Join(dir, "ran."+n.name)
		waitFor(t, 30*time.Second, n.name+" ran the deploy handler", func() error {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if want := "user|deploy|" + n.name + "|v1.2.3\n"; string(b) != want {
				return fatalErr{fmt.Errorf("handler output %q, want %q", b, want)}
			}
			return nil
		})
	}
	// Restart n2 on the same data dir; it must not run the handler again.
	if err := nodes[1].stop(syscall.SIGKILL, 10*time.Second); err == nil {
		t.Log("kill -9 n2")
	}
	nodes[1].args = append(nodes[1].args, "--join", c.ip(1))
	nodes[1].start()
	waitFor(t, 30*time.Second, "n2 back", func() error { return allAlive(nodes[1], "n1", "n2", "n3") })
	// A fresh event proves n2's handlers run again, and gives the old one
	// every chance to be replayed first.
	if _, err := nodes[2].vigil("event", "other", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "n2 ran the other handler", func() error {
		_, err := os.Stat(filepath.Join(dir, "other.n2"))
		return err
	})
	time.Sleep(2 * time.Second)
	for _, n := range nodes {
		b, _ := os.ReadFile(filepath.Join(dir, "ran."+n.name))
		if strings.Count(string(b), "\n") != 1 {
			t.Errorf("%s ran the deploy handler %d times: %q", n.name, strings.Count(string(b), "\n"), b)
		}
	}
}

func TestKilledAgentShowsFailedInGossip(t *testing.T) {
	c := newCluster(t)
	n1 := c.add(1)
	n1.start()
	n2 := c.add(2, "--join", c.ip(1))
	n2.start()
	n3 := c.add(3, "--join", c.ip(1))
	n3.start()
	waitFor(t, 30*time.Second, "convergence", func() error { return allAlive(n1, "n1", "n2", "n3") })
	n3.kill()
	for _, n := range []*node{n1, n2} {
		waitGossip(t, n, "n3", "failed", 60*time.Second)
	}
}

func TestLeaveCommandStopsAgentGracefully(t *testing.T) {
	c := newCluster(t)
	n1 := c.add(1)
	n1.start()
	n2 := c.add(2, "--join", c.ip(1))
	n2.start()
	waitFor(t, 30*time.Second, "convergence", func() error { return allAlive(n1, "n1", "n2") })
	if out, err := n2.vigil("leave"); err != nil || !strings.Contains(out, "left") {
		t.Fatalf("vigil leave: %q %v", out, err)
	}
	select {
	case <-n2.exited:
		if n2.exitErr != nil {
			t.Errorf("agent exited with %v after leave", n2.exitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent still running 30s after vigil leave")
	}
	st, err := n1.gossipStatus("n2")
	if err != nil || st != "left" {
		t.Errorf("n1 sees n2 as %q (%v), want left at once", st, err)
	}
}

func TestEncryptedClusterRefusesOtherKey(t *testing.T) {
	c := newCluster(t)
	key1, _ := runVigil("keygen")
	key2, _ := runVigil("keygen")
	key1, key2 = strings.TrimSpace(key1), strings.TrimSpace(key2)
	n1 := c.add(1, "--encrypt", key1)
	n1.start()
	n2 := c.add(2, "--encrypt", key1, "--join", c.ip(1), "--gomaxprocs", "2")
	n2.start()
	waitFor(t, 30*time.Second, "encrypted pair", func() error { return allAlive(n1, "n1", "n2") })
	// One P by default (unless GOMAXPROCS is in the environment the agents
	// inherit: then Go's); --gomaxprocs sets another.
	procs := map[*node]int{n1: 1, n2: 2}
	if os.Getenv("GOMAXPROCS") != "" {
		delete(procs, n1)
	}
	for n, want := range procs {
		if info, err := n.info(); err != nil || info.GoMaxProcs != want {
			t.Errorf("%s: gomaxprocs %d (%v), want %d", n.name, info.GoMaxProcs, err, want)
		}
	}
	// The join is decided over sealed point-to-point consensus messages.
	for _, n := range []*node{n1, n2} {
		waitFor(t, 60*time.Second, n.name+" agrees on the encrypted pair", func() error { return allAgreed(n, "n1", "n2") })
	}
	if info, err := n1.info(); err != nil || !info.Encrypted {
		t.Errorf("info: encrypted=%v err=%v", info.Encrypted, err)
	} else if ct := info.Consensus; ct.Received == 0 || ct.Acked == 0 {
		t.Errorf("n1 decided the join without sealed consensus messages: %+v", ct)
	}
	n3 := c.add(3, "--encrypt", key2, "--join", c.ip(1))
	n3.startExpectingExit("agent with another key did not give up joining")
	if n3.exitErr == nil {
		t.Error("agent with another key exited 0")
	}
	log := n3.logTail()
	if !strings.Contains(log, "join") {
		t.Errorf("n3's log does not say the join failed:\n%s", log)
	}
	if !strings.Contains(n1.logTail(), "different --encrypt key") {
		t.Errorf("n1's log does not name the key mismatch:\n%s", n1.logTail())
	}
	if ms, _ := n1.members(); len(ms) != 2 {
		t.Errorf("n1 lists %d members, want 2", len(ms))
	}
}

func TestEnvAndConfigFilePrecedence(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vigil.json")
	body := fmt.Sprintf(`{"node": "from-file", "bind": "%s:7946", "http_addr": "%s:7947", "rpc_addr": "%s:7373",
		"data_dir": %q, "tags": {"role": "file", "zone": "z1"}, "profile": "local", "log_level": "debug"}`,
		c.ip(1), c.ip(1), c.ip(1), filepath.Join(dir, "data"))
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	n := &node{c: c, name: "from-env", ip: c.ip(1), logPath: filepath.Join(dir, "log"),
		args: []string{"agent", "--config-file", cfg, "--tag", "role=flag"}}
	t.Setenv("VIGIL_NODE", "from-env")
	t.Setenv("VIGIL_TAG", "role=env,team=ops")
	n.start()
	info, err := n.info()
	if err != nil {
		t.Fatal(err)
	}
	// flag > env > file > default: --tag (flag) replaces VIGIL_TAG (env),
	// which replaces the file's tags; VIGIL_NODE beats the file's node.
	if info.Node != "from-env" || info.Tags["role"] != "flag" || info.Tags["team"] != "" || info.Tags["zone"] != "" || info.Profile != "local" {
		t.Errorf("info = %+v", info)
	}
}

// --retry-join: an agent started before its seed keeps trying in the
// background and joins once the seed is up; with --retry-max it gives up
// and exits non-zero, saying why.
func TestRetryJoinKeepsTryingUntilTheSeedAnswers(t *testing.T) {
	c := newCluster(t)
	n2 := c.add(2, "--retry-join", c.ip(1), "--retry-interval", "300ms")
	n2.start() // no seed answers yet: it starts anyway
	n1 := c.add(1)
	n1.start()
	for _, n := range []*node{n1, n2} {
		waitFor(t, 30*time.Second, n.name+" sees both", func() error { return allAlive(n, "n1", "n2") })
		waitFor(t, 60*time.Second, n.name+" agrees both are members", func() error { return allAgreed(n, "n1", "n2") })
	}

	n3 := c.add(3, "--retry-join", c.ip(4), "--retry-interval", "100ms", "--retry-max", "3")
	n3.startExpectingExit("n3 still running after its 3 retry-join attempts failed")
	if n3.exitErr == nil || !strings.Contains(n3.logTail(), "retry-join: gave up after 3 attempts") {
		t.Errorf("n3 exited with %v; want a non-zero exit saying it gave up\n%s", n3.exitErr, n3.logTail())
	}
}

// The client commands that only read or nudge: version, scores (every peer
// this agent probes, with samples), force-leave of a failed node.
func TestClientScoresVersionAndForceLeave(t *testing.T) {
	out, err := runVigil("version")
	if err != nil || !strings.HasPrefix(out, "vigil "+agent.Version) {
		t.Errorf("version = %q, %v", out, err)
	}
	c := newCluster(t)
	dir := t.TempDir()
	nodes := startAgreedCluster(t, c, 3, dir)
	n1 := nodes[0]
	waitFor(t, 30*time.Second, "n1 scores both peers", func() error {
		out, err := n1.vigil("scores", "--format", "json")
		if err != nil {
			return err
		}
		var scores []agent.Score
		if err := jsonUnmarshal(out, &scores); err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, s := range scores {
			if s.Samples > 0 && s.Boot != "" && s.State == "healthy" {
				seen[s.Peer] = true
			}
		}
		if !seen["n2"] || !seen["n3"] {
			return fmt.Errorf("scores %+v", scores)
		}
		return nil
	})
	if out, err := n1.vigil("scores"); err != nil || !strings.Contains(out, "n2") {
		t.Errorf("scores table = %q, %v", out, err)
	}
	nodes[2].kill()
	waitGossip(t, n1, "n3", "failed", 60*time.Second)
	if out, err := n1.vigil("force-leave", "n3"); err != nil {
		t.Fatalf("force-leave n3: %q, %v", out, err)
	}
	waitGossip(t, n1, "n3", "left", 30*time.Second)
}

// Agents with other consensus rules (--quorum, --council-size) would count
// quorums that need not meet: the join is refused on both sides.
func TestMismatchedConsensusRulesAreRefused(t *testing.T) {
	c := newCluster(t)
	n1 := c.add(1)
	n1.start()
	n2 := c.add(2, "--council-size", "3", "--join", c.ip(1))
	n2.startExpectingExit("an agent with other consensus rules did not give up joining")
	if n2.exitErr == nil {
		t.Error("an agent with other consensus rules exited 0")
	}
	for _, n := range []*node{n1, n2} {
		if !strings.Contains(n.logTail(), "consensus rules") {
			t.Errorf("%s's log does not name the rules:\n%s", n.name, n.logTail())
		}
	}
	if ms, _ := n1.members(); len(ms) != 1 {
		t.Errorf("n1 lists %d members, want itself alone", len(ms))
	}
}
