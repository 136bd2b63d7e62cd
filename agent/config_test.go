package agent

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func noEnv(string) (string, bool) { return "", false }

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestResolveDefaults(t *testing.T) {
	c, err := Resolve(Values{"node": {"a"}}, noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.BindIP != "0.0.0.0" || c.BindPort != 7946 || c.HTTPAddr != "127.0.0.1:7947" ||
		c.Profile != "lan" || c.Quorum != "majority" || c.HandlerTimeout != time.Minute ||
		c.HandlerConcurrency != 4 || c.RetryInterval != 5*time.Second || c.DataDir != "./vigil-data" {
		t.Errorf("defaults: %+v", c)
	}
}

func TestResolvePrecedence(t *testing.T) {
	file := []byte(`{"node": "file", "profile": "wan", "quorum": "two-thirds", "join": ["10.0.0.1"],
		"tags": {"a": "file"}, "handler_timeout": "3s", "retry_max": 7}`)
	env := envOf(map[string]string{"VIGIL_PROFILE": "local", "VIGIL_JOIN": "10.0.0.2, 10.0.0.3", "VIGIL_NODE": "env"})
	c, err := Resolve(Values{"node": {"flag"}}, env, file)
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "flag" {
		t.Errorf("node = %q: flag must beat env and file", c.NodeName)
	}
	if c.Profile != "local" {
		t.Errorf("profile = %q: env must beat file", c.Profile)
	}
	if strings.Join(c.Join, " ") != "10.0.0.2 10.0.0.3" {
		t.Errorf("join = %v: env list must replace the file's", c.Join)
	}
	if c.Quorum != "two-thirds" || c.Tags["a"] != "file" || c.HandlerTimeout != 3*time.Second || c.RetryMax != 7 {
		t.Errorf("file values lost: %+v", c)
	}
}

func TestResolveEventHandlerEnvKeepsFilterCommas(t *testing.T) {
	env := envOf(map[string]string{"VIGIL_EVENT_HANDLER": "member-join,member-leave=/bin/true;user:deploy=/bin/true"})
	c, err := Resolve(Values{"node": {"a"}}, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.EventHandlers) != 2 || len(c.EventHandlers[0].Filters) != 2 {
		t.Fatalf("handlers = %+v", c.EventHandlers)
	}
}

func TestResolveRejects(t *testing.T) {
	tests := []struct {
		name  string
		flags Values
		file  string
		want  string
	}{
		{"node with space", Values{"node": {"a b"}}, "", "--node"},
		{"node too long", Values{"node": {strings.Repeat("x", 65)}}, "", "--node"},
		{"bind host name", Values{"bind": {"example.com:1"}}, "", "not an IP address"},
		{"advertise bad", Values{"advertise": {"1.2.3.4:x"}}, "", "--advertise"},
		{"http addr without port", Values{"http-addr": {"127.0.0.1"}}, "", "want IP:PORT"},
		{"retry max negative", Values{"retry-max": {"-1"}}, "", "--retry-max"},
		{"concurrency zero", Values{"handler-concurrency": {"0"}}, "", "--handler-concurrency"},
		{"timeout negative", Values{"handler-timeout": {"-1s"}}, "", "must be positive"},
		{"log format", Values{"log-format": {"xml"}}, "", "--log-format"},
		{"file not object", nil, `[1,2]`, "not a JSON object"},
		{"file trailing", nil, `{} {}`, "trailing data"},
		{"file unknown key", nil, `{"nodes": "x"}`, `unknown key "nodes"`},
		{"file int as string", nil, `{"retry_max": "3"}`, `key "retry_max"`},
		{"file tags as list", nil, `{"tags": ["a=b"]}`, `key "tags"`},
		{"file key from flag name", nil, `{"data-dir": "x"}`, `unknown key "data-dir"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			flags := tt.flags
			if flags == nil {
				flags = Values{}
			}
			if _, ok := flags["node"]; !ok {
				flags["node"] = []string{"n"}
			}
			var file []byte
			if tt.file != "" {
				file = []byte(tt.file)
			}
			_, err := Resolve(flags, noEnv, file)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestEverySettingHasAFileKeyAndEnv(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Settings() {
		if s.Key == "" || !strings.HasPrefix(s.Env, "VIGIL_") || seen[s.Key] {
			t.Errorf("setting %+v: needs a unique file key and a VIGIL_ env var", s)
		}
		seen[s.Key] = true
	}
}

func TestParseKey(t *testing.T) {
	for _, n := range []int{16, 24, 32} {
		k := base64.StdEncoding.EncodeToString(make([]byte, n))
		if got, err := ParseKey(k); err != nil || len(got) != n {
			t.Errorf("%d-byte key %q: %v, %d bytes", n, k, err, len(got))
		}
	}
	if _, err := ParseKey("AAAA"); err == nil {
		t.Error("3-byte key accepted")
	}
}

func TestResolveGoMaxProcs(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	c, err := Resolve(Values{"node": {"a"}}, noEnv, nil)
	if err != nil || c.GoMaxProcs != 1 {
		t.Fatalf("default gomaxprocs %d (%v), want 1", c.GoMaxProcs, err)
	}
	// GOMAXPROCS in the environment is obeyed: the default leaves it to Go.
	t.Setenv("GOMAXPROCS", "3")
	if c, err = Resolve(Values{"node": {"a"}}, noEnv, nil); err != nil || c.GoMaxProcs != 0 {
		t.Fatalf("gomaxprocs with GOMAXPROCS=3: %d (%v), want 0", c.GoMaxProcs, err)
	}
	if c, err = Resolve(Values{"node": {"a"}, "gomaxprocs": {"2"}}, noEnv, nil); err != nil || c.GoMaxProcs != 2 {
		t.Fatalf("--gomaxprocs 2: %d (%v)", c.GoMaxProcs, err)
	}
	for _, bad := range []string{"-1", "many", "100000"} {
		if _, err := Resolve(Values{"node": {"a"}, "gomaxprocs": {bad}}, noEnv, nil); err == nil || !strings.Contains(err.Error(), "--gomaxprocs") {
			t.Errorf("--gomaxprocs %s: %v", bad, err)
		}
	}
}
