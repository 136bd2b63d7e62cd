package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigil-project/vigil/engine"
	"github.com/vigil-project/vigil/membership"
	"github.com/vigil-project/vigil/recovery"
	"github.com/vigil-project/vigil/store"
)

// storeTimeout is how long Open waits for the data dir's lock before it
// reports the dir in use.
const storeTimeout = time.Second

// shutdownGrace is how long running handlers may go on after the agent was
// asked to stop, before their process groups are killed.
const shutdownGrace = 5 * time.Second

// Agent is one running vigil agent. New builds it (and fails on any bad
// input before anything runs); Run owns every goroutine it starts.
type Agent struct {
	cfg     Config
	log     zerolog.Logger
	logs    *Logs
	store   *store.Store
	mesh    *membership.Mesh
	http    *http.Server
	httpLn  net.Listener
	rpc     *rpcServer
	metrics *metrics
	boot    string
	started time.Time
	det     *detector
	rec     *recoveries
	// cluster holds the cluster id ("" until this agent belongs to one);
	// serf's merge delegate reads it from serf's goroutines.
	cluster atomic.Pointer[string]
	// startTags are the --tag tags the agent started with; a reload
	// compares the file's with them, not with tags changed at run time.
	startTags map[string]string
	// bootstrapping: --bootstrap on a data dir with no cluster.
	bootstrapping bool
	// fatalErr is set by fatal: the loop stops with it.
	fatalErr error

	requests chan request
	// stopping is closed when the loop stops; goroutines that report to
	// the loop give up then.
	stopping chan struct{}
	// draining is closed as soon as the loop stops serving: API requests
	// and streams give up then, before the shutdown waits for them.
	draining chan struct{}
	// spawn runs f on a goroutine the loop waits for; set by Run.
	spawn func(f func())

	// The handler queue; the loop owns it.
	queue   []handlerJob
	running int
	done    chan handlerDone
	hctx    context.Context
}

// request is work the HTTP API hands to the loop: a leave, or fn run in
// the loop (to read loop-owned state).
type request struct {
	leave bool
	fn    func()
	done  chan error
}

// New validates the environment (data dir, ports, handlers), opens the
// store, starts gossip and joins the --join seeds. On error nothing is left
// running.
func New(cfg Config, logs *Logs) (*Agent, error) {
	a := &Agent{cfg: cfg, startTags: cfg.Tags, log: logs.Logger, logs: logs, started: time.Now(), requests: make(chan request), stopping: make(chan struct{}), draining: make(chan struct{}), rec: newRecoveries(), metrics: newMetrics()}
	if err := a.start(); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

func (a *Agent) start() (err error) {
	cfg, log := a.cfg, a.log
	if a.boot, err = newBootID(); err != nil {
		return err
	}
	if a.store, err = store.Open(cfg.DataDir, store.Options{Timeout: storeTimeout}); err != nil {
		return err
	}
	id, err := a.store.Meta(clusterMeta)
	if err != nil {
		return err
	}
	if len(id) == 0 && cfg.Bootstrap {
		epoch, _, err := a.store.LoadView()
		if err != nil {
			return err
		}
		if epoch == 0 {
			id, a.bootstrapping = []byte(newClusterID()), true
		}
	}
	a.setClusterID(string(id))
	if a.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("--http-addr %s is already in use", cfg.HTTPAddr)
		}
		return fmt.Errorf("--http-addr %s: %v", cfg.HTTPAddr, err)
	}
	rpcLn, err := net.Listen("tcp", cfg.RPCAddr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("--rpc-addr %s is already in use (another agent on this machine? give each its own --rpc-addr)", cfg.RPCAddr)
		}
		return fmt.Errorf("--rpc-addr %s: %v", cfg.RPCAddr, err)
	}
	a.rpc = &rpcServer{a: a, ln: rpcLn, clients: map[*rpcClient]struct{}{}}
	keys, keyring, ignored, err := loadKeyring(cfg.DataDir, cfg.EncryptKey)
	if err != nil {
		return err
	}
	if ignored {
		log.Warn().Str("keyring", keyring).Msg("--encrypt is not in the keyring of the data dir (the keys were rotated since): using the keyring")
	}
	a.metrics.reg.MustRegister(stateCollector{a})
	if err := bridgeGossip(a.metrics.reg); err != nil {
		log.Warn().Err(err).Msg("memberlist's and serf's metrics are not bridged to /metrics")
	}
	tags := a.ownTags()
	a.mesh, err = membership.Start(membership.Config{
		NodeName:      cfg.NodeName,
		BindAddr:      cfg.BindIP,
		BindPort:      cfg.BindPort,
		AdvertiseAddr: cfg.AdvertiseIP,
		AdvertisePort: cfg.AdvertisePort,
		Profile:       cfg.Profile,
		Tags:          tags,
		Keys:          keys,
		KeyringFile:   keyring,
		Logger:        log,
		Cluster:       a.clusterID,
		Rules:         a.rules(),
	})
	if err != nil {
		return err
	}
	if err = a.store.RecordBoot(store.Boot{ID: a.boot, Node: cfg.NodeName, Started: a.started}); err != nil {
		return fmt.Errorf("record boot: %w", err)
	}
	if a.det, err = newDetector(a); err != nil {
		return err
	}
	if len(cfg.Join) > 0 {
		n, err := a.mesh.Join(cfg.Join)
		if err != nil {
			return err
		}
		log.Info().Int("answered", n).Strs("seeds", cfg.Join).Msg("joined the cluster")
	}
	a.http = &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second}
	if cfg.HTTPTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.HTTPTLSCert, cfg.HTTPTLSKey)
		if err != nil {
			return fmt.Errorf("--http-tls-cert/--http-tls-key: %v", err)
		}
		a.http.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		a.httpLn = tls.NewListener(a.httpLn, a.http.TLSConfig)
	}
	return nil
}

// clusterMeta is the store's agent-metadata key of the cluster id.
const clusterMeta = "cluster"

func (a *Agent) clusterID() string {
	if p := a.cluster.Load(); p != nil {
		return *p
	}
	return ""
}

func (a *Agent) setClusterID(id string) { a.cluster.Store(&id) }

// newClusterID makes a random cluster id.
func newClusterID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

// fatal stops the agent with err: a store write that failed leaves state
// that must not be acted on (nothing unpersisted leaves this node). The
// loop stops before it handles anything else.
func (a *Agent) fatal(err error) {
	if a.fatalErr == nil {
		a.fatalErr = err
		a.log.Error().Err(err).Msg("stopping: a write to the data dir failed")
	}
}

func newBootID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("boot id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// close releases what New acquired; safe on a partly built agent.
func (a *Agent) close() {
	if a.mesh != nil {
		_ = a.mesh.Shutdown()
	}
	if a.httpLn != nil {
		_ = a.httpLn.Close()
	}
	if a.rpc != nil {
		a.rpc.close()
	}
	if a.store != nil {
		_ = a.store.Close()
	}
}

// handlerJob is one handler to run for one event.
type handlerJob struct {
	h  recovery.EventHandler
	ev membership.Event
}

type handlerDone struct {
	job handlerJob
	res recovery.Result
}

// Run is the agent's one loop: it drains the event queue, probes peers,
// steps consensus, runs handlers, serves the API and, when ctx ends or a
// leave is asked for, leaves the cluster gracefully. Every goroutine it
// starts has ended when it returns.
func (a *Agent) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	loopCtx, stopLoop := context.WithCancel(context.Background())
	var killHandlers context.CancelFunc
	a.hctx, killHandlers = context.WithCancel(context.Background())
	a.done = make(chan handlerDone, a.cfg.HandlerConcurrency)
	a.spawn = func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	defer func() {
		close(a.stopping)
		stopLoop()
		killHandlers()
		wg.Wait()
		a.det.saveModels()
		a.close()
	}()

	a.spawn(func() { a.mesh.Pump(loopCtx) })
	httpErr := make(chan error, 1)
	a.spawn(func() {
		if err := a.http.Serve(a.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			httpErr <- err
		}
	})
	a.spawn(a.rpc.serve)
	defer a.rpc.close()
	a.log.Info().Str("node", a.cfg.NodeName).Str("boot", a.boot).
		Str("gossip", net.JoinHostPort(a.cfg.BindIP, strconv.Itoa(a.cfg.BindPort))).
		Str("http", a.cfg.HTTPAddr).Str("rpc", a.cfg.RPCAddr).Str("data_dir", a.cfg.DataDir).Bool("encrypted", a.mesh.Encrypted()).
		Uint64("epoch", a.det.eng.Epoch()).Msg("agent running")

	retryErr := make(chan error, 1)
	if len(a.cfg.RetryJoin) > 0 {
		a.spawn(func() { retryErr <- a.retryJoin(loopCtx) })
	}
	probeT := time.NewTimer(time.Hour)
	defer probeT.Stop()
	a.det.probeTimer = probeT
	a.det.armProber()
	pingT := time.NewTimer(time.Hour)
	pingT.Stop()
	defer pingT.Stop()
	a.det.pingTimer = pingT
	consT := time.NewTimer(consensusTick)
	defer consT.Stop()
	a.det.tickTimer = consT
	wd := newNotifier()
	defer wd.close()
	ready := false
	var fed time.Time

	var leaveReq *request
	var runErr error
loop:
	for {
		// Every input to the engine checks the lease first: a node back
		// from a pause fences before it does anything else.
		select {
		case <-ctx.Done():
			break loop
		case r := <-a.requests:
			a.det.checkLease()
			if r.leave {
				leaveReq = &r
				break loop
			}
			r.fn()
			r.done <- nil
		case err := <-httpErr:
			runErr = fmt.Errorf("http api: %w", err)
			break loop
		case err := <-retryErr:
			if err != nil {
				runErr = err
				break loop
			}
		case <-a.mesh.Notify():
			a.det.checkLease()
			evs := a.mesh.TakeEvents()
			for _, ev := range evs {
				if len(ev.Members) > 0 {
					a.det.refreshMembers(time.Now())
					break
				}
			}
			for _, ev := range evs {
				if a.fatalErr != nil {
					break
				}
				a.handleEvent(ev)
			}
			if pongs := a.mesh.TakePongs(); len(pongs) > 0 {
				a.det.onPongs(time.Now(), pongs)
			}
			for _, in := range a.det.msg.TakeInbound() {
				if a.fatalErr != nil {
					break
				}
				switch in.Query {
				case membership.JournalQuery:
					a.answerJournal(in)
				case membership.JournalPutQuery:
					a.answerJournalPut(in)
				default:
					a.det.onInbound(in)
				}
			}
		case <-probeT.C:
			// The time now, not the timer's: a tick from before a pause must
			// not hide that the lease ran out during it.
			a.det.eng.Probe(time.Now())
			a.det.handle()
		case <-pingT.C:
			a.det.onPingTimer(time.Now())
		case r := <-a.det.probeCh:
			a.det.probed(time.Now(), []engine.ProbeResult{r})
		case r := <-a.det.burstCh:
			a.det.eng.Bursted(time.Now(), r)
			a.det.handle()
		case <-consT.C:
			a.det.tick(time.Now())
		case r := <-a.rec.reports:
			a.onRecoveryReport(r)
		case c := <-a.rec.checked:
			a.det.eng.JournalChecked(time.Now(), c)
			a.det.handle()
		case d := <-a.done:
			a.det.checkLease()
			a.running--
			a.logHandler(d)
			a.answerQuery(d)
		}
		if a.fatalErr != nil {
			runErr = a.fatalErr
			break loop
		}
		a.startHandlers()
		a.det.armTicker()
		if now := time.Now(); now.Sub(fed) >= consensusTick && a.det.eng.LeaseValid(now) {
			// See watchdog.go: ready once it first holds its lease, and
			// fed only while it holds it, by any turn of the loop (at
			// most every TickInterval): the loop wakes for every ping
			// round and pong, not only at the engine's ticks.
			if !ready {
				wd.send("READY=1")
				ready = true
			}
			wd.send("WATCHDOG=1")
			fed = now
		}
	}

	close(a.draining)
	wd.send("STOPPING=1")
	// A node that leaves the view stops acting for it at once.
	for id, cancel := range a.rec.running {
		a.log.Warn().Str("id", id).Msg("leaving: killing the recovery handler")
		cancel()
	}
	// Leave gracefully: tell the cluster, then stop. After a failed write
	// the agent stops like a crash instead: the others decide it failed.
	var leaveErr error
	if a.fatalErr == nil {
		a.log.Info().Msg("leaving the cluster")
		if leaveErr = a.mesh.Leave(); leaveErr != nil {
			a.log.Error().Err(leaveErr).Msg("graceful leave failed")
		}
	}
	if leaveReq != nil {
		leaveReq.done <- leaveErr
	}
	if len(a.queue) > 0 {
		a.log.Warn().Int("handlers", len(a.queue)).Msg("not starting queued handlers: shutting down")
	}
	grace := time.NewTimer(shutdownGrace)
	defer grace.Stop()
	for a.running > 0 {
		select {
		case d := <-a.done:
			a.running--
			a.logHandler(d)
		case <-grace.C:
			a.log.Warn().Int("handlers", a.running).Msg("killing handlers still running at shutdown")
			killHandlers()
		}
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = a.http.Shutdown(shutCtx)
	cancel()
	a.rpc.close()
	a.log.Info().Msg("agent stopped")
	return runErr
}

// queueHandlers queues a run of every event handler that matches ev, and
// hands ev to the RPC event streams: they see what the handlers see.
func (a *Agent) queueHandlers(ev membership.Event) {
	if a.rpc != nil {
		a.rpc.events.publish(ev)
	}
	for _, h := range a.cfg.EventHandlers {
		if h.Matches(ev) {
			a.queue = append(a.queue, handlerJob{h: h, ev: ev})
		}
	}
}

// startHandlers starts queued handlers up to the concurrency bound.
func (a *Agent) startHandlers() {
	for a.fatalErr == nil && a.running < a.cfg.HandlerConcurrency && len(a.queue) > 0 {
		j := a.queue[0]
		a.queue = a.queue[1:]
		a.running++
		cmd := j.h.Command(j.ev, a.mesh.Local(), a.cfg.HandlerTimeout)
		a.spawn(func() { a.done <- handlerDone{job: j, res: recovery.Run(a.hctx, cmd)} })
	}
}

// inLoop runs fn in the loop, for the API to read loop-owned state.
func (a *Agent) inLoop(ctx context.Context, fn func()) error {
	return a.submit(ctx, request{fn: fn, done: make(chan error, 1)})
}

// submit hands a request to the loop and waits for it to be done.
func (a *Agent) submit(ctx context.Context, r request) error {
	select {
	case a.requests <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-a.draining:
		return errors.New("the agent is stopping")
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// consensusWire is the version of the consensus messages' encoding:
// agents that encode them differently cannot decide together, so it is
// part of the rules. 2: evidence notes in promises and values. 3: the
// prober pings on the point-to-point transport, which an agent of wire 2
// does not answer. 4: pongs carry the view epoch and whether they vouch
// for the pinger's lease; an agent of wire 3 would renew no lease.
const consensusWire = 4

// rules are the consensus rules this agent shares with every member
// (membership.RulesTag): quorum, council size and wire version.
func (a *Agent) rules() string {
	return fmt.Sprintf("%s/%d/w%d", a.cfg.Quorum, a.cfg.CouncilSize, consensusWire)
}

// ownTags are the serf tags this agent publishes: the operator's, and
// vigil's reserved ones.
func (a *Agent) ownTags() map[string]string {
	tags := map[string]string{membership.BootTag: a.boot}
	if a.cfg.RecoveryHandler != "" {
		tags[membership.ExecutorTag] = "1"
	}
	if id := a.clusterID(); id != "" {
		tags[membership.ClusterTag] = id
	}
	tags[membership.RulesTag] = a.rules()
	for k, v := range a.cfg.Tags {
		tags[k] = v
	}
	return tags
}

func (a *Agent) gossipAddr() string { return hostPort(a.mesh.Local()) }

// handleEvent records an event from serf and queues the handlers it asks
// for. Joins, leaves and failures are view changes: their handlers run when
// the view log decides them, never from serf's word alone; serf's events
// are evidence for suspicion and history.
func (a *Agent) handleEvent(ev membership.Event) {
	switch ev.Type {
	case membership.Query:
		a.log.Debug().Str("query", ev.Name).Uint64("ltime", ev.LTime).Int("payload_bytes", len(ev.Payload)).Msg("query")
		a.queueHandlers(ev)
		return
	case membership.User:
		first, err := a.store.MarkEvent(store.EventKey{Name: ev.Name, LTime: ev.LTime, Payload: ev.Payload})
		if err != nil {
			a.fatal(fmt.Errorf("record user event %s: %w", ev.Name, err))
			return
		}
		if ev.Name == DecisionEvent {
			a.det.eng.DecisionAnnounced(time.Now(), ev.Payload)
			a.det.handle()
		}
		if !first {
			a.log.Debug().Str("event", ev.Name).Uint64("ltime", ev.LTime).Msg("user event already handled")
			return
		}
		a.log.Info().Str("event", ev.Name).Uint64("ltime", ev.LTime).Int("payload_bytes", len(ev.Payload)).Msg("user event")
		a.queueHandlers(ev)
		return
	}
	for _, m := range ev.Members {
		rec := store.MemberRecord{
			Time: ev.Time, Node: m.Name, Addr: hostPort(m), Boot: m.Tags[membership.BootTag],
			Event: strings.TrimPrefix(ev.Type.String(), "member-"), Source: "serf",
		}
		if err := a.store.AppendMember(rec); err != nil {
			a.fatal(fmt.Errorf("record member history: %w", err))
			return
		}
		// Evidence, not a verdict: the decided view change is logged at info.
		a.log.Debug().Str("event", ev.Type.String()).Str("member", m.Name).Str("addr", rec.Addr).Msg("gossip member event")
	}
	if a.det != nil {
		a.det.onSerfEvent(ev)
	}
	if ev.Type == membership.MemberUpdate || ev.Type == membership.MemberReap {
		a.queueHandlers(ev)
	}
}

// answerQuery sends a query handler's output as this agent's answer, as
// serf does: only a handler that wrote something answers, and the first
// answer (a handler's or an RPC client's) is the one sent.
func (a *Agent) answerQuery(d handlerDone) {
	ev := d.job.ev
	if ev.Type != membership.Query || len(d.res.Output) == 0 || ev.Respond == nil {
		return
	}
	if err := ev.Respond(d.res.Output); err != nil {
		a.log.Warn().Err(err).Str("query", ev.Name).Str("handler", d.job.h.Script).Msg("cannot answer the query")
	}
}

func (a *Agent) logHandler(d handlerDone) {
	kind := "event"
	if d.job.ev.Type == membership.Query {
		kind = "query"
	}
	a.metrics.handlerTime.WithLabelValues(kind).Observe(d.res.Duration.Seconds())
	e := a.log.Info()
	if d.res.Err != nil || d.res.ExitCode != 0 {
		e = a.log.Warn()
	}
	if d.res.Err != nil {
		e = e.AnErr("error", d.res.Err)
	}
	e.Str("handler", d.job.h.Script).Str("event", d.job.ev.Type.String()).
		Int("exit", d.res.ExitCode).Bool("timed_out", d.res.TimedOut).
		Dur("took", d.res.Duration).Str("output", string(d.res.Output)).
		Msg("handler finished")
}

// retryJoin tries the --retry-join seeds until one answers, ctx ends, or
// --retry-max attempts failed (then it returns an error).
func (a *Agent) retryJoin(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		n, err := a.mesh.Join(a.cfg.RetryJoin)
		if err == nil {
			a.log.Info().Int("answered", n).Int("attempt", attempt).Msg("retry-join: joined the cluster")
			return nil
		}
		if a.cfg.RetryMax > 0 && attempt >= a.cfg.RetryMax {
			return fmt.Errorf("retry-join: gave up after %d attempts: %v", attempt, err)
		}
		a.log.Warn().Err(err).Int("attempt", attempt).Dur("next_in", a.cfg.RetryInterval).Msg("retry-join failed")
		if !pause(a.cfg.RetryInterval, ctx.Done()) {
			return nil
		}
	}
}

// pause waits for d and reports true, or returns false as soon as stop is
// closed.
func pause(d time.Duration, stop <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}

// leave asks the loop to leave the cluster and stop; it returns once the
// leave has been broadcast.
func (a *Agent) leave(ctx context.Context) error {
	return a.submit(ctx, request{leave: true, done: make(chan error, 1)})
}

func hostPort(m membership.Member) string {
	return net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))
}
