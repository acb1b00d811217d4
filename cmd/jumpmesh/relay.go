package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/relay"
)

func relayCommand() *cli.Command {
	return &cli.Command{
		Name:  "relay",
		Usage: "run a site relay, and enroll and list relays (admins)",
		Description: "A relay carries sessions between consoles and peers that cannot reach each other directly,\n" +
			"for members of its site only; it sees ciphertext. It enrolls like a user, with the role relay.",
		Subcommands: []*cli.Command{relayInviteCommand(), relayRunCommand(), relayListCommand()},
	}
}

// relayDataHint is the data directory suggested in printed command lines.
const relayDataHint = "/var/lib/jumpmesh-relay"

func relayInviteCommand() *cli.Command {
	return daemonInviteCommand(daemonInvite{party: "relay", role: pb.Role_ROLE_RELAY, example: "relay-fra1", dataHint: relayDataHint})
}

func relayRunCommand() *cli.Command {
	def := relay.DefaultResources()
	var d daemonRunFlags
	var f struct {
		bufferKiB, reservations, circuits, circuitsPerPeer, connections int
		spliceAddr                                                      string
	}
	return &cli.Command{
		Name:  "run",
		Usage: "run a relay until SIGINT or SIGTERM (the first run enrolls it with an invite)",
		UsageText: "jumpmesh relay run --data DIR [--coordinator ADDR --invite CODE] [--listen MULTIADDR ...]\n" +
			"                   [--announce MULTIADDR ...] [--splice-addr HOST:PORT|off] [--http-addr ADDR] [--log-level LEVEL] [--log-format text|json]\n\n" +
			"Examples:\n" +
			"  jumpmesh relay run --data /var/lib/jumpmesh-relay --coordinator /ip4/203.0.113.7/tcp/4830/p2p/12D3KooW... --invite k3p7-2xqa-...\n" +
			"  jumpmesh relay run --data /var/lib/jumpmesh-relay --announce /ip4/198.51.100.20/tcp/4832\n" +
			"  jumpmesh relay run --data /var/lib/jumpmesh-relay --splice-addr off",
		Description: "Listens on TCP and QUIC (port 4832), fetches the site's member list from the coordinator before\n" +
			"relaying and then every refresh period, relays only between members, and exposes Prometheus\n" +
			"/metrics and /healthz on --http-addr. Relayed connections are not limited in time or bytes.\n" +
			"A forward through the relay runs on a TCP splice of its own (port 4836 by default, --splice-addr):\n" +
			"both ends connect to it with a one-time slot and the relay copies ciphertext it cannot read; open\n" +
			"that port as you open 4832, or forwards stay inside the relayed connection (slower, still working).",
		Flags: d.flags(daemonRunUsage{party: "relay", httpAddr: relay.DefaultHTTPAddr,
			listen:   "multiaddr to listen on (repeatable; default TCP and QUIC on port 4832)",
			announce: "multiaddr members should dial, if not the listen addresses (repeatable)",
			refresh:  "member list"},
			&cli.IntFlag{Name: "buffer-kib", Destination: &f.bufferKiB, Value: def.BufferSize >> 10, Usage: "copy buffer per direction of a circuit, in KiB"},
			&cli.IntFlag{Name: "max-reservations", Destination: &f.reservations, Value: def.MaxReservations, Usage: "members that may hold a reservation at once"},
			&cli.IntFlag{Name: "max-circuits", Destination: &f.circuits, Value: def.MaxCircuits, Usage: "relayed connections carried at once"},
			&cli.IntFlag{Name: "max-circuits-per-peer", Destination: &f.circuitsPerPeer, Value: def.MaxCircuitsPerPeer, Usage: "relayed connections one member takes part in"},
			&cli.IntFlag{Name: "max-connections", Destination: &f.connections, Value: def.MaxConnections, Usage: "connections kept before the least useful are closed"},
			&cli.StringFlag{Name: "splice-addr", Destination: &f.spliceAddr, Usage: "TCP HOST:PORT of the splice listener for relayed forwards, or off (default: port 4836 on the first TCP listen address's host)"},
		),
		Action: func(cc *cli.Context) error {
			if err := checkSpliceAddr(f.spliceAddr); err != nil {
				return err
			}
			refresh, log, err := d.start(cc)
			if err != nil {
				return err
			}
			res := def
			res.BufferSize, res.MaxReservations, res.MaxCircuits = f.bufferKiB<<10, f.reservations, f.circuits
			res.MaxCircuitsPerPeer, res.MaxConnections = f.circuitsPerPeer, f.connections
			// Per-IP and per-ASN limits follow --max-reservations (see relay.Resources).
			res.MaxReservationsPerIP, res.MaxReservationsPerASN = 0, 0
			r, err := relay.New(cc.Context, relay.Config{
				DataDir: d.data, Coordinator: d.coordinator, Invite: d.invite,
				Listen: d.listen.Value(), Announce: d.announce.Value(), HTTPAddr: d.httpAddr,
				SpliceAddr: f.spliceAddr, Resources: res, Refresh: refresh, Logger: log,
			})
			if err != nil {
				return err
			}
			printReady(cc.App.Writer, r.Addrs(), r.HTTPAddr())
			err = r.Run(cc.Context)
			log.Info("relay stopped")
			return err
		},
	}
}

// checkSpliceAddr refuses a --splice-addr that is neither "off" nor a
// TCP HOST:PORT with a port, before anything starts.
func checkSpliceAddr(s string) error {
	if s == "" || s == "off" {
		return nil
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return usagef("--splice-addr %q: use HOST:PORT (e.g. :4836 or 198.51.100.20:4836) or off: %v", s, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return usagef("--splice-addr %q: the port must be a number from 1 to 65535", s)
	}
	return nil
}

type relayView struct {
	Name     string   `json:"name"`
	IDs      []string `json:"peer_ids"`
	Created  string   `json:"created,omitempty"`
	By       string   `json:"created_by,omitempty"`
	LastSeen string   `json:"last_seen,omitempty"`
}

func relayListCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list the site's relays (users with the role relay) and their peer IDs",
		UsageText: "jumpmesh relay list [--json]\n\nExample:\n  jumpmesh relay list --json",
		Flags:     []cli.Flag{jsonFlag},
		Action: clientAction(0, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			users, err := c.Users(ctx)
			if err != nil {
				return err
			}
			views := []relayView{}
			for _, u := range users {
				if u.GetRole() != pb.Role_ROLE_RELAY {
					continue
				}
				v := relayView{Name: u.GetName(), IDs: []string{}, Created: jsonTime(u.GetCreatedUnix()), By: u.GetCreatedBy(), LastSeen: jsonTime(u.GetLastSeenUnix())}
				for _, id := range u.GetPeerIds() {
					v.IDs = append(v.IDs, peer.ID(id).String())
				}
				views = append(views, v)
			}
			return output(cc, views, func(w io.Writer) {
				if len(views) == 0 {
					fmt.Fprintln(w, "No relays. Enroll one with `jumpmesh relay invite NAME`.")
					return
				}
				rows := [][]string{{"NAME", "PEER ID", "LAST SEEN"}}
				for _, v := range views {
					id := "-" // invited, not enrolled yet
					if len(v.IDs) > 0 {
						id = v.IDs[0]
					}
					seen := "never"
					if v.LastSeen != "" {
						seen = humanTime(v.LastSeen)
					}
					rows = append(rows, []string{v.Name, id, seen})
				}
				table(w, rows)
			})
		}),
	}
}
