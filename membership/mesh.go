package membership

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
	"github.com/rs/zerolog"
)

// DefaultPort is the gossip port used when an address names none (serf's).
const DefaultPort = 7946

// BootTag is the serf tag that carries a member's boot id. It is reserved:
// operators cannot set it with --tag.
const BootTag = "boot"

// ExecutorTag is "1" on a member that has a recovery handler: only those
// are named executors. ClusterTag carries the cluster id of a member that
// belongs to a cluster. Both are reserved, like BootTag.
const (
	ExecutorTag = "recovery"
	ClusterTag  = "cluster"
	// RulesTag carries the consensus rules every member must share
	// ("QUORUM/COUNCIL/wWIRE", e.g. "majority/5/w2"): agents with other rules
	// would count quorums that need not meet.
	RulesTag = "rules"
)

// ReservedEvent reports whether a user event name is vigil's own
// (vigil-*, recovery-*): operators cannot send those.
func ReservedEvent(name string) bool {
	return strings.HasPrefix(name, "vigil-") || strings.HasPrefix(name, "recovery-")
}

// Reserved reports whether vigil sets the tag key itself.
func Reserved(key string) bool {
	return key == BootTag || key == ExecutorTag || key == ClusterTag || key == RulesTag
}

// Profiles are the memberlist timing profiles an operator can choose.
var Profiles = []string{"lan", "wan", "local"}

// Config is what the mesh needs to start. Every field is required unless
// it says otherwise.
type Config struct {
	NodeName string
	// BindAddr and BindPort are where gossip listens (UDP and TCP).
	BindAddr string
	BindPort int
	// AdvertiseAddr and AdvertisePort are what other nodes are told; empty
	// and 0 mean the bind address and port.
	AdvertiseAddr string
	AdvertisePort int
	// Profile is one of Profiles: memberlist's LAN, WAN or local timings.
	Profile string
	// Tags are published through serf; BootTag is set by the caller.
	Tags map[string]string
	// EncryptKey, if set, is the 16, 24 or 32 byte gossip key.
	EncryptKey []byte
	// Keys, if set, is the whole keyring (each key 16, 24 or 32 bytes),
	// its primary key first; it replaces EncryptKey.
	Keys [][]byte
	// KeyringFile, if set, is where serf writes the keyring after every
	// change (serf's -keyring-file format: a JSON array of base64 keys).
	KeyringFile string
	// Logger receives serf's and memberlist's logs.
	Logger zerolog.Logger
	// Cluster returns the id of the cluster this node belongs to, "" while
	// it belongs to none. Members that carry another id in their
	// ClusterTag are refused, at a join and whenever gossip brings them.
	// Optional; it is called from serf's goroutines.
	Cluster func() string
	// Rules are this agent's consensus rules, also published in RulesTag;
	// members that publish other rules are refused like another cluster's.
	// Optional.
	Rules string
}

// clusterGuard is serf's merge delegate: it refuses members of another
// cluster.
type clusterGuard struct {
	id    func() string
	rules string
	log   zerolog.Logger
}

func (g clusterGuard) NotifyMerge(members []*serf.Member) error {
	for _, m := range members {
		if theirs := m.Tags[RulesTag]; g.rules != "" && theirs != "" && theirs != g.rules {
			err := fmt.Errorf("%s runs with consensus rules %s (--quorum/--council-size/wire version), this agent with %s: refusing to merge; every agent needs the same settings and a vigil that speaks the same consensus wire version", m.Name, theirs, g.rules)
			g.log.Error().Err(err).Msg("join refused")
			return err
		}
	}
	ours := ""
	if g.id != nil {
		ours = g.id()
	}
	if ours == "" {
		return nil
	}
	for _, m := range members {
		if theirs := m.Tags[ClusterTag]; theirs != "" && theirs != ours {
			err := fmt.Errorf("%s belongs to cluster %s, this agent to cluster %s: refusing to merge two clusters", m.Name, theirs, ours)
			g.log.Error().Err(err).Msg("join refused")
			return err
		}
	}
	return nil
}

// Mesh is one node of the serf gossip mesh. Its events are queued at once
// (serf delivers them under memberlist's locks) and taken by the caller with
// Notify and TakeEvents.
type Mesh struct {
	serf         *serf.Serf
	serfCh       chan serf.Event
	notify       chan struct{}
	logger       zerolog.Logger
	loads        *loads
	probeTimeout time.Duration

	// queryMu serializes serf queries: see query.
	queryMu sync.Mutex
	// direct carries consensus messages point to point; addrs is where.
	direct *direct
	addrs  addrBook

	// mu guards the fields below.
	mu      sync.Mutex
	queue   []Event
	inbound []Inbound
	pongs   []Pong
	// waiting are the pings of a PingBurst in progress, by seq: their
	// pongs go to the burst, not to the loop.
	waiting map[uint64]burstPing
}

// CheckAddr reports whether s is written as "host[:port]", without
// resolving the host: a seed may have no DNS record yet when the agent
// starts.
func CheckAddr(s string) error {
	_, _, err := splitAddr(s, DefaultPort)
	return err
}

// ParseAddr splits "host[:port]" into an IP literal (host names are
// resolved) and a port, using defPort when none is given.
func ParseAddr(s string, defPort int) (string, int, error) {
	host, port, err := splitAddr(s, defPort)
	if err != nil {
		return "", 0, err
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), port, nil
	}
	return resolve(s, host, port)
}

// splitAddr splits "host[:port]" without resolving the host.
func splitAddr(s string, defPort int) (string, int, error) {
	if s == "" {
		return "", 0, errors.New("empty address")
	}
	host, portStr := s, ""
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, portStr = h, p
	} else if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
		host = s // a bare IPv6 address
	} else if strings.Contains(s, ":") {
		return "", 0, fmt.Errorf("address %q: %v", s, err)
	}
	port := defPort
	if portStr != "" {
		p, err := strconv.Atoi(portStr)
		if err != nil || p < 0 || p > 65535 {
			return "", 0, fmt.Errorf("address %q: bad port %q", s, portStr)
		}
		port = p
	}
	if host == "" {
		return "", 0, fmt.Errorf("address %q: no host", s)
	}
	return host, port, nil
}

// resolve looks host up.
func resolve(s, host string, port int) (string, int, error) {
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return "", 0, fmt.Errorf("address %q: cannot resolve host %q", s, host)
	}
	return ips[0].String(), port, nil
}

// memberlistConfig returns memberlist's timings for a profile.
func memberlistConfig(profile string) (*memberlist.Config, error) {
	switch profile {
	case "lan", "":
		return memberlist.DefaultLANConfig(), nil
	case "wan":
		return memberlist.DefaultWANConfig(), nil
	case "local":
		return memberlist.DefaultLocalConfig(), nil
	}
	return nil, fmt.Errorf("unknown profile %q (want lan, wan or local)", profile)
}

// Start creates the serf instance and begins gossiping. It does not join
// anybody: call Join.
func Start(cfg Config) (*Mesh, error) {
	mc, err := memberlistConfig(cfg.Profile)
	if err != nil {
		return nil, err
	}
	mc.Name = cfg.NodeName
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	if mc.AdvertiseAddr != "" && mc.AdvertisePort == 0 {
		mc.AdvertisePort = cfg.BindPort
	}
	// A node restarting under its old name at a new address is refused as a
	// conflict until memberlist forgets the dead entry.
	mc.DeadNodeReclaimTime = 30 * time.Second
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("keyring: %w", err)
		}
		mc.Keyring = kr
	} else if len(cfg.EncryptKey) > 0 {
		kr, err := memberlist.NewKeyring(nil, cfg.EncryptKey)
		if err != nil {
			return nil, fmt.Errorf("encryption key: %w", err)
		}
		mc.Keyring = kr
	}
	lg := newStdLogger(cfg.Logger)
	mc.Logger = lg
	// memberlist's UDP and TCP, with vigil's point-to-point datagrams
	// taken out of the packet stream (see transport.go, direct.go).
	var tr *transport
	// A port the kernel picks (0) may be free for TCP and taken for UDP:
	// try again, as memberlist does.
	for try := 0; ; try++ {
		tr, err = listen(cfg.BindAddr, cfg.BindPort, lg)
		if err == nil {
			break
		}
		if cfg.BindPort != 0 || try == 9 || !strings.Contains(err.Error(), "address already in use") {
			return nil, explainStartError(cfg, err)
		}
	}
	if cfg.BindPort == 0 {
		mc.BindPort = tr.port()
		if mc.AdvertisePort == 0 {
			mc.AdvertisePort = mc.BindPort
		}
	}

	m := &Mesh{
		serfCh:       make(chan serf.Event, 1024),
		notify:       make(chan struct{}, 1),
		logger:       cfg.Logger,
		loads:        newLoads(),
		probeTimeout: mc.ProbeTimeout,
	}
	m.direct = newDirect(cfg.NodeName, mc.Keyring)
	m.direct.addrOf = m.addrOf
	m.direct.deliver = m.offerInbound
	m.direct.loads = m.loads
	m.direct.onPong = m.offerPong
	// A write that fails is a lost datagram: the message is sent again.
	m.direct.write = func(b []byte, addr string) { _, _ = tr.WriteTo(b, addr) }
	tr.start(m.direct.onFrame)
	mc.Transport = tr
	// Acks carry this node's load; see probe.go.
	mc.Ping = m.loads
	sc := serf.DefaultConfig()
	sc.NodeName = cfg.NodeName
	sc.Tags = cfg.Tags
	sc.MemberlistConfig = mc
	sc.Logger = lg
	sc.EventCh = m.serfCh
	sc.KeyringFile = cfg.KeyringFile
	if cfg.Cluster != nil || cfg.Rules != "" {
		sc.Merge = clusterGuard{id: cfg.Cluster, rules: cfg.Rules, log: cfg.Logger}
	}
	// vigil does not use network coordinates; without them serf leaves
	// memberlist's ping delegate free.
	sc.DisableCoordinates = true
	// A user event that names a decision must not be merged with another.
	sc.CoalescePeriod = 0
	sc.UserCoalescePeriod = 0
	// A consensus message of MaxMessage bytes plus the query's header and
	// its one-node filter must pass; both stay under memberlist's
	// 1400-byte UDP packets.
	sc.QuerySizeLimit = MaxMessage + 256
	sc.QueryResponseSizeLimit = MaxMessage + 256
	s, err := serf.Create(sc)
	if err != nil {
		_ = tr.Shutdown()
		return nil, explainStartError(cfg, err)
	}
	m.serf = s
	return m, nil
}

func explainStartError(cfg Config, err error) error {
	msg := err.Error()
	if strings.Contains(msg, "address already in use") {
		return fmt.Errorf("gossip address %s:%d is already in use", cfg.BindAddr, cfg.BindPort)
	}
	if strings.Contains(msg, "cannot assign requested address") {
		return fmt.Errorf("gossip address %s:%d is not an address of this machine", cfg.BindAddr, cfg.BindPort)
	}
	return fmt.Errorf("start gossip: %w", err)
}

// Pump moves serf's events into the queue until ctx ends or serf shuts
// down. The caller runs it on a goroutine of its own; it never blocks serf
// for longer than a copy.
func (m *Mesh) Pump(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.serf.ShutdownCh():
			return
		case e := <-m.serfCh:
			if q, ok := e.(*serf.Query); ok {
				if q.Name == JournalQuery || q.Name == JournalPutQuery {
					// A query the full queue drops goes unanswered; its
					// asker counts the answers it got.
					m.offerInbound(Inbound{Query: q.Name, From: q.SourceNode(), Payload: append([]byte(nil), q.Payload...), reply: q.Respond})
					continue
				}
				if ReservedEvent(q.Name) {
					continue // vigil's own, from an agent of another version
				}
				m.mu.Lock()
				m.queue = append(m.queue, Event{Type: Query, Time: time.Now(), Name: q.Name,
					Payload: append([]byte(nil), q.Payload...), LTime: uint64(q.LTime),
					Respond: q.Respond, Deadline: q.Deadline()})
				m.mu.Unlock()
				m.wake()
				continue
			}
			ev, ok := convert(e)
			if !ok {
				continue
			}
			for _, mb := range ev.Members {
				if ev.Type == MemberReap {
					m.addrs.forget(mb.Name)
				} else {
					m.addrs.set(mb.Name, mb.Addr, mb.Port)
				}
			}
			m.mu.Lock()
			m.queue = append(m.queue, ev)
			m.mu.Unlock()
			m.wake()
		}
	}
}

// wake signals Notify; a signal already pending covers this one too, since
// the reader takes everything queued.
func (m *Mesh) wake() {
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// Notify is signalled when events are waiting in the queue.
func (m *Mesh) Notify() <-chan struct{} { return m.notify }

// TakeEvents returns the queued events, oldest first, and empties the queue.
func (m *Mesh) TakeEvents() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.queue
	m.queue = nil
	return q
}

func convert(e serf.Event) (Event, bool) {
	now := time.Now()
	switch e := e.(type) {
	case serf.MemberEvent:
		var t EventType
		switch e.Type {
		case serf.EventMemberJoin:
			t = MemberJoin
		case serf.EventMemberLeave:
			t = MemberLeave
		case serf.EventMemberFailed:
			t = MemberFailed
		case serf.EventMemberUpdate:
			t = MemberUpdate
		case serf.EventMemberReap:
			t = MemberReap
		default:
			return Event{}, false
		}
		ms := make([]Member, 0, len(e.Members))
		for _, sm := range e.Members {
			ms = append(ms, fromSerf(sm))
		}
		return Event{Type: t, Time: now, Members: ms}, true
	case serf.UserEvent:
		return Event{
			Type:     User,
			Time:     now,
			Name:     e.Name,
			Payload:  append([]byte(nil), e.Payload...),
			LTime:    uint64(e.LTime),
			Coalesce: e.Coalesce,
		}, true
	}
	return Event{}, false
}

func fromSerf(sm serf.Member) Member {
	tags := make(map[string]string, len(sm.Tags))
	for k, v := range sm.Tags {
		tags[k] = v
	}
	return Member{
		Name:   sm.Name,
		Addr:   append(net.IP(nil), sm.Addr...),
		Port:   sm.Port,
		Tags:   tags,
		Status: sm.Status.String(),
		Protocol: [6]uint8{sm.ProtocolMin, sm.ProtocolMax, sm.ProtocolCur,
			sm.DelegateMin, sm.DelegateMax, sm.DelegateCur},
	}
}

// Join contacts the given addresses ("host[:port]"); it returns how many
// answered, and an error only if none did.
func (m *Mesh) Join(addrs []string) (int, error) { return m.JoinReplay(addrs, false) }

// JoinReplay is Join; with replay this agent also runs the handlers of
// the user events the cluster sent before it joined (serf's -replay).
func (m *Mesh) JoinReplay(addrs []string, replay bool) (int, error) {
	if len(addrs) == 0 {
		return 0, errors.New("no address to join")
	}
	// A seed whose name does not resolve yet (a peer not started, DNS
	// behind) does not keep the others from being tried.
	norm := make([]string, 0, len(addrs))
	var unresolved []string
	for _, a := range addrs {
		host, port, err := ParseAddr(a, DefaultPort)
		if err != nil {
			unresolved = append(unresolved, err.Error())
			continue
		}
		norm = append(norm, net.JoinHostPort(host, strconv.Itoa(port)))
	}
	if len(norm) == 0 {
		return 0, fmt.Errorf("join %s: %s", strings.Join(addrs, ", "), strings.Join(unresolved, "; "))
	}
	// ignoreOld: a new agent does not run handlers for user events that
	// happened before it joined (serf's agent default).
	n, err := m.serf.Join(norm, !replay)
	if n == 0 && err == nil {
		err = errors.New("no node answered")
	}
	if n > 0 {
		return n, nil
	}
	// serf returns a multierror whose text spans lines; say it in one.
	if me, ok := err.(interface{ WrappedErrors() []error }); ok {
		var parts []string
		for _, e := range me.WrappedErrors() {
			parts = append(parts, e.Error())
		}
		err = errors.New(strings.Join(parts, "; "))
	}
	return 0, fmt.Errorf("join %s: %w", strings.Join(addrs, ", "), err)
}

// Leave broadcasts a graceful leave and waits for it to propagate.
func (m *Mesh) Leave() error { return m.serf.Leave() }

// Shutdown stops gossiping without a leave; it is safe to call twice.
func (m *Mesh) Shutdown() error {
	return m.serf.Shutdown()
}

// Members is serf's member list.
func (m *Mesh) Members() []Member {
	sms := m.serf.Members()
	out := make([]Member, 0, len(sms))
	for _, sm := range sms {
		out = append(out, fromSerf(sm))
	}
	return out
}

// Local is this node as serf sees it.
func (m *Mesh) Local() Member { return fromSerf(m.serf.LocalMember()) }

// UserEvent sends a serf user event to the whole cluster.
func (m *Mesh) UserEvent(name string, payload []byte, coalesce bool) error {
	return m.serf.UserEvent(name, payload, coalesce)
}

// ForceLeave moves a failed node to left at once (serf's force-leave);
// with prune serf also forgets it at once instead of after the reap time.
func (m *Mesh) ForceLeave(node string, prune bool) error {
	for _, sm := range m.serf.Members() {
		if sm.Name == node {
			if prune {
				return m.serf.RemoveFailedNodePrune(node)
			}
			return m.serf.RemoveFailedNode(node)
		}
	}
	return fmt.Errorf("no member named %q", node)
}

// QueryParams are serf's query options: only the named nodes, only nodes
// whose tags match the regular expressions, acknowledgements, relays, and
// the time to wait (0: serf's default for the cluster's size).
type QueryParams = serf.QueryParam

// QueryResponse streams the acks and answers of one query until its
// deadline.
type QueryResponse = serf.QueryResponse

// Query sends a query to the cluster (serf's query); the caller reads the
// answers from the response.
func (m *Mesh) Query(name string, payload []byte, p QueryParams) (*QueryResponse, error) {
	return m.query(name, payload, &p)
}

// KeyResponse is serf's summary of a cluster-wide keyring change.
type KeyResponse = serf.KeyResponse

// Keys changes or lists the gossip keyring on every member, as serf's
// key manager does: op is install, use, remove or list. Each member
// persists its keyring in its keyring file.
func (m *Mesh) Keys(op, key string) (*KeyResponse, error) {
	// The key manager starts serf queries of its own: one query at a
	// time (see query).
	m.queryMu.Lock()
	defer m.queryMu.Unlock()
	km := m.serf.KeyManager()
	// Each answer is relayed by two more members: one lost datagram does
	// not make a member look failed.
	opts := &serf.KeyRequestOptions{RelayFactor: 2}
	switch op {
	case "install":
		return km.InstallKeyWithOptions(key, opts)
	case "use":
		return km.UseKeyWithOptions(key, opts)
	case "remove":
		return km.RemoveKeyWithOptions(key, opts)
	case "list":
		return km.ListKeysWithOptions(opts)
	}
	return nil, fmt.Errorf("unknown key operation %q", op)
}

// Encrypted reports whether gossip is encrypted.
func (m *Mesh) Encrypted() bool { return m.serf.EncryptionEnabled() }

// Stats are serf's own counters, for `vigil info`.
func (m *Mesh) Stats() map[string]string { return m.serf.Stats() }

// newStdLogger adapts zerolog to the *log.Logger that serf and memberlist
// write lines like "[WARN] memberlist: ..." to.
func newStdLogger(l zerolog.Logger) *log.Logger {
	return log.New(levelWriter{l}, "", 0)
}

type levelWriter struct{ l zerolog.Logger }

func (w levelWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	lvl := zerolog.InfoLevel
	for prefix, l := range map[string]zerolog.Level{
		"[TRACE]": zerolog.TraceLevel, "[DEBUG]": zerolog.DebugLevel,
		"[INFO]": zerolog.InfoLevel, "[WARN]": zerolog.WarnLevel,
		"[ERR]": zerolog.ErrorLevel, "[ERROR]": zerolog.ErrorLevel,
	} {
		if strings.HasPrefix(line, prefix) {
			lvl = l
			line = strings.TrimSpace(strings.TrimPrefix(line, prefix))
			break
		}
	}
	src := "serf"
	if strings.HasPrefix(line, "memberlist:") {
		src = "memberlist"
	}
	e := w.l.WithLevel(lvl).Str("src", src)
	// memberlist says only "No installed keys could decrypt the message";
	// name the likely cause.
	low := strings.ToLower(line)
	if strings.Contains(low, "no installed keys could decrypt") || strings.Contains(low, "encryption is configured but remote state is not encrypted") || strings.Contains(low, "remote state is encrypted and encryption is not configured") {
		e = e.Str("hint", "the peers use a different --encrypt key (or none)")
	}
	e.Msg(line)
	return len(p), nil
}

var _ io.Writer = levelWriter{}

// SetTags replaces this node's tags (a new incarnation, gossiped to all).
func (m *Mesh) SetTags(tags map[string]string) error { return m.serf.SetTags(tags) }
