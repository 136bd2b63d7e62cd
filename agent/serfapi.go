package agent

// What serf's tools do through an agent, shared by the RPC protocol and the
// HTTP API: user events, queries, runtime tags and the keyring.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/vigil-project/vigil/membership"
)

// serfInternalPrefix is serf's prefix of its own queries.
const serfInternalPrefix = "_serf_"

// userEvent sends a user event; vigil's own names are refused.
func (a *Agent) userEvent(name string, payload []byte, coalesce bool) error {
	if name == "" {
		return errors.New("the event needs a name")
	}
	if membership.ReservedEvent(name) {
		return fmt.Errorf("event %q: names starting with vigil- or recovery- are vigil's own", name)
	}
	if err := a.mesh.UserEvent(name, payload, coalesce); err != nil {
		return fmt.Errorf("event: %v", err)
	}
	return nil
}

// query starts a serf query; vigil's names and serf's internal ones (but
// serf's ping, as serf allows) are refused.
func (a *Agent) query(name string, payload []byte, p membership.QueryParams) (*membership.QueryResponse, error) {
	switch {
	case name == "":
		return nil, errors.New("the query needs a name")
	case membership.ReservedEvent(name):
		return nil, fmt.Errorf("query %q: names starting with vigil- or recovery- are vigil's own", name)
	case strings.HasPrefix(name, serfInternalPrefix) && (name != serfInternalPrefix+"ping" || len(payload) > 0):
		return nil, fmt.Errorf("Queries cannot contain the '%s' prefix", serfInternalPrefix)
	case p.Timeout < 0:
		return nil, errors.New("the query timeout must not be negative")
	}
	qr, err := a.mesh.Query(name, payload, p)
	if err != nil {
		return nil, fmt.Errorf("query: %v", err)
	}
	a.log.Debug().Str("query", name).Int("payload_bytes", len(payload)).Msg("query sent")
	return qr, nil
}

// setTags changes this agent's tags at run time, as serf's `tags`: set
// adds or replaces, del removes. vigil's reserved keys are refused. The
// tags last until the agent restarts (as serf's without -tags-file): put
// lasting ones in --tag.
func (a *Agent) setTags(ctx context.Context, set map[string]string, del []string) error {
	for k := range set {
		if k == "" {
			return errors.New("a tag needs a key")
		}
		if membership.Reserved(k) {
			return fmt.Errorf("tag %q is reserved: vigil sets it itself", k)
		}
	}
	for _, k := range del {
		if membership.Reserved(k) {
			return fmt.Errorf("tag %q is reserved: vigil sets it itself", k)
		}
	}
	var err error
	if lerr := a.inLoop(ctx, func() {
		tags := map[string]string{}
		for k, v := range a.cfg.Tags {
			tags[k] = v
		}
		for _, k := range del {
			delete(tags, k)
		}
		for k, v := range set {
			tags[k] = v
		}
		old := a.cfg.Tags
		a.cfg.Tags = tags
		if err = a.mesh.SetTags(a.ownTags()); err != nil {
			a.cfg.Tags = old
			return
		}
		keys := make([]string, 0, len(tags))
		for k, v := range tags {
			keys = append(keys, k+"="+v)
		}
		sort.Strings(keys)
		a.log.Info().Strs("tags", keys).Msg("tags changed")
	}); lerr != nil {
		return lerr
	}
	return err
}

// keys runs a keyring operation (install, use, remove, list) on every
// member through serf's key manager. The answer counts the members that
// failed; each one's message says why.
func (a *Agent) keys(op, key string) (*membership.KeyResponse, error) {
	if op != "list" {
		if _, err := ParseKey(key); err != nil {
			return nil, fmt.Errorf("%s key: %v", op, err)
		}
	}
	if !a.mesh.Encrypted() {
		return nil, errors.New("gossip is not encrypted on this agent (start every agent with --encrypt to use a keyring)")
	}
	a.log.Info().Str("op", op).Msg("keyring operation across the cluster")
	kr, err := a.mesh.Keys(op, key)
	if err != nil {
		a.log.Warn().Err(err).Str("op", op).Msg("keyring operation failed on some members")
	}
	return kr, err
}
