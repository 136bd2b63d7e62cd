package main

// The end-to-end harness: real vigil agent processes on 127.0.x.y, driven
// through the CLI as a user would.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-project/vigil/agent"
)

var vigilBin string

func TestMain(m *testing.M) {
	// The test binary doubles as a tiny helper process run inside network
	// namespaces (see netns_test.go); it must not build anything then.
	if h := os.Getenv(testHelperEnv); h != "" {
		os.Exit(runTestHelper(h))
	}
	dir, err := os.MkdirTemp("", "vigil-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	vigilBin = filepath.Join(dir, "vigil")
	args := []string{"build", "-o", vigilBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building vigil:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// subnet hands each test its own 127.0.X.0/24 so that a slow process of one
// test never holds the ports of the next.
var (
	subnetMu   sync.Mutex
	nextSubnet = 10
)

func newSubnet() int {
	subnetMu.Lock()
	defer subnetMu.Unlock()
	nextSubnet++
	return nextSubnet
}

var (
	subnetLockMu sync.Mutex
	subnetLocks  []*os.File // held until the process exits
)

// reserveSubnet returns a subnet from newSubnet that no other test process
// has reserved: it holds an flock on os.TempDir()/vigil-e2e-subnet-X.lock
// for the rest of the process (the kernel drops it when the process dies).
// Two `go test` processes each count subnets from the same start; without
// this, their agents meet on the same addresses and kill each other's.
func reserveSubnet(t testing.TB) int {
	t.Helper()
	for {
		s := newSubnet()
		if s > 254 {
			t.Fatal("no loopback subnet left: 127.0.11..254 all used")
		}
		f, err := os.OpenFile(filepath.Join(os.TempDir(), fmt.Sprintf("vigil-e2e-subnet-%d.lock", s)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		subnetLockMu.Lock()
		subnetLocks = append(subnetLocks, f)
		subnetLockMu.Unlock()
		return s
	}
}

// cluster is a set of agents on one test subnet.
type cluster struct {
	t      *testing.T
	subnet int
	dir    string
	nodes  map[string]*node
}

type node struct {
	c       *cluster
	name    string
	ip      string
	dataDir string
	logPath string
	args    []string
	// wrap is a command prefix that puts the agent and its client commands
	// where the node lives, for example "ip netns exec NS"; empty on loopback.
	wrap    []string
	env     []string // added to the test's environment
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	return &cluster{t: t, subnet: reserveSubnet(t), dir: t.TempDir(), nodes: map[string]*node{}}
}

// ip returns the address of the i-th host of the cluster's subnet (i ≥ 1).
func (c *cluster) ip(i int) string { return fmt.Sprintf("127.0.%d.%d", c.subnet, i) }

// add declares node i (named n<i>) without starting it.
func (c *cluster) add(i int, extra ...string) *node {
	return c.addAt(fmt.Sprintf("n%d", i), c.ip(i), nil, extra...)
}

// addAt declares a node named name with its gossip and API addresses on ip,
// run behind the command prefix wrap (nil: on this host), without starting it.
func (c *cluster) addAt(name, ip string, wrap []string, extra ...string) *node {
	n := &node{
		c: c, name: name, ip: ip, wrap: wrap,
		dataDir: filepath.Join(c.dir, name, "data"),
		logPath: filepath.Join(c.dir, name+".log"),
	}
	n.args = append([]string{"agent", "--node", name, "--bind", n.ip + ":7946",
		"--http-addr", n.ip + ":7947", "--rpc-addr", n.ip + ":7373", "--data-dir", n.dataDir, "--profile", "local",
		"--log-level", "debug"}, extra...)
	// Tests restart agents many times a minute: rejoin damping starts at
	// 1 s unless a test sets it (TestRejoinIsDampedPerName checks it).
	if !slices.Contains(extra, "--rejoin-stable") {
		n.args = append(n.args, "--rejoin-stable", "1s")
	}
	// A node given no seed is the one that creates the cluster, as an
	// operator would start it (--bootstrap is ignored once its data dir
	// holds a cluster).
	if !slices.ContainsFunc(extra, func(a string) bool {
		return a == "--join" || a == "--retry-join" || strings.HasPrefix(a, "--bootstrap")
	}) {
		n.args = append(n.args, "--bootstrap")
	}
	c.nodes[name] = n
	return n
}

// startThree starts n1, then n2 and n3 joining it, and waits until each
// agrees all three are members.
func startThree(t *testing.T) (*cluster, []*node) {
	t.Helper()
	c := newCluster(t)
	n1 := c.add(1)
	n1.start()
	ns := []*node{n1, c.add(2, "--join", c.ip(1)), c.add(3, "--join", c.ip(1))}
	ns[1].start()
	ns[2].start()
	for _, n := range ns {
		waitFor(t, 60*time.Second, n.name+" agrees all three are members", func() error { return allAgreed(n, "n1", "n2", "n3") })
	}
	return c, ns
}

// start starts the agent and waits until its API answers.
func (n *node) start() {
	t := n.c.t
	t.Helper()
	if err := n.startNoWait(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, n.name+" answers", func() error {
		select {
		case <-n.exited:
			return fatalErr{fmt.Errorf("%s exited: %v\n%s", n.name, n.exitErr, n.logTail())}
		default:
		}
		_, err := n.info()
		return err
	})
}

func (n *node) startNoWait() error {
	f, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	argv := wrapped(n.wrap, vigilBin, n.args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), n.env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func() {
		n.exitErr = cmd.Wait()
		f.Close()
		close(n.exited)
	}()
	n.c.t.Cleanup(func() {
		n.kill()
		// VIGIL_E2E_LOGS=DIR keeps the agents' logs of a failed test (of every
		// test with VIGIL_E2E_KEEP_ALL=1).
		if keep := os.Getenv("VIGIL_E2E_LOGS"); keep != "" && (n.c.t.Failed() || os.Getenv("VIGIL_E2E_KEEP_ALL") != "") {
			dst := filepath.Join(keep, n.c.t.Name())
			if os.MkdirAll(dst, 0o755) == nil {
				if b, err := os.ReadFile(n.logPath); err == nil {
					os.WriteFile(filepath.Join(dst, n.name+".log"), b, 0o644)
				}
			}
		}
	})
	return nil
}

// startExpectingExit starts an agent that is meant to give up (a refused
// join, a seed that never answers) and waits up to a minute for it to
// exit; if it is still running then, the test fails with stuck and the
// agent's log.
func (n *node) startExpectingExit(stuck string) {
	t := n.c.t
	t.Helper()
	if err := n.startNoWait(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s\n%s", stuck, n.logTail())
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *node) kill() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

// stop sends sig and waits up to d for the process to exit.
func (n *node) stop(sig syscall.Signal, d time.Duration) error {
	_ = n.cmd.Process.Signal(sig)
	select {
	case <-n.exited:
		return n.exitErr
	case <-time.After(d):
		return fmt.Errorf("%s did not exit within %v after %v", n.name, d, sig)
	}
}

func (n *node) logTail() string {
	b, _ := os.ReadFile(n.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// vigil runs a client command against this node's API.
func (n *node) vigil(args ...string) (string, error) {
	full := append([]string{args[0], "--http-addr", n.ip + ":7947"}, args[1:]...)
	return runVigilIn(n.wrap, full...)
}

func runVigil(args ...string) (string, error) { return runVigilIn(nil, args...) }

// runVigilIn runs a client command behind the command prefix wrap.
func runVigilIn(wrap []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	argv := wrapped(wrap, vigilBin, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("vigil %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func (n *node) members() ([]agent.MemberInfo, error) {
	out, err := n.vigil("members", "--format", "json")
	if err != nil {
		return nil, err
	}
	var ms []agent.MemberInfo
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		return nil, fmt.Errorf("members json: %v: %q", err, out)
	}
	return ms, nil
}

func (n *node) info() (agent.Info, error) {
	out, err := n.vigil("info", "--format", "json")
	if err != nil {
		return agent.Info{}, err
	}
	var i agent.Info
	return i, json.Unmarshal([]byte(out), &i)
}

func jsonUnmarshal(out string, v any) error { return json.Unmarshal([]byte(out), v) }

func parseViews(out string) (agent.Views, error) {
	var v agent.Views
	err := json.Unmarshal([]byte(out), &v)
	return v, err
}

// views returns the node's agreed view and decided log.
func (n *node) views() (agent.Views, error) {
	out, err := n.vigil("views", "--format", "json")
	if err != nil {
		return agent.Views{}, err
	}
	return parseViews(out)
}

// gossipStatus returns serf's status of member name as node n sees it.
func (n *node) gossipStatus(name string) (string, error) {
	ms, err := n.members()
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if m.Name == name {
			return m.Gossip, nil
		}
	}
	return "", fmt.Errorf("%s does not list %s", n.name, name)
}

// fatalErr stops waitFor at once.
type fatalErr struct{ error }

// waitFor polls cond until it returns nil, failing the test after d.
// The bound is generous: it is there to end a broken test, not to time one.
func waitFor(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if fe, ok := err.(fatalErr); ok {
			t.Fatalf("waiting for %s: %v", what, fe.error)
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up after %v: %v", what, d, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// wrapped returns the command line prog args... behind the prefix wrap.
func wrapped(wrap []string, prog string, args ...string) []string {
	argv := make([]string, 0, len(wrap)+1+len(args))
	argv = append(append(append(argv, wrap...), prog), args...)
	return argv
}

// writeScript writes an executable shell script.
func writeScript(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}
