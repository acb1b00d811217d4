package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func jumpointCommand() *cli.Command {
	return &cli.Command{
		Name:  "jumpoint",
		Usage: "enroll and list jumpoints: the way into networks with no route to the Internet",
		Description: "A jumpoint is a site member on a network whose hosts cannot reach the site themselves. Peers\n" +
			"installed with a key that names it (jumpmesh installer create --jumpoint NAME) talk to the site\n" +
			"only through it, and consoles reach them through it; sessions stay end-to-end encrypted, so the\n" +
			"jumpoint sees ciphertext. It serves only its site's members. It enrolls like a user, with the\n" +
			"role jumpoint.",
		Subcommands: []*cli.Command{
			jumpointInviteCommand(),
			jumpointListCommand(),
			// jumpoint run: registered here by its own change (jumpointRunCommand).
		},
	}
}

// jumpointDataHint is the data directory suggested in printed command lines.
const jumpointDataHint = "/var/lib/jumpmesh-jumpoint"

func jumpointInviteCommand() *cli.Command {
	var f struct{ validFor string }
	return &cli.Command{
		Name:      "invite",
		Usage:     "create a jumpoint user and print the one-time code and the command that enrolls the jumpoint",
		ArgsUsage: "NAME",
		UsageText: "jumpmesh jumpoint invite NAME [--valid-for 24h] [--json]\n\n" +
			"Example:\n" +
			"  jumpmesh jumpoint invite plant-a --valid-for 2h",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "valid-for", Destination: &f.validFor, Value: "24h", Usage: "how long the code is valid (1m to 30d)"},
			jsonFlag,
		},
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			valid, err := parseDuration(f.validFor)
			if err != nil {
				return err
			}
			inv, err := c.InviteUser(ctx, cc.Args().First(), pb.Role_ROLE_JUMPOINT, valid)
			if err != nil {
				return err
			}
			v := struct {
				Jumpoint string `json:"jumpoint"`
				Code     string `json:"code"`
				Expires  string `json:"expires"`
				Run      string `json:"run_command"`
			}{inv.GetUser().GetName(), inv.GetCode(), jsonTime(inv.GetExpiresUnix()),
				fmt.Sprintf("jumpmesh jumpoint run --data %s --coordinator %s --invite %s", jumpointDataHint, c.CoordinatorAddr(), inv.GetCode())}
			return output(cc, v, func(w io.Writer) {
				fmt.Fprintf(w, "Jumpoint invite for %s, valid until %s:\n  %s\n\n"+
					"On the jumpoint's host (the first run enrolls; later runs need only --data):\n  %s\n\n"+
					"Then install peers behind it with:\n  jumpmesh installer create --jumpoint %s\n",
					v.Jumpoint, unixTime(inv.GetExpiresUnix()), v.Code, v.Run, v.Jumpoint)
			})
		}),
	}
}

type jumpointView struct {
	Name         string   `json:"name"`
	ID           string   `json:"peer_id,omitempty"`
	Online       bool     `json:"online"`
	Addrs        []string `json:"addrs"`
	PeersOnline  uint32   `json:"peers_online"`
	PeersTotal   uint32   `json:"peers_total"`
	TunnelsOpen  uint32   `json:"tunnels_open"`
	TunnelsTotal uint64   `json:"tunnels_total"`
	Refused      uint64   `json:"refused_total"`
	Bytes        uint64   `json:"bytes_total"`
	LastSeen     string   `json:"last_seen,omitempty"`
}

func newJumpointView(j *pb.JumpointView) jumpointView {
	v := jumpointView{Name: j.GetName(), Online: j.GetOnline(), Addrs: []string{},
		PeersOnline: j.GetPeersOnline(), PeersTotal: j.GetPeersTotal(), LastSeen: jsonTime(j.GetLastSeenUnix())}
	if len(j.GetId()) > 0 {
		v.ID = peer.ID(j.GetId()).String()
	}
	for _, a := range mesh.DecodeAddrs(j.GetAddrs()) {
		v.Addrs = append(v.Addrs, a.String())
	}
	st := j.GetStats()
	v.TunnelsOpen, v.TunnelsTotal, v.Refused, v.Bytes = st.GetTunnelsOpen(), st.GetTunnelsTotal(), st.GetRefusedTotal(), st.GetBytesTotal()
	return v
}

func jumpointListCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the site's jumpoints: where they listen, the peers behind them, tunnels carried",
		UsageText: "jumpmesh jumpoint list [--json]\n\nExamples:\n  jumpmesh jumpoint list\n" +
			"  jumpmesh jumpoint list --json",
		Description: "A jumpoint is online when it fetched its member list within the last three refresh periods\n" +
			"(90 seconds). Tunnels and refusals count since the jumpoint last started; an invited jumpoint\n" +
			"that has not enrolled yet has no peer ID.",
		Flags: []cli.Flag{jsonFlag},
		Action: clientAction(0, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			resp, err := c.Call(ctx, &pb.Request{Body: &pb.Request_JumpointList{JumpointList: &pb.Empty{}}})
			if err != nil {
				return err
			}
			views := []jumpointView{}
			for _, j := range resp.GetJumpoints().GetJumpoints() {
				views = append(views, newJumpointView(j))
			}
			return output(cc, views, func(w io.Writer) {
				if len(views) == 0 {
					fmt.Fprintln(w, "No jumpoints. Enroll one with `jumpmesh jumpoint invite NAME`.")
					return
				}
				rows := [][]string{{"NAME", "PEER ID", "STATUS", "ADDRESSES", "PEERS", "TUNNELS", "LAST SEEN"}}
				for _, v := range views {
					status, seen := "offline", "never"
					switch {
					case v.ID == "":
						status = "invited"
					case v.Online:
						status = "online"
					}
					if v.LastSeen != "" {
						seen = humanTime(v.LastSeen)
					}
					rows = append(rows, []string{v.Name, orDash(v.ID), status, orDash(strings.Join(v.Addrs, " ")),
						fmt.Sprintf("%d/%d online", v.PeersOnline, v.PeersTotal),
						fmt.Sprintf("%d open, %d total", v.TunnelsOpen, v.TunnelsTotal), seen})
				}
				table(w, rows)
			})
		}),
	}
}
