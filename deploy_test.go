package main

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-project/vigil/agent"
)

// The Grafana dashboard under deploy/ is valid JSON whose every query
// names metrics vigil exports.
func TestGrafanaDashboardUsesRealMetrics(t *testing.T) {
	b, err := os.ReadFile("deploy/grafana/vigil-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	known := agent.MetricNames()
	if len(known) < 15 {
		t.Fatalf("MetricNames: %v", known)
	}
	used := map[string]bool{}
	name := regexp.MustCompile(`vigil_[a-z_]+`)
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				base := n
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					base = strings.TrimSuffix(base, suf)
				}
				if !slices.Contains(known, base) {
					t.Errorf("panel %q queries %s, which vigil does not export", p.Title, n)
				}
				used[base] = true
			}
		}
	}
	for _, n := range known {
		if !used[n] {
			t.Errorf("no panel shows %s", n)
		}
	}
}
