package membership

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/serf/serf"
	"github.com/rs/zerolog"
)

func TestParseAddr(t *testing.T) {
	tests := []struct {
		in       string
		host     string
		port     int
		wantFail bool
	}{
		{"10.0.0.1", "10.0.0.1", DefaultPort, false},
		{"10.0.0.1:8000", "10.0.0.1", 8000, false},
		{"[::1]:8000", "::1", 8000, false},
		{"::1", "::1", DefaultPort, false},
		{"", "", 0, true},
		{"10.0.0.1:x", "", 0, true},
		{"10.0.0.1:70000", "", 0, true},
		{":7000", "", 0, true},
	}
	// A host name resolves to an address (which one is the resolver's
	// order: either loopback).
	if host, port, err := ParseAddr("localhost:7000", DefaultPort); err != nil || port != 7000 || (host != "127.0.0.1" && host != "::1") {
		t.Errorf("ParseAddr(localhost:7000) = %s:%d, %v", host, port, err)
	}
	for _, tt := range tests {
		host, port, err := ParseAddr(tt.in, DefaultPort)
		if tt.wantFail {
			if err == nil {
				t.Errorf("ParseAddr(%q) = %s:%d, want an error", tt.in, host, port)
			}
			continue
		}
		if err != nil || host != tt.host || port != tt.port {
			t.Errorf("ParseAddr(%q) = %s:%d, %v; want %s:%d", tt.in, host, port, err, tt.host, tt.port)
		}
	}
}

// A seed is checked for its form at start, and resolved when joined: a
// name without a DNS record yet (a peer not started) fails only itself.
func TestSeedsResolveAtJoin(t *testing.T) {
	for _, ok := range []string{"vigil-2.vigil.default.svc.cluster.local", "seed.invalid:7946", "10.0.0.1", "[::1]:7946"} {
		if err := CheckAddr(ok); err != nil {
			t.Errorf("CheckAddr(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "x:y", ":7946", "h:70000"} {
		if err := CheckAddr(bad); err == nil {
			t.Errorf("CheckAddr(%q) passed", bad)
		}
	}
	a, b, stop := startPair(t)
	defer stop()
	seed := a.Local()
	n, err := b.Join([]string{"no-such-seed.invalid", fmt.Sprintf("%s:%d", seed.Addr, seed.Port)})
	if err != nil || n != 1 {
		t.Fatalf("join past an unresolvable seed: %d %v", n, err)
	}
	if _, err := b.Join([]string{"no-such-seed.invalid"}); err == nil || !strings.Contains(err.Error(), "cannot resolve") {
		t.Fatalf("join of only an unresolvable seed: %v", err)
	}
}

func TestLoadCodec(t *testing.T) {
	l := Load{CPU: 42.4, Mem: 99.6, Load: 3.14}
	got, ok := decodeLoad(l.encode())
	if !ok || got.CPU != 42 || got.Mem != 100 || got.Load != 3.1 {
		t.Errorf("round trip: %+v %v", got, ok)
	}
	if b := (Load{CPU: -5, Mem: 500, Load: 99}).encode(); b[0] != 0 || b[1] != 100 || b[2] != 255 {
		t.Errorf("clamping: %v", b)
	}
	for _, bad := range [][]byte{nil, {1, 2}, {101, 0, 0}, {0, 101, 0}, {1, 2, 3, 4}} {
		if _, ok := decodeLoad(bad); ok {
			t.Errorf("decodeLoad(%v) accepted", bad)
		}
	}
}

func TestLevelWriterNamesTheKeyMismatch(t *testing.T) {
	var buf bytes.Buffer
	lg := newStdLogger(zerolog.New(&buf))
	lg.Printf("[ERR] memberlist: failed to receive: No installed keys could decrypt the message from=1.2.3.4")
	lg.Printf("[DEBUG] serf: messageJoinType: n2")
	out := buf.String()
	if !strings.Contains(out, `"level":"error"`) || !strings.Contains(out, "different --encrypt key") || !strings.Contains(out, `"src":"memberlist"`) {
		t.Errorf("error line: %s", out)
	}
	if !strings.Contains(out, `"level":"debug"`) || !strings.Contains(out, `"src":"serf"`) {
		t.Errorf("debug line: %s", out)
	}
}

func TestInboundAnswersOnce(t *testing.T) {
	var got [][]byte
	in := Inbound{From: "n2", reply: func(b []byte) error { got = append(got, b); return nil }}
	if !in.CanReply() {
		t.Fatal("a query cannot be answered")
	}
	if err := in.Reply([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if in.CanReply() || in.Reply([]byte("b")) == nil {
		t.Error("a query was answered twice")
	}
	if len(got) != 1 {
		t.Errorf("replies %q", got)
	}
}

// startPair starts two meshes on loopback addresses of this process and
// joins them. Ports below 32768, away from the e2e tests' 127.0.x.y.
func startPair(t *testing.T) (*Mesh, *Mesh, func()) {
	t.Helper()
	return startPairKeys(t, nil, nil)
}

// startPairKeys is startPair with gossip keys for a and b (nil: none).
func startPairKeys(t *testing.T, keyA, keyB []byte) (*Mesh, *Mesh, func()) {
	t.Helper()
	base := 20000 + os.Getpid()%5000*2
	keys := map[string][]byte{"a": keyA, "b": keyB}
	mk := func(name string, port int) *Mesh {
		m, err := Start(Config{NodeName: name, BindAddr: "127.0.0.1", BindPort: port, Profile: "local",
			Tags: map[string]string{BootTag: name + "-boot"}, Logger: zerolog.Nop(), EncryptKey: keys[name]})
		if err != nil {
			t.Skipf("cannot start a mesh on 127.0.0.1:%d: %v", port, err)
		}
		return m
	}
	a := mk("a", base)
	b := mk("b", base+1)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, m := range []*Mesh{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); m.Pump(ctx) }()
	}
	if _, err := b.Join([]string{fmt.Sprintf("127.0.0.1:%d", base)}); err != nil {
		t.Fatal(err)
	}
	return a, b, func() {
		cancel()
		wg.Wait()
		a.Shutdown()
		b.Shutdown()
	}
}

// waitUntil polls cond until it holds or the (generous) bound passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSendAndAskOverARealMesh(t *testing.T) {
	a, b, stop := startPair(t)
	defer stop()
	waitUntil(t, 10*time.Second, "both members", func() bool { return len(a.Members()) == 2 && len(b.Members()) == 2 })

	// A consensus message goes to b alone, point to point, and is
	// acknowledged: nothing is left to resend.
	if err := a.Send("b", []byte("prepare")); err != nil {
		t.Fatal(err)
	}
	var msgs []Inbound
	waitUntil(t, 5*time.Second, "the message at b", func() bool {
		a.Resend()
		msgs = append(msgs, b.TakeInbound()...)
		return len(msgs) > 0
	})
	if m := msgs[0]; m.From != "a" || m.Query != ConsensusQuery || string(m.Payload) != "prepare" || m.CanReply() {
		t.Errorf("message %+v", m)
	}
	waitUntil(t, 5*time.Second, "the ack at a", func() bool { return a.direct.pending() == 0 })
	if st := a.DirectStats(); st.Sent != 1 || st.Acked != 1 {
		t.Errorf("a's stats %+v", st)
	}

	// Unknown nodes and oversized messages are refused at once.
	if err := a.Send("nobody", []byte("x")); err == nil {
		t.Error("a message to an unknown node was sent")
	}
	if err := a.Send("b", bytes.Repeat([]byte("x"), MaxMessage+1)); err == nil {
		t.Error("an oversized message was sent")
	}

	// Ask collects the answers of every agent that has one.
	go func() {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			for _, in := range b.TakeInbound() {
				if in.Query == JournalQuery {
					in.Reply([]byte("entry of " + string(in.Payload)))
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	answers, err := a.Ask(JournalQuery, []byte("e5-x"), 2*time.Second)
	got := map[string]string{}
	for _, an := range answers {
		got[an.From] = string(an.Payload)
	}
	// a answers its own query too (nobody here replies for it: empty).
	if err != nil || len(answers) > 2 || got["b"] != "entry of e5-x" {
		t.Errorf("Ask = %+v, %v", answers, err)
	}
}

// Concurrent queries each get their answers. serf stamps a query with its
// clock without advancing it, so unserialized queries started together
// share a Lamport time and all but one lose their answers.
func TestConcurrentAsksKeepTheirAnswers(t *testing.T) {
	a, b, stop := startPair(t)
	defer stop()
	waitUntil(t, 10*time.Second, "both members", func() bool { return len(a.Members()) == 2 && len(b.Members()) == 2 })
	const asks = 12
	answering := make(chan struct{})
	go func() {
		deadline := time.Now().Add(20 * time.Second)
		for n := 0; n < asks && time.Now().Before(deadline); {
			for _, in := range b.TakeInbound() {
				if in.Query == JournalQuery {
					in.Reply(append([]byte("entry of "), in.Payload...))
					n++
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
		close(answering)
	}()
	var wg sync.WaitGroup
	lost := make(chan string, asks)
	for i := 0; i < asks; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("e%d-x", i)
			answers, err := a.Ask(JournalQuery, []byte(id), 3*time.Second)
			for _, an := range answers {
				if an.From == "b" && string(an.Payload) == "entry of "+id {
					return
				}
			}
			lost <- fmt.Sprintf("%s: %+v %v", id, answers, err)
		}()
	}
	wg.Wait()
	close(lost)
	for l := range lost {
		t.Errorf("b's answer lost: %s", l)
	}
	<-answering
}

// Members with other consensus rules, or of another cluster, are refused;
// members that publish none yet (still joining) are let in.
func TestClusterGuardRefusesOtherRulesAndClusters(t *testing.T) {
	g := clusterGuard{id: func() string { return "c1" }, rules: "majority/5", log: zerolog.Nop()}
	for _, tc := range []struct {
		tags map[string]string
		ok   bool
	}{
		{map[string]string{RulesTag: "majority/5", ClusterTag: "c1"}, true},
		{map[string]string{}, true},
		{map[string]string{RulesTag: "majority/3"}, false},
		{map[string]string{RulesTag: "two-thirds/5"}, false},
		{map[string]string{RulesTag: "majority/5", ClusterTag: "c2"}, false},
	} {
		err := g.NotifyMerge([]*serf.Member{{Name: "x", Tags: tc.tags}})
		if (err == nil) != tc.ok {
			t.Errorf("tags %v: err %v, want ok=%v", tc.tags, err, tc.ok)
		}
	}
	// Without a cluster yet, rules are still checked.
	g.id = func() string { return "" }
	if g.NotifyMerge([]*serf.Member{{Name: "x", Tags: map[string]string{RulesTag: "majority/0"}}}) == nil {
		t.Error("other rules let in before the cluster exists")
	}
}

// A verdict burst pings with vigil's own pings: a live member answers
// every one and the burst ends as soon as it has; a silent address costs
// the wait after the last ping; a pong from another name is not the
// member's answer. A burst's pongs never reach the loop's queue.
func TestPingBurstCountsTheMembersPongs(t *testing.T) {
	a, b, stop := startPair(t)
	defer stop()
	waitUntil(t, 10*time.Second, "both members", func() bool { return len(a.Members()) == 2 && len(b.Members()) == 2 })
	bAddr := fmt.Sprintf("127.0.0.1:%d", 20000+os.Getpid()%5000*2+1)
	a.TakePongs()

	start := time.Now()
	ok, miss := a.PingBurst("b", bAddr, 5, 5*time.Millisecond, 20*time.Second)
	if ok != 5 || miss != 0 {
		t.Errorf("a live member: ok %d, miss %d; want 5, 0", ok, miss)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a burst answered in full waited %v: it should end at the last pong", d)
	}
	if q := a.TakePongs(); len(q) != 0 {
		t.Errorf("the burst's pongs reached the loop's queue: %+v", q)
	}

	// Nobody listens on a closed UDP port.
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	dead := c.LocalAddr().String()
	c.Close()
	start = time.Now()
	ok, miss = a.PingBurst("b", dead, 3, time.Millisecond, 150*time.Millisecond)
	if ok != 0 || miss != 3 {
		t.Errorf("a silent address: ok %d, miss %d; want 0, 3", ok, miss)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("a silent burst ended after %v, before its wait", d)
	}

	// b answers as b: not as the member c the burst is about.
	ok, miss = a.PingBurst("c", bAddr, 2, time.Millisecond, 300*time.Millisecond)
	if ok != 0 || miss != 2 {
		t.Errorf("pongs from another name: ok %d, miss %d; want 0, 2", ok, miss)
	}
	a.mu.Lock()
	left := len(a.waiting)
	a.mu.Unlock()
	if left != 0 {
		t.Errorf("%d burst pings still waited for after their bursts", left)
	}
}
