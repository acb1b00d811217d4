package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/words"
)

func groupCommand() *cli.Command {
	return &cli.Command{
		Name:  "group",
		Usage: "manage shared jump groups (admins change them; members list and show theirs)",
		Description: "A jump group decides which technicians see which peers. Shared groups are addressed as\n" +
			"jumpgroup:CODE and are made here; every CODE argument may be written with or without the\n" +
			"jumpgroup: prefix. Every user also has a personal list, user:NAME, which exists implicitly\n" +
			"and needs no command.\n\n" +
			"Members of a shared group have a role: member sees the group's peers; team-lead also sees\n" +
			"the personal lists of the group's members; team-manager also sees those of its members\n" +
			"and team leads.",
		Subcommands: []*cli.Command{
			groupCreateCommand(), groupListCommand(), groupShowCommand(),
			groupAddCommand(), groupRemoveCommand(), groupDeleteCommand(),
		},
	}
}

// groupView is the --json shape of a jump group.
type groupView struct {
	Code    string            `json:"code"`
	Ref     string            `json:"ref"`
	Name    string            `json:"name"`
	Members []groupMemberView `json:"members"`
	Created string            `json:"created,omitempty"`
	By      string            `json:"created_by,omitempty"`
}

type groupMemberView struct {
	User string `json:"user"`
	Role string `json:"role"`
}

func newGroupView(g *pb.Group) groupView {
	v := groupView{Code: g.GetCode(), Ref: words.SharedGroupPrefix + g.GetCode(), Name: g.GetDisplayName(),
		Members: []groupMemberView{}, Created: jsonTime(g.GetCreatedUnix()), By: g.GetCreatedBy()}
	for _, m := range g.GetMembers() {
		v.Members = append(v.Members, groupMemberView{User: m.GetUser(), Role: words.MemberRoleName(m.GetRole())})
	}
	return v
}

// groupCode reads a CODE argument. People copy group references from
// installer and peer listings, so the jumpgroup: prefix is accepted; a
// personal list is refused here because it cannot be created or edited.
func groupCode(arg string) (string, error) {
	if strings.HasPrefix(arg, words.PersonalGroupPrefix) {
		return "", usagef("%q is a personal list: personal lists exist implicitly for every user and are not managed with `jumpmesh group`", arg)
	}
	code := strings.TrimPrefix(arg, words.SharedGroupPrefix)
	if code == "" {
		return "", usagef("jump group %q has no code name", arg)
	}
	return code, nil
}

func groupCreateCommand() *cli.Command {
	var f struct{ name string }
	return &cli.Command{
		Name:      "create",
		Usage:     "create a shared jump group, optionally with members",
		ArgsUsage: "CODE",
		UsageText: "jumpmesh group create CODE [--name \"Display Name\"] [--member USER ...] [--team-lead USER ...] [--team-manager USER ...]\n\n" +
			"Examples:\n" +
			"  jumpmesh group create servers --name \"Production servers\"\n" +
			"  jumpmesh group create jumpgroup:helpdesk --member alice --member bob --team-lead carol",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Destination: &f.name, Usage: "display name (at most 128 characters)"},
			&cli.StringSliceFlag{Name: "member", Usage: "add USER as a member (repeatable, or comma-separated)"},
			&cli.StringSliceFlag{Name: "team-lead", Usage: "add USER as a team lead (repeatable, or comma-separated)"},
			&cli.StringSliceFlag{Name: "team-manager", Usage: "add USER as a team manager (repeatable, or comma-separated)"},
			jsonFlag,
		},
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			code, err := groupCode(cc.Args().First())
			if err != nil {
				return err
			}
			members, err := createMembers(cc)
			if err != nil {
				return err
			}
			g, err := c.CreateGroup(ctx, code, f.name, members)
			if err != nil {
				return err
			}
			return printGroup(cc, g)
		}),
	}
}

// createMembers gathers the role flags of `group create`. A user named under
// two roles is refused rather than resolved by flag order, which the user
// could not see.
func createMembers(cc *cli.Context) ([]*pb.GroupMember, error) {
	roleOf := map[string]string{}
	var members []*pb.GroupMember
	for _, flag := range []string{"member", "team-lead", "team-manager"} {
		role, err := words.ParseMemberRole(flag)
		if err != nil {
			return nil, err
		}
		for _, user := range cc.StringSlice(flag) {
			user = strings.TrimSpace(user)
			if user == "" {
				continue
			}
			if prev, ok := roleOf[user]; ok {
				if prev == flag {
					continue
				}
				return nil, usagef("user %s is given both as --%s and as --%s; give each user one role", user, prev, flag)
			}
			roleOf[user] = flag
			members = append(members, &pb.GroupMember{User: user, Role: role})
		}
	}
	return members, nil
}

func groupListCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list shared jump groups (technicians see the groups they belong to)",
		UsageText: "jumpmesh group list [--json]\n\nExample:\n  jumpmesh group list",
		Flags:     []cli.Flag{jsonFlag},
		Action: clientAction(0, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			groups, err := c.Groups(ctx)
			if err != nil {
				return err
			}
			views := make([]groupView, 0, len(groups))
			for _, g := range groups {
				views = append(views, newGroupView(g))
			}
			return output(cc, views, func(w io.Writer) {
				rows := [][]string{{"GROUP", "NAME", "MEMBERS", "CREATED"}}
				for _, g := range groups {
					rows = append(rows, []string{words.SharedGroupPrefix + g.GetCode(), orDash(g.GetDisplayName()),
						fmt.Sprint(len(g.GetMembers())), unixTime(g.GetCreatedUnix())})
				}
				table(w, rows)
			})
		}),
	}
}

func groupShowCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "show a shared jump group and its members with their roles",
		ArgsUsage: "CODE",
		UsageText: "jumpmesh group show CODE [--json]\n\nExample:\n  jumpmesh group show servers",
		Flags:     []cli.Flag{jsonFlag},
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			code, err := groupCode(cc.Args().First())
			if err != nil {
				return err
			}
			g, err := c.Group(ctx, code)
			if err != nil {
				return err
			}
			return printGroup(cc, g)
		}),
	}
}

// printGroup is the output of every command that returns one group, so that
// create, add and remove show the result of the change.
func printGroup(cc *cli.Context, g *pb.Group) error {
	v := newGroupView(g)
	return output(cc, v, func(w io.Writer) {
		fields(w, "group", v.Ref, "name", orDash(v.Name),
			"created", unixTime(g.GetCreatedUnix())+" by "+orDash(v.By))
		if len(v.Members) == 0 {
			fmt.Fprintln(w, "\nNo members.")
			return
		}
		fmt.Fprintln(w)
		rows := [][]string{{"MEMBER", "ROLE"}}
		for _, m := range v.Members {
			rows = append(rows, []string{m.User, m.Role})
		}
		table(w, rows)
	})
}

func groupAddCommand() *cli.Command {
	var f struct{ role string }
	return &cli.Command{
		Name:      "add",
		Usage:     "add a user to a shared jump group, or change a member's role",
		ArgsUsage: "CODE USER",
		UsageText: "jumpmesh group add CODE USER [--role member|team-lead|team-manager]\n\n" +
			"Examples:\n" +
			"  jumpmesh group add servers alice\n" +
			"  jumpmesh group add servers alice --role team-lead",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "role", Destination: &f.role, Value: "member", Usage: "member, team-lead or team-manager"},
			jsonFlag,
		},
		Action: clientAction(2, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			code, err := groupCode(cc.Args().First())
			if err != nil {
				return err
			}
			role, err := words.ParseMemberRole(f.role)
			if err != nil {
				return err
			}
			g, err := c.AddMember(ctx, code, cc.Args().Get(1), role)
			if err != nil {
				return err
			}
			return printGroup(cc, g)
		}),
	}
}

func groupRemoveCommand() *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "remove a user from a shared jump group",
		ArgsUsage: "CODE USER",
		UsageText: "jumpmesh group remove CODE USER [--json]\n\nExample:\n  jumpmesh group remove servers alice",
		Flags:     []cli.Flag{jsonFlag},
		Action: clientAction(2, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			code, err := groupCode(cc.Args().First())
			if err != nil {
				return err
			}
			g, err := c.RemoveMember(ctx, code, cc.Args().Get(1))
			if err != nil {
				return err
			}
			return printGroup(cc, g)
		}),
	}
}

func groupDeleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "delete a shared jump group (refused while a live installer key names it)",
		ArgsUsage: "CODE",
		UsageText: "jumpmesh group delete CODE [--json]\n\nExample:\n  jumpmesh group delete jumpgroup:servers",
		Flags:     []cli.Flag{jsonFlag},
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			code, err := groupCode(cc.Args().First())
			if err != nil {
				return err
			}
			if err := c.DeleteGroup(ctx, code); err != nil {
				return err
			}
			ref := words.SharedGroupPrefix + code
			return output(cc, map[string]string{"deleted": ref}, func(w io.Writer) { fmt.Fprintf(w, "Deleted jump group %s.\n", ref) })
		}),
	}
}
