package main

// `make bench` rewrites the summary at the top of BENCHMARKS.md: each
// benchmark test records its figures, beside serf's from the same run, as
// rows in VIGIL_BENCH_DIR; TestBenchmarksSummary then writes the rows
// between the markers. Without VIGIL_BENCH_WRITE it only checks that the
// summary is well formed.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	benchBegin = "<!-- make bench: begin -->"
	benchEnd   = "<!-- make bench: end -->"
	benchHead  = "| figure | vigil | serf | vigil / serf | goal | command |\n|---|---|---|---|---|---|\n"
)

// benchOrder is the order of the benchmarks' rows in the summary.
var benchOrder = []string{"failover", "scale-20", "scale-50", "cpu", "rss", "loss", "flap", "simulation"}

// benchRow is one figure of the summary.
type benchRow struct {
	Figure, Vigil, Serf, Ratio, Goal, Command string
}

// recordBench writes a benchmark's rows for the summary when make bench
// runs it (VIGIL_BENCH_DIR set); it replaces the rows of an earlier run.
func recordBench(t *testing.T, name string, rows ...benchRow) {
	t.Helper()
	dir := os.Getenv("VIGIL_BENCH_DIR")
	if dir == "" {
		return
	}
	if !slices.Contains(benchOrder, name) {
		t.Fatalf("benchmark %q is not in benchOrder", name)
	}
	var b strings.Builder
	for _, r := range rows {
		for _, f := range []string{r.Figure, r.Vigil, r.Serf, r.Ratio, r.Goal, r.Command} {
			if strings.ContainsAny(f, "\t\n|") {
				t.Fatalf("benchmark %s: field %q has a tab, newline or |", name, f)
			}
		}
		fmt.Fprintf(&b, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Figure, r.Vigil, r.Serf, r.Ratio, r.Goal, r.Command)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".tsv"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ratioOf is a / b to two places, or "—" without b.
func ratioOf(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// benchSummary renders the rows found in dir, in benchOrder, and the date.
func benchSummary(dir string, now time.Time) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\nWritten by `make bench` on %s from each benchmark's latest run; within a row, serf's figure is from the same test run as vigil's. The sections below are the record of earlier runs and of how each figure was reached.\n\n%s", benchBegin, now.UTC().Format("2006-01-02 15:04 MST"), benchHead)
	rows := 0
	for _, name := range benchOrder {
		raw, err := os.ReadFile(filepath.Join(dir, name+".tsv"))
		if os.IsNotExist(err) {
			fmt.Fprintf(&b, "| %s | not run | | | | |\n", name)
			continue
		}
		if err != nil {
			return "", err
		}
		for _, line := range strings.Split(strings.TrimRight(string(raw), "\n"), "\n") {
			f := strings.Split(line, "\t")
			if len(f) != 6 {
				return "", fmt.Errorf("%s.tsv: %q has %d fields, want 6", name, line, len(f))
			}
			fmt.Fprintf(&b, "| %s |\n", strings.Join(f, " | "))
			rows++
		}
	}
	if rows == 0 {
		return "", fmt.Errorf("no benchmark results in %s", dir)
	}
	b.WriteString("\n" + benchEnd)
	return b.String(), nil
}

// spliceSummary replaces what is between the markers of doc, markers
// included, with summary.
func spliceSummary(doc, summary string) (string, error) {
	i, j := strings.Index(doc, benchBegin), strings.Index(doc, benchEnd)
	if i < 0 || j < i || strings.Count(doc, benchBegin) != 1 || strings.Count(doc, benchEnd) != 1 {
		return "", fmt.Errorf("BENCHMARKS.md needs exactly one %q followed by one %q", benchBegin, benchEnd)
	}
	return doc[:i] + summary + doc[j+len(benchEnd):], nil
}

func TestBenchmarksSummary(t *testing.T) {
	doc, err := os.ReadFile("BENCHMARKS.md")
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("VIGIL_BENCH_WRITE") == "" {
		// The summary as it stands must be one the writer could replace,
		// with a row for every benchmark.
		i, j := strings.Index(string(doc), benchBegin), strings.Index(string(doc), benchEnd)
		if _, err := spliceSummary(string(doc), ""); err != nil {
			t.Fatal(err)
		}
		block := string(doc)[i:j]
		if !strings.Contains(block, benchHead) || strings.Count(block, "\n|") < 3 {
			t.Errorf("the summary lacks its table head %q or its rows", benchHead)
		}
		return
	}
	dir := os.Getenv("VIGIL_BENCH_DIR")
	if dir == "" {
		t.Fatal("VIGIL_BENCH_WRITE needs VIGIL_BENCH_DIR")
	}
	summary, err := benchSummary(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	out, err := spliceSummary(string(doc), summary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("BENCHMARKS.md", []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("BENCHMARKS.md: summary rewritten from %s", dir)
}

// The writer puts the rows in order, marks the benchmarks that did not
// run, and refuses a document without its markers.
func TestBenchmarksSummaryWriter(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("VIGIL_BENCH_DIR", dir)
	recordBench(t, "rss", benchRow{"rss", "23 MiB", "17 MiB", "1.35", "≤ 1.3", "go test"})
	recordBench(t, "failover", benchRow{"failover 5", "1.1 s", "6.8 s", "0.16", "≤ 0.3", "go test"})
	s, err := benchSummary(dir, time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if i, j := strings.Index(s, "| failover 5 |"), strings.Index(s, "| rss |"); i < 0 || j < i {
		t.Errorf("rows out of order or missing:\n%s", s)
	}
	if !strings.Contains(s, "| scale-50 | not run |") {
		t.Errorf("a benchmark that did not run is not marked:\n%s", s)
	}
	doc := "# Benchmarks\n\n" + benchBegin + "\nold\n" + benchEnd + "\n\n## Failover\n"
	out, err := spliceSummary(doc, s)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "old") || !strings.HasSuffix(out, "\n\n## Failover\n") || !strings.HasPrefix(out, "# Benchmarks\n\n"+benchBegin) {
		t.Errorf("splice:\n%s", out)
	}
	if _, err := spliceSummary("# no markers", s); err == nil {
		t.Error("a document without markers was taken")
	}
	if _, err := benchSummary(t.TempDir(), time.Now()); err == nil {
		t.Error("an empty results directory gave a summary")
	}
}
