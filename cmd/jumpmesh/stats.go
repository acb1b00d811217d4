package main

import (
	"context"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
)

func statsCommand() *cli.Command {
	return &cli.Command{
		Name:        "stats",
		Usage:       "site statistics (admins)",
		Subcommands: []*cli.Command{statsPathsCommand()},
	}
}

func statsPathsCommand() *cli.Command {
	return &cli.Command{
		Name:      "paths",
		Usage:     "how sessions connected since the coordinator started: direct, relayed, upgraded by hole punching",
		UsageText: "jumpmesh stats paths [--json]\n\nExample:\n  jumpmesh stats paths",
		Description: "Consoles report each session's path when it ends. The direct rate counts sessions that started\n" +
			"direct or were upgraded to direct; time to direct is measured from the relayed connection.",
		Flags: []cli.Flag{jsonFlag},
		Action: clientAction(0, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			st, err := c.PathStats(ctx)
			if err != nil {
				return err
			}
			// Jumpoint sessions are neither direct nor relayed: the direct
			// rate is over the others.
			reachable := st.GetDirect() + st.GetRelayed() + st.GetUpgraded()
			total := reachable + st.GetJumpoint()
			rate := 0.0
			if reachable > 0 {
				rate = float64(st.GetDirect()+st.GetUpgraded()) / float64(reachable)
			}
			times := st.GetTimeToDirectMillis()
			p50 := int64(0)
			if len(times) > 0 {
				p50 = times[len(times)/2]
			}
			v := map[string]any{"direct": st.GetDirect(), "relayed": st.GetRelayed(), "upgraded": st.GetUpgraded(), "jumpoint": st.GetJumpoint(),
				"direct_rate": rate, "time_to_direct_p50_ms": p50}
			return output(cc, v, func(w io.Writer) {
				fields(w, "sessions", fmt.Sprint(total), "direct from the start", fmt.Sprint(st.GetDirect()),
					"relayed, then direct", fmt.Sprint(st.GetUpgraded()), "relayed throughout", fmt.Sprint(st.GetRelayed()), "through a jumpoint", fmt.Sprint(st.GetJumpoint()),
					"direct rate", fmt.Sprintf("%.1f%%", 100*rate), "time to direct (p50)", fmt.Sprintf("%d ms", p50))
			})
		}),
	}
}
