package recovery

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-project/vigil/engine"
)

// HandlerInput is the decision as the recovery handler reads it on stdin.
type HandlerInput struct {
	ID string `json:"id"`
	// Epoch is the fencing token (VIGIL_EPOCH); DecisionEpoch the epoch
	// the failure decision produced. They differ after a takeover.
	Epoch         uint64            `json:"epoch"`
	DecisionEpoch uint64            `json:"decision_epoch"`
	Node          string            `json:"node"`
	Boot          string            `json:"boot"`
	Addr          string            `json:"addr"`
	Tags          map[string]string `json:"tags"`
	Executor      string            `json:"executor"`
	Proposer      string            `json:"proposer"`
	Votes         []string          `json:"votes"`
	Attempt       int               `json:"attempt"`
}

// RecoveryCommand builds the run of the recovery handler at path for
// attempt n of job on self. The handler is executed directly (no shell):
// names and tags that came over the network reach it only as environment
// values and JSON on stdin.
func RecoveryCommand(path string, job engine.Job, self string, n int, timeout time.Duration) Command {
	env := []string{
		"VIGIL_EVENT=recovery",
		"VIGIL_NODE=" + job.Node,
		"VIGIL_NODE_ADDR=" + job.Addr,
		"VIGIL_SELF=" + self,
		"VIGIL_EPOCH=" + strconv.FormatUint(job.FencingToken(), 10),
		"VIGIL_DECISION_ID=" + job.ID,
		"VIGIL_ATTEMPT=" + strconv.Itoa(n),
	}
	keys := make([]string, 0, len(job.Tags))
	for k := range job.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, "VIGIL_NODE_TAG_"+sanitizeTagKey.ReplaceAllString(strings.ToUpper(k), "_")+"="+job.Tags[k])
	}
	in, _ := json.Marshal(HandlerInput{
		ID: job.ID, Epoch: job.FencingToken(), DecisionEpoch: job.Epoch, Node: job.Node, Boot: job.Boot, Addr: job.Addr, Tags: nonNil(job.Tags),
		Executor: job.Executor, Proposer: job.Proposer, Votes: job.Votes, Attempt: n,
	})
	return Command{Path: path, Env: env, Stdin: append(in, '\n'), Timeout: timeout}
}

// FenceCommand builds the run of the fence handler: this node's lease ran
// out (reason "lease-expired") or it learned it was removed from the view
// ("removed").
func FenceCommand(path, self, reason string, epoch uint64, timeout time.Duration) Command {
	return Command{Path: path, Timeout: timeout, Env: []string{
		"VIGIL_EVENT=fence",
		"VIGIL_SELF=" + self,
		"VIGIL_REASON=" + reason,
		"VIGIL_EPOCH=" + strconv.FormatUint(epoch, 10),
	}}
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
