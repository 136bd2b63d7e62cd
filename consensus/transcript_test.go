package consensus

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestTranscripts replays testdata/transcript_*.txt in the style of etcd
// raft's interaction tests. Lines starting with "> " are commands, "#"
// lines are comments, everything else is the output the commands produce;
// run with -rewrite to regenerate it.
//
// Commands (a 3-node cluster n1..n3 at epoch 1):
//
//	propose NODE remove NAME (left|failed EXECUTOR) | propose NODE add NAME BOOT
//	deliver [N]                  deliver the next N queued messages (default: all)
//	drop FROM TO TYPE            lose the first queued message that matches
//	tick NODE [N]                tick NODE N times
//	verdict NODE (true|false)    set NODE's verdict
//	queue                        list queued messages
//	status                       print every node's state
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "transcript_*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			in, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := runTranscript(t, string(in))
			if *flagRewrite {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != string(in) {
				t.Fatalf("transcript differs (run with -rewrite and review the diff):\n%s", got)
			}
		})
	}
}

func runTranscript(t *testing.T, script string) string {
	var out strings.Builder
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.ProposalTimeout = 3
		cfg.BackoffMin, cfg.BackoffMax = 1, 2
		cfg.CatchupInterval = 1000 // keep anti-entropy out of the transcript
	})
	c.out = &out
	for _, line := range strings.Split(strings.TrimRight(script, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "#") || line == "":
			out.WriteString(line + "\n")
		case strings.HasPrefix(line, "> "):
			out.WriteString(line + "\n")
			transcriptCommand(t, c, strings.Fields(line[2:]))
		}
	}
	return out.String()
}

func transcriptCommand(t *testing.T, c *cluster, f []string) {
	atoi := func(s string) int {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("bad number %q", s)
		}
		return n
	}
	switch f[0] {
	case "propose":
		var ch Change
		switch {
		case len(f) >= 5 && f[2] == "remove":
			m, _ := c.nodes[f[1]].View().Lookup(f[3])
			ch = Change{Kind: Remove, Reason: Left, Member: m}
			if f[4] == "failed" {
				ch.Reason, ch.Executor = Failed, f[5]
			}
		case len(f) == 5 && f[2] == "add":
			ch = Change{Kind: Add, Reason: Joined, Member: Member{Name: f[3], Boot: f[4]}}
		default:
			t.Fatalf("bad propose %v", f)
		}
		if err := c.propose(f[1], ch); err != nil {
			c.printf("  error: %v\n", err)
		}
	case "deliver":
		n := len(c.queue)
		if len(f) > 1 {
			n = atoi(f[1])
		}
		for i := 0; i < n && len(c.queue) > 0; i++ {
			c.deliver()
		}
		if len(f) == 1 {
			c.deliverAll()
		}
	case "drop":
		for i, m := range c.queue {
			if m.From == f[1] && m.To == f[2] && m.Type.String() == f[3] {
				c.printf("dropped %s\n", m)
				c.queue = append(c.queue[:i], c.queue[i+1:]...)
				return
			}
		}
		c.printf("  nothing to drop\n")
	case "tick":
		n := 1
		if len(f) > 2 {
			n = atoi(f[2])
		}
		for range n {
			c.tick(f[1])
		}
	case "verdict":
		c.verdicts[f[1]] = f[2] == "true"
	case "queue":
		for _, m := range c.queue {
			c.printf("  %s\n", m)
		}
	case "status":
		for _, name := range c.names {
			st := c.nodes[name].Status()
			c.printf("  %s e%d phase=%d ballot=%s promised=%s accepted=%s members=%v\n", name, st.Epoch, st.Phase,
				st.Ballot, st.Acceptor.Promised, st.Acceptor.Accepted, memberNames(c.nodes[name].View()))
		}
	default:
		t.Fatalf("unknown command %q", f[0])
	}
}

func memberNames(v View) string {
	var s []string
	for _, m := range v.Members {
		s = append(s, m.String())
	}
	return fmt.Sprint(s)
}
