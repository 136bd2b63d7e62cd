package main

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/vigil-project/vigil/agent"
)

func runIn(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(context.Background(), append([]string{"vigil"}, args...), &out, &errb); code != 0 {
		t.Fatalf("vigil %s: exit %d: %s", strings.Join(args, " "), code, errb.String())
	}
	return out.String()
}

// The man page and the completions are made from the CLI definition: every
// command and every agent flag is in them.
func TestManPageAndCompletionFollowTheCLI(t *testing.T) {
	man := runIn(t, "man")
	if !strings.HasPrefix(man, ".nh\n.TH vigil") {
		t.Fatalf("not a man page:\n%.200s", man)
	}
	// Completion reads os.Args: ask the built binary.
	complete := func(args ...string) string {
		out, err := runVigil(append(args, "--generate-bash-completion")...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	cmds := complete()
	for _, c := range newApp(nil, nil).Commands {
		if !strings.Contains(man, "\n.SH "+c.Name) && !strings.Contains(man, "# "+c.Name) && !strings.Contains(man, c.Name+"\n") {
			t.Errorf("the man page lacks the command %s", c.Name)
		}
		if !strings.Contains(cmds, c.Name+"\n") {
			t.Errorf("completion lacks the command %s", c.Name)
		}
	}
	for _, s := range agent.Settings() {
		if !strings.Contains(man, "--"+s.Name) {
			t.Errorf("the man page lacks --%s", s.Name)
		}
		prefix := "--" + s.Name[:2]
		got := complete("agent", prefix)
		if !strings.Contains(got, "--"+s.Name+"\n") {
			t.Errorf("completing %s after agent lacks --%s: %q", prefix, s.Name, got)
		}
	}
	bash := runIn(t, "completion", "bash")
	if sh, err := exec.LookPath("bash"); err == nil {
		cmd := exec.Command(sh, "-n")
		cmd.Stdin = strings.NewReader(bash)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("bash -n on the completion script: %v\n%s", err, out)
		}
	}
	if zsh := runIn(t, "completion", "zsh"); !strings.HasPrefix(zsh, "#compdef vigil") {
		t.Fatalf("zsh completion:\n%s", zsh)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"vigil", "completion", "fish"}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "bash or zsh") {
		t.Fatalf("completion fish: exit %d, %q", code, errb.String())
	}
}
