package recovery

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-project/vigil/engine"
)

func TestRecoveryCommandContract(t *testing.T) {
	j := engine.Job{ID: "e5-x", Epoch: 6, Node: "n3", Boot: "b3", Addr: "10.0.0.3:7946", Executor: "n4",
		Tags: map[string]string{"role": "db", "dc-zone": "a"}, Votes: []string{"n1", "n4"}}
	c := RecoveryCommand("/bin/h", j, "n4", 2, time.Minute)
	if c.Path != "/bin/h" || c.Shell != "" || len(c.Args) != 0 || c.Timeout != time.Minute {
		t.Fatalf("command %+v: want the handler executed directly", c)
	}
	env := strings.Join(c.Env, "\n")
	for _, want := range []string{"VIGIL_EVENT=recovery", "VIGIL_NODE=n3", "VIGIL_NODE_ADDR=10.0.0.3:7946",
		"VIGIL_SELF=n4", "VIGIL_EPOCH=6", "VIGIL_DECISION_ID=e5-x", "VIGIL_ATTEMPT=2",
		"VIGIL_NODE_TAG_ROLE=db", "VIGIL_NODE_TAG_DC_ZONE=a"} {
		if !strings.Contains(env, want) {
			t.Errorf("env lacks %s:\n%s", want, env)
		}
	}
	if !strings.Contains(string(c.Stdin), `"votes":["n1","n4"]`) || !strings.Contains(string(c.Stdin), `"attempt":2`) {
		t.Errorf("stdin %s", c.Stdin)
	}
}
