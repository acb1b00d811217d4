package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/jumpoint"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

func jumpointCommand() *cli.Command {
	return &cli.Command{
		Name:  "jumpoint",
		Usage: "run a jumpoint, and enroll and list jumpoints: the way into networks with no route to the Internet",
		Description: "A jumpoint is a site member on a network whose hosts cannot reach the site themselves. Peers\n" +
			"installed with a key that names it (jumpmesh installer create --jumpoint NAME) talk to the site\n" +
			"only through it, and consoles reach them through it; sessions stay end-to-end encrypted, so the\n" +
			"jumpoint sees ciphertext. It serves only its site's members. It enrolls like a user, with the\n" +
			"role jumpoint.",
		Subcommands: []*cli.Command{
			jumpointInviteCommand(),
			jumpointRunCommand(),
			jumpointListCommand(),
			jumpointSetCommand(),
		},
	}
}

// jumpointDataHint is the data directory suggested in printed command lines.
const jumpointDataHint = "/var/lib/jumpmesh-jumpoint"

func jumpointInviteCommand() *cli.Command {
	return daemonInviteCommand(daemonInvite{party: "jumpoint", role: pb.Role_ROLE_JUMPOINT, example: "plant-a", dataHint: jumpointDataHint,
		then: func(name string) string {
			return "Then install peers behind it with:\n  jumpmesh installer create --jumpoint " + name
		}})
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
	Allow        []string `json:"allow"`
	Groups       []string `json:"groups"`
}

func newJumpointView(j *pb.JumpointView) jumpointView {
	v := jumpointView{Name: j.GetName(), Online: j.GetOnline(), Addrs: []string{},
		PeersOnline: j.GetPeersOnline(), PeersTotal: j.GetPeersTotal(), LastSeen: jsonTime(j.GetLastSeenUnix()),
		Allow: append([]string{}, j.GetAllow()...), Groups: append([]string{}, j.GetGroups()...)}
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
		Usage: "list the site's jumpoints: where they listen, the peers behind them, tunnels carried, agentless targets",
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
				rows := [][]string{{"NAME", "PEER ID", "STATUS", "ADDRESSES", "PEERS", "TUNNELS", "LAST SEEN", "ALLOWS"}}
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
						fmt.Sprintf("%d open, %d total", v.TunnelsOpen, v.TunnelsTotal), seen, allowsText(v)})
				}
				table(w, rows)
			})
		}),
	}
}

// allowsText is a jumpoint's agentless allow list and who may use it.
func allowsText(v jumpointView) string {
	if len(v.Allow) == 0 {
		return "-"
	}
	return strings.Join(v.Allow, " ") + " (" + usedBy(v.Groups) + ")"
}

func jumpointRunCommand() *cli.Command {
	def := jumpoint.DefaultResources()
	var d daemonRunFlags
	var f struct {
		dialTimeout                    string
		tunnels, tunnelsPerPeer, peers int
		tunnelRate                     int64
		peerPort                       int
	}
	return &cli.Command{
		Name:  "run",
		Usage: "run a jumpoint until SIGINT or SIGTERM (the first run enrolls it with an invite)",
		UsageText: "jumpmesh jumpoint run --data DIR [--coordinator ADDR --invite CODE] [--listen MULTIADDR ...]\n" +
			"                      [--announce MULTIADDR ...] [--peer-port PORT] [--http-addr ADDR] [--log-level LEVEL] [--log-format text|json]\n\n" +
			"Examples:\n" +
			"  jumpmesh jumpoint run --data /var/lib/jumpmesh-jumpoint --coordinator /ip4/203.0.113.7/tcp/4830/p2p/12D3KooW... --invite k3p7-2xqa-...\n" +
			"  jumpmesh jumpoint run --data /var/lib/jumpmesh-jumpoint --listen /ip4/10.20.0.5/tcp/4833 --listen /ip4/198.51.100.30/tcp/4833",
		Description: "Listens on TCP and QUIC (port 4833, every interface), fetches its ACL from the coordinator before\n" +
			"serving and then every refresh period, and opens tunnels only for the site's members: peers\n" +
			"installed to use it reach the coordinator and relays, hosts enrolling with a key that names it\n" +
			"reach the coordinator, technicians with a grant reach that peer (or, for a target in the\n" +
			"jumpoint's allow list, that target: jumpmesh jumpoint set). Everyone else is refused and\n" +
			"counted. Tunnels carry end-to-end encrypted connections and are not limited in time or bytes\n" +
			"carried; --max-tunnel-rate caps their speed.\n" +
			"Peers behind it reach the site over a peer link on --peer-port (TCP 4835 on the listen\n" +
			"addresses' IPs): a plain TCP connection proven by the peer's key, carrying the peer's own\n" +
			"encrypted connection to the coordinator. Installer keys made after the jumpoint reported\n" +
			"the port carry it; older installs use libp2p tunnels.\n" +
			"Exposes Prometheus /metrics and /healthz on --http-addr.",
		Flags: d.flags(daemonRunUsage{party: "jumpoint", httpAddr: jumpoint.DefaultHTTPAddr,
			listen:   "multiaddr to listen on (default TCP and QUIC on port 4833, every IPv4 interface)",
			announce: "multiaddr the served networks' hosts should dial, if not the listen addresses",
			refresh:  "ACL"},
			&cli.IntFlag{Name: "max-tunnels", Destination: &f.tunnels, Value: def.MaxTunnels, Usage: "tunnels carried at once (each peer behind the jumpoint holds one)"},
			&cli.IntFlag{Name: "max-tunnels-per-peer", Destination: &f.tunnelsPerPeer, Value: def.MaxTunnelsPerPeer, Usage: "tunnels one caller holds at once"},
			&cli.IntFlag{Name: "max-peers", Destination: &f.peers, Value: def.MaxPeers, Usage: "connections kept before the least useful are closed (the ACL's members are kept)"},
			&cli.Int64Flag{Name: "max-tunnel-rate", Destination: &f.tunnelRate, Value: def.MaxTunnelRate, Usage: "bytes per second each direction of a tunnel may carry, e.g. 1250000 for 10 Mbit/s (0: unlimited)"},
			&cli.StringFlag{Name: "dial-timeout", Destination: &f.dialTimeout, Value: def.DialTimeout.String(), Usage: "how long to wait for a tunnel's target to accept"},
			&cli.IntFlag{Name: "peer-port", Destination: &f.peerPort, Value: tunnel.DefaultLinkPort, Usage: "TCP port of the peer link on the listen addresses' IPs (-1: none; peers then use libp2p tunnels)"},
		),
		Action: func(cc *cli.Context) error {
			refresh, log, err := d.start(cc)
			if err != nil {
				return err
			}
			dial, err := parseDuration(f.dialTimeout)
			if err != nil {
				return err
			}
			j, err := jumpoint.New(cc.Context, jumpoint.Config{
				DataDir: d.data, Coordinator: d.coordinator, Invite: d.invite,
				Listen: d.listen.Value(), Announce: d.announce.Value(), HTTPAddr: d.httpAddr, Refresh: refresh, PeerPort: f.peerPort,
				Resources: jumpoint.Resources{MaxTunnels: f.tunnels, MaxTunnelsPerPeer: f.tunnelsPerPeer, MaxPeers: f.peers, DialTimeout: dial,
					MaxTunnelRate: f.tunnelRate},
				Logger: log,
			})
			if err != nil {
				return err
			}
			printReady(cc.App.Writer, j.Addrs(), j.HTTPAddr())
			err = j.Run(cc.Context)
			log.Info("jumpoint stopped")
			return err
		},
	}
}
