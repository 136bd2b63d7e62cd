// Command vigil is a failure-detection and recovery agent for server
// clusters: `vigil agent` on every machine, and client commands that talk
// to the local agent's HTTP API.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vigil-project/vigil/agent"
	"github.com/vigil-project/vigil/engine"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args, os.Stdout, os.Stderr))
}

// run is the whole program: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	if err := app.RunContext(ctx, args); err != nil {
		fmt.Fprintf(stderr, "vigil: %v\n", err)
		return 1
	}
	return 0
}

func usageError(_ *cli.Context, err error, _ bool) error { return err }

func newApp(stdout, stderr io.Writer) *cli.App {
	httpAddr := &cli.StringFlag{
		Name: "http-addr", Value: "127.0.0.1:7947", EnvVars: []string{"VIGIL_HTTP_ADDR"},
		Usage: "HTTP API address of the agent to talk to, IP:PORT (https://IP:PORT for an API with TLS)",
	}
	httpToken := &cli.StringFlag{
		Name: "http-token", EnvVars: []string{"VIGIL_HTTP_TOKEN"},
		Usage: "the agent's --http-token, for calls that change something",
	}
	httpCA := &cli.StringFlag{
		Name: "http-ca-cert", EnvVars: []string{"VIGIL_HTTP_CA_CERT"},
		Usage: "PEM file of the CA of the agent's HTTPS certificate (or write --http-addr https://IP:PORT to use the system's)",
	}
	makeClient := func(c *cli.Context) (*agent.Client, error) {
		return agent.NewClientWith(c.String("http-addr"), agent.ClientOptions{Token: c.String("http-token"), CACert: c.String("http-ca-cert")})
	}
	// Each client command checks its flags in Before, so client cannot fail.
	client := func(c *cli.Context) *agent.Client {
		cl, err := makeClient(c)
		if err != nil {
			panic(err) // unreachable: Before returned err
		}
		return cl
	}
	app := &cli.App{
		Name:                      "vigil",
		Usage:                     "failure detection by agreement, and recovery exactly once",
		Version:                   agent.Version,
		Writer:                    stdout,
		ErrWriter:                 stderr,
		HideVersion:               true,
		DisableSliceFlagSeparator: true,
		OnUsageError:              usageError,
		ExitErrHandler:            func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unknown command %q (see vigil --help)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		Commands: []*cli.Command{
			{
				Name:         "agent",
				Usage:        "run the agent",
				Flags:        agentFlags(),
				OnUsageError: usageError,
				Action:       runAgent,
			},
			listCommand("members", "list the cluster's members", httpAddr, stdout,
				func(c *cli.Context) ([]agent.MemberInfo, error) {
					return client(c).Members(c.Context, c.String("status"))
				}, printMembers,
				&cli.StringFlag{Name: "status", Usage: "only members with this agreed status (alive, suspect, failed, left, joining; a comma list)"}),
			{
				Name:         "join",
				Usage:        "tell the agent to join the cluster at ADDR...",
				ArgsUsage:    "ADDR...",
				OnUsageError: usageError,
				Flags:        []cli.Flag{httpAddr},
				Action: func(c *cli.Context) error {
					if err := flagsFirst(c); err != nil {
						return err
					}
					if c.NArg() == 0 {
						return errors.New("join: give at least one address")
					}
					n, err := client(c).Join(c.Context, c.Args().Slice())
					if err != nil {
						return err
					}
					fmt.Fprintf(stdout, "joined: %d node(s) answered\n", n)
					return nil
				},
			},
			{
				Name:         "leave",
				Usage:        "tell the agent to leave the cluster gracefully and stop",
				OnUsageError: usageError,
				Flags:        []cli.Flag{httpAddr},
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					if err := client(c).Leave(c.Context); err != nil {
						return err
					}
					fmt.Fprintln(stdout, "left the cluster")
					return nil
				},
			},
			nodeCommand("force-leave", "move a failed NODE to left at once", httpAddr, func(c *cli.Context, node string) error {
				return client(c).ForceLeave(c.Context, node, c.Bool("prune"))
			}, &cli.BoolFlag{Name: "prune", Usage: "also forget the node at once, instead of after serf's reap time"}),
			{
				Name:         "force-remove",
				Usage:        "after a quorum is lost for good: remove the dead NODEs from the view without a quorum",
				ArgsUsage:    "NODE...",
				OnUsageError: usageError,
				Flags: []cli.Flag{httpAddr, &cli.BoolFlag{Name: "confirm-quorum-loss",
					Usage: "required: this decides without a quorum; the removed nodes must rejoin with empty data dirs"}},
				Action: func(c *cli.Context) error {
					if err := flagsFirst(c); err != nil {
						return err
					}
					if c.NArg() == 0 {
						return errors.New("force-remove: name the dead members")
					}
					epoch, err := client(c).ForceRemove(c.Context, c.Args().Slice(), c.Bool("confirm-quorum-loss"))
					if err != nil {
						return err
					}
					fmt.Fprintf(stdout, "removed %s without a quorum; the view is at epoch %d\n", strings.Join(c.Args().Slice(), ", "), epoch)
					return nil
				},
			},
			{
				Name:         "event",
				Usage:        "send a user event NAME with an optional PAYLOAD to every agent",
				ArgsUsage:    "NAME [PAYLOAD]",
				OnUsageError: usageError,
				Flags: []cli.Flag{httpAddr,
					&cli.BoolFlag{Name: "coalesce", Value: true, Usage: "let serf merge events of the same name sent close together"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() < 1 || c.NArg() > 2 {
						return errors.New("event: give NAME and at most one PAYLOAD")
					}
					if err := client(c).Event(c.Context, c.Args().Get(0), []byte(c.Args().Get(1)), c.Bool("coalesce")); err != nil {
						return err
					}
					fmt.Fprintf(stdout, "event %q sent\n", c.Args().Get(0))
					return nil
				},
			},
			{
				Name:         "info",
				Usage:        "describe the agent",
				OnUsageError: usageError,
				Flags: []cli.Flag{httpAddr,
					&cli.StringFlag{Name: "format", Value: "text", Usage: "text or json"},
				},
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					info, err := client(c).Info(c.Context)
					if err != nil {
						return err
					}
					switch c.String("format") {
					case "json":
						return printJSON(stdout, info)
					case "text":
						return printInfo(stdout, info)
					}
					return fmt.Errorf("--format %q: want text or json", c.String("format"))
				},
			},
			listCommand("views", "show the agreed view and the log of decided view changes", httpAddr, stdout,
				func(c *cli.Context) (agent.Views, error) { return client(c).Views(c.Context) }, printViews),
			nodeCommand("why", "explain a node's status: the evidence of each decision about it, observers, samples, scores, verdict, ballot, epoch", httpAddr, func(c *cli.Context, node string) error {
				format := c.String("format")
				if format != "text" && format != "json" {
					return fmt.Errorf("--format %q: want text or json", format)
				}
				w, err := client(c).Why(c.Context, node)
				if err != nil {
					return err
				}
				if format == "json" {
					return printJSON(stdout, w)
				}
				return printWhy(stdout, w)
			}, &cli.StringFlag{Name: "format", Value: "text", Usage: "text or json"}),
			listCommand("scores", "the peers this agent probes, with their scores as it sees them", httpAddr, stdout,
				func(c *cli.Context) ([]agent.Score, error) { return client(c).Scores(c.Context) }, printScores),
			listCommand("recoveries", "the recovery journal: every confirmed failure, its executor, attempts and state", httpAddr, stdout,
				func(c *cli.Context) ([]engine.Job, error) { return client(c).Recoveries(c.Context) }, printRecoveries),
			{
				Name:  "keygen",
				Usage: "print a new gossip encryption key for --encrypt",
				Action: func(c *cli.Context) error {
					key := make([]byte, 32)
					if _, err := rand.Read(key); err != nil {
						return err
					}
					fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(key))
					return nil
				},
			},
			{
				Name:  "version",
				Usage: "print vigil's version",
				Action: func(c *cli.Context) error {
					fmt.Fprintln(stdout, agent.VersionString())
					return nil
				},
			},
		},
	}
	app.Commands = append(app.Commands, serfCommands(httpAddr, client, stdout)...)
	app.Commands = append(app.Commands, docCommands(stdout)...)
	app.Commands = append(app.Commands, simulateCommand(stdout))
	// Every client command (those with --http-addr) also takes the token
	// and the CA of the agent's API.
	for _, cmd := range app.Commands {
		for _, f := range cmd.Flags {
			if f == cli.Flag(httpAddr) {
				cmd.Flags = append(cmd.Flags, httpToken, httpCA)
				cmd.Before = func(c *cli.Context) error { _, err := makeClient(c); return err }
				break
			}
		}
	}
	app.EnableBashCompletion = true
	return app
}

// flagsFirst rejects a flag written after the arguments, which urfave/cli
// would take for an argument.
func flagsFirst(c *cli.Context) error {
	for _, a := range c.Args().Slice() {
		if strings.HasPrefix(a, "--") {
			return fmt.Errorf("%s: put flags before the arguments (%q came after)", c.Command.Name, a)
		}
	}
	return nil
}

func noArgs(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", c.Command.Name, c.Args().First())
	}
	return nil
}

// agentFlags are the agent's settings as flags. Environment variables and
// the config file are read by agent.Resolve, so that one function keeps
// the precedence flag > env > file > default.
func agentFlags() []cli.Flag {
	flags := []cli.Flag{&cli.StringFlag{
		Name:  agent.ConfigFileSetting,
		Usage: "strict JSON file of settings (keys in README.md) [$VIGIL_CONFIG_FILE]",
	}}
	for _, s := range agent.Settings() {
		usage := fmt.Sprintf("%s [$%s]", s.Usage, s.Env)
		if s.Default != "" {
			usage = fmt.Sprintf("%s (default: %s) [$%s]", s.Usage, s.Default, s.Env)
		}
		switch s.Kind {
		case agent.KindList, agent.KindMap:
			flags = append(flags, &cli.StringSliceFlag{Name: s.Name, Usage: usage})
		case agent.KindBool:
			flags = append(flags, &cli.BoolFlag{Name: s.Name, Usage: usage})
		default:
			flags = append(flags, &cli.StringFlag{Name: s.Name, Usage: usage})
		}
	}
	return flags
}

func runAgent(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	flags := agent.Values{}
	for _, s := range agent.Settings() {
		if !c.IsSet(s.Name) {
			continue
		}
		switch s.Kind {
		case agent.KindList, agent.KindMap:
			flags[s.Name] = c.StringSlice(s.Name)
		case agent.KindBool:
			flags[s.Name] = []string{strconv.FormatBool(c.Bool(s.Name))}
		default:
			flags[s.Name] = []string{c.String(s.Name)}
		}
	}
	// SIGHUP reloads the log level and the handlers, as serf's agent does;
	// caught from here on, so that an early one does not kill the agent.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	path := c.String(agent.ConfigFileSetting)
	if path == "" {
		path = os.Getenv("VIGIL_CONFIG_FILE")
	}
	// load reads the environment and the config file again: at start and
	// on every SIGHUP.
	load := func() (agent.Config, error) {
		var file []byte
		if path != "" {
			var err error
			if file, err = os.ReadFile(path); err != nil {
				return agent.Config{}, fmt.Errorf("config file: %v", err)
			}
		}
		return agent.Resolve(flags, os.LookupEnv, file)
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if cfg.GoMaxProcs > 0 {
		// The agent's work is one loop and its sockets' readers: one P
		// spares the wake-ups of idle Ps at every datagram.
		runtime.GOMAXPROCS(cfg.GoMaxProcs)
	}
	logs := agent.NewLogger(c.App.ErrWriter, cfg.LogLevel, cfg.LogFormat)
	a, err := agent.New(cfg, logs)
	if err != nil {
		return err
	}
	go func() {
		for {
			select {
			case <-hup:
			case <-c.Context.Done():
				return
			}
			log := logs.Logger
			next, err := load()
			if err != nil {
				log.Error().Err(err).Msg("SIGHUP: the configuration is invalid; nothing reloaded")
				continue
			}
			changed, restart, err := a.Reload(c.Context, next)
			if err != nil {
				log.Error().Err(err).Msg("SIGHUP: reload failed")
				continue
			}
			e := log.Info()
			if len(restart) > 0 {
				e = log.Warn().Strs("needs_restart", restart)
			}
			if len(changed) == 0 {
				changed = []string{"nothing"}
			}
			e.Strs("changed", changed).Msg("SIGHUP: configuration reloaded")
		}
	}()
	// A second signal while leaving stops at once, as serf's agent does.
	go func() {
		<-c.Context.Done()
		again := make(chan os.Signal, 1)
		signal.Notify(again, syscall.SIGINT, syscall.SIGTERM)
		<-again
		fmt.Fprintln(c.App.ErrWriter, "vigil: second signal: stopping without a graceful leave")
		os.Exit(1)
	}()
	return a.Run(c.Context)
}

// nodeCommand is a client command that takes exactly one NODE argument.
func nodeCommand(name, usage string, httpAddr cli.Flag, run func(c *cli.Context, node string) error, extra ...cli.Flag) *cli.Command {
	return &cli.Command{
		Name:         name,
		Usage:        usage,
		ArgsUsage:    "NODE",
		OnUsageError: usageError,
		Flags:        append([]cli.Flag{httpAddr}, extra...),
		Action: func(c *cli.Context) error {
			if err := flagsFirst(c); err != nil {
				return err
			}
			if c.NArg() != 1 {
				return fmt.Errorf("%s: give exactly one node name", name)
			}
			return run(c, c.Args().First())
		},
	}
}

// listCommand is a client command without arguments that fetches T from
// the agent and prints it as a table or, with --format json, as JSON.
func listCommand[T any](name, usage string, httpAddr cli.Flag, w io.Writer, fetch func(*cli.Context) (T, error), table func(io.Writer, T) error, extra ...cli.Flag) *cli.Command {
	flags := append([]cli.Flag{httpAddr, &cli.StringFlag{Name: "format", Value: "table", Usage: "table or json"}}, extra...)
	return &cli.Command{
		Name:         name,
		Usage:        usage,
		OnUsageError: usageError,
		Flags:        flags,
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			format := c.String("format")
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: want table or json", format)
			}
			v, err := fetch(c)
			if err != nil {
				return err
			}
			if format == "json" {
				return printJSON(w, v)
			}
			return table(w, v)
		},
	}
}

func printViews(w io.Writer, v agent.Views) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "view at epoch %d: %d members\n", v.Epoch, len(v.Members))
	for _, m := range v.Members {
		fmt.Fprintf(tw, "  %s@%s\t%s\n", m.Name, m.Boot, m.Addr)
	}
	fmt.Fprintln(tw, "EPOCH\tCHANGE\tNODE\tREASON\tEXECUTOR\tPROPOSER\tVOTES\tID")
	for _, e := range v.Log {
		fmt.Fprintf(tw, "%d\t%s\t%s@%s\t%s\t%s\t%s\t%d\t%s\n", e.Epoch, e.Kind, e.Node, e.Boot, e.Reason, e.Executor, e.Proposer, e.Votes, e.ID)
	}
	return tw.Flush()
}

func printWhy(w io.Writer, y agent.Why) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "node\t%s@%s\n", y.Node, y.Boot)
	fmt.Fprintf(tw, "status\t%s (epoch %d, in view: %v)\n", y.Status, y.Epoch, y.InView)
	if len(y.Observers) > 0 {
		fmt.Fprintf(tw, "observers\t%s\n", strings.Join(y.Observers, ", "))
	}
	if y.Verdict != nil {
		fmt.Fprintf(tw, "this agent's verdict\tunreachable: %v (fresh: %v)\n", y.Verdict.Unreachable, y.Verdict.Fresh)
	}
	if s := y.Suspicion; s != nil {
		fmt.Fprintf(tw, "this agent's suspicion\t%s for %v; %d misses in a row (%d to accuse), %d bad results in a row (%d to suspect), silent %v, loss %.1f%%\n",
			s.State, s.InStateFor.Round(time.Millisecond), s.Misses, s.NeedMisses, s.BadRun, s.NeedSuspect, s.Silence.Round(time.Millisecond), 100*s.LossEstimate)
	}
	if sc := y.Score; sc != nil {
		fmt.Fprintf(tw, "this agent's score\tpfail %.4f, threshold %.2f, last rtt %v\n", sc.PFail, sc.Threshold, sc.LastRTT)
	}
	lh := y.LocalHealth
	fmt.Fprintf(tw, "this agent's health\tslow: %v (%d of %d monitored peers silent), fenced: %v\n", lh.Slow, lh.Silent, lh.Monitored, lh.Fenced)
	fmt.Fprintf(tw, "consensus\tepoch %d, %s %s %s\n", y.Consensus.Epoch, y.Consensus.Phase, y.Consensus.Ballot, y.Consensus.Proposal)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(y.Decisions) == 0 {
		fmt.Fprintln(w, "\nno decided view change about it")
		return nil
	}
	for _, d := range y.Decisions {
		fmt.Fprintf(w, "\ndecision %s: epoch %d, %s %s@%s %s, proposed by %s, %d votes\n", d.ID, d.Epoch, d.Kind, d.Node, d.Boot, d.Reason, d.Proposer, d.Votes)
		if len(d.Evidence) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  OBSERVER\tROLE\tHOW\tSTATE\tMISSES\tSILENT\tLOSS\tPFAIL\tTHRESHOLD")
		for _, e := range d.Evidence {
			how := "probes it"
			if !e.Monitored {
				how = "asked"
			}
			if e.Burst {
				how += "+burst"
			}
			pfail, thr := "-", "-"
			if e.PFail != 0 || e.Threshold != 0 {
				pfail, thr = fmt.Sprintf("%.4f", e.PFail), fmt.Sprintf("%.2f", e.Threshold)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%v\t%.1f%%\t%s\t%s\n", e.Observer, e.Role, how, e.State, e.Misses,
				e.Silence.Round(10*time.Millisecond), 100*e.Loss, pfail, thr)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func printScores(w io.Writer, ss []agent.Score) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tSTATE\tPFAIL\tTHRESHOLD\tTIMEOUT\tLAST RTT\tMISSES\tGMM")
	for _, s := range ss {
		fmt.Fprintf(tw, "%s\t%s\t%.3f\t%.2f\t%v\t%v\t%d\t%v\n", s.Peer, s.State, s.PFail, s.Threshold, s.Timeout, s.LastRTT, s.Misses, s.GMMReady)
	}
	return tw.Flush()
}

func printRecoveries(w io.Writer, jobs []engine.Job) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EPOCH\tNODE\tSTATE\tEXECUTOR\tATTEMPTS\tLAST EXIT\tID")
	for _, j := range jobs {
		last := "-"
		if n := len(j.Attempts); n > 0 && !j.Attempts[n-1].Ended.IsZero() {
			last = fmt.Sprint(j.Attempts[n-1].Exit)
			if j.Attempts[n-1].TimedOut {
				last = "timeout"
			}
		}
		var runs []string
		for _, a := range j.Attempts {
			runs = append(runs, fmt.Sprintf("%d@%s", a.N, a.Executor))
		}
		fmt.Fprintf(tw, "%d\t%s@%s\t%s\t%s\t%s\t%s\t%s\n", j.Epoch, j.Node, j.Boot, j.State, j.Executor, strings.Join(runs, ","), last, j.ID)
	}
	return tw.Flush()
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printMembers(w io.Writer, ms []agent.MemberInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDR\tSTATUS\tGOSSIP\tEPOCH\tBOOT\tTAGS")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", m.Name, m.Addr, m.Status, m.Gossip, m.Epoch, m.Boot, joinTags(m.Tags))
	}
	return tw.Flush()
}

func joinTags(tags map[string]string) string {
	kv := make([]string, 0, len(tags))
	for k, v := range tags {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func printInfo(w io.Writer, info agent.Info) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "node\t%s\n", info.Node)
	fmt.Fprintf(tw, "boot\t%s\n", info.Boot)
	fmt.Fprintf(tw, "cluster\t%s\n", info.Cluster)
	fmt.Fprintf(tw, "addr\t%s\n", info.Addr)
	fmt.Fprintf(tw, "http_addr\t%s\n", info.HTTPAddr)
	fmt.Fprintf(tw, "version\t%s\n", info.Version)
	fmt.Fprintf(tw, "profile\t%s\n", info.Profile)
	fmt.Fprintf(tw, "quorum\t%s\n", info.Quorum)
	fmt.Fprintf(tw, "council_size\t%d\n", info.Council)
	fmt.Fprintf(tw, "encrypted\t%v\n", info.Encrypted)
	fmt.Fprintf(tw, "data_dir\t%s\n", info.DataDir)
	fmt.Fprintf(tw, "epoch\t%d\n", info.Epoch)
	fmt.Fprintf(tw, "started\t%s\n", info.Started.Format("2006-01-02T15:04:05Z07:00"))
	statuses := make([]string, 0, len(info.Members))
	for s := range info.Members {
		statuses = append(statuses, s)
	}
	sort.Strings(statuses)
	for _, s := range statuses {
		fmt.Fprintf(tw, "members.%s\t%d\n", s, info.Members[s])
	}
	fmt.Fprintf(tw, "tags\t%s\n", joinTags(info.Tags))
	ct := info.Consensus
	fmt.Fprintf(tw, "consensus_transport\tsent %d, resent %d, acked %d, given up %d; received %d, duplicate %d, dropped %d\n",
		ct.Sent, ct.Resent, ct.Acked, ct.GivenUp, ct.Received, ct.Duplicate, ct.Dropped)
	return tw.Flush()
}
