package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// The daemon members (relays, jumpoints) are invited and run alike: an
// administrator's invite prints the command that enrolls the daemon on its
// first run, and `run` takes the same enrolment, listening, endpoint and
// logging flags around each daemon's own limits.

// daemonInvite is what differs between the invites of the daemon members
// (relays, jumpoints).
type daemonInvite struct {
	party, example, dataHint string
	role                     pb.Role
	// then, if set, is printed after the enrolment command, given the name.
	then func(name string) string
}

// daemonInviteCommand is `jumpmesh PARTY invite NAME`: it creates the
// daemon's user and prints its one-time code and the command that
// enrolls it.
func daemonInviteCommand(d daemonInvite) *cli.Command {
	var f struct{ validFor string }
	title := strings.ToUpper(d.party[:1]) + d.party[1:]
	return &cli.Command{
		Name:      "invite",
		Usage:     fmt.Sprintf("create a %s user and print the one-time code and the command that enrolls the %s", d.party, d.party),
		ArgsUsage: "NAME",
		UsageText: fmt.Sprintf("jumpmesh %s invite NAME [--valid-for 24h] [--json]\n\n", d.party) +
			"Example:\n" +
			fmt.Sprintf("  jumpmesh %s invite %s --valid-for 2h", d.party, d.example),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "valid-for", Destination: &f.validFor, Value: "24h", Usage: "how long the code is valid (1m to 30d)"},
			jsonFlag,
		},
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			valid, err := parseDuration(f.validFor)
			if err != nil {
				return err
			}
			inv, err := c.InviteUser(ctx, cc.Args().First(), d.role, valid)
			if err != nil {
				return err
			}
			name := inv.GetUser().GetName()
			run := fmt.Sprintf("jumpmesh %s run --data %s --coordinator %s --invite %s", d.party, d.dataHint, c.CoordinatorAddr(), inv.GetCode())
			v := map[string]any{d.party: name, "code": inv.GetCode(), "expires": jsonTime(inv.GetExpiresUnix()), "run_command": run}
			return output(cc, v, func(w io.Writer) {
				fmt.Fprintf(w, "%s invite for %s, valid until %s:\n  %s\n\nOn the %s's host (the first run enrolls; later runs need only --data):\n  %s\n",
					title, name, unixTime(inv.GetExpiresUnix()), inv.GetCode(), d.party, run)
				if d.then != nil {
					fmt.Fprintf(w, "\n%s\n", d.then(name))
				}
			})
		}),
	}
}

// daemonRunFlags are the flags every daemon member's run takes.
type daemonRunFlags struct {
	data, coordinator, invite, httpAddr, logLevel, logFormat, refresh string
	listen, announce                                                  cli.StringSlice
}

// daemonRunUsage is what the common flags say that differs by daemon.
type daemonRunUsage struct {
	party, httpAddr, listen, announce string
	refresh                           string // what the refresh fetches: "ACL", "member list"
}

// flags are the common flags around the daemon's own (own), in the order
// the reference lists them: enrolment, listening, endpoint and refresh,
// the daemon's own, then logging.
func (f *daemonRunFlags) flags(u daemonRunUsage, own ...cli.Flag) []cli.Flag {
	out := []cli.Flag{
		&cli.StringFlag{Name: "data", Destination: &f.data, Usage: u.party + " data directory: key and enrollment (required; created 0700 on the first run)"},
		&cli.StringFlag{Name: "coordinator", Destination: &f.coordinator, Usage: "coordinator address ending in /p2p/<site> (first run only)"},
		&cli.StringFlag{Name: "invite", Destination: &f.invite, Usage: fmt.Sprintf("one-time code printed by \"jumpmesh %s invite\" (first run only)", u.party)},
		&cli.StringSliceFlag{Name: "listen", Destination: &f.listen, Usage: u.listen},
		&cli.StringSliceFlag{Name: "announce", Destination: &f.announce, Usage: u.announce},
		&cli.StringFlag{Name: "http-addr", Destination: &f.httpAddr, Value: u.httpAddr, Usage: "local address for /metrics and /healthz, or \"off\""},
		&cli.StringFlag{Name: "refresh", Destination: &f.refresh, Usage: fmt.Sprintf("how often to fetch the %s (default: as the coordinator says, 30s)", u.refresh)},
	}
	out = append(out, own...)
	return append(out,
		&cli.StringFlag{Name: "log-level", Destination: &f.logLevel, Value: "info", Usage: "debug, info, warn or error"},
		&cli.StringFlag{Name: "log-format", Destination: &f.logFormat, Value: "text", Usage: "text or json"},
	)
}

// start checks the common flags and returns the refresh period (0: as the
// coordinator says) and the daemon's logger.
func (f *daemonRunFlags) start(cc *cli.Context) (time.Duration, *slog.Logger, error) {
	if err := needArgs(cc, 0); err != nil {
		return 0, nil, err
	}
	if err := requireFlags(cc, "data"); err != nil {
		return 0, nil, err
	}
	if f.invite != "" && f.coordinator == "" {
		return 0, nil, usagef("%s: --invite needs --coordinator", cc.Command.FullName())
	}
	var refresh time.Duration
	if f.refresh != "" {
		d, err := parseDuration(f.refresh)
		if err != nil {
			return 0, nil, err
		}
		refresh = d
	}
	log, err := newLogger(cc.App.ErrWriter, f.logLevel, f.logFormat)
	return refresh, log, err
}
