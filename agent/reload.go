package agent

import (
	"context"
	"fmt"
	"reflect"
	"strings"
)

// Reload applies a new configuration, as serf's agent does on SIGHUP: the
// log level and the handlers change at once; settings that need a restart
// (addresses, names, keys, consensus rules, ...) are reported and left as
// they are. It returns what changed and what was left.
func (a *Agent) Reload(ctx context.Context, next Config) (changed, restart []string, err error) {
	err = a.inLoop(ctx, func() {
		cur := &a.cfg
		note := func(name string, from, to any) {
			changed = append(changed, fmt.Sprintf("%s: %v -> %v", name, from, to))
		}
		if next.LogLevel != cur.LogLevel {
			if e := a.logs.SetLevel(next.LogLevel); e == nil {
				note("log-level", cur.LogLevel, next.LogLevel)
				cur.LogLevel = next.LogLevel
			}
		}
		if !reflect.DeepEqual(next.EventHandlers, cur.EventHandlers) {
			note("event-handler", handlerList(cur), handlerList(&next))
			cur.EventHandlers = next.EventHandlers
		}
		if next.HandlerTimeout != cur.HandlerTimeout {
			note("handler-timeout", cur.HandlerTimeout, next.HandlerTimeout)
			cur.HandlerTimeout = next.HandlerTimeout
		}
		if next.HandlerConcurrency != cur.HandlerConcurrency {
			note("handler-concurrency", cur.HandlerConcurrency, next.HandlerConcurrency)
			cur.HandlerConcurrency = next.HandlerConcurrency
		}
		if next.RecoveryRetries != cur.RecoveryRetries {
			note("recovery-retries", cur.RecoveryRetries, next.RecoveryRetries)
			cur.RecoveryRetries = next.RecoveryRetries
		}
		if next.FenceHandler != cur.FenceHandler {
			note("fence-handler", quoted(cur.FenceHandler), quoted(next.FenceHandler))
			cur.FenceHandler = next.FenceHandler
		}
		// Another recovery handler takes effect at once; having one or
		// not decides whether this agent may be named executor, which the
		// others read from its tags: that needs a restart.
		if next.RecoveryHandler != cur.RecoveryHandler {
			if next.RecoveryHandler != "" && cur.RecoveryHandler != "" {
				note("recovery-handler", quoted(cur.RecoveryHandler), quoted(next.RecoveryHandler))
				cur.RecoveryHandler = next.RecoveryHandler
			} else {
				restart = append(restart, "recovery-handler")
			}
		}
		// Everything else needs a restart.
		kept := *cur
		kept.Tags = next.Tags // runtime tags may differ from --tag: not a change of the file
		if !reflect.DeepEqual(next.Tags, a.startTags) {
			restart = append(restart, "tag")
		}
		nv, kv := reflect.ValueOf(next), reflect.ValueOf(kept)
		for i := 0; i < nv.NumField(); i++ {
			f := nv.Type().Field(i)
			if f.Name == "Tags" || f.Name == "RecoveryHandler" {
				continue
			}
			if !reflect.DeepEqual(nv.Field(i).Interface(), kv.Field(i).Interface()) {
				name := settingOf[f.Name]
				if name == "" {
					name = f.Name
				}
				if !contains(restart, name) {
					restart = append(restart, name)
				}
			}
		}
	})
	return changed, restart, err
}

// settingOf names the setting of a Config field.
var settingOf = map[string]string{
	"NodeName": "node", "BindIP": "bind", "BindPort": "bind", "AdvertiseIP": "advertise", "AdvertisePort": "advertise",
	"Join": "join", "RetryJoin": "retry-join", "RetryInterval": "retry-interval", "RetryMax": "retry-max",
	"DataDir": "data-dir", "HTTPAddr": "http-addr", "RPCAddr": "rpc-addr", "RPCAuth": "rpc-auth",
	"EncryptKey": "encrypt", "Profile": "profile", "Quorum": "quorum", "CouncilSize": "council-size",
	"RejoinStable": "rejoin-stable", "FenceAfter": "fence-after", "Bootstrap": "bootstrap",
	"BootstrapExpect": "bootstrap-expect", "EnableDebug": "enable-debug", "LogFormat": "log-format",
	"GoMaxProcs": "gomaxprocs",
}

func handlerList(c *Config) string {
	var l []string
	for _, h := range c.EventHandlers {
		var fs []string
		for _, f := range h.Filters {
			if f.Name != "" {
				fs = append(fs, f.Event+":"+f.Name)
			} else {
				fs = append(fs, f.Event)
			}
		}
		l = append(l, strings.Join(fs, ",")+"="+h.Script)
	}
	return "[" + strings.Join(l, "; ") + "]"
}

func quoted(s string) string { return fmt.Sprintf("%q", s) }
