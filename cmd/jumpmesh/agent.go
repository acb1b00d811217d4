package main

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
)

func agentCommand() *cli.Command {
	var idle time.Duration
	return &cli.Command{
		Name:  "agent",
		Usage: "keep the console open for jump (its host and its connections to the coordinator and peers), as ssh's ControlMaster",
		UsageText: "jumpmesh agent [--idle DURATION]\n\n" +
			"Examples:\n" +
			"  jumpmesh agent &\n" +
			"  jumpmesh agent --idle 2h\n" +
			"  jumpmesh agent --idle 0   # until stopped",
		Description: "The agent listens on agent.sock in the console home (the home is 0700, the socket 0600, and the\n" +
			"agent answers only processes of its own user: SO_PEERCRED). While it runs, jump (a command or a\n" +
			"shell, without --wake or --wake-timeout) goes through it: the agent asks the coordinator for the\n" +
			"jump's grant, as jump would, reaches the peer on the connection it keeps, and carries the\n" +
			"session's input and output; jump then costs two round trips, not a libp2p host, two handshakes\n" +
			"and two dials. Grants are asked for per jump and audited as always: a removed technician's\n" +
			"agent is refused as its console would be. Before every jump the agent checks that the home still\n" +
			"holds the key and the site it started with, and stops if not (jump then goes without it). It\n" +
			"stops after --idle without a jump, and on SIGINT or SIGTERM. jump --no-agent bypasses it.\n" +
			"jump waits at most 2s for the agent's first answer (sent before any grant) and goes without it\n" +
			"if none comes (a hung agent) or the agent is of another jumpmesh version; jump -v says so.",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "idle", Destination: &idle, Value: console.DefaultAgentIdle,
				Usage: "stop after this long without a jump (0: never)"},
		},
		Action: func(cc *cli.Context) error {
			if cc.NArg() != 0 {
				return usagef("agent takes no arguments")
			}
			if idle < 0 {
				return usagef("--idle is 0 (never) or more")
			}
			home, err := homeDir(cc)
			if err != nil {
				return err
			}
			if idle == 0 {
				idle = -1 // AgentConfig: negative is never
			}
			log := slog.New(slog.NewTextHandler(cc.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelInfo}))
			a, err := console.StartAgent(console.AgentConfig{Home: home, Idle: idle, Log: log})
			if err != nil {
				return err
			}
			fmt.Fprintf(cc.App.ErrWriter, "jumpmesh: agent on %s\n", a.Path())
			err = a.Run(cc.Context)
			if errors.Is(err, console.ErrAgentIdentityChanged) {
				fmt.Fprintf(cc.App.ErrWriter, "jumpmesh: agent: %v\n", err)
				return silentError{err}
			}
			return err
		},
	}
}
