package recovery

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-project/vigil/membership"
)

// ErrInvalidHandler: an --event-handler spec that does not parse.
var ErrInvalidHandler = errors.New("recovery: invalid event handler")

// EventHandler is one serf-style --event-handler: a shell command run for
// the events its filters match.
type EventHandler struct {
	Filters []Filter
	Script  string
}

// Filter selects events by type name ("member-join", "user", "query",
// "*", ...) and, for user events and queries, optionally by name.
type Filter struct {
	Event string
	Name  string // user events and queries only; empty matches every name
}

// filterEvents are the accepted Filter.Event values: serf's
// (cmd/serf/command/agent/event_handler.go:109-123), plus vigil's
// "member-recovered".
var filterEvents = map[string]bool{
	"member-join":      true,
	"member-leave":     true,
	"member-failed":    true,
	"member-update":    true,
	"member-reap":      true,
	"member-recovered": true,
	"user":             true,
	"query":            true,
	"*":                true,
}

// ParseEventHandler parses serf's "[filter=]script" syntax
// (serf cmd/serf/command/agent/event_handler.go:142-192): the spec is split
// on the first '='; no filter, or an empty one, means "*"; the filter is a
// comma list of event types, "user:NAME" or "*".
//
// Unlike serf, which only warns, an unknown filter is an error naming it.
// A handler run for a query answers it with what it writes (stdout and
// stderr), as serf's does. Because the split is on the
// first '=', a script with an '=' and no filter ("./h.sh a=b") reads as the
// filter "./h.sh a": the error then suggests writing "*=./h.sh a=b".
func ParseEventHandler(spec string) (EventHandler, error) {
	filter, script, found := strings.Cut(spec, "=")
	if !found {
		filter, script = "", spec
	}
	if strings.TrimSpace(script) == "" {
		return EventHandler{}, fmt.Errorf("%w %q: empty script", ErrInvalidHandler, spec)
	}
	if filter == "" {
		filter = "*"
	}
	var h EventHandler
	for _, ev := range strings.Split(filter, ",") {
		f := Filter{Event: ev}
		if name, ok := strings.CutPrefix(ev, "user:"); ok {
			f = Filter{Event: "user", Name: name}
		}
		if name, ok := strings.CutPrefix(ev, "query:"); ok {
			f = Filter{Event: "query", Name: name}
		}
		switch {
		case !filterEvents[f.Event]:
			err := fmt.Errorf("%w %q: unknown event filter %q", ErrInvalidHandler, spec, ev)
			if strings.ContainsAny(filter, " \t/.") {
				err = fmt.Errorf("%w (if the '=' belongs to the script, write %q)", err, "*="+spec)
			}
			return EventHandler{}, err
		}
		h.Filters = append(h.Filters, f)
	}
	h.Script = script
	return h, nil
}

// Matches reports whether any filter selects ev, as serf's
// EventFilter.Invoke does (event_handler.go:74-106): "*" matches all; else
// the type names must be equal and, for "user:NAME", the event names too.
func (h EventHandler) Matches(ev membership.Event) bool {
	for _, f := range h.Filters {
		if f.Event == "*" {
			return true
		}
		if ev.Type.String() != f.Event {
			continue
		}
		if (f.Event == "user" || f.Event == "query") && f.Name != "" && ev.Name != f.Name {
			continue
		}
		return true
	}
	return false
}

// Command builds the invocation of h for ev, run as serf does with
// /bin/sh -c Script, with HandlerEnv and HandlerStdin.
func (h EventHandler) Command(ev membership.Event, self membership.Member, timeout time.Duration) Command {
	return Command{
		Shell:   h.Script,
		Env:     HandlerEnv(ev, self),
		Stdin:   HandlerStdin(ev),
		Timeout: timeout,
	}
}

// Check resolves the program the script runs and reports whether it exists
// and is executable, so that the agent refuses a broken handler at start.
//
// The script is a shell command. Check takes its first word (quotes and
// backslashes removed, leading NAME=value assignments and "exec"/"command"
// skipped): with a '/' it must pass CheckExecutable (relative to the
// agent's working directory, where the handler runs); without, it must be
// found by exec.LookPath. A first word that is a shell builtin or keyword,
// or that contains an expansion ($, `), cannot be resolved statically and
// is accepted.
func (h EventHandler) Check() error {
	prog, ok, err := firstProgram(h.Script)
	if err != nil {
		return fmt.Errorf("%w %q: %v", ErrInvalidHandler, h.Script, err)
	}
	if !ok {
		return nil
	}
	if strings.HasPrefix(prog, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			prog = home + prog[1:]
		}
	}
	if strings.Contains(prog, "/") {
		return CheckExecutable(prog)
	}
	_, err = exec.LookPath(prog)
	switch {
	case err == nil, errors.Is(err, exec.ErrDot):
		// ErrDot: found through a relative PATH entry; sh would run it.
		return nil
	case errors.Is(err, exec.ErrNotFound):
		return &handlerError{msg: "recovery: handler " + prog + ": not found in PATH", sentinel: ErrNoHandler, err: err}
	default:
		return &handlerError{msg: fmt.Sprintf("recovery: handler %s: %v", prog, err), sentinel: ErrNotExecutable, err: err}
	}
}

// shellBuiltins are the words Check cannot resolve to a file.
var shellBuiltins = map[string]bool{
	".": true, ":": true, "break": true, "continue": true, "eval": true,
	"exit": true, "export": true, "readonly": true, "return": true,
	"set": true, "shift": true, "times": true, "trap": true, "unset": true,
	"cd": true, "read": true, "wait": true, "umask": true, "alias": true,
	"if": true, "for": true, "while": true, "until": true, "case": true,
	"{": true, "!": true, "(": true,
}

var assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// firstProgram returns the program word of a shell command; ok is false
// when it cannot be resolved statically.
func firstProgram(script string) (prog string, ok bool, err error) {
	rest := script
	for {
		raw, word, dynamic, next, err := shellWord(rest)
		if err != nil {
			return "", false, err
		}
		rest = next
		switch {
		case raw == "":
			return "", false, errors.New("no command")
		case assignment.MatchString(raw):
			continue
		case raw == "exec" || raw == "command":
			continue
		case dynamic || shellBuiltins[raw]:
			return "", false, nil
		}
		return word, true, nil
	}
}

// shellWord splits the first word off s. raw is the word as written, word
// with quotes and backslashes removed; dynamic reports an unquoted or
// double-quoted '$' or '`'. A word ends at unquoted blank or at one of
// ;&|<>() (a word that starts with one of those is that character alone).
func shellWord(s string) (raw, word string, dynamic bool, rest string, err error) {
	s = strings.TrimLeft(s, " \t\n")
	if s != "" && strings.ContainsRune(";&|<>()", rune(s[0])) {
		return s[:1], s[:1], false, s[1:], nil
	}
	var b strings.Builder
	i := 0
loop:
	for i < len(s) {
		c := s[i]
		switch c {
		case ' ', '\t', '\n', ';', '&', '|', '<', '>', '(', ')':
			break loop
		case '\\':
			if i+1 < len(s) {
				b.WriteByte(s[i+1])
				i += 2
				continue
			}
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return "", "", false, "", errors.New("unterminated single quote")
			}
			b.WriteString(s[i+1 : i+1+j])
			i += j + 2
			continue
		case '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				switch s[j] {
				case '\\':
					if j+1 < len(s) {
						j++
					}
				case '$', '`':
					dynamic = true
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return "", "", false, "", errors.New("unterminated double quote")
			}
			i = j + 1
			continue
		case '$', '`':
			dynamic = true
		}
		b.WriteByte(c)
		i++
	}
	return s[:i], b.String(), dynamic, s[i:], nil
}

// sanitizeTagKey is serf's rule for tag names in variable names
// (invoke.go:34 and :74): upper-case, then every character outside
// [A-Z0-9_] becomes '_' ("dc-zone" → DC_ZONE, "é" → "_").
var sanitizeTagKey = regexp.MustCompile(`[^A-Z0-9_]`)

// HandlerEnv returns the variables serf sets for a handler
// (invoke.go:60-64, 69-77, 87-89): SERF_EVENT, SERF_SELF_NAME,
// SERF_SELF_ROLE (self's "role" tag), SERF_TAG_<KEY> per self tag, and for
// user events SERF_USER_EVENT and SERF_USER_LTIME; then the same again with
// the prefix VIGIL_ instead of SERF_. Tags come in sorted key order, so if
// two keys sanitise to the same name the later key wins in both (serf's map
// order makes that random).
func HandlerEnv(ev membership.Event, self membership.Member) []string {
	keys := make([]string, 0, len(self.Tags))
	for k := range self.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	env := make([]string, 0, 2*(5+len(keys)))
	for _, prefix := range []string{"SERF_", "VIGIL_"} {
		env = append(env,
			prefix+"EVENT="+ev.Type.String(),
			prefix+"SELF_NAME="+self.Name,
			prefix+"SELF_ROLE="+self.Tags["role"],
		)
		for _, k := range keys {
			env = append(env, prefix+"TAG_"+sanitizeTagKey.ReplaceAllString(strings.ToUpper(k), "_")+"="+self.Tags[k])
		}
		switch ev.Type {
		case membership.User:
			env = append(env,
				prefix+"USER_EVENT="+ev.Name,
				prefix+"USER_LTIME="+strconv.FormatUint(ev.LTime, 10),
			)
		case membership.Query:
			env = append(env,
				prefix+"QUERY_NAME="+ev.Name,
				prefix+"QUERY_LTIME="+strconv.FormatUint(ev.LTime, 10),
			)
		}
	}
	return env
}

// HandlerStdin returns what serf writes to a handler's stdin.
//
// For a user event or a query: the payload, with a '\n' appended if it is
// non-empty and lacks one (invoke.go:174-187).
//
// For a member event, one line per member (invoke.go:134-169):
//
//	NAME \t ADDR \t ROLE \t TAGS \n
//
// where TAGS is "k1=v1,k2=v2" (no escaping of ',' or '='), and in NAME,
// ROLE and the whole TAGS string a tab becomes the two characters `\t` and a
// newline `\n`; ADDR is net.IP.String(). Serf joins tags in map order; here
// keys are sorted. A nil address (never seen from serf) is written empty,
// not "<nil>".
func HandlerStdin(ev membership.Event) []byte {
	if ev.Type == membership.User || ev.Type == membership.Query {
		p := append([]byte(nil), ev.Payload...)
		if len(p) > 0 && p[len(p)-1] != '\n' {
			p = append(p, '\n')
		}
		return p
	}
	var b []byte
	for _, m := range ev.Members {
		keys := make([]string, 0, len(m.Tags))
		for k := range m.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		pairs := make([]string, len(keys))
		for i, k := range keys {
			pairs[i] = k + "=" + m.Tags[k]
		}
		addr := ""
		if m.Addr != nil {
			addr = m.Addr.String()
		}
		b = fmt.Appendf(b, "%s\t%s\t%s\t%s\n",
			eventClean(m.Name), addr, eventClean(m.Tags["role"]), eventClean(strings.Join(pairs, ",")))
	}
	return b
}

// eventClean is serf's (invoke.go:135-139).
func eventClean(v string) string {
	v = strings.ReplaceAll(v, "\t", `\t`)
	v = strings.ReplaceAll(v, "\n", `\n`)
	return v
}
