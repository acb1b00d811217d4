package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/words"
)

func userCommand() *cli.Command {
	return &cli.Command{
		Name:        "user",
		Usage:       "manage technicians and administrators (admins; anyone may show themselves)",
		Description: "Users log in with one-time invite codes; each console key is bound to one user.",
		Subcommands: []*cli.Command{userInviteCommand(), userListCommand(), userShowCommand(), userRemoveCommand(), userRoleCommand()},
	}
}

type userView struct {
	Name     string   `json:"name"`
	Role     string   `json:"role"`
	Keys     []string `json:"console_keys"`
	Created  string   `json:"created,omitempty"`
	By       string   `json:"created_by,omitempty"`
	LastSeen string   `json:"last_seen,omitempty"`
}

func newUserView(u *pb.User) userView {
	v := userView{Name: u.GetName(), Role: words.RoleName(u.GetRole()), Keys: []string{}, Created: jsonTime(u.GetCreatedUnix()),
		By: u.GetCreatedBy(), LastSeen: jsonTime(u.GetLastSeenUnix())}
	for _, id := range u.GetPeerIds() {
		v.Keys = append(v.Keys, peer.ID(id).String())
	}
	return v
}

func userInviteCommand() *cli.Command {
	var f struct{ role, validFor string }
	return &cli.Command{
		Name:      "invite",
		Usage:     "create a user (or add a device for one) and print a one-time login code",
		ArgsUsage: "NAME",
		UsageText: "jumpmesh user invite NAME [--role admin|technician] [--valid-for 24h]\n\n" +
			"Examples:\n" +
			"  jumpmesh user invite alice\n" +
			"  jumpmesh user invite bob --role admin --valid-for 2h",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "role", Destination: &f.role, Usage: "admin or technician (default technician for a new user)"},
			&cli.StringFlag{Name: "valid-for", Destination: &f.validFor, Value: "24h", Usage: "how long the code is valid (1m to 30d)"},
			jsonFlag,
		},
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			var role pb.Role
			if f.role != "" {
				r, err := words.ParseRole(f.role)
				if err != nil {
					return err
				}
				role = r
			}
			valid, err := parseDuration(f.validFor)
			if err != nil {
				return err
			}
			inv, err := c.InviteUser(ctx, cc.Args().First(), role, valid)
			if err != nil {
				return err
			}
			v := struct {
				User    userView `json:"user"`
				Code    string   `json:"code"`
				Expires string   `json:"expires"`
				Login   string   `json:"login_command"`
			}{newUserView(inv.GetUser()), inv.GetCode(), jsonTime(inv.GetExpiresUnix()), loginLine(c, inv.GetCode())}
			return output(cc, v, func(w io.Writer) {
				fmt.Fprintf(w, "Invite for %s (%s), valid until %s:\n  %s\n\nOn the technician's machine:\n  %s\n",
					v.User.Name, v.User.Role, unixTime(inv.GetExpiresUnix()), v.Code, v.Login)
			})
		}),
	}
}

// loginLine is the command the invited technician runs.
func loginLine(c *console.Client, code string) string {
	return "jumpmesh login " + c.CoordinatorAddr() + " " + code
}

func userListCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list users",
		UsageText: "jumpmesh user list [--json]\n\nExample:\n  jumpmesh user list",
		Flags:     []cli.Flag{jsonFlag},
		Action: clientAction(0, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			users, err := c.Users(ctx)
			if err != nil {
				return err
			}
			views := make([]userView, 0, len(users))
			for _, u := range users {
				views = append(views, newUserView(u))
			}
			return output(cc, views, func(w io.Writer) {
				rows := [][]string{{"NAME", "ROLE", "KEYS", "LAST SEEN"}}
				for _, u := range users {
					rows = append(rows, []string{u.GetName(), words.RoleName(u.GetRole()), fmt.Sprint(len(u.GetPeerIds())), unixTime(u.GetLastSeenUnix())})
				}
				table(w, rows)
			})
		}),
	}
}

func userShowCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "show a user, its console keys and what it sees through jump groups",
		ArgsUsage: "NAME",
		UsageText: "jumpmesh user show NAME [--json]\n\nExample:\n  jumpmesh user show alice",
		Flags:     []cli.Flag{jsonFlag},
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			d, err := c.User(ctx, cc.Args().First())
			if err != nil {
				return err
			}
			return printUserDetail(cc, d)
		}),
	}
}

func printUserDetail(cc *cli.Context, d *pb.UserDetail) error {
	v := struct {
		userView
		Groups  []string `json:"groups"`
		Visible []string `json:"visible_personal_lists"`
	}{newUserView(d.GetUser()), nonNil(d.GetGroups()), nonNil(d.GetVisiblePersonalLists())}
	return output(cc, v, func(w io.Writer) {
		fields(w, "name", v.Name, "role", v.Role,
			"console keys", orDash(strings.Join(v.Keys, ", ")),
			"jump groups", orDash(strings.Join(prefixed(words.SharedGroupPrefix, v.Groups), ", ")),
			"sees personal lists", strings.Join(prefixed(words.PersonalGroupPrefix, v.Visible), ", "),
			"created", unixTime(d.GetUser().GetCreatedUnix())+" by "+orDash(v.By),
			"last seen", unixTime(d.GetUser().GetLastSeenUnix()))
	})
}

func prefixed(prefix string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = prefix + s
	}
	return out
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

func userRemoveCommand() *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "remove a user: its keys are refused from its next request on",
		ArgsUsage: "NAME",
		UsageText: "jumpmesh user remove NAME [--json]\n\nExample:\n  jumpmesh user remove alice",
		Flags:     []cli.Flag{jsonFlag},
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			name := cc.Args().First()
			if err := c.RemoveUser(ctx, name); err != nil {
				return err
			}
			return output(cc, map[string]string{"removed": name}, func(w io.Writer) { fmt.Fprintf(w, "Removed user %s.\n", name) })
		}),
	}
}

func userRoleCommand() *cli.Command {
	return &cli.Command{
		Name:      "role",
		Usage:     "change a user's role",
		ArgsUsage: "NAME admin|technician",
		UsageText: "jumpmesh user role NAME admin|technician [--json]\n\nExample:\n  jumpmesh user role alice admin",
		Flags:     []cli.Flag{jsonFlag},
		Action: clientAction(2, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			role, err := words.ParseRole(cc.Args().Get(1))
			if err != nil {
				return err
			}
			d, err := c.SetRole(ctx, cc.Args().First(), role)
			if err != nil {
				return err
			}
			return printUserDetail(cc, d)
		}),
	}
}
