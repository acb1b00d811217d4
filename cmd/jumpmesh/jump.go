package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/jumpmesh/jumpmesh/console"
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
		timing, noAgent     bool
		wait                time.Duration
		via                 string
	}
	return &cli.Command{
		Name:      "jump",
		Usage:     "open a shell on a peer, or run a command there; with --via, ssh to a host without a peer through a jumpoint",
		ArgsUsage: "PEER [-- COMMAND [ARGS...]]",
		UsageText: "jumpmesh jump PEER [-t|-T] [-v] [-- COMMAND [ARGS...]]\n" +
			"jumpmesh jump --via JUMPOINT [USER@]IP[:PORT] [-t|-T] [-v] [-- SSH-ARGS...]\n\n" +
			"Examples:\n" +
			"  jumpmesh jump web-01\n" +
			"  jumpmesh jump web-01 -- uname -a\n" +
			"  jumpmesh jump web-01 -t -- top\n" +
			"  jumpmesh jump web-01 --wake --wake-timeout 3m -- uptime\n" +
			"  timeout 60 jumpmesh jump web-01 -t -- sh -i\n" +
			"  jumpmesh jump --via plant-a admin@10.20.0.7\n" +
			"  jumpmesh jump --via plant-a root@10.20.0.8:2222 -- -i ~/.ssh/plant -o BatchMode=yes uptime",
		Description: "Without a command: an interactive shell in a real PTY on the host (raw terminal, window size\n" +
			"follows yours, Ctrl-C and Ctrl-D go to the remote shell as with ssh). With a command: runs it\n" +
			"without a PTY (stdin streamed, stdout and stderr kept apart) unless -t. The remote exit status\n" +
			"is jumpmesh's; jumpmesh's own failures (no grant, peer unreachable) exit 255, as ssh's do.\n" +
			"Signals: with a PTY, SIGINT, SIGTERM or SIGHUP sent to jumpmesh ends the session (the remote\n" +
			"shell is hung up) and jumpmesh exits 128+n (143 for SIGTERM); without one they are passed on\n" +
			"to the remote command. A command the host cannot run says so on stderr (127: not found).\n" +
			"Flags go before the command: everything from the first other word after PEER is the command.\n" +
			"PEER is a peer ID, a unique name or a unique search result.\n\n" +
			"A passive peer is woken first (its wake command, as jumpmesh wake sends it), and the session opens\n" +
			"once it is online. With --wake, an offline peer is woken the same way (Wake-on-LAN through a\n" +
			"neighbour on its network); jumpmesh prints a progress line on stderr and waits up to --wake-timeout.\n\n" +
			"With --via, no peer is involved: jumpmesh asks for a grant to IP:PORT (port 22 by default) through\n" +
			"the jumpoint, as forward --via does (the target must be in the jumpoint's allow list, and you in\n" +
			"its groups), opens the connection, and runs your OpenSSH client, ssh from PATH, through it:\n" +
			"  ssh -p LOCALPORT -o HostKeyAlias=IP [-l USER] [-t|-T] 127.0.0.1 [SSH-ARGS...]\n" +
			"SSH-ARGS are ssh's options and the remote command. HostKeyAlias files the host key under the\n" +
			"target's address ([IP]:PORT off port 22), as a direct ssh would, not under the local port. The\n" +
			"local port is on 127.0.0.1 and takes one connection, ssh's. ssh owns the terminal and its\n" +
			"signals; its exit status is jumpmesh's, and the connection ends when ssh does. Refusals (a target\n" +
			"outside the list, no grant, an unknown or unreachable jumpoint) are printed before ssh starts, exit\n" +
			"255. The jumpoint carries ssh's encrypted stream; the coordinator audits the grant, the jumpoint\n" +
			"the connection (jumpmesh audit --kind tunnel).",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "t", Destination: &f.tty, Usage: "force a PTY for a command"},
			&cli.BoolFlag{Name: "T", Destination: &f.noTTY, Usage: "never allocate a PTY"},
			&cli.BoolFlag{Name: "v", Destination: &f.verbose, Usage: "print the path taken (the address the peer was reached at; with --via, the jumpoint and the local port)"},
			&cli.BoolFlag{Name: "timing", Destination: &f.timing, Usage: "print on stderr how long each phase of the jump took, from the process's start to its exit (ms)"},
			&cli.BoolFlag{Name: "no-agent", Destination: &f.noAgent, Usage: "do not go through the console's agent (jumpmesh agent) even if one runs"},
			&cli.DurationFlag{Name: "wait-direct", Destination: &f.wait, Value: console.DefaultPunchWait,
				Usage: "when the peer is first reached through a relay, wait at most this long for hole punching to go direct (0: don't)"},
			&cli.StringFlag{Name: "via", Destination: &f.via, Usage: "ssh to a host without a peer through this jumpoint (name or peer ID)"},
		}, wakeFlags()...),
		Action: func(cc *cli.Context) error {
			if err := checkWakeTimeout(cc); err != nil {
				return err
			}
			if f.via != "" {
				return jumpVia(cc, jumpViaFlags{via: f.via, tty: f.tty, noTTY: f.noTTY, verbose: f.verbose})
			}
			if cc.NArg() == 0 {
				return usagef("jump needs a PEER")
			}
			if f.wait < 0 || f.wait > time.Minute {
				return usagef("--wait-direct is 0 to 1m")
			}
			var t *console.Timing
			if f.timing {
				origin := processStart()
				t = console.NewTiming(origin)
				t.Add("process start to jump (exec, Go runtime, init, flags)", origin, time.Now())
				defer t.Print(cc.App.ErrWriter)
			}
			return jumpAction(cc, f.tty, f.noTTY, f.verbose, f.wait, t, !f.noAgent && !cc.Bool("wake") && !cc.IsSet("wake-timeout"))
		},
	}
}

func jumpAction(cc *cli.Context, forceTTY, noTTY, verbose bool, punchWait time.Duration, t *console.Timing, agent bool) (err error) {
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
	cmd := console.ExecCommand{Argv: argv, TTY: (len(argv) == 0 && stdinTTY || forceTTY) && !noTTY, Term: os.Getenv("TERM")}
	if cmd.TTY {
		cmd.Window = windowSize()
	}
	if agent {
		if done, err := jumpThroughAgent(cc, ref, cmd, verbose, punchWait, t); done {
			return err
		}
	}
	return withJumpTimed(cc, ref, cmd.Need(), t, true, func(j *console.Jump) error {
		j.PunchWait = punchWait
		s, err := j.Exec(cc.Context, cmd)
		if err != nil {
			return err
		}
		defer s.Close()
		if verbose {
			fmt.Fprintf(cc.App.ErrWriter, "jumpmesh: %s\n", j.PathLine())
			// The terminal is raw while the session runs.
			s.Notes(func(line string) { fmt.Fprint(cc.App.ErrWriter, console.NoteLine(line, cmd.TTY)) })
		}
		end := t.Begin("exec (command run until its exit status)")
		status, err := runExec(cc.Context, s, cmd.TTY, cc.App.Writer, cc.App.ErrWriter)
		end()
		return statusError(status, err)
	})
}

// jumpThroughAgent runs the jump through the console's agent (jumpmesh
// agent), if one serves the home: done says it did, and err is the
// jump's. Without an agent (or with one that stopped because the home
// changed) jump goes on its own.
func jumpThroughAgent(cc *cli.Context, ref string, cmd console.ExecCommand, verbose bool, punchWait time.Duration, t *console.Timing) (done bool, err error) {
	home, err := homeDir(cc)
	if err != nil {
		return false, nil // jump's own path reports it
	}
	req := console.AgentRequest{Ref: ref, Argv: cmd.Argv, TTY: cmd.TTY, Term: cmd.Term, PunchWait: punchWait, Verbose: verbose}
	if cmd.Window != nil {
		req.Cols, req.Rows = cmd.Window.GetCols(), cmd.Window.GetRows()
	}
	s, err := console.AgentExec(cc.Context, home, req, t)
	if errors.Is(err, console.ErrNoAgent) {
		// No socket is the usual case (no agent runs); any other (a hung
		// agent, one of another version, one that stopped) -v tells.
		if verbose && !errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(cc.App.ErrWriter, "jumpmesh: %v; jumping without it\n", err)
		}
		return false, nil
	}
	if err != nil {
		return true, err
	}
	defer func() {
		defer t.Begin("agent session close")()
		s.Close()
	}()
	if verbose {
		fmt.Fprintf(cc.App.ErrWriter, "jumpmesh: %s, through the agent\n", s.PathLine)
	}
	status, err := runExec(cc.Context, s, cmd.TTY, cc.App.Writer, cc.App.ErrWriter)
	return true, statusError(status, err)
}

// statusError is the remote status as jump's error: nil for 0, else its
// exit code (or err, the session's own failure).
func statusError(status *pb.ExitStatus, err error) error {
	if err != nil {
		return err
	}
	if code := exitCodeOf(status); code != 0 {
		return exitCodeError{code}
	}
	return nil
}

// execRunner is an open shell or command: console.ExecSession on this
// console's own host, console.AgentSession through the agent.
type execRunner interface {
	Run(ctx context.Context, eio console.ExecIO) (*pb.ExitStatus, error)
}

// windowSize is the terminal's size, or nil.
func windowSize() *pb.WindowSize {
	w, h, err := term.GetSize(int(os.Stdout.Fd()))
	if err != nil {
		return nil
	}
	return &pb.WindowSize{Cols: uint32(w), Rows: uint32(h)}
}

// runExec wires the terminal to the session. Without a PTY a local
// SIGINT, SIGTERM or SIGHUP is passed on to the remote command, which
// decides (as with ssh's non-interactive commands). With a PTY only what a
// terminal sends goes over (keys in raw mode, Ctrl-C among them as a byte,
// and window sizes): a signal to jumpmesh itself ends the session, as it
// ends ssh, and jumpmesh exits 128+n (the peer hangs up the remote shell).
// Passing SIGTERM on would leave `timeout 20 jumpmesh jump H -t -- sh -i`
// running forever: an interactive shell ignores SIGTERM.
func runExec(ctx context.Context, s execRunner, tty bool, stdout, stderr io.Writer) (*pb.ExitStatus, error) {
	eio := console.ExecIO{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr}
	if !tty {
		signals := make(chan string, 4)
		eio.Signals = signals
		intr := make(chan os.Signal, 1)
		signal.Notify(intr, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
		defer signal.Stop(intr)
		go func() {
			for s := range intr {
				select {
				case signals <- signalNames[s]:
				default:
				}
			}
		}()
		return s.Run(context.WithoutCancel(ctx), eio)
	}
	if term.IsTerminal(int(os.Stdin.Fd())) {
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
				if ws := windowSize(); ws != nil {
					select {
					case resize <- ws:
					default:
					}
				}
			}
		}()
	}
	return execUntilSignal(ctx, s, eio)
}

// signalNames are the signals a console passes on without a PTY.
var signalNames = map[os.Signal]string{os.Interrupt: "INT", syscall.SIGTERM: "TERM", syscall.SIGHUP: "HUP"}

// execUntilSignal runs a PTY session until it ends or jumpmesh gets
// SIGINT, SIGTERM or SIGHUP; then the session is closed and the error is
// the exit code 128+n.
func execUntilSignal(ctx context.Context, s execRunner, eio console.ExecIO) (*pb.ExitStatus, error) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	got := make(chan os.Signal, 1)
	go func() {
		select {
		case s := <-sigs:
			got <- s
			cancel()
		case <-sctx.Done():
		}
	}()
	st, err := s.Run(sctx, eio)
	select {
	case s := <-got:
		return nil, exitCodeError{128 + signalNumbers[signalNames[s]]}
	default:
	}
	return st, err
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
