package main

// A multi-host network for end-to-end tests, made of Linux network
// namespaces: one "switch" namespace holding a bridge, and one namespace per
// host joined to it by a veth pair. Partitions and packet loss are iptables
// rules inside the host namespaces (tc netem is not available). Nothing is
// created in the root namespace.
//
//	vgl<pid>-<k>-sw   lo, br0, p1..pn (bridge ports)
//	vgl<pid>-<k>-<i>  lo, eth0 = 10.77.<k>.<i>/24, chains VGL-PART and VGL-LOSS
//
// Needs root, ip (iproute2) and iptables; tests skip without them.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Chains in every host namespace, jumped to from INPUT (-i eth0) and OUTPUT
// (-o eth0), so that loopback traffic inside a host (a client talking to its
// own agent) is never dropped.
const (
	partChain = "VGL-PART"
	lossChain = "VGL-LOSS"
)

// nsPattern matches the namespaces this file creates; the first group is the
// pid of the test process that made them.
var nsPattern = regexp.MustCompile(`^vgl(\d+)-\d+-(sw|probe|\d+)$`)

var (
	netnsOnce   sync.Once
	netnsSkip   string // why netns tests cannot run here; "" if they can
	netMu       sync.Mutex
	nextNetwork = 0 // k of the last network made by this process
)

// requireNetns skips the test unless network namespaces can be made here;
// under CI or as root it fails instead.
// The first call also removes namespaces left by earlier test processes that
// crashed (only names matching nsPattern whose process is gone).
func requireNetns(t testing.TB) {
	t.Helper()
	netnsOnce.Do(func() {
		if os.Geteuid() != 0 {
			netnsSkip = "network namespaces need root"
			return
		}
		for _, tool := range []string{"ip", "iptables", "iptables-restore"} {
			if _, err := exec.LookPath(tool); err != nil {
				netnsSkip = tool + " not found (make testdeps installs iproute2 and iptables)"
				return
			}
		}
		removeStaleNamespaces(t)
		probe := fmt.Sprintf("vgl%d-0-probe", os.Getpid())
		if out, err := runCommand("ip", "netns", "add", probe); err != nil {
			netnsSkip = fmt.Sprintf("cannot create a network namespace: %v: %s", err, out)
			return
		}
		if out, err := runCommand("ip", "netns", "exec", probe, "iptables", "-S"); err != nil {
			netnsSkip = fmt.Sprintf("iptables does not work in a namespace: %v: %s", err, out)
		}
		_, _ = runCommand("ip", "netns", "del", probe)
	})
	switch {
	case netnsSkip == "":
	case os.Getenv("CI") != "" || os.Geteuid() == 0:
		// CI, and root, can make namespaces (make testdeps installs the
		// tools): a scenario whose faults cannot be injected fails there.
		t.Fatalf("netns scenario cannot run: %s", netnsSkip)
	default:
		t.Skip(netnsSkip)
	}
}

// removeStaleNamespaces deletes namespaces matching nsPattern whose creator
// is no longer a running test binary, killing whatever still runs inside.
func removeStaleNamespaces(t testing.TB) {
	out, err := runCommand("ip", "netns", "list")
	if err != nil {
		return
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		m := nsPattern.FindStringSubmatch(f[0])
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || testProcessAlive(pid) {
			continue
		}
		t.Logf("netns: removing %s, left by test process %d", f[0], pid)
		deleteNamespace(t, f[0])
	}
}

// testProcessAlive reports whether pid is a running Go test binary (a pid
// reused by something else does not count).
func testProcessAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(b), "\x00")
	return strings.HasSuffix(argv0, ".test")
}

// deleteNamespace kills every process in ns, then deletes it; the veth ends
// and the bridge inside go with it.
func deleteNamespace(t testing.TB, ns string) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := runCommand("ip", "netns", "pids", ns)
		if err != nil || strings.TrimSpace(out) == "" {
			break
		}
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if time.Now().After(deadline) {
			t.Logf("netns: processes still in %s: %s", ns, out)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, err := runCommand("ip", "netns", "del", ns); err != nil {
		t.Logf("netns: deleting %s: %v: %s", ns, err, out)
	}
}

// runCommand runs a command and returns its combined output.
func runCommand(prog string, args ...string) (string, error) {
	return runWrapped(nil, "", prog, args...)
}

// runWrapped runs a command behind the prefix wrap with stdin, and returns its
// combined output.
func runWrapped(wrap []string, stdin, prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := wrapped(wrap, prog, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return out.String(), err
}

// host is one place a process can run: its address and the command prefix
// that runs a program there (nil: this host).
type host struct {
	ip   string
	wrap []string
}

// network is n hosts on one bridge, each in its own network namespace.
// Hosts are numbered 1..n.
type network struct {
	t      testing.TB
	k      int    // third octet of the subnet 10.77.k.0/24; unique in this process
	prefix string // vgl<pid>-<k>
	n      int
}

// newNetwork creates n hosts (n ≤ 250) on a bridge. A cleanup kills every
// process left in the namespaces and deletes them, whether the test passed
// or not.
func newNetwork(t testing.TB, n int) *network {
	t.Helper()
	requireNetns(t)
	if n < 1 || n > 250 {
		t.Fatalf("newNetwork: %d hosts, want 1..250", n)
	}
	netMu.Lock()
	nextNetwork++
	k := nextNetwork
	netMu.Unlock()
	if k > 254 {
		t.Fatal("newNetwork: more than 254 networks in one test process")
	}
	nw := &network{t: t, k: k, prefix: fmt.Sprintf("vgl%d-%d", os.Getpid(), k), n: n}
	sw := nw.prefix + "-sw"
	// Registered first so that it runs last, after the cleanups of the
	// processes started inside, and even if the setup below fails half way.
	t.Cleanup(func() {
		for i := 1; i <= n; i++ {
			deleteNamespace(t, nw.ns(i))
		}
		deleteNamespace(t, sw)
	})

	var b strings.Builder
	fmt.Fprintf(&b, "netns add %s\n", sw)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "netns add %s\n", nw.ns(i))
	}
	nw.batch(nil, b.String())

	b.Reset()
	b.WriteString("link set lo up\nlink add br0 type bridge\nlink set br0 up\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "link add p%d type veth peer name eth0 netns %s\n", i, nw.ns(i))
		fmt.Fprintf(&b, "link set p%d master br0 up\n", i)
	}
	nw.batch([]string{"-n", sw}, b.String())

	rules := fmt.Sprintf("*filter\n:%s - [0:0]\n:%s - [0:0]\n", partChain, lossChain)
	for _, c := range []string{partChain, lossChain} {
		rules += fmt.Sprintf("-A INPUT -i eth0 -j %s\n-A OUTPUT -o eth0 -j %s\n", c, c)
	}
	rules += "COMMIT\n"
	for i := 1; i <= n; i++ {
		nw.batch([]string{"-n", nw.ns(i)}, fmt.Sprintf(
			"link set lo up\naddr add %s/24 dev eth0\nlink set eth0 up\n", nw.ip(i)))
		if out, err := runWrapped(nw.wrap(i), rules, "iptables-restore"); err != nil {
			t.Fatalf("netns: iptables in %s: %v: %s", nw.ns(i), err, out)
		}
	}
	return nw
}

// batch runs ip commands, one per line, with the global options opts.
func (nw *network) batch(opts []string, cmds string) {
	nw.t.Helper()
	if out, err := runWrapped(nil, cmds, "ip", append(opts, "-batch", "-")...); err != nil {
		nw.t.Fatalf("netns: %v: %s\ncommands:\n%s", err, out, cmds)
	}
}

// ns is the namespace of host i.
func (nw *network) ns(i int) string { return fmt.Sprintf("%s-%d", nw.prefix, i) }

// ip is the address of host i.
func (nw *network) ip(i int) string { return fmt.Sprintf("10.77.%d.%d", nw.k, i) }

// wrap is the command prefix that runs a program on host i.
func (nw *network) wrap(i int) []string { return []string{"ip", "netns", "exec", nw.ns(i)} }

// hosts returns hosts 1..n.
func (nw *network) hosts() []host {
	hs := make([]host, nw.n)
	for i := range hs {
		hs[i] = host{ip: nw.ip(i + 1), wrap: nw.wrap(i + 1)}
	}
	return hs
}

// add declares vigil node n<i> of cluster c on host i, without starting it.
// Its gossip and API addresses are the host's; its client commands run on
// the host too.
func (nw *network) add(c *cluster, i int, extra ...string) *node {
	return c.addAt(fmt.Sprintf("n%d", i), nw.ip(i), nw.wrap(i), extra...)
}

// exec runs a command on host i and returns its combined output.
func (nw *network) exec(i int, prog string, args ...string) (string, error) {
	return runWrapped(nw.wrap(i), "", prog, args...)
}

// setChain replaces the rules of chain on host i, atomically.
func (nw *network) setChain(i int, chain string, rules []string) {
	nw.t.Helper()
	in := "*filter\n-F " + chain + "\n"
	for _, r := range rules {
		in += "-A " + chain + " " + r + "\n"
	}
	in += "COMMIT\n"
	if out, err := runWrapped(nw.wrap(i), in, "iptables-restore", "--noflush"); err != nil {
		nw.t.Fatalf("netns: %s on %s: %v: %s", chain, nw.ns(i), err, out)
	}
}

// partition drops every packet between hosts of different groups, both
// ways, replacing any earlier partition. Hosts in no group keep talking to
// everybody.
func (nw *network) partition(groups ...[]int) {
	nw.t.Helper()
	group := map[int]int{}
	for g, hs := range groups {
		for _, h := range hs {
			if h < 1 || h > nw.n {
				nw.t.Fatalf("partition: no host %d", h)
			}
			group[h] = g + 1
		}
	}
	for i := 1; i <= nw.n; i++ {
		var rules []string
		if gi := group[i]; gi != 0 {
			for j := 1; j <= nw.n; j++ {
				if gj := group[j]; gj != 0 && gj != gi {
					rules = append(rules, "-s "+nw.ip(j)+" -j DROP", "-d "+nw.ip(j)+" -j DROP")
				}
			}
		}
		nw.setChain(i, partChain, rules)
	}
}

// heal removes the partition.
func (nw *network) heal() {
	nw.t.Helper()
	for i := 1; i <= nw.n; i++ {
		nw.setChain(i, partChain, nil)
	}
}

// loss makes every host drop each packet it sends, and each it receives,
// with probability p. A packet between two hosts thus survives with
// probability (1−p)², a round trip with (1−p)⁴: at p = 0.2, 59 % of pings
// fail.
func (nw *network) loss(p float64) {
	nw.t.Helper()
	if p <= 0 || p > 1 {
		nw.t.Fatalf("loss: p = %v, want 0 < p ≤ 1", p)
	}
	rule := fmt.Sprintf("-m statistic --mode random --probability %.4f -j DROP", p)
	for i := 1; i <= nw.n; i++ {
		nw.setChain(i, lossChain, []string{rule})
	}
}

// clearLoss removes the random drop.
func (nw *network) clearLoss() {
	nw.t.Helper()
	for i := 1; i <= nw.n; i++ {
		nw.setChain(i, lossChain, nil)
	}
}

// chainCounts returns the packets that passed through and were dropped by
// chain on host i, from iptables' counters.
func (nw *network) chainCounts(i int, chain string) (dropped uint64, err error) {
	out, err := nw.exec(i, "iptables", "-L", chain, "-v", "-n", "-x")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 2 && f[2] == "DROP" {
			n, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("iptables counters: %q", sc.Text())
			}
			dropped += n
		}
	}
	return dropped, nil
}

// The test binary as a helper process: TestMain runs runTestHelper instead
// of the tests when testHelperEnv is set.
const testHelperEnv = "VIGIL_TEST_HELPER"

// runTestHelper runs one helper mode and returns the exit status:
//
//	udpecho ADDR               echo every UDP datagram back, forever
//	udpping ADDR COUNT GAP     send COUNT numbered datagrams GAP apart, wait
//	                           for late echoes, print "sent N received M"
func runTestHelper(spec string) int {
	f := strings.Fields(spec)
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	switch {
	case len(f) == 2 && f[0] == "udpecho":
		pc, err := net.ListenPacket("udp4", f[1])
		if err != nil {
			return fail(err)
		}
		fmt.Println("ready")
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return fail(err)
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	case len(f) == 4 && f[0] == "udpping":
		count, err := strconv.Atoi(f[2])
		if err != nil {
			return fail(err)
		}
		gap, err := time.ParseDuration(f[3])
		if err != nil {
			return fail(err)
		}
		conn, err := net.Dial("udp4", f[1])
		if err != nil {
			return fail(err)
		}
		got := make(map[int]bool)
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 64)
			for {
				n, err := conn.Read(buf)
				if errors.Is(err, net.ErrClosed) {
					return
				}
				if seq, err := strconv.Atoi(string(buf[:n])); err == nil {
					got[seq] = true
				}
			}
		}()
		for i := 0; i < count; i++ {
			_, _ = conn.Write([]byte(strconv.Itoa(i)))
			time.Sleep(gap)
		}
		time.Sleep(500 * time.Millisecond)
		conn.Close()
		<-done // got is the reader's until here
		fmt.Printf("sent %d received %d\n", count, len(got))
		return 0
	}
	return fail(errors.New("unknown mode " + spec))
}

// helperCmd returns the command that runs the test binary as a helper on
// host i.
func (nw *network) helperCmd(i int, spec string) *exec.Cmd {
	argv := wrapped(nw.wrap(i), os.Args[0])
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), testHelperEnv+"="+spec)
	return cmd
}

// udpLoss sends count datagrams from host a to an echo server on host b and
// returns the fraction that did not come back.
func (nw *network) udpLoss(a, b, count int) float64 {
	t := nw.t
	t.Helper()
	addr := nw.ip(b) + ":9999"
	echo := nw.helperCmd(b, "udpecho "+addr)
	stdout, err := echo.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	echo.Stderr = os.Stderr
	if err := echo.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = echo.Process.Kill()
		_ = echo.Wait()
	}()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("udp echo on %s: %q %v", nw.ns(b), line, err)
	}
	ping := nw.helperCmd(a, fmt.Sprintf("udpping %s %d 2ms", addr, count))
	out, err := ping.CombinedOutput()
	if err != nil {
		t.Fatalf("udp ping from %s: %v: %s", nw.ns(a), err, out)
	}
	var sent, received int
	if _, err := fmt.Sscanf(string(out), "sent %d received %d", &sent, &received); err != nil || sent == 0 {
		t.Fatalf("udp ping output %q: %v", out, err)
	}
	return 1 - float64(received)/float64(sent)
}

func TestNetnsLoss(t *testing.T) {
	nw := newNetwork(t, 2)
	const count = 500
	base := nw.udpLoss(1, 2, count)
	t.Logf("no loss rule: %.1f%% of %d UDP round trips lost", 100*base, count)
	if base > 0.1 {
		t.Errorf("%.1f%% lost without any loss rule", 100*base)
	}

	nw.loss(0.2)
	lost := nw.udpLoss(1, 2, count)
	d1, err1 := nw.chainCounts(1, lossChain)
	d2, err2 := nw.chainCounts(2, lossChain)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	t.Logf("loss(0.2) on both hosts: %.1f%% of %d UDP round trips lost (expected 1−0.8⁴ = 59%%); dropped by iptables: host1 %d, host2 %d",
		100*lost, count, d1, d2)
	// A round trip crosses four drop rules; 500 samples put the observed
	// fraction within a few percent of 59 %. The bounds only prove the rule
	// works both ways, in and out.
	if lost < 0.35 || lost > 0.8 || d1 == 0 || d2 == 0 {
		t.Errorf("loss(0.2): %.1f%% lost, drops %d/%d; want about 59%% and drops on both hosts", 100*lost, d1, d2)
	}

	nw.clearLoss()
	if after := nw.udpLoss(1, 2, count); after > 0.1 {
		t.Errorf("clearLoss: still %.1f%% lost", 100*after)
	}
}

func TestNetnsPartitionGossip(t *testing.T) {
	nw := newNetwork(t, 5)
	c := newCluster(t)
	nodes := make([]*node, 6) // 1-based
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range nodes[1:] {
				if n != nil {
					t.Logf("log of %s:\n%s", n.name, n.logTail())
				}
			}
		}
	})
	start := time.Now()
	nodes[1] = nw.add(c, 1)
	nodes[1].start()
	// The others start together; each joins the first.
	for i := 2; i <= 5; i++ {
		nodes[i] = nw.add(c, i, "--join", nw.ip(1))
		if err := nodes[i].startNoWait(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes[1:] {
		waitFor(t, 90*time.Second, n.name+" sees all five", func() error {
			select {
			case <-n.exited:
				return fatalErr{fmt.Errorf("%s exited: %v", n.name, n.exitErr)}
			default:
			}
			return allAlive(n, names...)
		})
	}
	t.Logf("five agents in five namespaces converged after %v", time.Since(start).Round(time.Millisecond))

	minority, majority := []int{4, 5}, []int{1, 2, 3}
	nw.partition(majority, minority)
	t0 := time.Now()
	t.Log("partition {1,2,3} | {4,5}")
	for _, a := range majority {
		for _, b := range minority {
			waitGossip(t, nodes[a], nodes[b].name, "failed", 90*time.Second)
			waitGossip(t, nodes[b], nodes[a].name, "failed", 90*time.Second)
		}
	}
	t.Logf("both sides see the other failed after %v", time.Since(t0).Round(time.Millisecond))
	// Each side still sees its own members alive.
	for _, side := range [][]int{majority, minority} {
		for _, a := range side {
			var want []string
			for _, b := range side {
				want = append(want, nodes[b].name)
			}
			if err := allAlive(nodes[a], want...); err != nil {
				t.Errorf("inside a side: %v", err)
			}
		}
	}

	nw.heal()
	t0 = time.Now()
	t.Log("healed")
	for _, n := range nodes[1:] {
		waitFor(t, 120*time.Second, n.name+" sees all five again", func() error { return allAlive(n, names...) })
	}
	t.Logf("all alive again after %v", time.Since(t0).Round(time.Millisecond))
}
