package main

// vigil simulate: the agents' decision engines for a cluster of N nodes on
// a simulated network and clock, in this process (engine.Simulate).

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vigil-project/vigil/consensus"
	"github.com/vigil-project/vigil/engine"
)

func simulateCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "simulate",
		Usage: "run N agents' decisions on a simulated network and clock: crash-to-decision times, false removals, traffic",
		Description: "Runs the engine every agent runs (probing, suspicion, consensus, leases, recoveries) for --nodes\n" +
			"agents in this process, on a simulated network with --loss, and kills, partitions and pauses\n" +
			"some of them. It answers which settings suit a cluster's size and loss rate. serf's own gossip\n" +
			"is not simulated. A safety property that breaks is reported with the seed, and the exit status is 1.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "nodes", Value: 20, Usage: "agents in the cluster"},
			&cli.Float64Flag{Name: "loss", Usage: "share of packets lost each way, 0..0.5"},
			&cli.IntFlag{Name: "crashes", Value: 1, Usage: "agents killed for good"},
			&cli.IntFlag{Name: "partitions", Usage: "times a random minority is cut off for 5 to 15 s"},
			&cli.IntFlag{Name: "pauses", Usage: "times an agent stops for 1 to 10 s"},
			&cli.DurationFlag{Name: "duration", Value: 2 * time.Minute, Usage: "simulated time"},
			&cli.Int64Flag{Name: "seed", Value: 1, Usage: "the seed: the same seed gives the same run"},
			&cli.StringFlag{Name: "quorum", Value: "majority", Usage: "majority or two-thirds, as --quorum"},
			&cli.IntFlag{Name: "council-size", Value: 5, Usage: "as the agent's --council-size"},
			&cli.DurationFlag{Name: "fence-after", Value: 2 * time.Second, Usage: "as the agent's --fence-after"},
			&cli.StringFlag{Name: "format", Value: "table", Usage: "table or json"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("simulate takes no arguments, got %q", c.Args().Slice())
			}
			format := c.String("format")
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: want table or json", format)
			}
			cfg := engine.SimConfig{
				Nodes: c.Int("nodes"), Loss: c.Float64("loss"), Crashes: c.Int("crashes"), Partitions: c.Int("partitions"),
				Pauses: c.Int("pauses"), Duration: c.Duration("duration"), Seed: c.Int64("seed"),
				Council: c.Int("council-size"), FenceAfter: c.Duration("fence-after"),
			}
			switch c.String("quorum") {
			case "majority":
			case "two-thirds":
				cfg.Quorum = consensus.TwoThirds
			default:
				return fmt.Errorf("--quorum %q: want majority or two-thirds", c.String("quorum"))
			}
			rep, err := engine.Simulate(cfg)
			if err != nil {
				return fmt.Errorf("simulate: --%v", err)
			}
			if format == "json" {
				err = printJSON(stdout, rep)
			} else {
				err = printSimReport(stdout, rep)
			}
			if err == nil && rep.Violation != "" {
				err = errors.New("a safety property broke (a bug: please report it with the seed): " + rep.Violation)
			}
			return err
		},
	}
}

func printSimReport(w io.Writer, r engine.SimReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	pc := func(p engine.Percentiles) string {
		if p.N == 0 {
			return "-"
		}
		return fmt.Sprintf("p50 %s  p99 %s  max %s  (%d)", ms(p.P50), ms(p.P99), ms(p.Max), p.N)
	}
	fmt.Fprintf(tw, "nodes\t%d\n", r.Nodes)
	fmt.Fprintf(tw, "simulated\t%s, seed %d, loss %.1f %%\n", r.Duration, r.Seed, 100*r.Loss)
	fmt.Fprintf(tw, "crash to decision\t%s\n", pc(r.CrashToDecision))
	fmt.Fprintf(tw, "crashes not decided\t%d\n", r.Undecided)
	fmt.Fprintf(tw, "false removals\t%d\n", r.FalseRemovals)
	fmt.Fprintf(tw, "decision latency\t%s\n", pc(r.DecisionLatency))
	fmt.Fprintf(tw, "decisions, recoveries, fences\t%d, %d, %d\n", r.Decisions, r.Recoveries, r.Fences)
	fmt.Fprintf(tw, "per node and second\t%.1f messages, %.1f pings, %.0f bytes, %.1f ticks\n", r.MessagesPerNodeSec, r.PingsPerNodeSec, r.BytesPerNodeSec, r.TicksPerNodeSec)
	if r.Violation != "" {
		fmt.Fprintf(tw, "SAFETY VIOLATION\t%s\n", r.Violation)
	}
	return tw.Flush()
}
