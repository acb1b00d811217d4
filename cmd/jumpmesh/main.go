// Command jumpmesh is the one binary of jumpmesh: coordinator, peer, relay,
// jumpoint, lab and the technician's console. Each subcommand group lives in
// its own file; this one wires them together and turns errors into exit
// codes and messages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/urfave/cli/v2"

	_ "time/tzdata" // jump policies name IANA zones; do not depend on the host's tzdata
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	// The lab's processes only (sim/): set once here, before any host.
	if os.Getenv(mesh.LabPublicRangesEnv) == "1" {
		if err := mesh.EnableLabPublicRanges(); err != nil {
			fmt.Fprintln(os.Stderr, "jumpmesh:", err)
			os.Exit(exitError)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the CLI and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, reorderArgs(app, args))
	if err == nil {
		return exitOK
	}
	var usage usageError
	// urfave/cli reports a missing required flag as a plain error.
	if errors.As(err, &usage) || strings.HasPrefix(err.Error(), "Required flag") {
		fmt.Fprintf(stderr, "jumpmesh: %v\n", err)
		return exitUsage
	}
	var exit exitCodeError
	if errors.As(err, &exit) {
		return exit.code
	}
	var silent silentError
	if errors.As(err, &silent) {
		return exitError
	}
	if jsonRequested(args) {
		printJSONError(stdout, err)
	} else {
		fmt.Fprintf(stderr, "jumpmesh: %v\n", err)
	}
	var jumpErr jumpFailure
	if errors.As(err, &jumpErr) {
		return exitJumpFailed
	}
	return exitError
}

// -v is --version before a command (urfave/cli's flag) and verbose after
// jump and forward (their own flag, as in ssh): both kept, and said here.
func init() {
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Aliases: []string{"v"}, DisableDefaultText: true,
		Usage: "print the version (-v after jump or forward means verbose: jumpmesh jump -v web-01)"}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:    "jumpmesh",
		Usage:   "unattended remote access to machines on any network",
		Version: Version,
		Description: "jumpmesh reaches enrolled hosts (peers) behind NATs and firewalls through a peer-relay mesh;\n" +
			"a coordinator per site authorises, and traffic goes straight between console and peer.\n\n" +
			"Examples:\n" +
			"  jumpmesh coordinator init --data /var/lib/jumpmesh\n" +
			"  jumpmesh login /ip4/203.0.113.7/tcp/4830/p2p/12D3KooW... abcd-efgh-...\n" +
			"  jumpmesh installer create --group jumpgroup:servers --valid-for 7d",
		Writer:                 stdout,
		ErrWriter:              stderr,
		HideHelpCommand:        true,
		UseShortOptionHandling: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "home", EnvVars: []string{"JUMPMESH_HOME"}, Usage: "console home: technician key and site address (default: <user config dir>/jumpmesh)"},
		},
		Commands: []*cli.Command{
			coordinatorCommand(),
			loginCommand(),
			whoamiCommand(),
			userCommand(),
			groupCommand(),
			jumpPolicyCommand(),
			sessionPolicyCommand(),
			settingsCommand(),
			installerCommand(),
			peerCommand(),
			relayCommand(),
			jumpointCommand(),
			simCommand(),
			lsCommand(),
			showCommand(),
			setCommand(),
			rmCommand(),
			jumpCommand(),
			agentCommand(),
			forwardCommand(),
			cpCommand(),
			wakeCommand(),
			auditCommand(),
			pingCommand(),
			statsCommand(),
			errorsCommand(),
			docsCommand(),
		},
		OnUsageError:   onUsageError,
		ExitErrHandler: func(*cli.Context, error) {},
	}
	setUsageErrorHandler(app.Commands)
	app.Action = unknownCommand
	return app
}

// unknownCommand is the action of the app and of every command group: with
// no argument it shows the help, with one it is a usage error (exit 2).
func unknownCommand(cc *cli.Context) error {
	if cc.Args().Present() {
		// run prefixes "jumpmesh: "; a group names itself in the command.
		name, typed := "jumpmesh", cc.Args().First()
		if cc.Command != nil && cc.Command.Name != "" && cc.Command.Name != cc.App.Name {
			name += " " + cc.Command.FullName()
			typed = cc.Command.FullName() + " " + typed
		}
		return usagef("unknown command %q (see %s --help)", typed, name)
	}
	return cli.ShowAppHelp(cc)
}

// requireFlags is urfave/cli's Required without its printing of the whole
// help to stdout: a missing flag is a one-line usage error.
func requireFlags(cc *cli.Context, names ...string) error {
	for _, n := range names {
		if !cc.IsSet(n) || cc.String(n) == "" {
			return usagef("%s needs --%s", cc.Command.FullName(), n)
		}
	}
	return nil
}

func onUsageError(_ *cli.Context, err error, _ bool) error { return usageError{err} }

// setUsageErrorHandler makes every command report flag errors as usage
// errors (exit code 2) instead of printing its help to stdout.
func setUsageErrorHandler(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
		if len(c.Subcommands) > 0 && c.Action == nil {
			c.Action = func(cc *cli.Context) error {
				if cc.Args().Present() {
					return unknownCommand(cc)
				}
				return cli.ShowSubcommandHelp(cc)
			}
		}
		setUsageErrorHandler(c.Subcommands)
	}
}

// usageError marks errors in how the command was typed (exit code 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// needArgs checks the number of positional arguments.
func needArgs(cc *cli.Context, n int) error {
	if cc.NArg() != n {
		return usagef("%s takes %d argument(s): %s (got %d)", cc.Command.FullName(), n, cc.Command.ArgsUsage, cc.NArg())
	}
	return nil
}
