package main

// The client commands serf's CLI has and vigil's did not: query, keys,
// tags and monitor.

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vigil-project/vigil/agent"
)

func serfCommands(httpAddr cli.Flag, client func(*cli.Context) *agent.Client, stdout io.Writer) []*cli.Command {
	return []*cli.Command{
		{
			Name:         "query",
			Usage:        "send a query NAME with an optional PAYLOAD and print the answers (serf's query)",
			ArgsUsage:    "NAME [PAYLOAD]",
			OnUsageError: usageError,
			Flags: []cli.Flag{httpAddr,
				&cli.StringSliceFlag{Name: "node", Usage: "ask only this node; repeatable"},
				&cli.StringSliceFlag{Name: "tag", Usage: "ask only nodes whose tag KEY matches the regular expression, KEY=REGEXP; repeatable"},
				&cli.BoolFlag{Name: "no-ack", Usage: "do not ask the nodes to acknowledge the query"},
				&cli.DurationFlag{Name: "timeout", Usage: "how long to wait for answers (default: serf's, from the cluster's size)"},
				&cli.IntFlag{Name: "relay-factor", Usage: "nodes that relay each answer too, 0 to 5"},
				&cli.StringFlag{Name: "format", Value: "text", Usage: "text or json"},
			},
			Action: func(c *cli.Context) error {
				if err := flagsFirst(c); err != nil {
					return err
				}
				if c.NArg() < 1 || c.NArg() > 2 {
					return errors.New("query: give NAME and at most one PAYLOAD")
				}
				format := c.String("format")
				if format != "text" && format != "json" {
					return fmt.Errorf("--format %q: want text or json", format)
				}
				tags, err := keyValues("--tag", c.StringSlice("tag"))
				if err != nil {
					return err
				}
				req := agent.QueryRequest{
					Name: c.Args().Get(0), Payload: c.Args().Get(1), Nodes: c.StringSlice("node"), Tags: tags,
					RequestAck: !c.Bool("no-ack"), RelayFactor: c.Int("relay-factor"),
				}
				if d := c.Duration("timeout"); d != 0 {
					req.Timeout = d.String()
				}
				var acks, answers []string
				out := struct {
					Acks      []string          `json:"acks"`
					Responses map[string]string `json:"responses"`
				}{Acks: []string{}, Responses: map[string]string{}}
				if format == "text" {
					fmt.Fprintf(stdout, "Query '%s' dispatched\n", req.Name)
				}
				err = client(c).Query(c.Context, req, func(r agent.QueryRecord) {
					switch r.Type {
					case "ack":
						acks = append(acks, r.From)
						out.Acks = append(out.Acks, r.From)
						if format == "text" {
							fmt.Fprintf(stdout, "Ack from '%s'\n", r.From)
						}
					case "response":
						answers = append(answers, r.From)
						out.Responses[r.From] = r.Payload
						if format == "text" {
							fmt.Fprintf(stdout, "Response from '%s': %s\n", r.From, strings.TrimRight(r.Payload, "\n"))
						}
					}
				})
				if err != nil {
					return err
				}
				if format == "json" {
					return printJSON(stdout, out)
				}
				if req.RequestAck {
					fmt.Fprintf(stdout, "Total Acks: %d\n", len(acks))
				}
				fmt.Fprintf(stdout, "Total Responses: %d\n", len(answers))
				return nil
			},
		},
		{
			Name:         "keys",
			Usage:        "change or list the gossip keyring on every member (serf's keys): one of --install, --use, --remove, --list",
			OnUsageError: usageError,
			Flags: []cli.Flag{httpAddr,
				&cli.StringFlag{Name: "install", Usage: "add KEY to every member's keyring"},
				&cli.StringFlag{Name: "use", Usage: "make KEY, installed everywhere, the key every member encrypts with"},
				&cli.StringFlag{Name: "remove", Usage: "remove KEY (not the one in use) from every member's keyring"},
				&cli.BoolFlag{Name: "list", Usage: "list the keys and how many members hold each"},
			},
			Action: func(c *cli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				var op, key string
				n := 0
				for _, o := range []string{"install", "use", "remove"} {
					if c.IsSet(o) {
						op, key = o, c.String(o)
						n++
					}
				}
				if c.Bool("list") {
					op = "list"
					n++
				}
				if n != 1 {
					return errors.New("keys: give exactly one of --install, --use, --remove, --list")
				}
				resp, err := client(c).Keys(c.Context, op, key)
				for node, msg := range resp.Messages {
					fmt.Fprintf(stdout, "  %s: %s\n", node, msg)
				}
				if err != nil {
					return fmt.Errorf("keys --%s: %v (%d members, %d answered, %d failed; run it again once they answer)", op, err, resp.NumNodes, resp.NumResp, resp.NumErr)
				}
				if op == "list" {
					fmt.Fprintf(stdout, "Keys installed on %d members:\n", resp.NumNodes)
					keys := make([]string, 0, len(resp.Keys))
					for k := range resp.Keys {
						keys = append(keys, k)
					}
					sort.Strings(keys)
					for _, k := range keys {
						primary := ""
						if resp.Primary[k] > 0 {
							primary = fmt.Sprintf(" (in use on %d)", resp.Primary[k])
						}
						fmt.Fprintf(stdout, "  %s [%d/%d]%s\n", k, resp.Keys[k], resp.NumNodes, primary)
					}
					return nil
				}
				fmt.Fprintf(stdout, "keys --%s: done on %d of %d members\n", op, resp.NumResp, resp.NumNodes)
				return nil
			},
		},
		{
			Name:         "tags",
			Usage:        "set or delete tags of the agent at run time (serf's tags); they last until it restarts",
			OnUsageError: usageError,
			Flags: []cli.Flag{httpAddr,
				&cli.StringSliceFlag{Name: "set", Usage: "tag KEY=VALUE to add or replace; repeatable"},
				&cli.StringSliceFlag{Name: "delete", Usage: "tag KEY to remove; repeatable"},
			},
			Action: func(c *cli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				set, err := keyValues("--set", c.StringSlice("set"))
				if err != nil {
					return err
				}
				if len(set) == 0 && len(c.StringSlice("delete")) == 0 {
					return errors.New("tags: give --set KEY=VALUE or --delete KEY")
				}
				tags, err := client(c).Tags(c.Context, set, c.StringSlice("delete"))
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "tags: %s\n", joinTags(tags))
				return nil
			},
		},
		{
			Name:         "monitor",
			Usage:        "stream the agent's log lines at --log-level until interrupted (serf's monitor)",
			OnUsageError: usageError,
			Flags: []cli.Flag{httpAddr,
				&cli.StringFlag{Name: "log-level", Value: "info", Usage: "trace, debug, info, warn or error"},
			},
			Action: func(c *cli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				if _, err := agent.ParseMonitorLevel(c.String("log-level")); err != nil {
					return fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", c.String("log-level"))
				}
				return client(c).Monitor(c.Context, c.String("log-level"), func(line string) {
					fmt.Fprintln(stdout, line)
				})
			},
		},
	}
}

// keyValues parses KEY=VALUE items of flag.
func keyValues(flag string, items []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range items {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want KEY=VALUE", flag, kv)
		}
		out[k] = v
	}
	return out, nil
}

// bashCompletion and zshCompletion ask the binary itself for the
// candidates (urfave/cli's --generate-bash-completion), so they follow the
// CLI definition of the vigil they run.
const bashCompletion = `# vigil bash completion: source it, or put it in /etc/bash_completion.d/vigil
_vigil_complete() {
  local cur opts
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [[ "$cur" == "-"* ]]; then
    opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  return 0
}
complete -o bashdefault -o default -F _vigil_complete vigil
`

const zshCompletion = `#compdef vigil
# vigil zsh completion: put it on $fpath as _vigil
_vigil() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} "$cur" --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  _describe 'values' opts
}
compdef _vigil vigil
`

// docCommands are `vigil completion` and `vigil man`.
func docCommands(stdout io.Writer) []*cli.Command {
	return []*cli.Command{
		{
			Name:         "completion",
			Usage:        "print the shell completion script for bash or zsh",
			ArgsUsage:    "bash|zsh",
			OnUsageError: usageError,
			Action: func(c *cli.Context) error {
				switch c.Args().First() {
				case "bash":
					_, err := io.WriteString(stdout, bashCompletion)
					return err
				case "zsh":
					_, err := io.WriteString(stdout, zshCompletion)
					return err
				}
				return errors.New("completion: give bash or zsh")
			},
		},
		{
			Name:  "man",
			Usage: "print vigil's man page (roff), made from the CLI definition: vigil man > vigil.1",
			Action: func(c *cli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				page, err := c.App.ToMan()
				if err != nil {
					return err
				}
				_, err = io.WriteString(stdout, page)
				return err
			},
		},
	}
}
