package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
)

// pingResult is what `ping --json` prints.
type pingResult struct {
	Peer    string `json:"peer"`
	ID      string `json:"id"`
	Initial string `json:"initial"` // direct | relayed | jumpoint: the first connection
	Final   string `json:"final"`   // direct | relayed | jumpoint: at the end
	// Path describes the final path: "direct ADDR", "relayed via RELAY
	// (ADDR)" or "via jumpoint NAME (ADDR)".
	Path           string      `json:"path"`
	Transport      string      `json:"transport,omitempty"` // tcp | quic, when direct
	ConnectMS      float64     `json:"connect_ms"`
	TimeToDirectMS float64     `json:"time_to_direct_ms,omitempty"` // relayed → direct (hole punch)
	Rounds         []pingRound `json:"rounds"`
	// RTTMS is the median round trip on the final path.
	RTTMS float64 `json:"rtt_ms,omitempty"`
	// ProbesSent counts the easy side's probes of a port-mapping probe
	// exchange, Probe describes it (omitted when none ran).
	ProbesSent int        `json:"probes_sent,omitempty"`
	Probe      *pingProbe `json:"probe,omitempty"`
}

// pingProbe is a port-mapping probe exchange in `ping --json`.
type pingProbe struct {
	Hard        string  `json:"hard"` // which side opened the sockets: peer | console | none
	OpenersSent int     `json:"openers_sent"`
	ProbesSent  int     `json:"probes_sent"`
	Hit         bool    `json:"hit"`
	Direct      bool    `json:"direct"`
	TookMS      float64 `json:"took_ms"`
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
			c, err := openConsole(cc)
			if err != nil {
				return err
			}
			defer c.Close()
			setWake(cc, c) // a passive peer is woken first, with a progress line
			asJSON := cc.Bool("json")
			o := console.PingOptions{Count: int(f.count), Interval: f.interval, ForceRelay: f.relay, WaitDirect: f.wait}
			if !asJSON {
				var name string
				o.OnConnect = func(peer string, path console.Path, took time.Duration) {
					name = peer
					fmt.Fprintf(cc.App.Writer, "%s: connected %s in %s\n", name, path, roundMS(took))
				}
				o.OnRound = func(r console.PingRound) {
					fmt.Fprintf(cc.App.Writer, "%s: seq=%d time=%.2f ms %s\n", name, r.Seq, ms(r.RTT), r.Path)
				}
			}
			p, err := c.Ping(cc.Context, cc.Args().First(), o)
			if err != nil {
				return err
			}
			res := newPingResult(p)
			return output(cc, res, func(out io.Writer) {
				switch s := p.Path; {
				case s.Initial == console.PathRelayed && s.Final == console.PathDirect && res.Probe != nil && res.Probe.Direct:
					fmt.Fprintf(out, "%s: relayed, then direct (%s) after %s, by port-mapping probing (%d probes to the %s's hard NAT)\n",
						p.Name, res.Transport, roundMS(s.TimeToDirect), res.Probe.ProbesSent, res.Probe.Hard)
				case s.Initial == console.PathRelayed && s.Final == console.PathDirect:
					fmt.Fprintf(out, "%s: relayed, then direct (%s) after %s\n", p.Name, res.Transport, roundMS(s.TimeToDirect))
				default:
					fmt.Fprintf(out, "%s: %s throughout\n", p.Name, s.Final)
				}
			})
		},
	}
}

// newPingResult is what `ping --json` prints of p.
func newPingResult(p *console.PingResult) pingResult {
	s := p.Path
	res := pingResult{Peer: p.Name, ID: p.ID.String(), Initial: s.Initial.String(), Final: s.Final.String(), Path: s.FinalPath.String(),
		ConnectMS: ms(s.Connect), TimeToDirectMS: ms(s.TimeToDirect), Rounds: make([]pingRound, 0, len(p.Rounds)), RTTMS: ms(p.RTT)}
	for _, r := range p.Rounds {
		res.Rounds = append(res.Rounds, pingRound{Seq: r.Seq, RTT: ms(r.RTT), Path: r.Path.String()})
	}
	if s.Final == console.PathDirect {
		res.Transport = s.FinalPath.Transport
	}
	if pr := p.Probe; pr != nil {
		res.ProbesSent = pr.ProbesSent
		res.Probe = &pingProbe{Hard: strings.ToLower(pr.Hard.String()), OpenersSent: pr.OpenersSent, ProbesSent: pr.ProbesSent, Hit: pr.Hit, Direct: pr.Direct, TookMS: ms(pr.Took)}
	}
	return res
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func roundMS(d time.Duration) string { return fmt.Sprintf("%.1f ms", ms(d)) }
