package main

// The serf baseline: the serf agent built from github.com/hashicorp/serf/cmd/serf
// at the version in go.mod, LAN profile, with its own
// `-event-handler member-failed=SCRIPT`, run on the same hosts as vigil
// (127.0.X.Y or network namespaces) so that acceptance tests can compare the
// two. The handler appends `<unix-nanos> <node> <stdin line>` to a file per
// node, so a test can compute kill→handler delays and count runs.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serfSettle is how long countSerfFalseFailures keeps counting after the
// loss ends: a suspicion begun under loss can still time out, and serf's
// agent coalesces member events (3 s, quiescent 1 s). LAN profile, 5 nodes:
// the longest suspicion is 6·4·log10(5)·1 s ≈ 17 s.
const serfSettle = 20 * time.Second

var serfBuild struct {
	once sync.Once
	path string
	err  error
}

// serfBinary returns the serf agent to run: $VIGIL_SERF_BIN if set, else
// the one built by `go install github.com/hashicorp/serf/cmd/serf@V` with V
// the version in go.mod, cached under os.TempDir()/vigil-serf-V/serf. The
// test skips when it cannot be built (no module proxy, for example).
func serfBinary(t testing.TB) string {
	t.Helper()
	return findSerf(t, t.Skipf)
}

// findSerf returns the serf binary, or calls unavailable (t.Skipf or
// t.Fatalf) when it cannot be built.
func findSerf(t testing.TB, unavailable func(string, ...any)) string {
	t.Helper()
	if p := os.Getenv("VIGIL_SERF_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("VIGIL_SERF_BIN: %v", err)
		}
		return p
	}
	serfBuild.once.Do(func() { serfBuild.path, serfBuild.err = buildSerf(t) })
	if serfBuild.err != nil {
		unavailable("serf unavailable (run make serf): %v", serfBuild.err)
	}
	return serfBuild.path
}

func buildSerf(t testing.TB) (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/hashicorp/serf").Output()
	if err != nil {
		return "", fmt.Errorf("serf version from go.mod: %w", err)
	}
	version := strings.TrimSpace(string(out))
	dir := filepath.Join(os.TempDir(), "vigil-serf-"+version)
	bin := filepath.Join(dir, "serf")
	if fi, err := os.Stat(bin); err == nil && fi.Mode()&0o111 != 0 {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Build into a directory of our own and rename, so that two test
	// processes building at once never see half a binary.
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	t.Logf("building serf %s (go install; cached in %s)", version, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/hashicorp/serf/cmd/serf@"+version)
	// pkg@version builds outside our module: go.mod and go.sum stay as
	// they are.
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOWORK=off", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install serf@%s: %v: %s", version, err, lastBytes(string(out), 2000))
	}
	if err := os.Rename(filepath.Join(tmp, "serf"), bin); err != nil {
		return "", err
	}
	return bin, nil
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// serfAgent is one serf agent process.
type serfAgent struct {
	name    string
	host    host
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
}

// serfCluster is serf agents n1..nN, one per host, joined through n1.
type serfCluster struct {
	t      testing.TB
	bin    string
	dir    string // handler output: failed.<node>
	agents []*serfAgent
}

// serfEvent is one line written by the member-failed handler.
type serfEvent struct {
	at     time.Time // when the handler started
	node   string    // the agent that ran it
	member string    // the member it was told about
	line   string    // the stdin line: NAME\tADDR\tROLE\tTAGS
}

// startSerfCluster starts one serf agent per host (n<i> on hosts[i-1], LAN
// profile, gossip on :7946, RPC on :7373, extra flags appended) and waits
// until every agent sees all of them alive. The agents are killed when the
// test ends.
func startSerfCluster(t testing.TB, hosts []host, extra ...string) *serfCluster {
	t.Helper()
	sc := &serfCluster{t: t, bin: serfBinary(t), dir: t.TempDir()}
	// serf runs it with /bin/sh -c, one member per stdin line.
	script := filepath.Join(sc.dir, "member-failed.sh")
	body := `#!/bin/sh
ts=$(date +%s%N)
while IFS= read -r line; do
  printf '%s %s %s\n' "$ts" "$SERF_SELF_NAME" "$line" >> "` + sc.dir + `/failed.$SERF_SELF_NAME"
done
`
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sc.stop()
		if t.Failed() {
			for _, a := range sc.agents {
				b, _ := os.ReadFile(filepath.Join(sc.dir, "failed."+a.name))
				t.Logf("serf %s (pid %d, exit %v) handler output:\n%s\nlog:\n%s",
					a.name, a.cmd.Process.Pid, a.exitErr, b, a.logTail())
			}
		}
	})
	for i, h := range hosts {
		args := []string{"agent", "-node", fmt.Sprintf("n%d", i+1),
			"-bind", h.ip + ":7946", "-rpc-addr", h.ip + ":7373",
			"-profile", "lan", "-event-handler", "member-failed=" + script}
		if i > 0 {
			args = append(args, "-join", hosts[0].ip+":7946")
		}
		a := sc.start(h, fmt.Sprintf("n%d", i+1), append(args, extra...))
		if i == 0 {
			// The seed must answer before anybody joins it.
			waitFor(t, 30*time.Second, "serf n1 answers", func() error {
				_, err := sc.members(a)
				return err
			})
		}
	}
	for _, a := range sc.agents {
		// serf spreads a join by gossip and push-pull: at 50 agents on two
		// cores a late joiner can take over a minute to reach everyone.
		waitFor(t, max(60*time.Second, time.Duration(len(hosts))*3*time.Second), "serf "+a.name+" sees all", func() error {
			ms, err := sc.members(a)
			if err != nil {
				return err
			}
			alive := 0
			for _, m := range ms {
				if m.Status == "alive" {
					alive++
				}
			}
			if alive != len(hosts) {
				return fmt.Errorf("%d of %d alive: %+v", alive, len(hosts), ms)
			}
			return nil
		})
	}
	return sc
}

func (sc *serfCluster) start(h host, name string, args []string) *serfAgent {
	t := sc.t
	t.Helper()
	a := &serfAgent{name: name, host: h, logPath: filepath.Join(sc.dir, name+".log"), exited: make(chan struct{})}
	f, err := os.Create(a.logPath)
	if err != nil {
		t.Fatal(err)
	}
	argv := wrapped(h.wrap, sc.bin, args...)
	a.cmd = exec.Command(argv[0], argv[1:]...)
	a.cmd.Stdout, a.cmd.Stderr = f, f
	if err := a.cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	go func() {
		a.exitErr = a.cmd.Wait()
		f.Close()
		close(a.exited)
	}()
	sc.agents = append(sc.agents, a)
	return a
}

// kill sends SIGKILL to the agent and waits until it is gone.
func (a *serfAgent) kill() {
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.exited
}

func (a *serfAgent) logTail() string {
	b, _ := os.ReadFile(a.logPath)
	return lastBytes(string(b), 4000)
}

// stop kills every agent of the cluster.
func (sc *serfCluster) stop() {
	for _, a := range sc.agents {
		a.kill()
	}
}

type serfMember struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	Status string `json:"status"`
}

// members asks agent a for its members through serf's own RPC client.
func (sc *serfCluster) members(a *serfAgent) ([]serfMember, error) {
	select {
	case <-a.exited:
		return nil, fatalErr{fmt.Errorf("serf %s exited: %v\n%s", a.name, a.exitErr, a.logTail())}
	default:
	}
	out, err := runWrapped(a.host.wrap, "", sc.bin, "members", "-rpc-addr", a.host.ip+":7373", "-format", "json")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	var ms struct {
		Members []serfMember `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		return nil, fmt.Errorf("serf members json: %v: %q", err, out)
	}
	return ms.Members, nil
}

// failedEvents returns every line the member-failed handlers wrote so far.
func (sc *serfCluster) failedEvents() []serfEvent {
	sc.t.Helper()
	var evs []serfEvent
	for _, a := range sc.agents {
		f, err := os.Open(filepath.Join(sc.dir, "failed."+a.name))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			sc.t.Fatal(err)
		}
		s := bufio.NewScanner(f)
		for s.Scan() {
			ts, rest, ok1 := strings.Cut(s.Text(), " ")
			node, line, ok2 := strings.Cut(rest, " ")
			ns, err := strconv.ParseInt(ts, 10, 64)
			if !ok1 || !ok2 || err != nil {
				// The handler is still writing this line.
				continue
			}
			member, _, _ := strings.Cut(line, "\t")
			evs = append(evs, serfEvent{at: time.Unix(0, ns), node: node, member: member, line: line})
		}
		f.Close()
	}
	return evs
}

// serfHandlerRuns counts runs of the member-failed handler: the lines of one run
// share its node and start time.
func serfHandlerRuns(evs []serfEvent) int {
	runs := map[string]bool{}
	for _, e := range evs {
		runs[e.node+" "+strconv.FormatInt(e.at.UnixNano(), 10)] = true
	}
	return len(runs)
}

// measureSerfFailover starts n serf agents on loopback, kills one with
// SIGKILL and waits until every survivor's member-failed handler ran for
// it, runs times, each on a fresh cluster. It returns one kill→handler
// delay per survivor per run, in run order.
func measureSerfFailover(t testing.TB, n, runs int) []time.Duration {
	t.Helper()
	return measureSerfFailoverOn(t, runs, func() []host { return loopbackHosts(t, n) })
}

// measureSerfFailoverOn is measureSerfFailover on the hosts that hosts
// returns for each run (for example a network's).
func measureSerfFailoverOn(t testing.TB, runs int, hosts func() []host) []time.Duration {
	t.Helper()
	var delays []time.Duration
	for r := 1; r <= runs; r++ {
		sc := startSerfCluster(t, hosts())
		victim := sc.agents[len(sc.agents)-1]
		t0 := time.Now()
		victim.kill()
		seen := map[string]time.Time{}
		waitFor(t, 120*time.Second, "every survivor's member-failed handler for "+victim.name, func() error {
			for _, e := range sc.failedEvents() {
				if e.member == victim.name {
					if _, ok := seen[e.node]; !ok {
						seen[e.node] = e.at
					}
				}
			}
			var missing []string
			for _, a := range sc.agents[:len(sc.agents)-1] {
				if _, ok := seen[a.name]; !ok {
					select {
					case <-a.exited:
						return fatalErr{fmt.Errorf("survivor %s exited: %v", a.name, a.exitErr)}
					default:
					}
					missing = append(missing, a.name)
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("not yet on %v", missing)
			}
			return nil
		})
		var line []string
		for _, a := range sc.agents[:len(sc.agents)-1] {
			d := seen[a.name].Sub(t0)
			delays = append(delays, d)
			line = append(line, fmt.Sprintf("%s %v", a.name, d.Round(time.Millisecond)))
		}
		t.Logf("serf run %d/%d: kill -9 %s → member-failed handler: %s", r, runs, victim.name, strings.Join(line, ", "))
		sc.stop()
	}
	return delays
}

// countSerfFalseFailures starts a serf agent on every host of nw, makes
// every host drop packets in and out with probability loss for dur, then
// clears the loss and waits serfSettle for late verdicts. It returns how
// many times a member-failed handler ran, although nobody failed. The
// agents are stopped before it returns.
func countSerfFalseFailures(t testing.TB, nw *network, loss float64, dur time.Duration) int {
	t.Helper()
	sc := startSerfCluster(t, nw.hosts())
	nw.loss(loss)
	time.Sleep(dur)
	var dropped uint64
	for i := 1; i <= nw.n; i++ {
		d, err := nw.chainCounts(i, lossChain)
		if err != nil {
			t.Fatal(err)
		}
		dropped += d
	}
	nw.clearLoss()
	t.Logf("loss %.0f%% for %v: iptables dropped %d packets on %d hosts", 100*loss, dur, dropped, nw.n)
	time.Sleep(serfSettle)
	evs := sc.failedEvents()
	sc.stop()
	for _, e := range evs {
		t.Logf("serf false failure: %s ran member-failed for %s at %s", e.node, e.member, e.at.Format("15:04:05.000"))
	}
	return serfHandlerRuns(evs)
}

// medianDuration returns the median of ds (the mean of the middle two for an even
// count), 0 for none.
func medianDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// loopbackHosts returns n hosts on a fresh 127.0.X.0/24 of the harness,
// reserved against other test processes (see reserveSubnet) and skipping
// subnets whose ports something else holds.
func loopbackHosts(t testing.TB, n int) []host {
	t.Helper()
	for {
		s := reserveSubnet(t)
		hs := make([]host, n)
		free := true
		for i := range hs {
			hs[i] = host{ip: fmt.Sprintf("127.0.%d.%d", s, i+1)}
			free = free && portsFree(hs[i].ip)
		}
		if free {
			return hs
		}
	}
}

// portsFree reports whether gossip and RPC ports can be bound on ip, so that
// loopbackHosts avoids a subnet used by another test process.
func portsFree(ip string) bool {
	for _, p := range []string{"7946", "7947", "7373"} {
		l, err := net.Listen("tcp4", net.JoinHostPort(ip, p))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

func TestSerfBaseline(t *testing.T) {
	benchOnly(t, "for serf alone; CI measures serf in TestFailoverVersusSerf")
	const n, runs = 5, 3
	delays := measureSerfFailover(t, n, runs)
	if len(delays) != runs*(n-1) {
		t.Fatalf("%d delays, want %d (every survivor of every run)", len(delays), runs*(n-1))
	}
	t.Logf("serf %d agents, LAN profile, loopback: kill -9 → member-failed handler, median %v over %d survivor-runs",
		n, medianDuration(delays).Round(time.Millisecond), len(delays))
}

func TestSerfNetns(t *testing.T) {
	benchOnly(t, "for serf alone; CI measures serf in TestFailoverVersusSerf")
	serfBinary(t)
	nw := newNetwork(t, 5)
	t.Run("failover", func(t *testing.T) {
		delays := measureSerfFailoverOn(t, 2, nw.hosts)
		t.Logf("serf 5 agents, LAN profile, namespaces: kill -9 → member-failed handler, median %v over %d survivor-runs",
			medianDuration(delays).Round(time.Millisecond), len(delays))
	})
	t.Run("false-failures", func(t *testing.T) {
		const loss, dur = 0.2, 20 * time.Second
		runs := countSerfFalseFailures(t, nw, loss, dur)
		t.Logf("serf 5 agents, LAN profile, %.0f%% loss in and out on every host for %v: %d member-failed handler runs",
			100*loss, dur, runs)
	})
}

func BenchmarkSerfFailover(b *testing.B) {
	// One measurement of several runs, whatever b.N: each run takes seconds.
	delays := measureSerfFailover(b, 5, 3)
	b.ReportMetric(float64(medianDuration(delays))/float64(time.Millisecond), "median-ms")
	b.ReportMetric(0, "ns/op")
}
