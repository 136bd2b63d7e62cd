// Package recovery runs external handlers for the agent.
//
// Today it holds the handler runner and serf-compatible event handlers:
//
//   - Run executes a Command in its own process group with a timeout, a
//     bounded tail of its output, and a guarantee that nothing of the group
//     is left running when Run returns (SIGTERM, a short grace, then
//     SIGKILL to the whole group, even if a grandchild holds the pipes).
//     CheckExecutable vets a handler path before the agent starts.
//   - ParseEventHandler reads serf's "--event-handler [filter=]script"
//     syntax; EventHandler.Matches, HandlerEnv and HandlerStdin reproduce
//     serf's filter semantics, SERF_* environment (plus VIGIL_* twins) and
//     stdin format (serf cmd/serf/command/agent/event_handler.go and
//     invoke.go), so existing serf scripts keep working. EventHandler.Check
//     lets the agent refuse a missing or non-executable handler at start.
//
// Still to come here: the choice of the executor of a decided failure (a
// pure function of the decision and the view), retries with backoff, and
// the durable recovery journal.
//
// The caller's obligations: Run blocks until the handler is gone, so the
// agent calls it from a goroutine it owns, bounded by a Timeout or a
// context; Shell strings come only from operator configuration, never from
// the network; this package does not log: the agent logs the Result.
package recovery
