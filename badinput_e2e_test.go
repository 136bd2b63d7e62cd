package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadInputFailsClearly: each bad input gets a one-line error naming the
// problem, a non-zero exit, and leaves what is on disk as it was.
func TestBadInputFailsClearly(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	busy := c.add(1)
	busy.start()

	notExec := filepath.Join(dir, "not-exec.sh")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	malformed := filepath.Join(dir, "malformed.json")
	os.WriteFile(malformed, []byte(`{"node": "x",`), 0o644)
	unknownKey := filepath.Join(dir, "unknown.json")
	os.WriteFile(unknownKey, []byte(`{"node": "x", "bind_addr": "1.2.3.4"}`), 0o644)
	wrongType := filepath.Join(dir, "wrongtype.json")
	os.WriteFile(wrongType, []byte(`{"join": "1.2.3.4"}`), 0o644)
	unreadable := filepath.Join(dir, "is-a-dir.json")
	os.Mkdir(unreadable, 0o755)
	fileAsDir := filepath.Join(dir, "plainfile")
	os.WriteFile(fileAsDir, []byte("x"), 0o644)
	badKeyring := filepath.Join(dir, "badkeyring")
	os.Mkdir(badKeyring, 0o700)
	os.WriteFile(filepath.Join(badKeyring, "keyring"), []byte(`["not a key"]`), 0o600)
	corruptDir := filepath.Join(dir, "corrupt")
	os.Mkdir(corruptDir, 0o700)
	garbage := bytes.Repeat([]byte("not a database "), 700)
	os.WriteFile(filepath.Join(corruptDir, "vigil.db"), garbage, 0o600)

	free := func(i int) []string {
		ip := c.ip(100 + i)
		return []string{"agent", "--node", "bad", "--bind", ip, "--http-addr", ip + ":7947", "--rpc-addr", ip + ":7373",
			"--data-dir", filepath.Join(dir, "data", ip), "--profile", "local"}
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", append(free(1), "--no-such-flag"), "flag provided but not defined"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"bind does not parse", []string{"agent", "--bind", "300.1.2.3:7946"}, "--bind"},
		{"bind port does not parse", []string{"agent", "--bind", "127.0.0.1:99999"}, "bad port"},
		{"http-addr does not parse", []string{"agent", "--http-addr", "localhost"}, "--http-addr"},
		{"join does not parse", append(free(2), "--join", "1.2.3.4:notaport"), "--join"},
		{"gossip port in use", append(free(3)[:3], "--bind", busy.ip+":7946", "--http-addr", c.ip(103)+":7947", "--rpc-addr", c.ip(103)+":7373", "--data-dir", filepath.Join(dir, "d3")), "already in use"},
		{"http port in use", append(free(4)[:3], "--bind", c.ip(104), "--http-addr", busy.ip+":7947", "--rpc-addr", c.ip(104)+":7373", "--data-dir", filepath.Join(dir, "d4")), "--http-addr " + busy.ip + ":7947 is already in use"},
		{"rpc port in use", append(free(29)[:3], "--bind", c.ip(129), "--http-addr", c.ip(129)+":7947", "--rpc-addr", busy.ip+":7373", "--data-dir", filepath.Join(dir, "d29")), "--rpc-addr " + busy.ip + ":7373 is already in use"},
		{"rpc-addr does not parse", append(free(30), "--rpc-addr", "localhost:7373"), "--rpc-addr"},
		{"keyring file corrupt", append(free(31), "--data-dir", badKeyring), "keyring"},
		{"tls cert without key", append(free(32), "--http-tls-cert", notExec), "give both or neither"},
		{"tls cert not a certificate", append(free(33), "--http-tls-cert", notExec, "--http-tls-key", notExec), "--http-tls-cert"},
		{"data dir in use", append(free(5), "--data-dir", busy.dataDir), "in use by another agent"},
		{"data dir not writable", append(free(6), "--data-dir", filepath.Join(fileAsDir, "sub")), "plainfile"},
		{"data dir corrupt", append(free(7), "--data-dir", corruptDir), "corrupt"},
		{"config file missing", append(free(8), "--config-file", filepath.Join(dir, "nope.json")), "no such file"},
		{"config file unreadable", append(free(9), "--config-file", unreadable), "config file"},
		{"config file malformed", append(free(10), "--config-file", malformed), "not a JSON object"},
		{"config file unknown key", append(free(11), "--config-file", unknownKey), `unknown key "bind_addr"`},
		{"config file wrong type", append(free(12), "--config-file", wrongType), `key "join"`},
		{"key not base64", append(free(13), "--encrypt", "not!base64"), "not valid base64"},
		{"key wrong length", append(free(14), "--encrypt", "c2hvcnQ="), "want 16, 24 or 32"},
		{"handler missing", append(free(15), "--event-handler", "user=/no/such/handler"), "no such file"},
		{"handler not executable", append(free(16), "--event-handler", notExec), "not executable"},
		{"handler filter unknown", append(free(17), "--event-handler", "member-exploded="+notExec), "member-exploded"},
		{"recovery handler missing", append(free(18), "--recovery-handler", "/no/such/recovery"), "no such file"},
		{"recovery handler not executable", append(free(26), "--recovery-handler", notExec), "not executable"},
		{"fence handler missing", append(free(27), "--fence-handler", "/no/such/fence"), "no such file"},
		{"recovery retries negative", append(free(28), "--recovery-retries", "-1"), "--recovery-retries"},
		{"profile unknown", append(free(19), "--profile", "moon"), "--profile"},
		{"quorum unknown", append(free(20), "--quorum", "most"), "--quorum"},
		{"council of two", append(free(20), "--council-size", "2"), "--council-size"},
		{"gomaxprocs negative", append(free(34), "--gomaxprocs", "-1"), "--gomaxprocs"},
		{"tag malformed", append(free(21), "--tag", "novalue"), "KEY=VALUE"},
		{"tag reserved", append(free(22), "--tag", "boot=1"), "reserved"},
		{"duration malformed", append(free(23), "--handler-timeout", "soon"), "--handler-timeout"},
		{"log level unknown", append(free(24), "--log-level", "loud"), "--log-level"},
		{"join answered by nobody", append(free(25), "--join", c.ip(200)), "join"},
		{"client with no agent", []string{"members", "--http-addr", c.ip(201) + ":7947"}, "no agent answering"},
		{"client bad format", []string{"members", "--format", "xml", "--http-addr", busy.ip + ":7947"}, "--format"},
		{"client force-leave unknown node", []string{"force-leave", "--http-addr", busy.ip + ":7947", "ghost"}, "ghost"},
		{"client flag after argument", []string{"join", "1.2.3.4", "--http-addr", busy.ip + ":7947"}, "put flags before the arguments"},
		{"client event without name", []string{"event", "--http-addr", busy.ip + ":7947"}, "NAME"},
		{"client event with vigil's name", []string{"event", "--http-addr", busy.ip + ":7947", "vigil-decision"}, "vigil's own"},
		{"client query without name", []string{"query", "--http-addr", busy.ip + ":7947"}, "NAME"},
		{"client query with vigil's name", []string{"query", "--http-addr", busy.ip + ":7947", "vigil-journal"}, "vigil's own"},
		{"client query with serf's name", []string{"query", "--http-addr", busy.ip + ":7947", "_serf_install-key"}, "_serf_"},
		{"client query bad tag filter", []string{"query", "--http-addr", busy.ip + ":7947", "--tag", "role", "q"}, "KEY=VALUE"},
		{"client keys without an operation", []string{"keys", "--http-addr", busy.ip + ":7947"}, "exactly one of"},
		{"client keys on an unencrypted cluster", []string{"keys", "--http-addr", busy.ip + ":7947", "--list"}, "not encrypted"},
		{"client tags without a change", []string{"tags", "--http-addr", busy.ip + ":7947"}, "--set"},
		{"client tags reserved", []string{"tags", "--http-addr", busy.ip + ":7947", "--set", "boot=x"}, "reserved"},
		{"client ca cert missing", []string{"members", "--http-addr", busy.ip + ":7947", "--http-ca-cert", "/no/such/ca.pem"}, "--http-ca-cert"},
		{"client monitor bad level", []string{"monitor", "--http-addr", busy.ip + ":7947", "--log-level", "loud"}, "--log-level"},
	}
	before := sha256.Sum256(garbage)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			cmd := exec.CommandContext(ctx, vigilBin, tt.args...)
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("still running after 60s: %s", errb.String())
			}
			if err == nil {
				t.Fatalf("exit 0; stdout %q", out.String())
			}
			// The error is the last line; an agent may have logged before it.
			lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "vigil: ") || !strings.Contains(last, tt.want) {
				t.Errorf("last line of stderr = %q, want a 'vigil: ' line containing %q\n(all: %s)", last, tt.want, errb.String())
			}
		})
	}
	b, _ := os.ReadFile(filepath.Join(corruptDir, "vigil.db"))
	if sha256.Sum256(b) != before {
		t.Error("the corrupt data file was changed")
	}
	if _, err := busy.info(); err != nil {
		t.Errorf("the running agent was disturbed: %v", err)
	}
}
