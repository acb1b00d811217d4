package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
)

// openConsole opens the console home of the command line (--home).
func openConsole(cc *cli.Context) (*console.Client, error) {
	home, err := homeDir(cc)
	if err != nil {
		return nil, err
	}
	return console.Open(home)
}

// withJump is cp and forward: open the console, ask for a grant for need
// on the peer ref, run fn with the jump, report how the session
// connected, close the console.
func withJump(cc *cli.Context, ref string, need console.Need, fn func(*console.Jump) error) error {
	return withJumpTimed(cc, ref, need, nil, false, fn)
}

// withJumpTimed is withJump recording its phases in t (jump --timing).
//
// exiting is jump's: the process exits as soon as this returns, with the
// remote command's status, so the console is not closed first. Closing
// it (the host's connections and listeners: 2–5 ms, issue 17) would only
// delay that answer: the process's exit closes its sockets, the peer and
// the coordinator see the connection end as they see a console's Close,
// and nothing of the session's record is left in it (the grant is audited
// before it is granted, the session's start and end by the peer, the path
// report is delivered before WithJump returns). The close starts here and
// the exit ends it wherever it got to.
func withJumpTimed(cc *cli.Context, ref string, need console.Need, t *console.Timing, exiting bool, fn func(*console.Jump) error) error {
	home, err := homeDir(cc)
	if err != nil {
		return err
	}
	c, err := console.OpenTimed(home, t)
	if err != nil {
		return err
	}
	c.SetPeerCache(home)
	defer func() {
		if exiting {
			go c.Close()
			return
		}
		defer t.Begin("console close (connections, listeners)")()
		c.Close()
	}()
	setWake(cc, c)
	return c.WithJump(cc.Context, ref, need, fn)
}

// wakeFlags are jump's, forward's and cp's --wake and --wake-timeout.
func wakeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "wake", Usage: "if the peer is offline, wake it (as jumpmesh wake does) and wait for it first"},
		&cli.DurationFlag{Name: "wake-timeout", Value: console.DefaultWakeTimeout,
			Usage: "how long to wait for a peer being woken (--wake, or a passive peer) to come online"},
	}
}

// setWake makes c's jumps wake their peer as the flags say: a passive
// peer always, an offline one with --wake; progress lines go to stderr.
func setWake(cc *cli.Context, c *console.Client) {
	c.SetWake(console.WakeOptions{Offline: cc.Bool("wake"), Timeout: cc.Duration("wake-timeout"),
		Progress: func(line string) { fmt.Fprintf(cc.App.ErrWriter, "jumpmesh: %s\n", line) }})
}

// checkWakeTimeout refuses a --wake-timeout that cannot be meant.
func checkWakeTimeout(cc *cli.Context) error {
	if d := cc.Duration("wake-timeout"); d < time.Second || d > time.Hour {
		return usagef("--wake-timeout is 1s to 1h (got %s)", d)
	}
	return nil
}
