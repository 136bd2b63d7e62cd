package agent

import (
	"bufio"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/rs/zerolog"

	"github.com/vigil-project/vigil/membership"
)

// rpcTestServer serves the RPC protocol of an agent that has nothing
// else: enough for the handshake, auth and the protocol's errors.
func rpcTestServer(t *testing.T, auth string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	a := &Agent{cfg: Config{RPCAuth: auth}, log: zerolog.New(zerolog.NewTestWriter(t)), logs: NewLogger(io.Discard, "error", "json")}
	a.spawn = func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	a.rpc = &rpcServer{a: a, ln: ln, clients: map[*rpcClient]struct{}{}}
	a.spawn(a.rpc.serve)
	t.Cleanup(func() { a.rpc.close(); wg.Wait() })
	return ln.Addr().String()
}

type rpcTestConn struct {
	t   *testing.T
	c   net.Conn
	enc *codec.Encoder
	dec *codec.Decoder
	w   *bufio.Writer
}

func dialRPC(t *testing.T, addr string) *rpcTestConn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	w := bufio.NewWriter(c)
	h := newRPCHandle()
	return &rpcTestConn{t: t, c: c, enc: codec.NewEncoder(w, h), dec: codec.NewDecoder(bufio.NewReader(c), h), w: w}
}

func (c *rpcTestConn) call(cmd string, seq uint64, body any) rpcResponseHeader {
	c.t.Helper()
	if err := c.enc.Encode(rpcRequestHeader{Command: cmd, Seq: seq}); err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		if err := c.enc.Encode(body); err != nil {
			c.t.Fatal(err)
		}
	}
	if err := c.w.Flush(); err != nil {
		c.t.Fatal(err)
	}
	var h rpcResponseHeader
	if err := c.dec.Decode(&h); err != nil {
		c.t.Fatalf("%s: no answer: %v", cmd, err)
	}
	if h.Seq != seq {
		c.t.Fatalf("%s: answer to seq %d, want %d", cmd, h.Seq, seq)
	}
	return h
}

// closed reports whether the server closed the connection.
func (c *rpcTestConn) closed() bool {
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil // EOF, or a reset when the server left bytes unread

}

func TestRPCProtocolErrors(t *testing.T) {
	addr := rpcTestServer(t, "tok")

	// A command before the handshake is refused and the connection closed,
	// as serf's agent does.
	c := dialRPC(t, addr)
	if h := c.call("members", 1, nil); h.Error != rpcHandshakeRequired {
		t.Fatalf("before the handshake: %q", h.Error)
	}
	if !c.closed() {
		t.Fatal("the connection stayed open after a command before the handshake")
	}

	c = dialRPC(t, addr)
	if h := c.call("handshake", 1, rpcHandshake{Version: 2}); h.Error != rpcUnsupportedVersion {
		t.Fatalf("version 2: %q", h.Error)
	}
	if h := c.call("handshake", 2, rpcHandshake{Version: 1}); h.Error != "" {
		t.Fatalf("handshake: %q", h.Error)
	}
	if h := c.call("handshake", 3, rpcHandshake{Version: 1}); h.Error != rpcDuplicateHandshake {
		t.Fatalf("second handshake: %q", h.Error)
	}
	// Before auth: refused, and a command's body is skipped so that the
	// connection stays in step.
	if h := c.call("event", 4, rpcEvent{Name: "x", Payload: []byte("y")}); h.Error != rpcAuthRequired {
		t.Fatalf("event before auth: %q", h.Error)
	}
	if h := c.call("auth", 5, rpcAuth{AuthKey: "wrong"}); h.Error != rpcInvalidAuthToken {
		t.Fatalf("wrong token: %q", h.Error)
	}
	if h := c.call("auth", 6, rpcAuth{AuthKey: "tok"}); h.Error != "" {
		t.Fatalf("auth: %q", h.Error)
	}
	if h := c.call("stream", 7, rpcStream{Type: "member-exploded"}); h.Error != rpcInvalidFilter {
		t.Fatalf("bad filter: %q", h.Error)
	}
	if h := c.call("monitor", 8, rpcMonitor{LogLevel: "LOUD"}); !strings.Contains(h.Error, "Unknown log level") {
		t.Fatalf("bad level: %q", h.Error)
	}
	if h := c.call("respond", 9, rpcRespond{ID: 77}); h.Error != rpcInvalidQueryID {
		t.Fatalf("respond to nothing: %q", h.Error)
	}
	if h := c.call("stop", 10, rpcStop{Stop: 12345}); h.Error != "" {
		t.Fatalf("stop of nothing: %q", h.Error)
	}
	if h := c.call("get-coordinate", 11, rpcCoordinateRequest{Node: "x"}); h.Error != "" {
		t.Fatalf("get-coordinate: %q", h.Error)
	} else {
		var co rpcCoordinateResponse
		if err := c.dec.Decode(&co); err != nil || co.Ok {
			t.Fatalf("get-coordinate body: %+v %v", co, err)
		}
	}
	// Streams are bounded per connection; serf's empty filter is "*".
	for i := 0; i < rpcMaxStreams; i++ {
		if h := c.call("stream", uint64(100+i), rpcStream{Type: ""}); h.Error != "" {
			t.Fatalf("stream %d: %q", i, h.Error)
		}
	}
	if h := c.call("stream", 200, rpcStream{Type: "*"}); !strings.Contains(h.Error, "at most") {
		t.Fatalf("one stream too many: %q", h.Error)
	}
	if h := c.call("stop", 201, rpcStop{Stop: 100}); h.Error != "" {
		t.Fatalf("stop: %q", h.Error)
	}
	if h := c.call("stream", 202, rpcStream{Type: "user"}); h.Error != "" {
		t.Fatalf("a stream after a stop: %q", h.Error)
	}
	if h := c.call("frobnicate", 12, nil); h.Error != rpcUnsupportedCommand {
		t.Fatalf("unknown command: %q", h.Error)
	}
}

// Garbage, and a length prefix of gigabytes, end the connection; the
// server goes on serving others.
func TestRPCSurvivesMalformedInput(t *testing.T) {
	addr := rpcTestServer(t, "")
	for name, raw := range map[string][]byte{
		"garbage": []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		// A string of 2 GiB that does come: the request limit ends it.
		"huge string": append([]byte{0x82, 0xa7, 'C', 'o', 'm', 'm', 'a', 'n', 'd', 0xdb, 0x7f, 0xff, 0xff, 0xff},
			make([]byte, rpcMaxRequest+1)...),
		"huge map":      {0xdf, 0x7f, 0xff, 0xff, 0xff},
		"truncated map": {0x82, 0xa3, 'S', 'e', 'q'},
	} {
		c := dialRPC(t, addr)
		// The server may close before it read everything.
		_, _ = c.c.Write(raw)
		_ = c.c.(*net.TCPConn).CloseWrite()
		if !c.closed() {
			t.Fatalf("%s: the connection stayed open", name)
		}
	}
	c := dialRPC(t, addr)
	if h := c.call("handshake", 1, rpcHandshake{Version: 1}); h.Error != "" {
		t.Fatalf("a handshake after the bad clients: %q", h.Error)
	}
}

func TestStreamFilters(t *testing.T) {
	user := membership.Event{Type: membership.User, Name: "deploy"}
	query := membership.Event{Type: membership.Query, Name: "load"}
	back := membership.Event{Type: membership.MemberRecovered}
	failed := membership.Event{Type: membership.MemberFailed}
	for _, tc := range []struct {
		spec string
		ok   bool
		want []bool // user, query, back, failed
	}{
		{"*", true, []bool{true, true, true, true}},
		{"user", true, []bool{true, false, false, false}},
		{"user:deploy,query:other", true, []bool{true, false, false, false}},
		{"query:load", true, []bool{false, true, false, false}},
		{"member-join", true, []bool{false, false, true, false}}, // a recovered member joins, to serf's tools
		{"member-failed,member-leave", true, []bool{false, false, false, true}},
		{"member-recovered", false, nil},
		{"bogus", false, nil},
		{"user,", false, nil},
	} {
		fs, ok := parseStreamFilter(tc.spec)
		if ok != tc.ok {
			t.Fatalf("%q: valid %v, want %v", tc.spec, ok, tc.ok)
		}
		for i, ev := range []membership.Event{user, query, back, failed} {
			got := false
			for _, f := range fs {
				got = got || f.matches(ev)
			}
			if tc.ok && got != tc.want[i] {
				t.Errorf("%q matches %v %q: %v, want %v", tc.spec, ev.Type, ev.Name, got, tc.want[i])
			}
		}
	}
}

func TestSerfStatus(t *testing.T) {
	for _, tc := range []struct{ agreed, gossip, want string }{
		{"alive", "alive", "alive"},
		{"suspect", "failed", "alive"}, // still a member until the view says otherwise
		{"alive", "leaving", "leaving"},
		{"failed", "alive", "failed"}, // decided; gossip may already see it back
		{"left", "left", "left"},
		{"joining", "alive", "alive"},
		{"joining", "failed", "failed"},
		{"joining", "unknown", "none"},
	} {
		if got := serfStatus(tc.agreed, tc.gossip); got != tc.want {
			t.Errorf("serfStatus(%s, %s) = %s, want %s", tc.agreed, tc.gossip, got, tc.want)
		}
	}
}

func TestKeyringFileWinsAndIsChecked(t *testing.T) {
	dir := t.TempDir()
	k1 := []byte("0123456789abcdef")
	k2 := []byte("fedcba9876543210")
	// No file, no key: no encryption, no file.
	if keys, path, _, err := loadKeyring(dir, nil); err != nil || keys != nil || path != "" {
		t.Fatalf("no key: %v %q %v", keys, path, err)
	}
	// --encrypt and no file: the file is made with it.
	keys, path, ignored, err := loadKeyring(dir, k1)
	if err != nil || len(keys) != 1 || string(keys[0]) != string(k1) || ignored {
		t.Fatalf("first start: %q %v %v", keys, ignored, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyring file: %v %v", fi, err)
	}
	// After a rotation (serf rewrites the file), the file wins over the
	// old --encrypt, which is reported ignored.
	if err := writeKeyring(path, [][]byte{k2}); err != nil {
		t.Fatal(err)
	}
	keys, _, ignored, err = loadKeyring(dir, k1)
	if err != nil || len(keys) != 1 || string(keys[0]) != string(k2) || !ignored {
		t.Fatalf("after the rotation: %q %v %v", keys, ignored, err)
	}
	// A file that is not a keyring is an error naming it.
	for _, body := range []string{"", "{}", "[]", `["bm90IGEga2V5"]`} {
		os.WriteFile(filepath.Join(dir, keyringFile), []byte(body), 0o600)
		if _, _, _, err := loadKeyring(dir, k1); err == nil || !strings.Contains(err.Error(), "keyring") {
			t.Fatalf("keyring %q: %v", body, err)
		}
	}
}

func TestMonitorSeesLinesAtItsLevel(t *testing.T) {
	var out strings.Builder
	logs := NewLogger(&out, "warn", "json")
	defer zerolog.SetGlobalLevel(zerolog.TraceLevel)
	logs.Logger.Debug().Msg("before any monitor")
	sub := logs.subscribe(zerolog.DebugLevel)
	logs.Logger.Debug().Str("k", "v").Msg("for the monitor")
	logs.Logger.Trace().Msg("below the monitor")
	logs.Logger.Warn().Msg("for both")
	if n := logs.unsubscribe(sub); n != 0 {
		t.Fatalf("dropped %d", n)
	}
	var got []string
	for len(sub.lines) > 0 {
		got = append(got, <-sub.lines)
	}
	if len(got) != 2 || !strings.Contains(got[0], "[DEBUG] for the monitor k=v") || !strings.Contains(got[1], "[WARN] for both") {
		t.Fatalf("monitor lines: %q", got)
	}
	if s := out.String(); strings.Contains(s, "monitor") || !strings.Contains(s, "for both") {
		t.Fatalf("the output at warn: %s", s)
	}
	if zerolog.GlobalLevel() != zerolog.WarnLevel {
		t.Fatalf("global level %v after the monitor left; want warn", zerolog.GlobalLevel())
	}
	for _, l := range []string{"TRACE", "debug", "INFO", "warn", "ERR", "error"} {
		if _, err := ParseMonitorLevel(l); err != nil {
			t.Errorf("%s: %v", l, err)
		}
	}
	if _, err := ParseMonitorLevel("loud"); err == nil {
		t.Error("loud is a level")
	}
}
