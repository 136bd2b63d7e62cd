package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-project/vigil/agent"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads n's /metrics.
func scrape(n *node) (map[string]*dto.MetricFamily, string, error) {
	resp, err := http.Get("http://" + n.ip + ":7947/metrics")
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != 200 {
		return nil, "", fmt.Errorf("GET /metrics: %s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	return mfs, string(b), err
}

// value is the value of the sample of family name with the label
// label=want ("" for none), summed over the others.
func value(mfs map[string]*dto.MetricFamily, name, label, want string) float64 {
	mf, ok := mfs[name]
	if !ok {
		return -1
	}
	sum := 0.0
	for _, m := range mf.GetMetric() {
		match := label == ""
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == want {
				match = true
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Summary != nil:
			sum += float64(m.GetSummary().GetSampleCount())
		}
	}
	return sum
}

// GET /metrics: vigil's metrics pass the client library's linter and say
// what the agent knows; memberlist's and serf's arrive too; a kill shows
// as a decided failure.
func TestPrometheusMetrics(t *testing.T) {
	_, ns := startThree(t)
	n1, n2, n3 := ns[0], ns[1], ns[2]
	var mfs map[string]*dto.MetricFamily
	var text string
	waitFor(t, 60*time.Second, "n1's metrics show the cluster, its probes and the gossip layer", func() error {
		var err error
		if mfs, text, err = scrape(n1); err != nil {
			return err
		}
		for _, chk := range []struct {
			name, label, value string
			min                float64
		}{
			{"vigil_members", "status", "alive", 3},
			{"vigil_gossip_members", "status", "alive", 3},
			{"vigil_probes_total", "result", "reply", 1},
			{"vigil_probe_rtt_seconds", "", "", 1},
			{"vigil_decisions_total", "kind", "add", 2},
			{"vigil_lease_held", "", "", 1},
			{"vigil_consensus_messages_total", "event", "received", 1},
			{"vigil_peer_suspicion", "", "", 1},
			{"go_goroutines", "", "", 1},
		} {
			if v := value(mfs, chk.name, chk.label, chk.value); v < chk.min {
				return fmt.Errorf("%s{%s=%q} = %v, want ≥ %v", chk.name, chk.label, chk.value, v, chk.min)
			}
		}
		var ml, sf bool
		for name := range mfs {
			ml = ml || strings.HasPrefix(name, "vigil_memberlist_")
			sf = sf || strings.HasPrefix(name, "vigil_serf_")
		}
		if !ml || !sf {
			return fmt.Errorf("memberlist's (%v) or serf's (%v) metrics are missing", ml, sf)
		}
		return nil
	})
	// The linter, on vigil's own families (the bridged ones keep
	// go-metrics' names and units).
	var own []*dto.MetricFamily
	for name, mf := range mfs {
		if strings.HasPrefix(name, "vigil_") && !strings.HasPrefix(name, "vigil_memberlist_") && !strings.HasPrefix(name, "vigil_serf_") {
			own = append(own, mf)
		}
	}
	if len(own) < 15 {
		t.Fatalf("only %d vigil_ families:\n%s", len(own), text)
	}
	problems, err := promlint.NewWithMetricFamilies(own).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	n3.kill()
	waitFor(t, 60*time.Second, "n1's metrics show n3's decided failure", func() error {
		mfs, _, err := scrape(n1)
		if err != nil {
			return err
		}
		if v := value(mfs, "vigil_members", "status", "failed"); v != 1 {
			return fmt.Errorf("vigil_members{status=failed} = %v", v)
		}
		if v := value(mfs, "vigil_decisions_total", "reason", "failed"); v != 1 {
			return fmt.Errorf("vigil_decisions_total{reason=failed} = %v", v)
		}
		return nil
	})
	// Somebody accused it, and its round was timed.
	accused, rounds := 0.0, 0.0
	for _, n := range []*node{n1, n2} {
		mfs, _, err := scrape(n)
		if err != nil {
			t.Fatal(err)
		}
		accused += value(mfs, "vigil_accusations_total", "", "")
		rounds += value(mfs, "vigil_consensus_round_seconds", "", "")
	}
	if accused < 1 || rounds < 1 {
		t.Fatalf("accusations %v, timed rounds %v; want ≥ 1 each", accused, rounds)
	}

	// vigil why shows the evidence that convicted n3, on every survivor,
	// as JSON and as text, and after a restart.
	checkWhy := func(n *node) {
		t.Helper()
		out, err := n.vigil("why", "--format", "json", "n3")
		if err != nil {
			t.Fatal(err)
		}
		var w agent.Why
		if err := json.Unmarshal([]byte(out), &w); err != nil {
			t.Fatalf("why json: %v\n%s", err, out)
		}
		var failed *agent.LogEntry
		for i := range w.Decisions {
			if w.Decisions[i].Reason == "failed" {
				failed = &w.Decisions[i]
			}
		}
		if failed == nil || w.Status != "failed" {
			t.Fatalf("%s: why n3: status %s, decisions %+v", n.name, w.Status, w.Decisions)
		}
		roles := map[string]int{}
		for _, e := range failed.Evidence {
			roles[e.Role]++
			if e.Observer == "" || e.Observer == "n3" || e.State == "healthy" && e.Misses == 0 || e.Silence <= 0 {
				t.Fatalf("%s: evidence %+v", n.name, e)
			}
		}
		// A quorum of the view {n1, n2, n3} voted: n1 and n2, and the
		// proposer's own note.
		if roles["acceptor"] != failed.Votes || failed.Votes < 2 || roles["proposer"] != 1 {
			t.Fatalf("%s: evidence of %d votes: %+v", n.name, failed.Votes, failed.Evidence)
		}
		text, err := n.vigil("why", "n3")
		if err != nil || !strings.Contains(text, "OBSERVER") || !strings.Contains(text, "decision "+failed.ID) {
			t.Fatalf("%s: why n3 as text: %v\n%s", n.name, err, text)
		}
	}
	checkWhy(n1)
	checkWhy(n2)
	if err := n2.stop(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	n2.start()
	checkWhy(n2)
}
