package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh"
)

// pingResult is what `ping --json` prints.
type pingResult struct {
	Peer    string `json:"peer"`
	ID      string `json:"id"`
	Initial string `json:"initial"` // direct | relayed: the first connection
	Final   string `json:"final"`   // direct | relayed: at the end
	// Path describes the final path: "direct ADDR" or "relayed via RELAY (ADDR)".
	Path           string      `json:"path"`
	Transport      string      `json:"transport,omitempty"` // tcp | quic, when direct
	ConnectMS      float64     `json:"connect_ms"`
	TimeToDirectMS float64     `json:"time_to_direct_ms,omitempty"` // relayed → direct (hole punch)
	Rounds         []pingRound `json:"rounds"`
	// RTTMS is the median round trip on the final path.
	RTTMS float64 `json:"rtt_ms,omitempty"`
}

type pingRound struct {
	Seq  int     `json:"seq"`
	RTT  float64 `json:"rtt_ms"`
	Path string  `json:"path"`
}

func pingCommand() *cli.Command {
	var f struct {
		count    uint
		relay    bool
		interval time.Duration
		wait     time.Duration
	}
	return &cli.Command{
		Name:      "ping",
		Usage:     "measure round trips to a peer and show the path taken",
		ArgsUsage: "PEER",
		UsageText: "jumpmesh ping PEER [-c 4] [-i 1s] [--relay] [--wait-direct 5s] [--json]\n\nExamples:\n" +
			"  jumpmesh ping web-01\n  jumpmesh ping web-01 -c 10 -i 200ms\n  jumpmesh ping web-01 --wait-direct 5s --json",
		Description: "Connects the way a jump does (direct addresses first, relays after) and prints each round trip\n" +
			"with the path: direct (address, TCP or QUIC) or relayed (via which relay), then how the\n" +
			"connection started, whether hole punching made it direct and how long that took.\n" +
			"--relay starts through a relay even if a direct path exists (hole punching may still upgrade it).\n" +
			"--wait-direct waits, at most that long, for a relayed connection to go direct before the round trips.",
		Flags: []cli.Flag{
			&cli.UintFlag{Name: "c", Destination: &f.count, Value: 4, Usage: "number of round trips (1 to 1000)"},
			&cli.DurationFlag{Name: "i", Destination: &f.interval, Value: time.Second, Usage: "time between round trips (10ms to 1m)"},
			&cli.BoolFlag{Name: "relay", Destination: &f.relay, Usage: "start through a relay even if a direct path exists"},
			&cli.DurationFlag{Name: "wait-direct", Destination: &f.wait, Usage: "wait at most this long for a relayed connection to go direct (0: don't)"},
			jsonFlag,
		},
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 1); err != nil {
				return err
			}
			if f.count == 0 || f.count > 1000 {
				return usagef("-c is 1 to 1000")
			}
			if f.interval < 10*time.Millisecond || f.interval > time.Minute {
				return usagef("-i is 10ms to 1m")
			}
			if f.wait < 0 || f.wait > 10*time.Minute {
				return usagef("--wait-direct is 0 to 10m")
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
			name, id := v.GetPeer().GetSettings().GetName(), peer.ID(v.GetPeer().GetId())
			w := console.WatchPath(c.Host(), id)
			defer w.Stop()
			if err := c.Connect(cc.Context, id, mesh.DecodeAddrs(v.GetAddrs()), mesh.DecodeAddrs(v.GetRelays()), f.relay); err != nil {
				return err
			}
			w.Connected()
			asJSON := cc.Bool("json")
			if !asJSON {
				fmt.Fprintf(cc.App.Writer, "%s: connected %s in %s\n", name, console.PathTo(c.Host(), id), roundMS(w.Summary().Connect))
			}
			if f.wait > 0 {
				w.WaitDirect(cc.Context, f.wait)
			}
			rounds, err := pingRounds(cc, c, id, name, int(f.count), f.interval, asJSON)
			if err != nil {
				return err
			}
			s := w.Summary()
			res := pingResult{Peer: name, ID: id.String(), Initial: s.Initial, Final: s.Final, Path: s.FinalPath,
				ConnectMS: ms(s.Connect), TimeToDirectMS: ms(s.TimeToDirect), Rounds: rounds, RTTMS: medianRTT(rounds, s.Final)}
			if s.Final == console.PathDirect {
				res.Transport = transportOf(s.FinalPath)
			}
			return output(cc, res, func(out io.Writer) {
				switch {
				case s.Initial == console.PathRelayed && s.Final == console.PathDirect:
					fmt.Fprintf(out, "%s: relayed, then direct (%s) after %s\n", name, res.Transport, roundMS(s.TimeToDirect))
				default:
					fmt.Fprintf(out, "%s: %s throughout\n", name, s.Final)
				}
			})
		},
	}
}

// pingRounds measures n round trips, interval apart, printing each unless
// asJSON.
func pingRounds(cc *cli.Context, c *console.Client, id peer.ID, name string, n int, interval time.Duration, asJSON bool) ([]pingRound, error) {
	rounds := make([]pingRound, 0, n)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for i := 1; i <= n; i++ {
		// One round trip per stream: libp2p's ping stream keeps using the
		// connection it opened on, and the path may have changed since.
		ctx, cancel := context.WithCancel(cc.Context)
		r, ok := <-ping.Ping(ctx, c.Host(), id)
		cancel()
		if !ok {
			return nil, cc.Context.Err()
		}
		if r.Error != nil {
			return nil, fmt.Errorf("ping %s: %w", name, r.Error)
		}
		rd := pingRound{Seq: i, RTT: ms(r.RTT), Path: console.PathTo(c.Host(), id)}
		rounds = append(rounds, rd)
		if !asJSON {
			fmt.Fprintf(cc.App.Writer, "%s: seq=%d time=%.2f ms %s\n", name, rd.Seq, rd.RTT, rd.Path)
		}
		if i < n {
			select {
			case <-cc.Context.Done():
				return rounds, nil
			case <-ticker.C:
			}
		}
	}
	return rounds, nil
}

// medianRTT is the median round trip of the rounds on a path of kind.
func medianRTT(rounds []pingRound, kind string) float64 {
	var rtts []float64
	for _, r := range rounds {
		if strings.HasPrefix(r.Path, kind) {
			rtts = append(rtts, r.RTT)
		}
	}
	if len(rtts) == 0 {
		return 0
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2]
}

// transportOf is "quic" or "tcp" for a "direct ADDR" path.
func transportOf(path string) string {
	if strings.Contains(path, "/quic") {
		return "quic"
	}
	return "tcp"
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func roundMS(d time.Duration) string { return fmt.Sprintf("%.1f ms", ms(d)) }
