package agent

// The agent's side of the engine: it loads what the engine starts from,
// feeds it pings, bursts, messages and gossip, and carries out its Ready
// (persist, then send, then act). Every decision is the engine's.

import (
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigil-project/vigil/consensus"
	"github.com/vigil-project/vigil/engine"
	"github.com/vigil-project/vigil/membership"
	"github.com/vigil-project/vigil/scoring"
	"github.com/vigil-project/vigil/store"
	"github.com/vigil-project/vigil/suspicion"
)

// consensusTick is how often the loop ticks the engine.
const consensusTick = engine.TickInterval

// DecisionEvent names the serf user event that announces decisions.
const DecisionEvent = engine.DecisionEvent

// messenger carries consensus messages between agents. membership.Mesh
// implements it point to point on the gossip port.
type messenger interface {
	// Send delivers payload to node to without blocking; it repeats it
	// on Resend until the node acknowledges it or a timeout passes.
	Send(to string, payload []byte) error
	// Resend repeats the messages whose acknowledgement is overdue.
	Resend()
	// Unacked reports whether a message waits for its acknowledgement.
	Unacked() bool
	// TakeInbound returns the consensus messages that arrived.
	TakeInbound() []membership.Inbound
}

// detector owns the engine for the loop. Nothing here is touched outside
// the loop.
type detector struct {
	a       *Agent
	eng     *engine.Engine
	msg     messenger
	probeCh chan engine.ProbeResult
	burstCh chan engine.BurstResult
	// probeTimer fires when the earliest probe is due; nil until Run.
	probeTimer *time.Timer
	// pings are the pings sent and not over, by seq; pingTimer fires by
	// pingDue, when the earliest of them times out (nil until Run).
	pings       map[uint64]*pendingPing
	pingTimer   *time.Timer
	pingDue     time.Time
	cpu         membership.CPUSampler
	lastLoad    time.Time
	lastMembers time.Time
	// What publishVouching last gave the transport.
	vouchSet bool
	vouchRev engine.VouchRev
	// tickTimer wakes the loop for Tick; tickAt is the time it is set
	// for, lastTick the time of the last tick (armTicker).
	tickTimer        *time.Timer
	tickAt, lastTick time.Time
}

func newDetector(a *Agent) (*detector, error) {
	d := &detector{a: a, msg: a.mesh, pings: map[uint64]*pendingPing{}, probeCh: make(chan engine.ProbeResult, 256), burstCh: make(chan engine.BurstResult, 16)}
	cs, decided, err := loadConsensus(a.store)
	if err != nil {
		return nil, err
	}
	models, err := a.store.Models()
	if err != nil {
		return nil, err
	}
	jobs, err := a.jobs()
	if err != nil {
		return nil, err
	}
	var seed [8]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	cfg := engine.Config{
		Name: a.cfg.NodeName, CouncilSize: a.cfg.CouncilSize, FenceAfter: a.cfg.FenceAfter,
		RejoinStable: a.cfg.RejoinStable, ProbeTimeout: a.mesh.ProbeTimeout(), Executor: a.cfg.RecoveryHandler != "",
		BootstrapExpect: a.cfg.BootstrapExpect, Suspicion: suspicion.DefaultConfig(), Scoring: scoring.DefaultConfig(),
		Rand: rand.New(rand.NewSource(int64(binary.LittleEndian.Uint64(seed[:])))),
	}
	if a.cfg.Quorum == "two-thirds" {
		cfg.Quorum = consensus.TwoThirds
	}
	st := engine.State{Consensus: cs, Decided: decided, Cluster: a.clusterID(), Boot: a.boot, Addr: a.gossipAddr(),
		Bootstrap: a.bootstrapping, Models: models, Jobs: jobs}
	if d.eng, err = engine.New(cfg, st, time.Now()); err != nil {
		return nil, fmt.Errorf("restore from %s: %w", a.store.Path(), err)
	}
	d.eng.SetMembers(time.Now(), d.gossip())
	d.handle()
	if a.fatalErr != nil {
		return nil, a.fatalErr
	}
	return d, nil
}

// loadConsensus reads what consensus made durable: the acceptor state, the
// current view and the contiguous log tail that ends at it (Fresh when the
// store holds none of them). decided is every stored decision the tail
// was cut from, oldest first.
func loadConsensus(s *store.Store) (st consensus.PersistentState, decided []consensus.Decision, err error) {
	b, err := s.LoadAcceptor()
	if err != nil {
		return st, nil, err
	}
	if b != nil {
		if st.Acceptor, err = consensus.DecodeAcceptorState(b); err != nil {
			return st, nil, fmt.Errorf("%s: acceptor state: %w", s.Path(), err)
		}
	}
	epoch, vb, err := s.LoadView()
	if err != nil {
		return st, nil, err
	}
	if vb != nil {
		if err := json.Unmarshal(vb, &st.View); err != nil || st.View.Epoch != epoch {
			return st, nil, fmt.Errorf("%s: stored view is unreadable: %v", s.Path(), err)
		}
	}
	st.Fresh = b == nil && st.View.Epoch == 0
	from := uint64(1)
	if st.View.Epoch > 1024 {
		from = st.View.Epoch - 1024
	}
	recs, err := s.Decisions(from, 0)
	if err != nil {
		return st, nil, err
	}
	for _, r := range recs {
		dec, err := consensus.DecodeDecision(r.Bytes)
		if err != nil {
			return st, nil, fmt.Errorf("%s: decision %d: %w", s.Path(), r.Epoch, err)
		}
		if dec.Epoch >= st.View.Epoch {
			continue
		}
		decided = append(decided, dec)
		if len(st.Log) == 0 || st.Log[len(st.Log)-1].Epoch+1 == dec.Epoch {
			st.Log = append(st.Log, dec)
		} else {
			st.Log = append(st.Log[:0], dec) // keep the contiguous tail
		}
	}
	if len(st.Log) > 0 && st.Log[len(st.Log)-1].Epoch != st.View.Epoch-1 {
		st.Log = nil
	}
	return st, decided, nil
}

// persistReady makes what a Ready asks to keep durable in one
// transaction, before anything of it is acted on.
func persistReady(s *store.Store, rd engine.Ready) error {
	return s.Batch(func(tx *store.Tx) error {
		for k, b := range rd.Meta {
			if err := tx.SetMeta(k, b); err != nil {
				return err
			}
		}
		if rd.Acceptor != nil {
			b, err := consensus.EncodeAcceptorState(*rd.Acceptor)
			if err != nil {
				return err
			}
			if err := tx.SaveAcceptor(b); err != nil {
				return err
			}
		}
		for _, dec := range rd.Decided {
			b, err := consensus.EncodeDecision(dec)
			if err != nil {
				return err
			}
			if err := tx.AppendDecision(dec.Epoch, b); err != nil {
				return err
			}
		}
		if rd.View != nil {
			b, err := json.Marshal(*rd.View)
			if err != nil {
				return err
			}
			if err := tx.SaveView(rd.View.Epoch, b); err != nil {
				return err
			}
		}
		for _, j := range rd.Jobs {
			b, err := j.Encode()
			if err != nil {
				return err
			}
			if err := tx.PutJob(j.ID, b); err != nil {
				return err
			}
		}
		return nil
	})
}

// handle carries out the engine's Ready: stop what must stop, persist,
// then send, then act. The kills and fences come first, whatever the
// write does: they only stop things, and the majority counts on them. After
// a failed write nothing else is done and the agent stops: the engine's
// memory is ahead of the disk. (newDetector calls it before Run: the
// engine's first Ready holds writes and log lines only, nothing spawned.)
func (d *detector) handle() {
	a := d.a
	if a.fatalErr != nil {
		return
	}
	rd := d.eng.Ready()
	for _, id := range rd.Kill {
		if cancel, ok := a.rec.running[id]; ok {
			cancel()
		}
	}
	for _, f := range rd.Fences {
		a.fence(f.Reason, f.Epoch)
	}
	if rd.MustPersist() {
		if err := persistReady(a.store, rd); err != nil {
			// What was decided was not kept: only the warnings are true.
			for _, l := range rd.Logs {
				if l.Level >= engine.Warn {
					d.logLine(l)
				}
			}
			a.fatal(fmt.Errorf("persist consensus state: %w", err))
			return
		}
	}
	for _, l := range rd.Logs {
		d.logLine(l)
	}
	if rd.Boot != "" {
		a.boot = rd.Boot
		if err := a.store.RecordBoot(store.Boot{ID: rd.Boot, Node: a.cfg.NodeName, Started: time.Now()}); err != nil {
			a.fatal(fmt.Errorf("record the new boot: %w", err))
			return
		}
	}
	if id := d.eng.Cluster(); id != a.clusterID() {
		a.setClusterID(id)
	}
	for _, c := range rd.Proposed {
		a.metrics.proposed(c)
	}
	for _, s := range rd.Transitions {
		a.metrics.transitions.WithLabelValues(s.String()).Inc()
	}
	for _, dec := range rd.Decided {
		a.metrics.decided(dec)
		if dec.Change.Kind == consensus.Remove {
			a.metrics.forgetPeer(dec.Change.Member.Name)
		}
	}
	// Before the messages: an acceptor stops vouching for a member whose
	// removal it accepted before its Accepted leaves.
	d.publishVouching()
	for _, m := range rd.Messages {
		d.send(m)
	}
	if rd.Tags {
		if err := a.mesh.SetTags(a.ownTags()); err != nil {
			a.log.Error().Err(err).Msg("cannot publish this node's tags")
		}
	}
	for _, ue := range rd.Announce {
		if err := a.mesh.UserEvent(ue.Name, ue.Payload, false); err != nil {
			a.log.Warn().Err(err).Str("event", ue.Name).Msg("cannot announce")
		}
	}
	for _, p := range rd.Pings {
		d.ping(p)
	}
	for _, b := range rd.Bursts {
		d.burst(b)
	}
	for _, ev := range rd.Events {
		a.queueHandlers(d.handlerEvent(ev))
	}
	for _, id := range rd.AskJournal {
		a.askJournal(id)
	}
	for _, r := range rd.Replicate {
		a.replicate(r)
	}
	for _, r := range rd.Run {
		a.startRunner(r)
	}
	d.armProber()
}

// publishVouching gives the transport what this node's pongs say (see
// engine.Engine.Vouches) whenever it may have changed: with the view's
// epoch and with the value this node accepted.
func (d *detector) publishVouching() {
	rev := d.eng.VouchRev()
	if d.vouchSet && rev == d.vouchRev {
		return
	}
	d.vouchSet, d.vouchRev = true, rev
	v := d.eng.View()
	members := make(map[string]bool, len(v.Members))
	for _, m := range v.Members {
		if d.eng.Vouches(m.Name) {
			members[m.Name] = true
		}
	}
	d.a.mesh.SetVouching(rev.Epoch, members)
}

var levels = map[engine.Level]zerolog.Level{
	engine.Debug: zerolog.DebugLevel, engine.Info: zerolog.InfoLevel, engine.Warn: zerolog.WarnLevel, engine.Error: zerolog.ErrorLevel,
}

func (d *detector) logLine(l engine.Log) {
	e := d.a.log.WithLevel(levels[l.Level])
	if e == nil {
		return
	}
	e.Fields(l.Fields).Msg(l.Msg)
}

// send delivers a consensus message to its one addressee.
func (d *detector) send(m consensus.Message) {
	b, err := consensus.Encode(m)
	if err != nil {
		d.a.log.Error().Err(err).Str("msg", m.String()).Msg("cannot encode a consensus message")
		return
	}
	if err := d.msg.Send(m.To, b); err != nil {
		d.a.log.Debug().Err(err).Str("msg", m.String()).Msg("consensus message not sent")
	}
}

// gossip is serf's member list as the engine reads it.
func (d *detector) gossip() []engine.Member {
	ms := d.a.mesh.Members()
	out := make([]engine.Member, len(ms))
	for i, m := range ms {
		out[i] = engineMember(m)
	}
	return out
}

func engineMember(m membership.Member) engine.Member {
	return engine.Member{Name: m.Name, Addr: hostPort(m), Status: m.Status, Tags: m.Tags}
}

// refreshMembers gives the engine serf's member list now.
func (d *detector) refreshMembers(now time.Time) {
	d.lastMembers = now
	d.eng.SetMembers(now, d.gossip())
}

var gossipTypes = map[membership.EventType]engine.GossipType{
	membership.MemberJoin: engine.GossipJoin, membership.MemberLeave: engine.GossipLeave,
	membership.MemberFailed: engine.GossipFailed, membership.MemberUpdate: engine.GossipUpdate,
	membership.MemberReap: engine.GossipReap,
}

// onSerfEvent passes serf's member events to the engine as evidence.
func (d *detector) onSerfEvent(ev membership.Event) {
	t, ok := gossipTypes[ev.Type]
	if !ok {
		return
	}
	gev := engine.GossipEvent{Type: t, Time: ev.Time}
	for _, m := range ev.Members {
		gev.Members = append(gev.Members, engineMember(m))
	}
	d.eng.Gossip(time.Now(), gev)
	d.handle()
}

var handlerTypes = map[engine.EventType]membership.EventType{
	engine.EventJoin: membership.MemberJoin, engine.EventLeave: membership.MemberLeave,
	engine.EventFailed: membership.MemberFailed, engine.EventRecovered: membership.MemberRecovered,
}

// handlerEvent describes a decided change for handlers, with serf's tags.
func (d *detector) handlerEvent(ev engine.Event) membership.Event {
	m := ev.Member
	out := membership.Member{Name: m.Name, Tags: map[string]string{membership.BootTag: m.Boot}}
	for _, sm := range d.a.mesh.Members() {
		if sm.Name == m.Name {
			out = sm
		}
	}
	setAddr(&out, m.Addr)
	return membership.Event{Type: handlerTypes[ev.Type], Time: ev.Time, Members: []membership.Member{out}}
}

// setAddr sets m's address and port from "IP:PORT"; m keeps its own when
// addr does not parse.
func setAddr(m *membership.Member, addr string) {
	if host, port, err := net.SplitHostPort(addr); err == nil {
		m.Addr = net.ParseIP(host)
		p, _ := strconv.Atoi(port)
		m.Port = uint16(p)
	}
}

// parseAddr reads a member's "IP:PORT".
func parseAddr(addr string) (net.IP, uint16, bool) {
	host, portStr, err := net.SplitHostPort(addr)
	port, perr := strconv.Atoi(portStr)
	ip := net.ParseIP(host)
	return ip, uint16(port), err == nil && perr == nil && ip != nil
}

// armTicker sets the consensus timer to the engine's NextTick, or to the
// next TickInterval while a point-to-point message waits for its ack (tick
// resends it). The loop calls it after every input: one may end the
// engine's quiet and bring its next tick closer.
func (d *detector) armTicker() {
	if d.tickTimer == nil {
		return
	}
	next := d.eng.NextTick()
	if d.msg.Unacked() {
		if soon := d.lastTick.Add(consensusTick); soon.Before(next) {
			next = soon
		}
	}
	if next.Equal(d.tickAt) {
		return // armed for it already
	}
	d.tickAt = next
	d.tickTimer.Reset(max(time.Until(next), 0))
}

// armProber sets the probe timer to the engine's earliest due probe, so
// the loop sleeps until then instead of polling.
func (d *detector) armProber() {
	if d.probeTimer == nil {
		return
	}
	next := d.eng.NextProbe()
	if next.IsZero() {
		d.probeTimer.Stop()
		return
	}
	d.probeTimer.Reset(max(time.Until(next), 0))
}

// pendingPing is a ping sent and not over: its result is reported at its
// pong or at its timeout, and a pong that comes after the timeout but
// within memberlist's probe timeout is reported again as a late reply.
type pendingPing struct {
	p        engine.Ping
	sent     time.Time
	reported bool // the miss at the timeout is reported
}

// ping sends one ping on the point-to-point transport. Nothing waits for
// it: its pong comes to the loop (onPongs), and the loop's ping timer
// reports a miss at its timeout (onPingTimer).
func (d *detector) ping(p engine.Ping) {
	if _, _, ok := parseAddr(p.Addr); !ok {
		d.a.log.Warn().Str("member", p.Peer).Str("addr", p.Addr).Msg("cannot probe a member with this address")
		d.missLater(p, time.Now())
		return
	}
	sent := time.Now()
	seq, err := d.a.mesh.SendPing(p.Addr)
	if err != nil {
		d.a.log.Warn().Err(err).Str("member", p.Peer).Msg("cannot send a ping")
		d.missLater(p, sent)
		return
	}
	d.pings[seq] = &pendingPing{p: p, sent: sent}
	d.armPings(sent.Add(p.Timeout))
}

// missLater reports a ping that could not be sent as a miss, through the
// loop: ping runs inside handle.
func (d *detector) missLater(p engine.Ping, sent time.Time) {
	d.a.spawn(func() {
		d.deliver(engine.ProbeResult{Peer: p.Peer, Boot: p.Boot, Sent: sent, RTT: p.Timeout, Miss: true, Timeout: p.Timeout})
	})
}

// armPings makes the ping timer fire by at. The timer exists before the
// first probe: without it a ping would never be reported and would hold
// its peer's in-flight slot for ever.
func (d *detector) armPings(at time.Time) {
	if d.pingTimer == nil {
		panic("detector: a ping before the loop's ping timer")
	}
	if !d.pingDue.IsZero() && !at.Before(d.pingDue) {
		return
	}
	d.pingDue = at
	d.pingTimer.Reset(max(time.Until(at), 0))
}

// lateWindow is how long after its send a pong still counts, as a late
// reply: memberlist's probe timeout, as its own pings wait.
func (d *detector) lateWindow(p *pendingPing) time.Duration {
	return max(d.a.mesh.ProbeTimeout(), p.p.Timeout)
}

// deadline is when a pending ping needs the timer next: at its timeout
// until its miss is reported, then at the end of its late window.
func (d *detector) deadline(p *pendingPing) time.Time {
	if p.reported {
		return p.sent.Add(d.lateWindow(p))
	}
	return p.sent.Add(p.p.Timeout)
}

// onPongs reports the pings that were answered.
func (d *detector) onPongs(now time.Time, pongs []membership.Pong) {
	var rs []engine.ProbeResult
	for _, pg := range pongs {
		pp := d.pings[pg.Seq]
		if pp == nil || pp.p.Peer != pg.From {
			continue // over, or not from whom it was sent to
		}
		delete(d.pings, pg.Seq)
		r := engine.ProbeResult{Peer: pp.p.Peer, Boot: pp.p.Boot, Sent: pp.sent, Timeout: pp.p.Timeout, RTT: max(pg.At.Sub(pp.sent), 0),
			Epoch: pg.Epoch, Vouched: pg.Vouched}
		if !pp.reported && r.RTT > r.Timeout {
			// The timer had not fired yet: the miss first, as it would have.
			miss := r
			miss.RTT, miss.Miss = r.Timeout, true
			rs = append(rs, miss)
			pp.reported = true
		}
		r.Late = pp.reported
		rs = append(rs, r)
	}
	if len(rs) > 0 {
		d.retimePings()
	}
	d.probed(now, rs)
}

// retimePings sets the ping timer to the earliest timeout or late window
// of the pings still pending, or stops it when none is: a ping answered in
// time needs no wake-up at its timeout.
func (d *detector) retimePings() {
	var next time.Time
	for _, pp := range d.pings {
		if due := d.deadline(pp); next.IsZero() || due.Before(next) {
			next = due
		}
	}
	switch {
	case next.Equal(d.pingDue):
	case next.IsZero():
		d.pingTimer.Stop()
		d.pingDue = time.Time{}
	default:
		d.pingDue = next
		d.pingTimer.Reset(max(time.Until(next), 0))
	}
}

// onPingTimer reports the pings past their timeout as misses, forgets the
// ones past the late window, and sets the timer for the next.
func (d *detector) onPingTimer(now time.Time) {
	d.pingDue = time.Time{} // it fired
	// Pongs that came in time but wait in the queue (the loop was busy)
	// are answers, not misses: take them first.
	if pongs := d.a.mesh.TakePongs(); len(pongs) > 0 {
		d.onPongs(now, pongs)
	}
	var rs []engine.ProbeResult
	for _, seq := range slices.Sorted(maps.Keys(d.pings)) {
		pp := d.pings[seq]
		if !pp.reported && !now.Before(d.deadline(pp)) {
			pp.reported = true
			rs = append(rs, engine.ProbeResult{Peer: pp.p.Peer, Boot: pp.p.Boot, Sent: pp.sent, Timeout: pp.p.Timeout, RTT: pp.p.Timeout, Miss: true})
		}
		if pp.reported && !now.Before(d.deadline(pp)) {
			delete(d.pings, seq)
		}
	}
	d.retimePings()
	d.probed(now, rs)
}

// probed feeds probe results to the engine and carries out its Ready.
func (d *detector) probed(now time.Time, rs []engine.ProbeResult) {
	if len(rs) == 0 {
		return
	}
	for _, r := range rs {
		r = d.withLoad(r)
		if d.eng.Monitors(r.Peer, r.Boot) {
			d.a.metrics.observeProbe(r)
		}
		d.eng.Probed(now, r)
	}
	d.handle()
}

// withLoad adds the load the peer's last ack carried.
func (d *detector) withLoad(r engine.ProbeResult) engine.ProbeResult {
	if ld, ok := d.a.mesh.PeerLoad(r.Peer); ok {
		r.Load = &engine.Load{CPU: ld.CPU / 100, Mem: ld.Mem / 100, Load1: ld.Load}
	}
	return r
}

// deliver hands a probe result to the loop unless the agent is stopping.
func (d *detector) deliver(r engine.ProbeResult) {
	select {
	case d.probeCh <- r:
	case <-d.a.stopping:
	}
}

// burst pings a member N times, close together, and reports the counts.
// A member whose address does not parse gets no ping: no evidence.
func (d *detector) burst(b engine.Burst) {
	_, _, ok := parseAddr(b.Addr)
	d.a.spawn(func() {
		r := engine.BurstResult{Peer: b.Peer, Boot: b.Boot}
		if ok {
			r.OK, r.Miss = d.a.mesh.PingBurst(b.Peer, b.Addr, b.N, b.Gap, b.Wait)
		}
		select {
		case d.burstCh <- r:
		case <-d.a.stopping:
		}
	})
}

// tick advances the engine and samples this machine's load for the acks.
func (d *detector) tick(now time.Time) {
	d.lastTick = now
	d.msg.Resend()
	if now.Sub(d.lastLoad) > 5*time.Second {
		d.lastLoad = now
		if ld, err := d.cpu.ReadLoad(); err == nil {
			d.a.mesh.SetLoad(ld)
		}
	}
	// A quiet engine ticks about once a second (IdleTick): a timer that
	// fires a hair early must not make that once in two seconds.
	if now.Sub(d.lastMembers) >= time.Second-consensusTick || d.eng.WantsMembers() {
		d.refreshMembers(now)
	}
	d.eng.Tick(now)
	d.handle()
}

// onInbound steps one consensus message from the mesh, with serf's member
// list as it is now: a verdict reads whether its subject is leaving, and
// serf raises no event for that.
func (d *detector) onInbound(in membership.Inbound) {
	d.refreshMembers(time.Now())
	d.eng.Message(time.Now(), in.From, in.Payload)
	d.handle()
}

// forceRemove is ForceRemove, made durable before it answers.
func (d *detector) forceRemove(names []string) (uint64, error) {
	d.refreshMembers(time.Now())
	epoch, err := d.eng.ForceRemove(time.Now(), names)
	d.handle()
	if d.a.fatalErr != nil {
		return 0, d.a.fatalErr
	}
	return epoch, err
}

// members merges serf's list, read now, with the agreed view.
func (d *detector) members() []MemberInfo {
	d.refreshMembers(time.Now())
	return d.eng.Members()
}

// saveModels keeps the scorers' models for the next start.
func (d *detector) saveModels() {
	for name, b := range d.eng.Models() {
		_ = d.a.store.PutModel(name, b)
	}
}

// checkLease fences this node first if its lease ran out.
func (d *detector) checkLease() {
	d.eng.CheckLease(time.Now())
	d.handle()
}
