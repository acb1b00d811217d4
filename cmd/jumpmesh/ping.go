package main

import (
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh"
)

func pingCommand() *cli.Command {
	var f struct {
		count uint
		relay bool
	}
	return &cli.Command{
		Name:      "ping",
		Usage:     "measure round trips to a peer and show the path taken",
		ArgsUsage: "PEER",
		UsageText: "jumpmesh ping PEER [-c 4] [--relay] [--json]\n\nExamples:\n  jumpmesh ping web-01\n  jumpmesh ping web-01 -c 10 --relay",
		Description: "Connects the way a jump does (direct addresses first, relays after) and prints each round trip\n" +
			"with the path: direct (address, TCP or QUIC) or relayed (via which relay). --relay dials only\n" +
			"through relays.",
		Flags: []cli.Flag{
			&cli.UintFlag{Name: "c", Destination: &f.count, Value: 4, Usage: "number of round trips"},
			&cli.BoolFlag{Name: "relay", Destination: &f.relay, Usage: "go through a relay even if a direct path exists"},
			jsonFlag,
		},
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 1); err != nil {
				return err
			}
			if f.count == 0 || f.count > 1000 {
				return usagef("-c is 1 to 1000")
			}
			home, err := homeDir(cc)
			if err != nil {
				return err
			}
			c, err := console.Open(home)
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := c.Peer(cc.Context, cc.Args().First())
			if err != nil {
				return err
			}
			id := peer.ID(v.GetPeer().GetId())
			if err := c.Connect(cc.Context, id, mesh.DecodeAddrs(v.GetAddrs()), mesh.DecodeAddrs(v.GetRelays()), f.relay); err != nil {
				return err
			}
			type round struct {
				Seq  int     `json:"seq"`
				RTT  float64 `json:"rtt_ms"`
				Path string  `json:"path"`
			}
			var rounds []round
			results := ping.Ping(cc.Context, c.Host(), id)
			for i := 1; i <= int(f.count); i++ {
				r := <-results
				if r.Error != nil {
					return fmt.Errorf("ping %s: %w", v.GetPeer().GetSettings().GetName(), r.Error)
				}
				rd := round{Seq: i, RTT: float64(r.RTT.Microseconds()) / 1000, Path: console.PathTo(c.Host(), id)}
				rounds = append(rounds, rd)
				if !cc.Bool("json") {
					fmt.Fprintf(cc.App.Writer, "%s: seq=%d time=%.2f ms %s\n", v.GetPeer().GetSettings().GetName(), rd.Seq, rd.RTT, rd.Path)
				}
				if i < int(f.count) {
					select {
					case <-cc.Context.Done():
						return nil
					case <-time.After(time.Second):
					}
				}
			}
			return output(cc, rounds, func(io.Writer) {})
		},
	}
}
