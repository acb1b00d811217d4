package main

import (
	"os"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/sim/scale"
)

// simFleetCommand is `jumpmesh sim fleet`, hidden: one fleet process of
// `jumpmesh sim scale`, which starts it with its config on stdin and a
// pipe for events on fd 3 (sim/scale/fleetchild.go has the protocol).
// Run by hand, it refuses.
func simFleetCommand() *cli.Command {
	return &cli.Command{
		Name:   "fleet",
		Hidden: true,
		Usage:  "a fleet process of `jumpmesh sim scale`: started by it, never by hand",
		UsageText: "jumpmesh sim fleet (started by jumpmesh sim scale, with " + scale.FleetChildEnv + "=1, its config on stdin and events on fd 3)\n\n" +
			"Example (starts two, one per 10,000 peers):\n  jumpmesh sim scale --peers 20000 --fleets 2 --workload storm",
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 0); err != nil {
				return err
			}
			var st syscall.Stat_t
			if os.Getenv(scale.FleetChildEnv) == "" || syscall.Fstat(3, &st) != nil {
				return usagef("sim fleet is a fleet process that jumpmesh sim scale starts (its config on stdin, events on fd 3); run jumpmesh sim scale --fleets K instead")
			}
			return scale.ServeFleetProcess(os.Stdin, os.NewFile(3, "events"))
		},
	}
}
