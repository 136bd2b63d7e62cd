package agent

// Prometheus metrics at GET /metrics, with the official client library.
// vigil's own metrics are vigil_*, in base units, counters ending in
// _total; memberlist's and serf's go-metrics are bridged in through
// go-metrics' Prometheus sink under vigil_memberlist_* and vigil_serf_*.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	gmprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigil-project/vigil/consensus"
	"github.com/vigil-project/vigil/engine"
	"github.com/vigil-project/vigil/recovery"
)

// metrics are the agent's instruments. The loop updates them; a scrape
// reads the loop's state through the loop (collect).
type metrics struct {
	reg *prometheus.Registry

	probes       *prometheus.CounterVec   // result
	probeRTT     *prometheus.HistogramVec // peer
	transitions  *prometheus.CounterVec   // to
	accusations  prometheus.Counter
	proposals    *prometheus.CounterVec // kind
	roundSeconds prometheus.Histogram
	decisions    *prometheus.CounterVec // kind, reason
	fences       *prometheus.CounterVec // reason
	recoveries   *prometheus.CounterVec // outcome
	handlerTime  *prometheus.HistogramVec
	proposedAt   map[string]time.Time // change → when this agent proposed it (the loop's)
}

// gossipBridge is the go-metrics sink of memberlist and serf: go-metrics
// is process-wide, so there is one, registered with the first agent's
// registry.
var gossipBridge struct {
	once sync.Once
	sink *gmprom.PrometheusSink
	err  error
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &metrics{
		reg: reg,
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_probes_total",
			Help: "Probes of monitored peers by result: reply, late (a reply after the timeout) or miss."}, []string{"result"}),
		probeRTT: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_probe_rtt_seconds",
			Help:    "Round-trip time of the probes of each monitored peer that were answered.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"peer"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_suspicion_transitions_total",
			Help: "Changes of this agent's suspicion of a peer, by the state entered."}, []string{"to"}),
		accusations: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_accusations_total",
			Help: "Removals for failure this agent proposed."}),
		proposals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_consensus_proposals_total",
			Help: "Consensus rounds this agent started, by kind of change (add, remove)."}, []string{"kind"}),
		roundSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vigil_consensus_round_seconds",
			Help:    "From this agent's proposal to its decision.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_decisions_total",
			Help: "View changes this agent applied, by kind (add, remove) and reason."}, []string{"kind", "reason"}),
		fences: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_fences_total",
			Help: "Times this node fenced, by reason (lease-expired, removed)."}, []string{"reason"}),
		recoveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_recovery_attempts_total",
			Help: "Recovery handler runs on this agent, by outcome (succeeded, failed, timed_out)."}, []string{"outcome"}),
		handlerTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_handler_duration_seconds",
			Help:    "Handler run times by kind (event, query, recovery, fence).",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10)}, []string{"kind"}),
		proposedAt: map[string]time.Time{},
	}
	for _, c := range []prometheus.Collector{m.probes, m.probeRTT, m.transitions, m.accusations, m.proposals,
		m.roundSeconds, m.decisions, m.fences, m.recoveries, m.handlerTime} {
		f(c)
	}
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// bridgeGossip sends memberlist's and serf's go-metrics to reg, once per
// process (go-metrics has one global sink).
func bridgeGossip(reg *prometheus.Registry) error {
	gossipBridge.once.Do(func() {
		sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: reg, Expiration: time.Minute, Name: "vigil_gossip"})
		if err != nil {
			gossipBridge.err = err
			return
		}
		cfg := gometrics.DefaultConfig("vigil")
		cfg.EnableHostname = false
		cfg.EnableRuntimeMetrics = false // the Go collector has them
		if _, err := gometrics.NewGlobal(cfg, sink); err != nil {
			gossipBridge.err = err
			return
		}
		gossipBridge.sink = sink
	})
	return gossipBridge.err
}

func (m *metrics) observeProbe(r engine.ProbeResult) {
	switch {
	case r.Miss:
		m.probes.WithLabelValues("miss").Inc()
	case r.Late:
		m.probes.WithLabelValues("late").Inc()
	default:
		m.probes.WithLabelValues("reply").Inc()
		m.probeRTT.WithLabelValues(r.Peer).Observe(r.RTT.Seconds())
	}
}

func (m *metrics) forgetPeer(peer string) { m.probeRTT.DeleteLabelValues(peer) }

func (m *metrics) proposed(c consensus.Change) {
	kind := kindName(c)
	m.proposals.WithLabelValues(kind).Inc()
	if c.Kind == consensus.Remove && c.Reason == consensus.Failed {
		m.accusations.Inc()
	}
	m.proposedAt[roundKey(c)] = time.Now()
}

func (m *metrics) decided(dec consensus.Decision) {
	c := dec.Change
	m.decisions.WithLabelValues(kindName(c), reasonName(c)).Inc()
	if at, ok := m.proposedAt[roundKey(c)]; ok {
		m.roundSeconds.Observe(time.Since(at).Seconds())
		delete(m.proposedAt, roundKey(c))
	}
	// Proposals that never decided are dropped after a while.
	for k, at := range m.proposedAt {
		if time.Since(at) > 10*time.Minute {
			delete(m.proposedAt, k)
		}
	}
}

func (m *metrics) recoveryRun(res recovery.Result, ok bool) {
	outcome := "failed"
	switch {
	case res.TimedOut:
		outcome = "timed_out"
	case ok:
		outcome = "succeeded"
	}
	m.recoveries.WithLabelValues(outcome).Inc()
	m.handlerTime.WithLabelValues("recovery").Observe(res.Duration.Seconds())
}

// roundKey names a change without its evidence, which the decided value
// has and the proposal has not.
func roundKey(c consensus.Change) string {
	return fmt.Sprintf("%d/%d/%s@%s", c.Kind, c.Reason, c.Member.Name, c.Member.Boot)
}

func kindName(c consensus.Change) string {
	if c.Kind == consensus.Add {
		return "add"
	}
	return "remove"
}

func reasonName(c consensus.Change) string {
	switch {
	case c.Kind == consensus.Add:
		return "joined"
	case c.Reason == consensus.Failed:
		return "failed"
	}
	return "left"
}

// stateCollector reports, at each scrape, what the loop knows: members
// by agreed and gossip status, each monitored peer's suspicion state and
// scores, the lease, the epoch, the queues and the consensus transport.
type stateCollector struct{ a *Agent }

var (
	descMembers   = prometheus.NewDesc("vigil_members", "Members by agreed status (alive, suspect, failed, left, joining) as this agent knows them.", []string{"status"}, nil)
	descGossip    = prometheus.NewDesc("vigil_gossip_members", "Members by serf's gossip status.", []string{"status"}, nil)
	descEpoch     = prometheus.NewDesc("vigil_view_epoch", "Epoch of the agreed view this agent holds.", nil, nil)
	descSuspicion = prometheus.NewDesc("vigil_peer_suspicion", "1 for each monitored peer in its current suspicion state.", []string{"peer", "state"}, nil)
	descPFail     = prometheus.NewDesc("vigil_peer_pfail", "The scorer's probability that a monitored peer failed.", []string{"peer"}, nil)
	descThreshold = prometheus.NewDesc("vigil_peer_threshold", "The scorer's threshold score of a monitored peer.", []string{"peer"}, nil)
	descLease     = prometheus.NewDesc("vigil_lease_held", "1 while this node holds its lease (a quorum of its view answers), else 0.", nil, nil)
	descFenced    = prometheus.NewDesc("vigil_fenced", "1 while this node is fenced, else 0.", nil, nil)
	descQueue     = prometheus.NewDesc("vigil_queue_depth", "Work waiting, by queue (handlers: handler runs waiting for a slot; handlers_running).", []string{"queue"}, nil)
	descDirect    = prometheus.NewDesc("vigil_consensus_messages_total", "Point-to-point consensus messages by event (sent, resent, acked, given_up, received, duplicate, dropped).", []string{"event"}, nil)
	descRecovery  = prometheus.NewDesc("vigil_recovery_jobs", "Recovery jobs in the journal by state.", []string{"state"}, nil)
)

func (s stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMembers, descGossip, descEpoch, descSuspicion, descPFail, descThreshold,
		descLease, descFenced, descQueue, descDirect, descRecovery} {
		ch <- d
	}
}

func (s stateCollector) Collect(ch chan<- prometheus.Metric) {
	a := s.a
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var ms []MemberInfo
	var scores []Score
	var epoch uint64
	var lease, fenced bool
	var queued, running int
	if err := a.inLoop(ctx, func() {
		ms, epoch = a.det.members(), a.det.eng.Epoch()
		scores = a.det.eng.Scores()
		lease, fenced = a.det.eng.LeaseValid(time.Now()), a.det.eng.Fenced()
		queued, running = len(a.queue), a.running
	}); err != nil {
		return // the agent is stopping: the scrape has the counters only
	}
	agreed, gossip := map[string]int{}, map[string]int{}
	for _, st := range []string{"alive", "suspect", "failed", "left", "joining"} {
		agreed[st] = 0
	}
	for _, st := range []string{"alive", "leaving", "left", "failed"} {
		gossip[st] = 0
	}
	for _, m := range ms {
		agreed[m.Status]++
		gossip[m.Gossip]++
	}
	for st, n := range agreed {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(n), st)
	}
	for st, n := range gossip {
		ch <- prometheus.MustNewConstMetric(descGossip, prometheus.GaugeValue, float64(n), st)
	}
	ch <- prometheus.MustNewConstMetric(descEpoch, prometheus.GaugeValue, float64(epoch))
	for _, sc := range scores {
		ch <- prometheus.MustNewConstMetric(descSuspicion, prometheus.GaugeValue, 1, sc.Peer, sc.State)
		ch <- prometheus.MustNewConstMetric(descPFail, prometheus.GaugeValue, sc.PFail, sc.Peer)
		ch <- prometheus.MustNewConstMetric(descThreshold, prometheus.GaugeValue, sc.Threshold, sc.Peer)
	}
	ch <- prometheus.MustNewConstMetric(descLease, prometheus.GaugeValue, b2f(lease))
	ch <- prometheus.MustNewConstMetric(descFenced, prometheus.GaugeValue, b2f(fenced))
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(queued), "handlers")
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(running), "handlers_running")
	ds := a.mesh.DirectStats()
	for ev, n := range map[string]uint64{"sent": ds.Sent, "resent": ds.Resent, "acked": ds.Acked, "given_up": ds.GivenUp,
		"received": ds.Received, "duplicate": ds.Duplicate, "dropped": ds.Dropped} {
		ch <- prometheus.MustNewConstMetric(descDirect, prometheus.CounterValue, float64(n), ev)
	}
	if jobs, err := a.jobs(); err == nil {
		states := map[string]int{}
		for _, j := range jobs {
			states[string(j.State)]++
		}
		for st, n := range states {
			ch <- prometheus.MustNewConstMetric(descRecovery, prometheus.GaugeValue, float64(n), st)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricsHandler serves the registry.
func (a *Agent) metricsHandler() http.Handler {
	return promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// MetricNames lists the names of vigil's own metric families (not the Go
// runtime's, the process's or the bridged gossip ones), for the dashboard's
// test.
func MetricNames() []string {
	m := newMetrics()
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range []prometheus.Collector{m.probes, m.probeRTT, m.transitions, m.accusations, m.proposals,
			m.roundSeconds, m.decisions, m.fences, m.recoveries, m.handlerTime, stateCollector{}} {
			c.Describe(ch)
		}
		close(ch)
	}()
	var names []string
	for d := range ch {
		// A Desc prints as Desc{fqName: "NAME", ...}.
		s := d.String()
		if i := strings.Index(s, `fqName: "`); i >= 0 {
			rest := s[i+len(`fqName: "`):]
			names = append(names, rest[:strings.IndexByte(rest, '"')])
		}
	}
	return names
}
