package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
)

// wakeView is the --json shape of jumpmesh wake.
type wakeView struct {
	Peer        string      `json:"peer"`
	ID          string      `json:"id"`
	Method      string      `json:"method"`
	Wakers      []wakerView `json:"wakers"`
	Sent        []string    `json:"sent,omitempty"`
	NextAttempt string      `json:"next_attempt,omitempty"`
	// RequestedAt is when this console sent the request (after it had
	// connected and found the peer): the lab measures from it to the
	// magic packet on the sleeper's wire, without the console's start.
	RequestedAt time.Time `json:"requested_at"`
	// With --wait: whether it came online and how long that took.
	Online        *bool   `json:"online,omitempty"`
	WaitedSeconds float64 `json:"waited_seconds,omitempty"`
}

type wakerView struct {
	Name  string   `json:"name"`
	ID    string   `json:"id,omitempty"`
	Kind  string   `json:"kind"`
	Sent  []string `json:"sent"`
	Error string   `json:"error,omitempty"`
}

func wakeCommand() *cli.Command {
	var f struct {
		password string
		wait     time.Duration
	}
	return &cli.Command{
		Name:      "wake",
		Usage:     "wake a sleeping peer: Wake-on-LAN sent by a neighbour on its network, or the wake command of a passive peer",
		ArgsUsage: "PEER",
		UsageText: "jumpmesh wake PEER [--password XX-XX-XX-XX-XX-XX] [--wait D] [--json]\n\n" +
			"Examples:\n" +
			"  jumpmesh wake web-01\n" +
			"  jumpmesh wake web-01 --wait 2m\n" +
			"  jumpmesh wake web-01 --password 01-23-45-67-89-AB --wait 90s --json\n" +
			"  jumpmesh jump web-01 --wake -- uptime",
		Description: "The coordinator picks the wakers: up to two online peers behind the same default gateway as\n" +
			"PEER (same gateway IP and MAC, the most recently seen first) and the online jumpoints PEER talks\n" +
			"through, and orders each to send the magic packet for PEER's MAC addresses on its LAN (UDP\n" +
			"broadcast to ports 9 and 7, and a raw Ethernet frame where it may). A passive peer is sent its\n" +
			"signed wake command instead, on its passive port, by the coordinator and by the wakers. The\n" +
			"wakers and what each sent are printed.\n\n" +
			"One attempt per peer every 30 seconds, whoever asks (wake_cooldown says how long is left).\n" +
			"Other refusals: the peer is online (wake_not_needed), no online peer shares its gateway\n" +
			"(wake_no_neighbor, naming the gateway it last had), the site setting allow-wake=false\n" +
			"(wake_not_allowed; passive peers are woken whatever it says). --password is the SecureOn\n" +
			"password some network cards require (6 bytes, like a MAC address). With --wait, jumpmesh waits\n" +
			"up to D for the peer to come online and prints how long it took (wake_timeout after D).\n" +
			"The host must have Wake-on-LAN enabled (firmware, and e.g. `ethtool -s eth0 wol g`).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "password", Destination: &f.password, Usage: "SecureOn password, XX-XX-XX-XX-XX-XX"},
			&cli.DurationFlag{Name: "wait", Destination: &f.wait, Usage: "wait up to this long for the peer to come online (0: don't wait)"},
			jsonFlag,
		},
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 1); err != nil {
				return err
			}
			if f.wait < 0 {
				return usagef("--wait is a positive duration, e.g. 2m")
			}
			pw, err := wake.ParsePassword(f.password)
			if err != nil {
				return catalog.Errorf(catalog.CodeInvalidArgument, "%v", err)
			}
			c, err := openConsole(cc)
			if err != nil {
				return err
			}
			defer c.Close()
			return wakeAction(cc, c, cc.Args().First(), pw, f.wait)
		},
	}
}

func wakeAction(cc *cli.Context, c *console.Client, ref string, pw []byte, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(cc.Context, requestTimeout)
	defer cancel()
	p, err := c.Peer(ctx, ref)
	if err != nil {
		return err
	}
	id := peer.ID(p.GetPeer().GetId()).String()
	requested := time.Now()
	resp, err := c.Wake(ctx, id, pw)
	if err != nil {
		return err
	}
	v := newWakeView(p, resp)
	v.RequestedAt = requested.UTC()
	if !cc.Bool("json") {
		printWake(cc.App.Writer, v)
	}
	if wait > 0 {
		stderr := cc.App.ErrWriter
		last := time.Time{}
		_, took, err := c.WaitOnline(cc.Context, id, wait, func(w console.WaitProgress) {
			if time.Since(last) >= 10*time.Second && !cc.Bool("json") {
				last = time.Now()
				fmt.Fprintf(stderr, "jumpmesh: waiting for %s (%s): %s of %s\n", v.Peer, w.Peer.GetStatus(), w.Waited.Round(time.Second), wait)
			}
		})
		online := err == nil
		v.Online, v.WaitedSeconds = &online, took.Seconds()
		if err != nil {
			return err
		}
		if !cc.Bool("json") {
			fmt.Fprintf(cc.App.Writer, "%s is online after %s.\n", v.Peer, took.Round(100*time.Millisecond))
		}
	}
	if cc.Bool("json") {
		return printJSON(cc.App.Writer, v)
	}
	return nil
}

func newWakeView(p *pb.PeerView, r *pb.WakeResponse) wakeView {
	v := wakeView{Peer: p.GetPeer().GetSettings().GetName(), ID: peer.ID(p.GetPeer().GetId()).String(), Method: r.GetMethod(),
		Wakers: []wakerView{}, Sent: r.GetSent()}
	if ms := r.GetNextAttemptUnixMillis(); ms > 0 {
		v.NextAttempt = time.UnixMilli(ms).UTC().Format(time.RFC3339)
	}
	for _, w := range r.GetWakers() {
		wv := wakerView{Name: w.GetName(), Kind: w.GetKind(), Sent: nonNil(w.GetSent())}
		if len(w.GetId()) > 0 {
			wv.ID = peer.ID(w.GetId()).String()
		}
		if w.GetError() != nil {
			wv.Error = catalog.ErrorFromPB(w.GetError()).Error()
		}
		v.Wakers = append(v.Wakers, wv)
	}
	return v
}

func printWake(w io.Writer, v wakeView) {
	how := "Wake-on-LAN through its neighbours"
	if v.Method == "passive" {
		how = "wake command to its passive port"
	}
	fmt.Fprintf(w, "Waking %s (%s): %s.\n", v.Peer, v.ID, how)
	var rows [][]string
	rows = append(rows, []string{"WAKER", "KIND", "SENT"})
	for _, k := range v.Wakers {
		sent := strings.Join(k.Sent, ", ")
		if k.Error != "" {
			sent = strings.TrimSpace(sent + " (" + k.Error + ")")
		}
		rows = append(rows, []string{k.Name, k.Kind, orDash(sent)})
	}
	if len(v.Sent) > 0 {
		rows = append(rows, []string{"coordinator", "site", strings.Join(v.Sent, ", ")})
	}
	table(w, rows)
	if t, err := time.Parse(time.RFC3339, v.NextAttempt); err == nil {
		fmt.Fprintf(w, "Next attempt allowed from %s.\n", t.UTC().Format("15:04:05 UTC"))
	}
}
