package main

import (
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/sim/netlab"
	"github.com/jumpmesh/jumpmesh/sim/scenario"
)

// simGridCommand is `jumpmesh sim grid`: every NAT preset against every
// other, with real jumpmesh processes.
func simGridCommand() *cli.Command {
	var f struct {
		out, binary, presets string
		runs                 int
		latency, wait        time.Duration
	}
	return &cli.Command{
		Name:  "grid",
		Usage: "connect a console behind every NAT preset to a peer behind every NAT preset; report direct / relayed / failed",
		UsageText: "jumpmesh sim grid [--presets public,easy,cgnat,hard,sequential,udp-blocked] [--runs 1]\n" +
			"                  [--latency 10ms] [--wait-direct 8s] [--out DIR] [--binary PATH] [--json]\n\n" +
			"Examples:\n  sudo jumpmesh sim grid\n  sudo jumpmesh sim grid --runs 5 --latency 25ms --out /tmp/grid\n" +
			"  sudo jumpmesh sim grid --presets easy,hard",
		Description: "Builds a public coordinator and relay and, for each preset, one network with a peer (peer-PRESET)\n" +
			"and another with a console (con-PRESET). Every console pings every peer (`jumpmesh ping\n" +
			"--wait-direct`): the first connection (direct or through the relay), whether hole punching\n" +
			"makes it direct within --wait-direct and how long that took. The consoles run at once.\n" +
			"Fails (exit 1) when a pair cannot connect at all, or when a pair whose NATs both map\n" +
			"endpoint-independently (public, easy, cgnat, udp-blocked) stays relayed, or when a peer behind\n" +
			"sequential (its next port predicted) stays relayed from such a console, or when a pair with one\n" +
			"side hard and the other public, easy or cgnat (port-mapping probing) stays relayed; the other\n" +
			"pairs are measured and reported. Writes results.json and report.html (with\n" +
			"the heat map) into --out. Needs root.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "presets", Destination: &f.presets, Usage: "comma-separated presets (default: public,easy,cgnat,hard,sequential,udp-blocked)"},
			&cli.IntFlag{Name: "runs", Destination: &f.runs, Value: 1, Usage: "times every pair connects (1 to 100)"},
			&cli.DurationFlag{Name: "latency", Destination: &f.latency, Value: 10 * time.Millisecond, Usage: "one-way latency of each network's uplink (1ms to 1s)"},
			&cli.DurationFlag{Name: "wait-direct", Destination: &f.wait, Value: scenario.GridWaitDirect, Usage: "how long a relayed pair may take to go direct (100ms to 1m)"},
			&cli.StringFlag{Name: "out", Destination: &f.out, Usage: "output directory (default: ./sim-out/nat-grid-TIME)"},
			&cli.StringFlag{Name: "binary", Destination: &f.binary, Usage: "jumpmesh binary the hosts run (default: this one)"},
			pcapFlag,
			jsonFlag,
		},
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 0); err != nil {
				return err
			}
			o := scenario.GridOptions{Runs: f.runs, Latency: f.latency, WaitDirect: f.wait}
			switch {
			case f.runs < 1 || f.runs > 100:
				return usagef("--runs is 1 to 100")
			case f.latency < time.Millisecond || f.latency > time.Second:
				return usagef("--latency is 1ms to 1s")
			case f.wait < 100*time.Millisecond || f.wait > time.Minute:
				return usagef("--wait-direct is 100ms to 1m")
			}
			if f.presets != "" {
				for _, p := range strings.Split(f.presets, ",") {
					o.Presets = append(o.Presets, netlab.Preset(strings.TrimSpace(p)))
				}
			}
			sc, err := scenario.Grid(o)
			if err != nil {
				return usagef("%v", err)
			}
			return runScenario(cc, sc, f.out, f.binary, "")
		},
	}
}
