package recovery

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-project/vigil/membership"
)

func TestParseEventHandler(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		spec    string
		want    EventHandler
		wantErr string // substring; empty: no error
	}{
		{spec: "./h.sh", want: EventHandler{Filters: []Filter{{Event: "*"}}, Script: "./h.sh"}},
		{spec: "=./h.sh", want: EventHandler{Filters: []Filter{{Event: "*"}}, Script: "./h.sh"}},
		{spec: "*=./h.sh", want: EventHandler{Filters: []Filter{{Event: "*"}}, Script: "./h.sh"}},
		{spec: "member-join=/usr/bin/h arg", want: EventHandler{Filters: []Filter{{Event: "member-join"}}, Script: "/usr/bin/h arg"}},
		{spec: "member-join,member-leave,member-failed,member-update,member-reap,member-recovered=h", want: EventHandler{
			Filters: []Filter{{Event: "member-join"}, {Event: "member-leave"}, {Event: "member-failed"}, {Event: "member-update"}, {Event: "member-reap"}, {Event: "member-recovered"}},
			Script:  "h",
		}},
		{spec: "user=h", want: EventHandler{Filters: []Filter{{Event: "user"}}, Script: "h"}},
		{spec: "user:deploy=h", want: EventHandler{Filters: []Filter{{Event: "user", Name: "deploy"}}, Script: "h"}},
		{spec: "user:deploy,user:restart,member-join=h", want: EventHandler{Filters: []Filter{{Event: "user", Name: "deploy"}, {Event: "user", Name: "restart"}, {Event: "member-join"}}, Script: "h"}},
		{spec: "query=h", want: EventHandler{Filters: []Filter{{Event: "query"}}, Script: "h"}},
		{spec: "query:load,user:deploy=h", want: EventHandler{Filters: []Filter{{Event: "query", Name: "load"}, {Event: "user", Name: "deploy"}}, Script: "h"}},
		{spec: "user:=h", want: EventHandler{Filters: []Filter{{Event: "user"}}, Script: "h"}}, // serf: empty name = every user event
		{spec: "*=./h.sh a=b", want: EventHandler{Filters: []Filter{{Event: "*"}}, Script: "./h.sh a=b"}},
		{spec: "member-join=./h.sh a=b", want: EventHandler{Filters: []Filter{{Event: "member-join"}}, Script: "./h.sh a=b"}},

		{spec: "", wantErr: "empty script"},
		{spec: "member-join=", wantErr: "empty script"},
		{spec: "member-join=  ", wantErr: "empty script"},
		{spec: "member-joined=h", wantErr: `unknown event filter "member-joined"`},
		{spec: "member-join,bogus=h", wantErr: `unknown event filter "bogus"`},
		{spec: "member-join,=h", wantErr: `unknown event filter ""`},
		{spec: "member-join:x=h", wantErr: `unknown event filter "member-join:x"`},
		{spec: "USER=h", wantErr: `unknown event filter "USER"`},
		{spec: "QUERY=h", wantErr: `unknown event filter "QUERY"`},
		{spec: "./h.sh a=b", wantErr: `unknown event filter "./h.sh a" (if the '=' belongs to the script, write "*=./h.sh a=b")`},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := ParseEventHandler(tc.spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalidHandler) {
					t.Fatalf("ParseEventHandler(%q) = %+v, %v; want an ErrInvalidHandler containing %q", tc.spec, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseEventHandler(%q) = %+v, %v; want %+v", tc.spec, got, err, tc.want)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	t.Parallel()
	join := membership.Event{Type: membership.MemberJoin}
	failed := membership.Event{Type: membership.MemberFailed}
	recovered := membership.Event{Type: membership.MemberRecovered}
	deploy := membership.Event{Type: membership.User, Name: "deploy"}
	restart := membership.Event{Type: membership.User, Name: "restart"}
	load := membership.Event{Type: membership.Query, Name: "load"}
	all := []membership.Event{join, failed, recovered, deploy, restart, load}

	for _, tc := range []struct {
		spec string
		want []bool // for all, in order
	}{
		{"h", []bool{true, true, true, true, true, true}},
		{"*=h", []bool{true, true, true, true, true, true}},
		{"member-join=h", []bool{true, false, false, false, false, false}},
		{"member-failed,member-recovered=h", []bool{false, true, true, false, false, false}},
		{"user=h", []bool{false, false, false, true, true, false}},
		{"user:deploy=h", []bool{false, false, false, true, false, false}},
		{"user:deploy,member-join=h", []bool{true, false, false, true, false, false}},
		{"member-leave=h", []bool{false, false, false, false, false, false}},
		{"query=h", []bool{false, false, false, false, false, true}},
		{"query:load=h", []bool{false, false, false, false, false, true}},
		{"query:other=h", []bool{false, false, false, false, false, false}},
	} {
		h, err := ParseEventHandler(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		for i, ev := range all {
			if got := h.Matches(ev); got != tc.want[i] {
				t.Errorf("%q.Matches(%v %q) = %v; want %v", tc.spec, ev.Type, ev.Name, got, tc.want[i])
			}
		}
	}
}

var testSelf = membership.Member{
	Name: "node-1",
	Addr: net.ParseIP("10.0.0.1"),
	Tags: map[string]string{"role": "web", "dc-zone": "eu-1", "rack.id": "r7", "boot": "b1"},
}

func TestHandlerEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ev   membership.Event
		self membership.Member
		want []string
	}{
		{
			name: "member event",
			ev:   membership.Event{Type: membership.MemberFailed, Members: []membership.Member{{Name: "x"}}},
			self: testSelf,
			want: []string{
				"SERF_EVENT=member-failed", "SERF_SELF_NAME=node-1", "SERF_SELF_ROLE=web",
				"SERF_TAG_BOOT=b1", "SERF_TAG_DC_ZONE=eu-1", "SERF_TAG_RACK_ID=r7", "SERF_TAG_ROLE=web",
				"VIGIL_EVENT=member-failed", "VIGIL_SELF_NAME=node-1", "VIGIL_SELF_ROLE=web",
				"VIGIL_TAG_BOOT=b1", "VIGIL_TAG_DC_ZONE=eu-1", "VIGIL_TAG_RACK_ID=r7", "VIGIL_TAG_ROLE=web",
			},
		},
		{
			name: "user event, no tags",
			ev:   membership.Event{Type: membership.User, Name: "deploy", LTime: 42, Payload: []byte("v2")},
			self: membership.Member{Name: "n"},
			want: []string{
				"SERF_EVENT=user", "SERF_SELF_NAME=n", "SERF_SELF_ROLE=",
				"SERF_USER_EVENT=deploy", "SERF_USER_LTIME=42",
				"VIGIL_EVENT=user", "VIGIL_SELF_NAME=n", "VIGIL_SELF_ROLE=",
				"VIGIL_USER_EVENT=deploy", "VIGIL_USER_LTIME=42",
			},
		},
		{
			name: "query",
			ev:   membership.Event{Type: membership.Query, Name: "load", LTime: 9, Payload: []byte("q")},
			self: membership.Member{Name: "n"},
			want: []string{
				"SERF_EVENT=query", "SERF_SELF_NAME=n", "SERF_SELF_ROLE=",
				"SERF_QUERY_NAME=load", "SERF_QUERY_LTIME=9",
				"VIGIL_EVENT=query", "VIGIL_SELF_NAME=n", "VIGIL_SELF_ROLE=",
				"VIGIL_QUERY_NAME=load", "VIGIL_QUERY_LTIME=9",
			},
		},
		{
			name: "vigil's own event, non-ASCII tag key (one rune, one _)",
			ev:   membership.Event{Type: membership.MemberRecovered},
			self: membership.Member{Name: "n", Tags: map[string]string{"über": "1"}},
			want: []string{
				"SERF_EVENT=member-recovered", "SERF_SELF_NAME=n", "SERF_SELF_ROLE=", "SERF_TAG__BER=1",
				"VIGIL_EVENT=member-recovered", "VIGIL_SELF_NAME=n", "VIGIL_SELF_ROLE=", "VIGIL_TAG__BER=1",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := HandlerEnv(tc.ev, tc.self); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("HandlerEnv =\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestHandlerStdin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ev   membership.Event
		want string
	}{
		{
			name: "member lines",
			ev: membership.Event{Type: membership.MemberJoin, Members: []membership.Member{
				{Name: "node-1", Addr: net.ParseIP("10.0.0.1"), Tags: map[string]string{"role": "web", "dc": "eu", "a": "x=y"}},
				{Name: "node-2", Addr: net.ParseIP("fd00::2")},
				{Name: "odd\tname\n", Addr: net.ParseIP("10.0.0.3"), Tags: map[string]string{"role": "r\t1", "k": "v\nw"}},
				{Name: "no-addr"},
			}},
			want: "node-1\t10.0.0.1\tweb\ta=x=y,dc=eu,role=web\n" +
				"node-2\tfd00::2\t\t\n" +
				"odd\\tname\\n\t10.0.0.3\tr\\t1\tk=v\\nw,role=r\\t1\n" +
				"no-addr\t\t\t\n",
		},
		{name: "no members", ev: membership.Event{Type: membership.MemberLeave}, want: ""},
		{name: "payload gets a newline", ev: membership.Event{Type: membership.User, Payload: []byte("hello")}, want: "hello\n"},
		{name: "payload keeps its newline", ev: membership.Event{Type: membership.User, Payload: []byte("a\nb\n")}, want: "a\nb\n"},
		{name: "empty payload", ev: membership.Event{Type: membership.User}, want: ""},
		{name: "query payload", ev: membership.Event{Type: membership.Query, Payload: []byte("x")}, want: "x\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(HandlerStdin(tc.ev)); got != tc.want {
				t.Fatalf("HandlerStdin =\n%q\nwant\n%q", got, tc.want)
			}
		})
	}

	// The caller's payload is not modified (serf appends in place).
	p := make([]byte, 5, 16)
	copy(p, "hello")
	HandlerStdin(membership.Event{Type: membership.User, Payload: p})
	if got := p[:6]; string(got) != "hello\x00" {
		t.Fatalf("HandlerStdin wrote into the caller's payload: %q", got)
	}
}

func TestCheck(t *testing.T) {
	// Not parallel: sets PATH.
	dir := t.TempDir()
	exe := filepath.Join(dir, "vigil-test-handler")
	plain := filepath.Join(dir, "plain.sh")
	spaced := filepath.Join(dir, "my handler")
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{exe, 0o755}, {plain, 0o644}, {spaced, 0o755}} {
		if err := os.WriteFile(f.path, []byte("#!/bin/sh\n"), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f.path, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+"/bin"+string(os.PathListSeparator)+"/usr/bin")

	for _, tc := range []struct {
		script string
		is     error  // nil: accepted
		msg    string // substring of the error
	}{
		{script: exe + " --flag a=b"},
		{script: "vigil-test-handler arg"},
		{script: "sh -c 'exit 0'"},
		{script: "FOO=bar BAZ='q x' vigil-test-handler"},
		{script: "exec " + exe},
		{script: `"` + spaced + `" arg`},
		{script: `'` + spaced + `'`},
		{script: strings.ReplaceAll(spaced, " ", `\ `)},
		{script: exe + ";echo done"},
		{script: "$HANDLER_DIR/h.sh"},   // expansion: not checkable
		{script: "cd /tmp && ./h.sh"},   // builtin: not checkable
		{script: "if true; then :; fi"}, // keyword
		{script: "(./h.sh)"},
		{script: filepath.Join(dir, "missing.sh") + " arg", is: ErrNoHandler, msg: "recovery: handler " + filepath.Join(dir, "missing.sh") + ": no such file"},
		{script: plain, is: ErrNotExecutable, msg: "recovery: handler " + plain + " is not executable (mode 0644)"},
		{script: "no-such-vigil-handler arg", is: ErrNoHandler, msg: "no-such-vigil-handler: not found in PATH"},
		{script: "X=1 no-such-vigil-handler", is: ErrNoHandler, msg: "no-such-vigil-handler"},
		{script: "plain.sh", is: ErrNoHandler, msg: "plain.sh"}, // in PATH but not executable: LookPath skips it
		{script: "   ", is: ErrInvalidHandler, msg: "no command"},
		{script: "'unterminated", is: ErrInvalidHandler, msg: "unterminated"},
	} {
		t.Run(tc.script, func(t *testing.T) {
			err := EventHandler{Filters: []Filter{{Event: "*"}}, Script: tc.script}.Check()
			if tc.is == nil {
				if err != nil {
					t.Fatalf("Check = %v; want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Check = %v; want an error wrapping %v containing %q", err, tc.is, tc.msg)
			}
		})
	}
}

// TestEventHandlerEndToEnd parses a serf-style spec, checks it, and runs a
// real script that records its environment and stdin.
func TestEventHandlerEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	script := filepath.Join(dir, "handler.sh")
	body := "#!/bin/sh\n" +
		"env | grep -E '^(SERF|VIGIL)_' | sort > \"$1.env\"\n" +
		"cat > \"$1.stdin\"\n" +
		"echo handled \"$SERF_EVENT\"\n" +
		"exit 3\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")

	h, err := ParseEventHandler("member-failed,user:deploy=" + script + " " + out)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Check(); err != nil {
		t.Fatal(err)
	}
	ev := membership.Event{Type: membership.MemberFailed, Members: []membership.Member{
		{Name: "node-2", Addr: net.ParseIP("10.0.0.2"), Tags: map[string]string{"role": "db", "dc": "eu"}},
		{Name: "node-3", Addr: net.ParseIP("10.0.0.3"), Tags: map[string]string{"role": "db"}},
	}}
	if !h.Matches(ev) {
		t.Fatal("handler does not match member-failed")
	}
	self := membership.Member{Name: "node-1", Tags: map[string]string{"role": "web", "dc-zone": "eu-1"}}
	res := Run(context.Background(), h.Command(ev, self, 30*time.Second))
	if res.Err != nil || res.ExitCode != 3 || string(res.Output) != "handled member-failed\n" {
		t.Fatalf("Run = exit %d, err %v, output %q; want 3, nil, %q", res.ExitCode, res.Err, res.Output, "handled member-failed\n")
	}

	gotEnv, err := os.ReadFile(out + ".env")
	if err != nil {
		t.Fatal(err)
	}
	own := []string{
		"SERF_EVENT=member-failed", "SERF_SELF_NAME=node-1", "SERF_SELF_ROLE=web",
		"SERF_TAG_DC_ZONE=eu-1", "SERF_TAG_ROLE=web",
		"VIGIL_EVENT=member-failed", "VIGIL_SELF_NAME=node-1", "VIGIL_SELF_ROLE=web",
		"VIGIL_TAG_DC_ZONE=eu-1", "VIGIL_TAG_ROLE=web",
	}
	// The handler inherits the agent's environment, as serf's do: SERF_ or
	// VIGIL_ variables of whoever runs the tests come through as well.
	want := append([]string(nil), own...)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if (strings.HasPrefix(k, "SERF_") || strings.HasPrefix(k, "VIGIL_")) &&
			!slices.ContainsFunc(own, func(o string) bool { return strings.HasPrefix(o, k+"=") }) {
			want = append(want, kv)
		}
	}
	slices.Sort(want)
	wantEnv := strings.Join(want, "\n") + "\n"
	if string(gotEnv) != wantEnv {
		t.Errorf("handler env =\n%s\nwant\n%s", gotEnv, wantEnv)
	}
	gotStdin, err := os.ReadFile(out + ".stdin")
	if err != nil {
		t.Fatal(err)
	}
	wantStdin := "node-2\t10.0.0.2\tdb\tdc=eu,role=db\n" +
		"node-3\t10.0.0.3\tdb\trole=db\n"
	if string(gotStdin) != wantStdin {
		t.Errorf("handler stdin = %q; want %q", gotStdin, wantStdin)
	}
}
