package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// exitCodeError makes the process exit with a remote command's status.
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitJumpFailed is jump's own failure (no grant, peer unreachable, ...):
// 255, as ssh does, so scripts can tell it from the remote command's status.
const exitJumpFailed = 255

// jumpFailure marks an error of jump itself.
type jumpFailure struct{ err error }

func (j jumpFailure) Error() string { return j.err.Error() }
func (j jumpFailure) Unwrap() error { return j.err }

func jumpCommand() *cli.Command {
	var f struct {
		tty, noTTY, verbose bool
		wait                time.Duration
	}
	return &cli.Command{
		Name:      "jump",
		Usage:     "open a shell on a peer, or run a command there",
		ArgsUsage: "PEER [-- COMMAND [ARGS...]]",
		UsageText: "jumpmesh jump PEER [-t|-T] [-v] [-- COMMAND [ARGS...]]\n\n" +
			"Examples:\n" +
			"  jumpmesh jump web-01\n" +
			"  jumpmesh jump web-01 -- uname -a\n" +
			"  jumpmesh jump web-01 -t -- top",
		Description: "Without a command: an interactive shell in a real PTY on the host (raw terminal, window size\n" +
			"follows yours, Ctrl-C and Ctrl-D go to the remote shell as with ssh). With a command: runs it\n" +
			"without a PTY (stdin streamed, stdout and stderr kept apart) unless -t. The remote exit status\n" +
			"is jumpmesh's; jumpmesh's own failures (no grant, peer unreachable) exit 255, as ssh's do.\n" +
			"Flags go before the command: everything from the first other word after PEER is the command.\n" +
			"PEER is a peer ID, a unique name or a unique search result.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "t", Destination: &f.tty, Usage: "force a PTY for a command"},
			&cli.BoolFlag{Name: "T", Destination: &f.noTTY, Usage: "never allocate a PTY"},
			&cli.BoolFlag{Name: "v", Destination: &f.verbose, Usage: "print the path taken (the address the peer was reached at)"},
			&cli.DurationFlag{Name: "wait-direct", Destination: &f.wait, Value: console.DefaultPunchWait,
				Usage: "when the peer is first reached through a relay, wait at most this long for hole punching to go direct (0: don't)"},
		},
		Action: func(cc *cli.Context) error {
			if cc.NArg() == 0 {
				return usagef("jump needs a PEER")
			}
			if f.wait < 0 || f.wait > time.Minute {
				return usagef("--wait-direct is 0 to 1m")
			}
			return jumpAction(cc, f.tty, f.noTTY, f.verbose, f.wait)
		},
	}
}

func jumpAction(cc *cli.Context, forceTTY, noTTY, verbose bool, punchWait time.Duration) (err error) {
	defer func() {
		var exit exitCodeError
		if err != nil && !errors.As(err, &exit) {
			err = jumpFailure{err}
		}
	}()
	args := cc.Args().Slice()
	ref, argv := args[0], args[1:]
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	stdinTTY := term.IsTerminal(int(os.Stdin.Fd()))
	tty := (len(argv) == 0 && stdinTTY || forceTTY) && !noTTY
	capability := grant.Exec
	if len(argv) == 0 {
		capability = grant.Shell
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
	j, err := c.Jump(cc.Context, ref, capability)
	if err != nil {
		return err
	}
	j.PunchWait = punchWait
	defer j.ReportPath(context.WithoutCancel(cc.Context))
	open := &pb.ExecOpen{Argv: argv, Tty: tty, Term: os.Getenv("TERM")}
	if tty {
		if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
			open.Cols, open.Rows = uint32(w), uint32(h)
		}
	}
	ch, err := j.Open(cc.Context, &pb.ChannelOpen{Kind: &pb.ChannelOpen_Exec{Exec: open}})
	if err != nil {
		return err
	}
	defer ch.Close()
	if verbose {
		fmt.Fprintf(cc.App.ErrWriter, "jumpmesh: %s %s via %s\n", j.Peer.GetPeer().GetSettings().GetName(), j.ID, j.Path())
	}
	status, err := runExec(cc.Context, ch, tty, cc.App.Writer, cc.App.ErrWriter)
	if err != nil {
		return err
	}
	if code := exitCodeOf(status); code != 0 {
		return exitCodeError{code}
	}
	return nil
}

// runExec wires the terminal to the channel: raw mode and window size with
// a PTY, local Ctrl-C forwarded as a signal without one.
func runExec(ctx context.Context, ch *channel.Channel, tty bool, stdout, stderr io.Writer) (*pb.ExitStatus, error) {
	eio := console.ExecIO{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr}
	signals := make(chan string, 4)
	eio.Signals = signals
	if tty && term.IsTerminal(int(os.Stdin.Fd())) {
		old, err := term.MakeRaw(int(os.Stdin.Fd()))
		if err == nil {
			defer term.Restore(int(os.Stdin.Fd()), old)
		}
		resize := make(chan *pb.WindowSize, 4)
		eio.Resize = resize
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
					select {
					case resize <- &pb.WindowSize{Cols: uint32(w), Rows: uint32(h)}:
					default:
					}
				}
			}
		}()
	} else {
		intr := make(chan os.Signal, 1)
		signal.Notify(intr, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
		defer signal.Stop(intr)
		go func() {
			for s := range intr {
				name := map[os.Signal]string{os.Interrupt: "INT", syscall.SIGTERM: "TERM", syscall.SIGHUP: "HUP"}[s]
				select {
				case signals <- name:
				default:
				}
			}
		}()
	}
	return console.Exec(context.WithoutCancel(ctx), ch, eio)
}

// exitCodeOf maps a remote status to a local exit code (signals: 128+n, as
// shells do; a command that could not start: its code, 127).
func exitCodeOf(s *pb.ExitStatus) int {
	if s.GetSignal() != "" {
		if n, ok := signalNumbers[s.GetSignal()]; ok {
			return 128 + n
		}
		return 255
	}
	return int(s.GetCode())
}

var signalNumbers = map[string]int{"HUP": 1, "INT": 2, "QUIT": 3, "KILL": 9, "SEGV": 11, "PIPE": 13, "TERM": 15}
