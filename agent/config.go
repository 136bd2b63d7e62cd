package agent

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-project/vigil/consensus"
	"github.com/vigil-project/vigil/membership"
	"github.com/vigil-project/vigil/recovery"
)

// Kind is how a setting's value is written.
type Kind int

// The kinds of settings.
const (
	KindString   Kind = iota
	KindList          // repeatable flag, JSON array, env list
	KindMap           // repeatable k=v flag, JSON object, env list of k=v
	KindDuration      // Go duration ("5s"), JSON string
	KindInt
	KindBool // a flag without a value; "true"/"false" in env and file
)

// Setting is one agent option. It is a flag --Name, an environment
// variable Env, and a config-file key Key; precedence is
// flag > env > file > default.
type Setting struct {
	Name    string
	Env     string
	Key     string
	Kind    Kind
	Default string
	// Sep splits an env value of a list or map setting.
	Sep   string
	Usage string
}

// Settings lists every agent option, in the order help shows them.
func Settings() []Setting {
	l := []Setting{
		{Name: "node", Key: "node", Usage: "node name, unique in the cluster (default: the host name)"},
		{Name: "bind", Key: "bind", Default: "0.0.0.0:7946", Usage: "gossip address to listen on, IP[:PORT]"},
		{Name: "advertise", Key: "advertise", Usage: "gossip address to tell other nodes, IP[:PORT] (default: the bind address)"},
		{Name: "join", Key: "join", Kind: KindList, Sep: ",", Usage: "seed address to join at start, HOST[:PORT]; repeatable; the agent fails if none answers"},
		{Name: "retry-join", Key: "retry_join", Kind: KindList, Sep: ",", Usage: "seed address to keep trying in the background until one answers; repeatable"},
		{Name: "retry-interval", Key: "retry_interval", Kind: KindDuration, Default: "5s", Usage: "time between --retry-join attempts"},
		{Name: "retry-max", Key: "retry_max", Kind: KindInt, Default: "0", Usage: "attempts of --retry-join before the agent gives up and exits (0: no limit)"},
		{Name: "bootstrap", Key: "bootstrap", Kind: KindBool, Usage: "create a new cluster with this agent as its first member, if its data dir holds none; give it to one agent, once"},
		{Name: "bootstrap-expect", Key: "bootstrap_expect", Kind: KindInt, Default: "0", Usage: "create a new cluster once this many agents without one see each other (give the same N to each); 0: off"},
		{Name: "data-dir", Key: "data_dir", Default: "./vigil-data", Usage: "directory of the agent's durable state (created if missing)"},
		{Name: "http-addr", Key: "http_addr", Default: "127.0.0.1:7947", Usage: "address of the HTTP API, IP:PORT"},
		{Name: "http-token", Key: "http_token", Usage: "token the HTTP API's mutating calls (and /v1/monitor, /debug/) need, as 'Authorization: Bearer TOKEN'; empty: none"},
		{Name: "http-tls-cert", Key: "http_tls_cert", Usage: "PEM certificate (chain) of the HTTP API: serve HTTPS; with --http-tls-key"},
		{Name: "http-tls-key", Key: "http_tls_key", Usage: "PEM private key of --http-tls-cert"},
		{Name: "rpc-addr", Key: "rpc_addr", Default: "127.0.0.1:7373", Usage: "address of serf's RPC protocol, for serf's CLI and client libraries, IP:PORT"},
		{Name: "rpc-auth", Key: "rpc_auth", Usage: "token RPC clients must give (serf's -rpc-auth); empty: none"},
		{Name: "tag", Key: "tags", Kind: KindMap, Sep: ",", Usage: "tag KEY=VALUE published to the cluster; repeatable"},
		{Name: "encrypt", Key: "encrypt", Usage: "gossip encryption key, base64 of 16, 24 or 32 bytes (vigil keygen)"},
		{Name: "profile", Key: "profile", Default: "lan", Usage: "gossip timing profile: lan, wan or local"},
		{Name: "quorum", Key: "quorum", Default: "majority", Usage: "quorum rule for view changes: majority or two-thirds"},
		{Name: "council-size", Key: "council_size", Kind: KindInt, Default: "5", Usage: "acceptors of each view change when the view is larger: a council of this many members, chosen by name; 0: every member (up to 128); the same on every agent"},
		{Name: "recovery-handler", Key: "recovery_handler", Usage: "executable run once, cluster-wide, for each confirmed failure"},
		{Name: "recovery-retries", Key: "recovery_retries", Kind: KindInt, Default: "3", Usage: "retries of a recovery handler that exits non-zero, with exponential backoff from 1s"},
		{Name: "fence-handler", Key: "fence_handler", Usage: "executable run on this node when it learns it was removed from the view, or after --fence-after without contact with a quorum"},
		{Name: "rejoin-stable", Key: "rejoin_stable", Kind: KindDuration, Default: "20s", Usage: "a member removed for failure is added back only after gossip has seen it alive this long; doubled for each further failure of that name in 30 minutes (at most 16 times); 0: at once"},
		{Name: "fence-after", Key: "fence_after", Kind: KindDuration, Default: "2s", Usage: "the lease: this node fences when no quorum of its view answered its pings for this long, and the others wait this long (scaled by the clock-rate bound) before they recover a node they removed; the same on every agent"},
		{Name: "event-handler", Key: "event_handlers", Kind: KindList, Sep: ";", Usage: "serf-style handler [FILTER=]SCRIPT; repeatable"},
		{Name: "handler-timeout", Key: "handler_timeout", Kind: KindDuration, Default: "60s", Usage: "a handler still running after this is killed with its process group"},
		{Name: "handler-concurrency", Key: "handler_concurrency", Kind: KindInt, Default: "4", Usage: "handlers that may run at once; later ones wait in a queue"},
		{Name: "log-level", Key: "log_level", Default: "info", Usage: "trace, debug, info, warn or error"},
		{Name: "log-format", Key: "log_format", Default: "console", Usage: "console or json"},
		{Name: "enable-debug", Key: "enable_debug", Kind: KindBool, Usage: "serve Go's profiler at /debug/pprof/ on the HTTP address (as Consul's enable_debug)"},
		{Name: "gomaxprocs", Key: "gomaxprocs", Kind: KindInt, Default: defaultProcs(), Usage: "CPUs the agent's Go runtime runs on at once (GOMAXPROCS): one keeps an idle agent's wake-ups cheap; 0: Go's own choice, the CPUs the process may use (the default when the GOMAXPROCS environment variable is set, so that Go's reading of it applies)"},
	}
	for i := range l {
		l[i].Env = "VIGIL_" + strings.ToUpper(strings.ReplaceAll(l[i].Name, "-", "_"))
	}
	return l
}

// maxProcs bounds --gomaxprocs.
const maxProcs = 1024

// defaultProcs is --gomaxprocs's default: 1, or 0 (Go's own choice) when
// the GOMAXPROCS environment variable is set, so that it is obeyed.
func defaultProcs() string {
	if os.Getenv("GOMAXPROCS") != "" {
		return "0"
	}
	return "1"
}

// ConfigFileSetting is the flag and env var naming the JSON config file.
const ConfigFileSetting = "config-file"

// Config is a resolved, validated agent configuration.
type Config struct {
	NodeName      string
	BindIP        string
	BindPort      int
	AdvertiseIP   string // empty: the bind address
	AdvertisePort int    // 0: the bind port
	Join          []string
	RetryJoin     []string
	RetryInterval time.Duration // > 0
	RetryMax      int           // attempts; 0 = forever
	DataDir       string
	HTTPAddr      string // IP:PORT
	// HTTPToken, if set, is needed by the API's mutating calls.
	HTTPToken string
	// HTTPTLSCert and HTTPTLSKey, both set or neither, make the API HTTPS.
	HTTPTLSCert, HTTPTLSKey string
	RPCAddr                 string // IP:PORT of serf's RPC protocol
	RPCAuth                 string // token of the RPC protocol, or empty
	Tags                    map[string]string
	EncryptKey              []byte // nil, or 16, 24 or 32 bytes
	Profile                 string
	Quorum                  string
	// CouncilSize is how many members accept view changes when the view
	// is larger (consensus.Config.CouncilSize); 0 is every member.
	CouncilSize int
	// RecoveryHandler is an executable path, or empty.
	RecoveryHandler string
	// RecoveryRetries is how many times a failing recovery handler is run
	// again on one executor; ≥ 0.
	RecoveryRetries int
	// FenceHandler is an executable path, or empty.
	FenceHandler string
	// RejoinStable is the damping of a failed member's return (≥ 0):
	// see the detector's rejoinWait.
	RejoinStable time.Duration
	// FenceAfter is the lease (consensus.LeaseExpiry): how long this node
	// holds its membership after the last contact with a quorum; > 0.
	FenceAfter time.Duration
	// Bootstrap creates a new cluster when the data dir holds none;
	// BootstrapExpect (≥ 0) does so once that many agents without a
	// cluster see each other.
	Bootstrap       bool
	BootstrapExpect int
	// EnableDebug serves net/http/pprof on the HTTP API.
	EnableDebug bool
	// GoMaxProcs is the GOMAXPROCS the agent's process runs with (main
	// sets it at start); 0 leaves Go's default.
	GoMaxProcs    int
	EventHandlers []recovery.EventHandler
	// HandlerTimeout bounds every handler run; > 0.
	HandlerTimeout time.Duration
	// HandlerConcurrency is how many handlers run at once; ≥ 1.
	HandlerConcurrency int
	LogLevel           string
	LogFormat          string
}

// Values holds settings as strings by setting name, before validation.
// Lists hold their items; maps hold "k=v" items.
type Values map[string][]string

// Resolve merges the sources with precedence flag > env > file > default
// and validates the result. flags holds only the flags set on the command
// line; env looks up environment variables; file is the config file's
// content (nil for none).
func Resolve(flags Values, env func(string) (string, bool), file []byte) (Config, error) {
	fileVals, err := parseConfigFile(file)
	if err != nil {
		return Config{}, err
	}
	merged := Values{}
	for _, s := range Settings() {
		if v, ok := flags[s.Name]; ok {
			merged[s.Name] = v
			continue
		}
		if ev, ok := env(s.Env); ok {
			if s.Kind == KindList || s.Kind == KindMap {
				merged[s.Name] = splitList(ev, s.Sep)
			} else {
				merged[s.Name] = []string{ev}
			}
			continue
		}
		if v, ok := fileVals[s.Name]; ok {
			merged[s.Name] = v
			continue
		}
		if s.Default != "" {
			merged[s.Name] = []string{s.Default}
		}
	}
	return build(merged)
}

func splitList(v, sep string) []string {
	var out []string
	for _, p := range strings.Split(v, sep) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseConfigFile reads a strict JSON object: unknown keys and values of
// the wrong type are errors naming the key.
func parseConfigFile(b []byte) (Values, error) {
	out := Values{}
	if b == nil {
		return out, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("config file: not a JSON object: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("config file: trailing data after the JSON object")
	}
	byKey := map[string]Setting{}
	for _, s := range Settings() {
		byKey[s.Key] = s
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s, ok := byKey[k]
		if !ok {
			return nil, fmt.Errorf("config file: unknown key %q", k)
		}
		v := raw[k]
		switch s.Kind {
		case KindList:
			var l []string
			if err := json.Unmarshal(v, &l); err != nil {
				return nil, fmt.Errorf("config file: key %q: want an array of strings", k)
			}
			out[s.Name] = l
		case KindMap:
			var m map[string]string
			if err := json.Unmarshal(v, &m); err != nil {
				return nil, fmt.Errorf("config file: key %q: want an object of strings", k)
			}
			items := make([]string, 0, len(m))
			for mk, mv := range m {
				items = append(items, mk+"="+mv)
			}
			sort.Strings(items)
			out[s.Name] = items
		case KindInt:
			var n int
			if err := json.Unmarshal(v, &n); err != nil {
				return nil, fmt.Errorf("config file: key %q: want an integer", k)
			}
			out[s.Name] = []string{strconv.Itoa(n)}
		case KindBool:
			var b bool
			if err := json.Unmarshal(v, &b); err != nil {
				return nil, fmt.Errorf("config file: key %q: want true or false", k)
			}
			out[s.Name] = []string{strconv.FormatBool(b)}
		default:
			var str string
			if err := json.Unmarshal(v, &str); err != nil {
				return nil, fmt.Errorf("config file: key %q: want a string", k)
			}
			out[s.Name] = []string{str}
		}
	}
	return out, nil
}

func one(v Values, name string) string {
	if l := v[name]; len(l) > 0 {
		return l[len(l)-1]
	}
	return ""
}

// build validates merged values into a Config. Every error names the
// setting by its flag.
func build(v Values) (Config, error) {
	var c Config
	var err error
	c.NodeName = one(v, "node")
	if c.NodeName == "" {
		if c.NodeName, err = os.Hostname(); err != nil {
			return c, fmt.Errorf("--node: none given and no host name: %v", err)
		}
	}
	if len(c.NodeName) > 64 || strings.ContainsAny(c.NodeName, " \t\r\n/@") {
		return c, fmt.Errorf("--node %q: at most 64 characters, without spaces, '/' or '@'", c.NodeName)
	}
	if c.BindIP, c.BindPort, err = parseIPPort(one(v, "bind"), membership.DefaultPort); err != nil {
		return c, fmt.Errorf("--bind: %v", err)
	}
	if a := one(v, "advertise"); a != "" {
		if c.AdvertiseIP, c.AdvertisePort, err = parseIPPort(a, c.BindPort); err != nil {
			return c, fmt.Errorf("--advertise: %v", err)
		}
	}
	// Seeds are checked for their form only: a name may have no DNS record
	// yet when the agent starts (a StatefulSet's peers); it is resolved at
	// each join attempt.
	for _, name := range []string{"join", "retry-join"} {
		for _, a := range v[name] {
			if err := membership.CheckAddr(a); err != nil {
				return c, fmt.Errorf("--%s: %v", name, err)
			}
		}
	}
	c.Join, c.RetryJoin = v["join"], v["retry-join"]
	if c.RetryInterval, err = positiveDuration(one(v, "retry-interval")); err != nil {
		return c, fmt.Errorf("--retry-interval: %v", err)
	}
	if c.RetryMax, err = strconv.Atoi(one(v, "retry-max")); err != nil || c.RetryMax < 0 {
		return c, fmt.Errorf("--retry-max %q: want a whole number ≥ 0", one(v, "retry-max"))
	}
	if c.DataDir = one(v, "data-dir"); c.DataDir == "" {
		return c, errors.New("--data-dir: must not be empty")
	}
	ip, port, err := parseIPPort(one(v, "http-addr"), -1)
	if err != nil {
		return c, fmt.Errorf("--http-addr: %v", err)
	}
	c.HTTPAddr = net.JoinHostPort(ip, strconv.Itoa(port))
	if ip, port, err = parseIPPort(one(v, "rpc-addr"), -1); err != nil {
		return c, fmt.Errorf("--rpc-addr: %v", err)
	}
	c.RPCAddr = net.JoinHostPort(ip, strconv.Itoa(port))
	c.RPCAuth = one(v, "rpc-auth")
	c.HTTPToken = one(v, "http-token")
	c.HTTPTLSCert, c.HTTPTLSKey = one(v, "http-tls-cert"), one(v, "http-tls-key")
	if (c.HTTPTLSCert == "") != (c.HTTPTLSKey == "") {
		return c, errors.New("--http-tls-cert and --http-tls-key: give both or neither")
	}
	if c.HTTPTLSCert != "" {
		if _, err := tls.LoadX509KeyPair(c.HTTPTLSCert, c.HTTPTLSKey); err != nil {
			return c, fmt.Errorf("--http-tls-cert/--http-tls-key: %v", err)
		}
	}
	c.Tags = map[string]string{}
	for _, kv := range v["tag"] {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return c, fmt.Errorf("--tag %q: want KEY=VALUE", kv)
		}
		if membership.Reserved(k) {
			return c, fmt.Errorf("--tag %q: the key %q is reserved: vigil sets it itself", kv, k)
		}
		c.Tags[k] = val
	}
	if key := one(v, "encrypt"); key != "" {
		if c.EncryptKey, err = ParseKey(key); err != nil {
			return c, fmt.Errorf("--encrypt: %v", err)
		}
	}
	c.Profile = one(v, "profile")
	if !contains(membership.Profiles, c.Profile) {
		return c, fmt.Errorf("--profile %q: want lan, wan or local", c.Profile)
	}
	if c.CouncilSize, err = strconv.Atoi(one(v, "council-size")); err != nil || c.CouncilSize < 0 || c.CouncilSize == 1 || c.CouncilSize == 2 || c.CouncilSize > consensus.MaxAcceptors {
		return c, fmt.Errorf("--council-size %q: want 0 (every member) or 3..%d", one(v, "council-size"), consensus.MaxAcceptors)
	}
	c.Quorum = one(v, "quorum")
	if c.Quorum != "majority" && c.Quorum != "two-thirds" {
		return c, fmt.Errorf("--quorum %q: want majority or two-thirds", c.Quorum)
	}
	if c.RecoveryHandler = one(v, "recovery-handler"); c.RecoveryHandler != "" {
		if err := recovery.CheckExecutable(c.RecoveryHandler); err != nil {
			return c, fmt.Errorf("--recovery-handler: %v", err)
		}
	}
	if c.RecoveryRetries, err = strconv.Atoi(one(v, "recovery-retries")); err != nil || c.RecoveryRetries < 0 {
		return c, fmt.Errorf("--recovery-retries %q: want a whole number ≥ 0", one(v, "recovery-retries"))
	}
	if c.FenceHandler = one(v, "fence-handler"); c.FenceHandler != "" {
		if err := recovery.CheckExecutable(c.FenceHandler); err != nil {
			return c, fmt.Errorf("--fence-handler: %v", err)
		}
	}
	if c.RejoinStable, err = time.ParseDuration(one(v, "rejoin-stable")); err != nil || c.RejoinStable < 0 {
		return c, fmt.Errorf("--rejoin-stable %q: want a duration ≥ 0, like 20s", one(v, "rejoin-stable"))
	}
	if c.FenceAfter, err = positiveDuration(one(v, "fence-after")); err != nil {
		return c, fmt.Errorf("--fence-after: %v", err)
	}
	if b := one(v, "bootstrap"); b != "" {
		if c.Bootstrap, err = strconv.ParseBool(b); err != nil {
			return c, fmt.Errorf("--bootstrap %q: want true or false", b)
		}
	}
	if b := one(v, "enable-debug"); b != "" {
		if c.EnableDebug, err = strconv.ParseBool(b); err != nil {
			return c, fmt.Errorf("--enable-debug %q: want true or false", b)
		}
	}
	if c.GoMaxProcs, err = strconv.Atoi(one(v, "gomaxprocs")); err != nil || c.GoMaxProcs < 0 || c.GoMaxProcs > maxProcs {
		return c, fmt.Errorf("--gomaxprocs %q: want 0 (Go's default) or 1..%d", one(v, "gomaxprocs"), maxProcs)
	}
	if c.BootstrapExpect, err = strconv.Atoi(one(v, "bootstrap-expect")); err != nil || c.BootstrapExpect < 0 {
		return c, fmt.Errorf("--bootstrap-expect %q: want a whole number ≥ 0", one(v, "bootstrap-expect"))
	}
	if c.Bootstrap && c.BootstrapExpect > 0 {
		return c, errors.New("--bootstrap and --bootstrap-expect: give one of them")
	}
	for _, spec := range v["event-handler"] {
		h, err := recovery.ParseEventHandler(spec)
		if err != nil {
			return c, fmt.Errorf("--event-handler %q: %v", spec, err)
		}
		if err := h.Check(); err != nil {
			return c, fmt.Errorf("--event-handler %q: %v", spec, err)
		}
		c.EventHandlers = append(c.EventHandlers, h)
	}
	if c.HandlerTimeout, err = positiveDuration(one(v, "handler-timeout")); err != nil {
		return c, fmt.Errorf("--handler-timeout: %v", err)
	}
	if c.HandlerConcurrency, err = strconv.Atoi(one(v, "handler-concurrency")); err != nil || c.HandlerConcurrency < 1 {
		return c, fmt.Errorf("--handler-concurrency %q: want a whole number ≥ 1", one(v, "handler-concurrency"))
	}
	c.LogLevel = one(v, "log-level")
	if _, ok := logLevels[c.LogLevel]; !ok {
		return c, fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", c.LogLevel)
	}
	c.LogFormat = one(v, "log-format")
	if c.LogFormat != "console" && c.LogFormat != "json" {
		return c, fmt.Errorf("--log-format %q: want console or json", c.LogFormat)
	}
	return c, nil
}

// parseIPPort parses IP[:PORT] where IP must be a literal address. With
// defPort < 0 the port is required.
func parseIPPort(s string, defPort int) (string, int, error) {
	if s == "" {
		return "", 0, errors.New("empty address")
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		if defPort < 0 {
			return "", 0, fmt.Errorf("%q: want IP:PORT", s)
		}
		host, portStr = strings.Trim(s, "[]"), strconv.Itoa(defPort)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return "", 0, fmt.Errorf("%q: %q is not an IP address", s, host)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port %q", s, portStr)
	}
	return ip.String(), port, nil
}

func positiveDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (like 500ms, 5s, 1m)", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: must be positive", s)
	}
	return d, nil
}

// ParseKey decodes a gossip key: standard base64 of 16, 24 or 32 bytes.
func ParseKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("the key is not valid base64 (make one with vigil keygen)")
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("the key is %d bytes; want 16, 24 or 32 (make one with vigil keygen)", len(k))
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
