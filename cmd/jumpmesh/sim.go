package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/sim/netlab"
)

// simCommand is the network lab: scenarios and the NAT grid in network
// namespaces (root), the in-process scale engine (no root), and the
// listing and cleaning of lab runs.
func simCommand() *cli.Command {
	return &cli.Command{
		Name:  "sim",
		Usage: "the network lab: scenarios and the NAT grid in network namespaces (root), the scale engine (no root)",
		Description: "The lab's public side uses the documentation ranges 198.51.100.0/24 and 203.0.113.0/24,\n" +
			"which libp2p counts as unroutable: a jumpmesh process treats them as public only with\n" +
			"JUMPMESH_LAB_PUBLIC_RANGES=1 in its environment. sim sets it for every process it starts; set it\n" +
			"yourself for jumpmesh processes in a lab of your own (without it, hole punching never starts\n" +
			"there), never in production.",
		Subcommands: []*cli.Command{simRunCommand(), simGridCommand(), simScaleCommand(), simFleetCommand(),
			{
				Name:      "list",
				Usage:     "list lab runs on this machine and whether their owner is still alive",
				UsageText: "jumpmesh sim list [--json]\n\nExample:\n  jumpmesh sim list",
				Flags:     []cli.Flag{jsonFlag},
				Action: func(cc *cli.Context) error {
					if err := needArgs(cc, 0); err != nil {
						return err
					}
					runs, err := netlab.Runs()
					if err != nil {
						return err
					}
					type entry struct {
						Prefix   string `json:"prefix"`
						OwnerPID int    `json:"owner_pid,omitempty"`
						Stale    bool   `json:"stale"`
					}
					all := []entry{}
					rows := [][]string{{"PREFIX", "OWNER", "STATE"}}
					for _, r := range runs {
						all = append(all, entry{r.Prefix, r.OwnerPID, r.Stale})
						state, owner := "running", strconv.Itoa(r.OwnerPID)
						if r.Stale {
							state = "stale (owner gone): jumpmesh sim clean"
						}
						if r.OwnerPID == 0 {
							owner = "-"
						}
						rows = append(rows, []string{r.Prefix, owner, state})
					}
					return output(cc, all, func(w io.Writer) {
						if len(runs) == 0 {
							fmt.Fprintln(w, "no lab runs")
							return
						}
						table(w, rows)
					})
				},
			},
			{
				Name:  "clean",
				Usage: "remove what crashed lab runs left: namespaces, links, nft tables and processes with a run's prefix",
				UsageText: "jumpmesh sim clean [--all] [--json] [PREFIX]\n\n" +
					"Without arguments, removes the runs whose owner process is gone. With PREFIX\n" +
					"(from `jumpmesh sim list`), removes that run; with --all, every run, live ones too.\n" +
					"Only names starting with " + netlab.PrefixBase + " are ever touched.\n\n" +
					"Examples:\n  jumpmesh sim clean\n  jumpmesh sim clean jmlab-k3x9-",
				ArgsUsage: "[PREFIX]",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "all", Usage: "remove every lab run, including those of live processes"},
					jsonFlag,
				},
				Action: func(cc *cli.Context) error {
					if cc.NArg() > 1 || (cc.NArg() == 1 && cc.Bool("all")) {
						return usagef("sim clean takes one PREFIX, or --all, or nothing")
					}
					if err := netlab.Available(); err != nil {
						return err
					}
					var removed []string
					var err error
					switch {
					case cc.Bool("all"):
						removed, err = netlab.Clean(netlab.PrefixBase)
					case cc.NArg() == 1:
						removed, err = netlab.Clean(cc.Args().First())
					default:
						removed, err = netlab.CleanStale()
					}
					if err != nil {
						return err
					}
					if removed == nil {
						removed = []string{}
					}
					return output(cc, map[string][]string{"removed": removed}, func(w io.Writer) {
						if len(removed) == 0 {
							fmt.Fprintln(w, "nothing to clean")
						}
						for _, r := range removed {
							fmt.Fprintln(w, "removed", r)
						}
					})
				},
			},
		},
	}
}
