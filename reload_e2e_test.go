package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SIGHUP reloads the log level and the handlers from the config file and
// says what changed; a broken file changes nothing; a setting that needs a
// restart is named.
func TestSIGHUPReloadsLevelAndHandlers(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vigil.json")
	marks := filepath.Join(dir, "marks")
	write := func(level, handler, bind string) {
		body := fmt.Sprintf(`{"node": "n1", "bind": "%s:7946", "http_addr": "%s:7947", "rpc_addr": "%s:7373",
			"data_dir": %q, "profile": "local", "bootstrap": true, "log_level": %q,
			"event_handlers": [%q]}`, bind, c.ip(1), c.ip(1), filepath.Join(dir, "data"), level, handler)
		if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("info", "user:a=echo a >> "+marks, c.ip(1))
	n := &node{c: c, name: "n1", ip: c.ip(1), logPath: filepath.Join(dir, "log"),
		args: []string{"agent", "--config-file", cfg}}
	n.start()
	waitFor(t, 30*time.Second, "n1 is a member of its own view", func() error { return allAgreed(n, "n1") })

	sent := 0
	event := func(name string) {
		t.Helper()
		if _, err := n.vigil("event", name); err != nil {
			t.Fatal(err)
		}
		sent++
	}
	waitMarks := func(want string) {
		t.Helper()
		waitFor(t, 30*time.Second, "handler runs "+want, func() error {
			b, _ := os.ReadFile(marks)
			if string(b) != want {
				return fmt.Errorf("marks %q", b)
			}
			return nil
		})
	}
	event("a")
	waitMarks("a\n")
	if _, err := n.vigil("query", "--timeout", "500ms", "anything"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(n.logTail(), "DBG") {
		t.Fatal("debug lines at --log-level info")
	}

	// A broken file: an error, nothing changed.
	os.WriteFile(cfg, []byte("{"), 0o644)
	n.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 30*time.Second, "the broken file is reported", func() error {
		if !strings.Contains(n.logTail(), "the configuration is invalid; nothing reloaded") {
			return fmt.Errorf("not yet")
		}
		return nil
	})

	// Level and handler change; the bind address needs a restart.
	write("debug", "user:b=echo b >> "+marks, c.ip(2))
	n.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 30*time.Second, "the reload is reported", func() error {
		log := n.logTail()
		if !strings.Contains(log, "configuration reloaded") || !strings.Contains(log, "log-level: info -> debug") ||
			!strings.Contains(log, "user:b=echo b") || !strings.Contains(log, "needs_restart") || !strings.Contains(log, "bind") {
			return fmt.Errorf("log:\n%s", log)
		}
		return nil
	})
	// vigil monitor shows the log at its own level and the events.
	mon := exec.Command(vigilBin, "monitor", "--http-addr", n.ip+":7947", "--log-level", "warn")
	var monOut syncBuffer
	mon.Stdout = &monOut
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = mon.Process.Kill(); _ = mon.Wait() }()
	time.Sleep(time.Second) // it subscribes
	event("a")              // no handler for it any more
	event("b")
	waitMarks("a\nb\n")
	waitFor(t, 30*time.Second, "vigil monitor shows the events", func() error {
		out := monOut.String()
		if !strings.Contains(out, "[EVENT] user b ") || strings.Contains(out, "[INFO]") {
			return fmt.Errorf("monitor output:\n%s", out)
		}
		return nil
	})
	// A query logs at debug.
	if _, err := n.vigil("query", "--timeout", "500ms", "anything"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "debug lines at the new level", func() error {
		if !strings.Contains(n.logTail(), "DBG query sent") {
			return fmt.Errorf("none")
		}
		return nil
	})
	if _, err := n.info(); err != nil {
		t.Fatalf("the agent after the reloads: %v", err)
	}
}

// syncBuffer is a bytes.Buffer a process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
