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
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/words"
)

const defaultInstallDir = "/opt/jumpmesh"

func installerCommand() *cli.Command {
	return &cli.Command{
		Name:  "installer",
		Usage: "create and manage installer keys that enroll hosts as peers",
		Description: "An installer key is a signed, self-describing string: a host verifies it offline, then enrolls\n" +
			"with the defaults it carries (jump group, tag, comments, name, policies, offline limits,\n" +
			"connection type, jumpoints). Deleting an installer revokes its key.",
		Subcommands: []*cli.Command{installerCreateCommand(), installerListCommand(), installerShowCommand(),
			installerExtendCommand(), installerDeleteCommand(), installerCommandCommand(), installerVerifyCommand()},
	}
}

type installerView struct {
	ID                      string              `json:"id"`
	Status                  string              `json:"status"`
	Group                   string              `json:"jump_group"`
	Tag                     string              `json:"tag,omitempty"`
	Comments                string              `json:"comments,omitempty"`
	Name                    string              `json:"name,omitempty"`
	JumpPolicy              string              `json:"jump_policy,omitempty"`
	SessionPolicyPresent    string              `json:"session_policy_present,omitempty"`
	SessionPolicyNotPresent string              `json:"session_policy_not_present,omitempty"`
	MaxOfflineMinutes       uint32              `json:"max_offline_minutes,omitempty"`
	Ephemeral               bool                `json:"ephemeral"`
	Connection              string              `json:"connection"`
	Jumpoints               []installerJumpoint `json:"jumpoints,omitempty"`
	Overridable             []string            `json:"overridable"`
	Site                    string              `json:"site"`
	ValidFrom               string              `json:"valid_from"`
	ValidUntil              string              `json:"valid_until"`
	CreatedBy               string              `json:"created_by,omitempty"`
	Deleted                 string              `json:"deleted,omitempty"`
	DeletedBy               string              `json:"deleted_by,omitempty"`
	Key                     string              `json:"key"`
}

func newInstallerView(in *pb.Installer, now time.Time) installerView {
	b, d := in.GetBody(), in.GetBody().GetDefaults()
	v := installerView{
		ID: in.GetId(), Status: installerStatus(in, now), Group: d.GetGroup(), Tag: d.GetTag(), Comments: d.GetComments(),
		Name: d.GetName(), JumpPolicy: d.GetJumpPolicy(), SessionPolicyPresent: d.GetSessionPolicyPresent(),
		SessionPolicyNotPresent: d.GetSessionPolicyNotPresent(), MaxOfflineMinutes: d.GetMaxOfflineMinutes(),
		Ephemeral: d.GetEphemeral(), Connection: words.ConnectionTypeName(d.GetConnectionType()),
		Overridable: nonNil(installerkey.Field(b.GetOverridable()).Names()), Site: peer.ID(b.GetSiteId()).String(),
		ValidFrom: jsonTime(b.GetNotBeforeUnix()), ValidUntil: jsonTime(b.GetNotAfterUnix()),
		CreatedBy: in.GetCreatedBy(), Deleted: jsonTime(in.GetRevokedUnix()), DeletedBy: in.GetRevokedBy(), Key: in.GetKey(),
	}
	if len(b.GetJumpoint()) > 0 { // a key made before jumpoints had names
		v.Jumpoints = append(v.Jumpoints, installerJumpoint{ID: peer.ID(b.GetJumpoint()).String(), Addrs: []string{}})
	}
	for _, j := range b.GetJumpoints() {
		ij := installerJumpoint{Name: j.GetName(), ID: peer.ID(j.GetId()).String(), Addrs: []string{}}
		for _, a := range mesh.DecodeAddrs(j.GetAddrs()) {
			ij.Addrs = append(ij.Addrs, a.String())
		}
		v.Jumpoints = append(v.Jumpoints, ij)
	}
	return v
}

// installerJumpoint is a jumpoint a key names, as the key has it.
type installerJumpoint struct {
	Name  string   `json:"name,omitempty"`
	ID    string   `json:"peer_id"`
	Addrs []string `json:"addrs"`
}

// jumpointsText is "plant-a (12D3…), plant-b (12D3…)", or "-".
func jumpointsText(js []installerJumpoint) string {
	parts := make([]string, 0, len(js))
	for _, j := range js {
		parts = append(parts, strings.TrimSpace(j.Name+" ("+j.ID+")"))
	}
	return orDash(strings.Join(parts, ", "))
}

func installerStatus(in *pb.Installer, now time.Time) string {
	switch {
	case in.GetRevokedUnix() != 0:
		return "deleted"
	case !now.Before(time.Unix(in.GetBody().GetNotAfterUnix(), 0)):
		return "expired"
	}
	return "valid"
}

func installerCreateCommand() *cli.Command {
	var f struct {
		group, tag, comments, name, jumpPolicy, spPresent, spNotPresent string
		connection, validFor, installDir                                string
		maxOffline                                                      uint
		ephemeral                                                       bool
		override, jumpoints                                             cli.StringSlice
	}
	return &cli.Command{
		Name:  "create",
		Usage: "create an installer key with the defaults of the peers it will enroll",
		UsageText: "jumpmesh installer create [--group user:NAME|jumpgroup:CODE] [--tag T] [--comments C] [--name N]\n" +
			"    [--jump-policy P] [--session-policy-present P] [--session-policy-not-present P]\n" +
			"    [--max-offline-minutes M | --ephemeral] [--connection active|passive] [--jumpoint NAME ...]\n" +
			"    [--valid-for 7d] [--allow-override FIELD,...|all] [--install-dir DIR] [--json]\n\n" +
			"Examples:\n" +
			"  jumpmesh installer create --group jumpgroup:servers --tag linux --valid-for 30d\n" +
			"  jumpmesh installer create --ephemeral --allow-override name,comments --valid-for 1h\n" +
			"  jumpmesh installer create --group jumpgroup:plant --jumpoint plant-a --jumpoint plant-b",
		Description: "Prints the key and two command lines that install it: as root, with --user PEER-USER, a\n" +
			"placeholder to change to the account the peer will run as; and as that account itself, without\n" +
			"root, into $HOME/jumpmesh (--install-dir names the root line's directory). Fields named in\n" +
			"--allow-override may be changed at install with the matching --jc-<field> flag; fields: all, " + strings.Join(installerkey.FieldNames(), ", ") + ".\n" +
			"With --jumpoint the key's peers talk to the site only through the named jumpoints (tried in order);\n" +
			"each must be enrolled and running, since the key carries the addresses it last reported.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "group", Destination: &f.group, Usage: "jump group: user:NAME (personal list) or jumpgroup:CODE (default: your personal list)"},
			&cli.StringFlag{Name: "tag", Destination: &f.tag, Usage: "tag to group peers by"},
			&cli.StringFlag{Name: "comments", Destination: &f.comments, Usage: "comments shown with the peer"},
			&cli.StringFlag{Name: "name", Destination: &f.name, Usage: "peer name (at most 128 characters; default: the host name)"},
			&cli.StringFlag{Name: "jump-policy", Destination: &f.jumpPolicy, Usage: "jump policy: when the peer may be jumped to"},
			&cli.StringFlag{Name: "session-policy-present", Destination: &f.spPresent, Usage: "session policy when a user is logged in on the host"},
			&cli.StringFlag{Name: "session-policy-not-present", Destination: &f.spNotPresent, Usage: "session policy when no user is logged in"},
			&cli.UintFlag{Name: "max-offline-minutes", Destination: &f.maxOffline, DefaultText: "the site's delete horizon", Usage: "delete the peer after this long offline (5 to 525600)"},
			&cli.BoolFlag{Name: "ephemeral", Destination: &f.ephemeral, Usage: "delete the peer 5 minutes after it goes offline"},
			&cli.StringFlag{Name: "connection", Destination: &f.connection, Usage: "active or passive (default: the site's default-connection-type)"},
			&cli.StringSliceFlag{Name: "jumpoint", Destination: &f.jumpoints, Usage: "name (or peer ID) of a jumpoint the peers reach the site through (see `jumpmesh jumpoint list`)"},
			&cli.StringFlag{Name: "valid-for", Destination: &f.validFor, Value: "7d", Usage: "how long the key may be used to install (10m to 1y)"},
			&cli.StringSliceFlag{Name: "allow-override", Destination: &f.override, Usage: "fields the host may override at install (comma list or repeat; \"all\")"},
			&cli.StringFlag{Name: "install-dir", Destination: &f.installDir, Value: defaultInstallDir, Usage: "install directory shown in the printed command"},
			jsonFlag,
		},
		Action: clientAction(0, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			valid, err := parseDuration(f.validFor)
			if err != nil {
				return err
			}
			over, err := installerkey.ParseFields(f.override.Value())
			if err != nil {
				return err
			}
			d := &pb.InstallerDefaults{Group: f.group, Tag: f.tag, Comments: f.comments, Name: f.name, JumpPolicy: f.jumpPolicy,
				SessionPolicyPresent: f.spPresent, SessionPolicyNotPresent: f.spNotPresent,
				MaxOfflineMinutes: uint32(f.maxOffline), Ephemeral: f.ephemeral}
			if f.connection != "" {
				if d.ConnectionType, err = words.ParseConnectionType(f.connection); err != nil {
					return err
				}
			}
			in, err := c.CreateInstaller(ctx, &pb.InstallerCreateRequest{Defaults: d, Overridable: uint32(over),
				ValidForSeconds: int64(valid / time.Second), Jumpoints: f.jumpoints.Value()})
			if err != nil {
				return err
			}
			return printInstaller(cc, in, f.installDir, "")
		}),
	}
}

func printInstaller(cc *cli.Context, in *pb.Installer, installDir, user string) error {
	v := struct {
		installerView
		Command       string `json:"install_command"`
		CommandAsUser string `json:"install_command_as_user,omitempty"`
	}{installerView: newInstallerView(in, time.Now()), Command: installCommand(in, installDir, user)}
	if user == "" {
		// Installing as root needs --user: the printed line names a
		// placeholder account that exists nowhere, so it fails until the
		// administrator changes it, rather than picking an account for them.
		v.Command = installCommand(in, installDir, installUserPlaceholder)
		v.CommandAsUser = installCommand(in, installDirAsUser, "")
	}
	return output(cc, v, func(w io.Writer) {
		fields(w, "installer", v.ID, "status", v.Status, "jump group", v.Group, "tag", orDash(v.Tag),
			"comments", orDash(v.Comments), "name", orDash(v.Name), "jump policy", orDash(v.JumpPolicy),
			"session policy (present)", orDash(v.SessionPolicyPresent),
			"session policy (not present)", orDash(v.SessionPolicyNotPresent),
			"max offline", offlineText(v.MaxOfflineMinutes, v.Ephemeral), "connection", v.Connection,
			"jumpoints", jumpointsText(v.Jumpoints), "may override", orDash(strings.Join(v.Overridable, ", ")),
			"valid", unixTime(in.GetBody().GetNotBeforeUnix())+" to "+unixTime(in.GetBody().GetNotAfterUnix()),
			"created by", orDash(v.CreatedBy))
		if v.Deleted != "" {
			fields(w, "deleted", unixTime(in.GetRevokedUnix())+" by "+orDash(v.DeletedBy))
		}
		fmt.Fprintf(w, "\nKey:\n  %s\n\n", v.Key)
		if v.CommandAsUser == "" {
			fmt.Fprintf(w, "Install on the host:\n  %s\n", v.Command)
			return
		}
		fmt.Fprintf(w, "Install on the host as root (change %s to the existing account the peer will run as):\n  %s\n"+
			"or as that account itself, without root:\n  %s\n", installUserPlaceholder, v.Command, v.CommandAsUser)
	})
}

func offlineText(minutes uint32, ephemeral bool) string {
	switch {
	case ephemeral:
		return "ephemeral (5 minutes)"
	case minutes == 0:
		return "site delete horizon"
	}
	return fmt.Sprintf("%d minutes", minutes)
}

// The printed install commands: as root, the peer's account is a
// placeholder the administrator must change; without root, the peer runs
// as the installing account, in its home (a shell line: $HOME).
const (
	installUserPlaceholder = "PEER-USER"
	installDirAsUser       = "$HOME/jumpmesh"
)

// installCommand is the command line that installs the key on a host.
func installCommand(in *pb.Installer, installDir, user string) string {
	if installDir == "" {
		installDir = defaultInstallDir
	}
	cmd := "jumpmesh peer install --key " + in.GetKey() + " --install-dir " + installDir
	if user != "" {
		cmd += " --user " + user
	}
	return cmd
}

func installerListCommand() *cli.Command {
	var f struct{ all bool }
	return &cli.Command{
		Name:      "list",
		Usage:     "list installers (valid ones; --all adds expired and deleted)",
		UsageText: "jumpmesh installer list [--all] [--json]\n\nExample:\n  jumpmesh installer list --all",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "all", Destination: &f.all, Usage: "include expired and deleted installers"}, jsonFlag},
		Action: clientAction(0, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			ins, err := c.Installers(ctx, f.all)
			if err != nil {
				return err
			}
			now := time.Now()
			views := make([]installerView, 0, len(ins))
			for _, in := range ins {
				views = append(views, newInstallerView(in, now))
			}
			return output(cc, views, func(w io.Writer) {
				rows := [][]string{{"ID", "STATUS", "JUMP GROUP", "TAG", "NAME", "CONNECTION", "VALID UNTIL", "CREATED BY"}}
				for i, v := range views {
					rows = append(rows, []string{v.ID, v.Status, v.Group, orDash(v.Tag), orDash(v.Name), v.Connection,
						unixTime(ins[i].GetBody().GetNotAfterUnix()), v.CreatedBy})
				}
				table(w, rows)
			})
		}),
	}
}

func installerShowCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "show an installer, its key and install command",
		ArgsUsage: "ID",
		UsageText: "jumpmesh installer show ID [--json]\n\nExample:\n  jumpmesh installer show 4k2m9xq7c3bd6wnp",
		Flags:     []cli.Flag{jsonFlag},
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			in, err := c.Installer(ctx, cc.Args().First())
			if err != nil {
				return err
			}
			return printInstaller(cc, in, "", "")
		}),
	}
}

func installerExtendCommand() *cli.Command {
	var f struct{ validFor string }
	return &cli.Command{
		Name:      "extend",
		Usage:     "move an installer's validity end to --valid-for from now (prints the re-signed key)",
		ArgsUsage: "ID",
		UsageText: "jumpmesh installer extend ID --valid-for DURATION [--json]\n\nExample:\n  jumpmesh installer extend 4k2m9xq7c3bd6wnp --valid-for 30d",
		Description: "The key is re-signed with the new window; hand out the new key. The old key string keeps\n" +
			"its own, earlier, end.",
		Flags: []cli.Flag{&cli.StringFlag{Name: "valid-for", Destination: &f.validFor, Usage: "new validity from now (required; 10m to 1y)"}, jsonFlag},
		Action: func(cc *cli.Context) error {
			if err := requireFlags(cc, "valid-for"); err != nil {
				return err
			}
			valid, err := parseDuration(f.validFor)
			if err != nil {
				return err
			}
			return clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
				in, err := c.ExtendInstaller(ctx, cc.Args().First(), valid)
				if err != nil {
					return err
				}
				return printInstaller(cc, in, "", "")
			})(cc)
		},
	}
}

func installerDeleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "delete an installer: the coordinator refuses its key from now on",
		ArgsUsage: "ID",
		UsageText: "jumpmesh installer delete ID [--json]\n\nExample:\n  jumpmesh installer delete 4k2m9xq7c3bd6wnp",
		Flags:     []cli.Flag{jsonFlag},
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			id := cc.Args().First()
			if err := c.DeleteInstaller(ctx, id); err != nil {
				return err
			}
			return output(cc, map[string]string{"deleted": id}, func(w io.Writer) {
				fmt.Fprintf(w, "Deleted installer %s; its key is revoked.\n", id)
			})
		}),
	}
}

func installerCommandCommand() *cli.Command {
	var f struct{ installDir, user string }
	return &cli.Command{
		Name:      "command",
		Usage:     "print the command line that installs an installer's key on a host",
		ArgsUsage: "ID",
		UsageText: "jumpmesh installer command ID [--install-dir DIR] [--user USER] [--json]\n\n" +
			"Example:\n  jumpmesh installer command 4k2m9xq7c3bd6wnp --install-dir /opt/jumpmesh --user jumpmesh",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "install-dir", Destination: &f.installDir, Value: defaultInstallDir, Usage: "install directory on the host"},
			&cli.StringFlag{Name: "user", Destination: &f.user, Usage: "user the peer runs as (needed when installing as root)"},
			jsonFlag,
		},
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			in, err := c.Installer(ctx, cc.Args().First())
			if err != nil {
				return err
			}
			line := installCommand(in, f.installDir, f.user)
			return output(cc, map[string]string{"install_command": line}, func(w io.Writer) { fmt.Fprintln(w, line) })
		}),
	}
}

func installerVerifyCommand() *cli.Command {
	var f struct {
		online bool
		site   string
	}
	return &cli.Command{
		Name:      "verify",
		Usage:     "check an installer key: offline (signature, window), or --online at the coordinator (also revocation)",
		ArgsUsage: "KEY",
		UsageText: "jumpmesh installer verify KEY [--site PEER-ID] [--online] [--json]\n\nExample:\n  jumpmesh installer verify jmk1.CAES... --online",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "online", Destination: &f.online, Usage: "ask the coordinator this console is logged in to"},
			&cli.StringFlag{Name: "site", Destination: &f.site, Usage: "refuse keys of any other site"},
			jsonFlag,
		},
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 1); err != nil {
				return err
			}
			key := cc.Args().First()
			if f.online {
				return clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
					in, err := c.CheckInstallerKey(ctx, key)
					if err != nil {
						return err
					}
					return printInstaller(cc, in, "", "")
				})(cc)
			}
			opts := installerkey.VerifyOptions{Now: time.Now()}
			if f.site != "" {
				id, err := peer.Decode(f.site)
				if err != nil {
					return catalog.Errorf(catalog.CodeInvalidArgument, "--site %q is not a peer ID: %v", f.site, err)
				}
				opts.Site = id
			}
			k, err := installerkey.Verify(key, opts)
			if err != nil {
				return err
			}
			return printInstaller(cc, &pb.Installer{Id: k.Body.GetInstallerId(), Key: k.Raw, Body: k.Body}, "", "")
		},
	}
}
