package main

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func jumpointSetCommand() *cli.Command {
	var f struct {
		allow, groups cli.StringSlice
		clear         bool
	}
	return &cli.Command{
		Name:      "set",
		Usage:     "set what a jumpoint may reach without a peer (agentless targets) and who may use it (admins)",
		ArgsUsage: "NAME",
		UsageText: "jumpmesh jumpoint set NAME [--allow PREFIX:PORTS ...] [--clear] [--group CODE ...] [--json]\n\n" +
			"Examples:\n" +
			"  jumpmesh jumpoint set plant-a --allow 10.20.0.0/16:22,3389 --allow 10.30.0.5:80 --group plant-floor\n" +
			"  jumpmesh jumpoint set plant-a --allow 10.20.0.7:8000-8100\n" +
			"  jumpmesh jumpoint set plant-a --clear",
		Description: "The allow list is where technicians may go through the jumpoint to hosts that run no peer\n" +
			"(jumpmesh forward --via NAME LPORT:IP:PORT). Each entry is an IPv4 or IPv6 prefix (10.20.0.0/16)\n" +
			"or a single address (10.30.0.5, [fd00::5]), a colon, and ports or port ranges (22,3389,8000-8100);\n" +
			"at most 64 entries. Loopback addresses match only an entry inside loopback, so 0.0.0.0/0 does not\n" +
			"open the jumpoint host's own local services. --allow replaces the whole list (repeat it for\n" +
			"several entries); --clear or --allow '' empties it. Administrators may always use the list;\n" +
			"technicians only as members of a jump group named with --group (which replaces the groups;\n" +
			"--group '' removes them all). The jumpoint enforces the list too, from its next refresh (30 s).",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "allow", Destination: &f.allow, Usage: "PREFIX:PORTS the jumpoint may reach (replaces the list)"},
			&cli.BoolFlag{Name: "clear", Destination: &f.clear, Usage: "empty the allow list"},
			&cli.StringSliceFlag{Name: "group", Destination: &f.groups, Usage: "jump group whose members may use the allow list (replaces the groups)"},
			jsonFlag,
		},
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			req := &pb.JumpointSetRequest{Name: cc.Args().First()}
			allow := nonEmpty(rejoinPorts(f.allow.Value()))
			switch {
			case f.clear && len(allow) > 0:
				return usagef("jumpoint set: --clear empties the list; do not give --allow entries with it")
			case f.clear || cc.IsSet("allow"):
				req.SetAllow, req.Allow = true, allow
			}
			if cc.IsSet("group") {
				req.SetGroups, req.Groups = true, nonEmpty(f.groups.Value())
			}
			if !req.GetSetAllow() && !req.GetSetGroups() {
				return usagef("jumpoint set: give --allow, --clear or --group")
			}
			v, err := c.SetJumpoint(ctx, req)
			if err != nil {
				return err
			}
			view := newJumpointView(v)
			return output(cc, view, func(w io.Writer) {
				fields(w, "Jumpoint", view.Name, "Allows", orDash(strings.Join(view.Allow, " ")), "Used by", usedBy(view.Groups))
			})
		}),
	}
}

// rejoinPorts undoes urfave/cli's split of a slice flag's value at
// commas for allow entries: "--allow 10.20.0.0/16:22,3389" arrives as
// "10.20.0.0/16:22" and "3389", and a piece that is only ports (or port
// ranges) belongs to the entry before it. (The app-wide switch that turns
// the split off would break flags that take comma-separated lists.)
func rejoinPorts(vs []string) []string {
	var out []string
	for _, v := range vs {
		if n := len(out); n > 0 && out[n-1] != "" && portsOnly.MatchString(strings.TrimSpace(v)) {
			out[n-1] += "," + strings.TrimSpace(v)
			continue
		}
		out = append(out, v)
	}
	return out
}

var portsOnly = regexp.MustCompile(`^[0-9]+(-[0-9]+)?$`)

// nonEmpty drops empty values: an empty --allow asks for an empty list.
func nonEmpty(vs []string) []string {
	return slices.DeleteFunc(slices.Clone(vs), func(s string) bool { return strings.TrimSpace(s) == "" })
}

// usedBy says who may use a jumpoint's allow list.
func usedBy(groups []string) string {
	if len(groups) == 0 {
		return "administrators"
	}
	return fmt.Sprintf("administrators and members of %s", strings.Join(groups, ", "))
}
