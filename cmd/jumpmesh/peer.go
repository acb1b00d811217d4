package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/peer"
)

func peerCommand() *cli.Command {
	return &cli.Command{
		Name:  "peer",
		Usage: "install and run the peer (Jump Client) on a host",
		Description: "A peer makes its host reachable by the site's technicians. `peer install` verifies an installer key\n" +
			"offline and creates the install directory; its init-script starts `peer run`, which registers with\n" +
			"the coordinator and reports statistics. Run these on the host.",
		Subcommands: []*cli.Command{peerInstallCommand(), peerRunCommand(), peerStatusCommand(),
			peerDisableCommand(true), peerDisableCommand(false), peerUninstallCommand()},
	}
}

// installFlags are the seeds' mass-deployment flags.
type installFlags struct {
	key, dir, user, name, group, tag, comments, publicSite string
	jumpPolicy, spPresent, spNotPresent                    string
	maxOffline                                             uint
	ephemeral, silent                                      bool
}

func (f *installFlags) flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "key", Destination: &f.key, Usage: "the installer key (required)"},
		&cli.StringFlag{Name: "install-dir", Destination: &f.dir, Usage: "directory to install into; must not exist (required)"},
		&cli.StringFlag{Name: "user", Destination: &f.user, Usage: "user the peer runs as and who owns the directory (required as root)"},
		&cli.StringFlag{Name: "jc-name", Destination: &f.name, Usage: "peer name (at most 128 characters)"},
		&cli.StringFlag{Name: "jc-jump-group", Destination: &f.group, Usage: "jump group: user:NAME or jumpgroup:CODE"},
		&cli.StringFlag{Name: "jc-tag", Destination: &f.tag, Usage: "tag"},
		&cli.StringFlag{Name: "jc-comments", Destination: &f.comments, Usage: "comments"},
		&cli.StringFlag{Name: "jc-public-site-address", Destination: &f.publicSite, Usage: "coordinator multiaddr to use instead of the key's"},
		&cli.StringFlag{Name: "jc-session-policy-present", Destination: &f.spPresent, Usage: "session policy when a user is logged in"},
		&cli.StringFlag{Name: "jc-session-policy-not-present", Destination: &f.spNotPresent, Usage: "session policy when nobody is logged in"},
		&cli.StringFlag{Name: "jc-jump-policy", Destination: &f.jumpPolicy, Usage: "jump policy"},
		&cli.UintFlag{Name: "jc-max-offline-minutes", Destination: &f.maxOffline, DefaultText: "the installer's", Usage: "delete the peer after this long offline (5 to 525600)"},
		&cli.BoolFlag{Name: "jc-ephemeral", Destination: &f.ephemeral, Usage: "delete the peer 5 minutes after it goes offline"},
		&cli.BoolFlag{Name: "silent", Destination: &f.silent, Usage: "print nothing; the exit code tells"},
		jsonFlag,
	}
}

// overrides turns the --jc-* flags given into overrides and their field set.
func (f *installFlags) overrides(cc *cli.Context) (peer.Overrides, installerkey.Field) {
	var o peer.Overrides
	var set installerkey.Field
	given := func(flag string, field installerkey.Field, apply func()) {
		if cc.IsSet(flag) {
			set |= field
			apply()
		}
	}
	given("jc-name", installerkey.FieldName, func() { o.Name = f.name })
	given("jc-jump-group", installerkey.FieldGroup, func() { o.Group = f.group })
	given("jc-tag", installerkey.FieldTag, func() { o.Tag = f.tag })
	given("jc-comments", installerkey.FieldComments, func() { o.Comments = f.comments })
	given("jc-jump-policy", installerkey.FieldJumpPolicy, func() { o.JumpPolicy = f.jumpPolicy })
	given("jc-session-policy-present", installerkey.FieldSessionPolicyPresent, func() { o.SessionPolicyPresent = f.spPresent })
	given("jc-session-policy-not-present", installerkey.FieldSessionPolicyNotPresent, func() { o.SessionPolicyNotPresent = f.spNotPresent })
	given("jc-max-offline-minutes", installerkey.FieldMaxOfflineMinutes, func() { o.MaxOfflineMinutes = uint32(f.maxOffline) })
	given("jc-ephemeral", installerkey.FieldMaxOfflineMinutes, func() { o.Ephemeral, o.MaxOfflineMinutes = f.ephemeral, 5 })
	return o, set
}

func peerInstallCommand() *cli.Command {
	var f installFlags
	return &cli.Command{
		Name:  "install",
		Usage: "install the peer from an installer key (headless)",
		UsageText: "jumpmesh peer install --key KEY --install-dir DIR [--user USER] [--jc-name N] [--jc-jump-group G]\n" +
			"    [--jc-tag T] [--jc-comments C] [--jc-public-site-address A] [--jc-session-policy-present P]\n" +
			"    [--jc-session-policy-not-present P] [--jc-jump-policy P] [--jc-max-offline-minutes M | --jc-ephemeral]\n" +
			"    [--silent] [--json]\n\n" +
			"Examples:\n" +
			"  sudo jumpmesh peer install --key jmk1.CAES... --install-dir /opt/jumpmesh --user jumpmesh\n" +
			"  jumpmesh peer install --key jmk1.CAES... --install-dir ~/jumpmesh --jc-name web-01 --silent",
		Description: "The key is verified offline first. --jc-* flags override the installer's defaults, but only\n" +
			"for fields the installer allows. Installing as root needs --user. A failed install leaves nothing.\n" +
			"Then: DIR/init-script start (or enable DIR/jumpmesh-peer.service with systemd).",
		Flags: f.flags(),
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 0); err != nil {
				return err
			}
			if err := requireFlags(cc, "key", "install-dir"); err != nil {
				return err
			}
			if cc.IsSet("jc-ephemeral") && cc.IsSet("jc-max-offline-minutes") {
				return usagef("give --jc-ephemeral (5 minutes) or --jc-max-offline-minutes, not both")
			}
			o, fields := f.overrides(cc)
			in, err := peer.Install(peer.InstallOptions{Key: f.key, Dir: f.dir, Overrides: o, OverrideFields: fields,
				PublicSiteAddress: f.publicSite, User: f.user})
			if err != nil {
				if f.silent {
					return silentError{err}
				}
				return err
			}
			if f.silent {
				return nil
			}
			v := map[string]string{"dir": in.Dir, "peer_id": in.PeerID.String(), "site": in.Site.String(),
				"first_contact_by": in.Config.FirstContactBy.UTC().Format(time.RFC3339)}
			return output(cc, v, func(w io.Writer) {
				fmt.Fprintf(w, "Installed peer %s for site %s in %s.\n", in.PeerID, in.Site, in.Dir)
				fmt.Fprintf(w, "Start it:  %s/init-script start\n", in.Dir)
				fmt.Fprintf(w, "At boot:   cp %s/jumpmesh-peer.service /etc/systemd/system/ && systemctl enable --now jumpmesh-peer\n", in.Dir)
				fmt.Fprintf(w, "It must reach the coordinator before %s, or it uninstalls itself.\n", unixTime(in.Config.FirstContactBy.Unix()))
			})
		},
	}
}

// silentError is an error that must not be printed (--silent).
type silentError struct{ err error }

func (s silentError) Error() string { return s.err.Error() }
func (s silentError) Unwrap() error { return s.err }

func peerRunCommand() *cli.Command {
	var f struct{ dir, pidFile, logLevel, logFormat string }
	return &cli.Command{
		Name:      "run",
		Usage:     "run the peer in the foreground (what init-script start runs)",
		UsageText: "jumpmesh peer run --dir DIR [--pid-file FILE] [--log-level LEVEL] [--log-format text|json]\n\nExample:\n  jumpmesh peer run --dir /opt/jumpmesh",
		Description: "Connects to the coordinator, registers, reports statistics, reconnects with backoff. SIGHUP re-reads\n" +
			"the local state (disable/enable); SIGINT/SIGTERM stop it. Exits 0 after uninstalling itself.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Destination: &f.dir, Usage: "install directory (required)"},
			&cli.StringFlag{Name: "pid-file", Destination: &f.pidFile, Usage: "write the process ID here while running"},
			&cli.StringFlag{Name: "log-level", Destination: &f.logLevel, Value: "info", Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", Destination: &f.logFormat, Value: "text", Usage: "text or json"},
		},
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 0); err != nil {
				return err
			}
			if err := requireFlags(cc, "dir"); err != nil {
				return err
			}
			log, err := newLogger(cc.App.ErrWriter, f.logLevel, f.logFormat)
			if err != nil {
				return err
			}
			d, err := peer.Open(peer.RunConfig{Dir: f.dir, Version: Version, Logger: log, PIDFile: f.pidFile})
			if err != nil {
				return err
			}
			defer d.Close()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					d.Reload()
				}
			}()
			log.Info("peer starting", "peer", d.ID(), "dir", f.dir)
			err = d.Run(cc.Context)
			if errors.Is(err, peer.ErrUninstalled) {
				log.Warn("peer uninstalled itself", "reason", err)
				return nil
			}
			return err
		},
	}
}

func peerStatusCommand() *cli.Command {
	var f struct{ dir string }
	return &cli.Command{
		Name:      "status",
		Usage:     "show the local peer's state, coordinator connection and last error",
		UsageText: "jumpmesh peer status --dir DIR [--json]\n\nExample:\n  jumpmesh peer status --dir /opt/jumpmesh",
		Flags:     []cli.Flag{&cli.StringFlag{Name: "dir", Destination: &f.dir, Usage: "install directory (required)"}, jsonFlag},
		Action: func(cc *cli.Context) error {
			if err := requireFlags(cc, "dir"); err != nil {
				return err
			}
			st, err := peer.LocalStatus(f.dir)
			if err != nil {
				return err
			}
			return output(cc, st, func(w io.Writer) {
				running := "no"
				if st.Running {
					running = fmt.Sprintf("yes (pid %d)", st.PID)
				}
				fields(w, "peer", st.PeerID, "name", orDash(st.Name), "site", st.Site, "install dir", st.Dir,
					"running", running, "connected", yesNo(st.Connected), "disabled", yesNo(st.Disabled),
					"last contact", timeOrNever(st.LastContact), "offline limit", st.OfflineLimit)
				if st.Restricted {
					fields(w, "local restriction", "disable, enable and uninstall are root's ("+restrictionSource(st)+")")
				}
				if !st.Contacted {
					fields(w, "first contact by", timeOrNever(st.FirstContactBy))
				}
				if len(st.Relays) > 0 {
					fields(w, "relay reservations", strings.Join(st.Relays, ", "))
				}
				fields(w, "NAT", natText(newNATView(st.NAT.PB())))
				passiveFields(w, st)
				if st.LastError != "" {
					fields(w, "last error", st.LastError+" ("+st.LastErrorCode+", "+timeOrNever(st.LastErrorAt)+")")
				}
			})
		},
	}
}

// passiveFields prints a passive peer's listener: whether it went passive,
// where it listens, and what it accepted and refused.
func passiveFields(w io.Writer, st *peer.Status) {
	if st.Connection != "" {
		fields(w, "connection", st.Connection)
	}
	switch {
	case st.Passive:
		fields(w, "passive", "yes, since "+timeOrNever(st.PassiveSince)+": not connected, listening on "+st.PassiveListen+" for a wake command")
	case st.PassiveListen != "":
		fields(w, "passive port", "listening on "+st.PassiveListen)
	case st.PassiveError != "":
		fields(w, "passive port", "cannot listen ("+st.PassiveError+"); staying connected")
	}
	if c := st.PassiveCounters; c != nil {
		var refused []string
		for _, r := range []struct {
			name string
			n    uint64
		}{{"garbage", c.Garbage}, {"oversized", c.Oversized}, {"forged", c.Forged}, {"other site", c.OtherSite},
			{"other peer", c.OtherTarget}, {"expired", c.Expired}, {"valid too long", c.TooLong}, {"replayed", c.Replayed},
			{"rate limited", c.RateLimited}, {"busy", c.Busy}} {
			if r.n > 0 {
				refused = append(refused, fmt.Sprintf("%s %d", r.name, r.n))
			}
		}
		line := fmt.Sprintf("accepted %d, refused %d", c.Accepted, c.Refused())
		if len(refused) > 0 {
			line += " (" + strings.Join(refused, ", ") + ")"
		}
		fields(w, "wake commands", line)
	}
}

// restrictionSource says where a local restriction comes from.
func restrictionSource(st *peer.Status) string {
	if st.RestrictionStated.IsZero() {
		return "no statement from the site yet"
	}
	return "stated by the site " + unixTime(st.RestrictionStated.Unix())
}

func timeOrNever(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return unixTime(t.Unix())
}

func peerDisableCommand(disable bool) *cli.Command {
	var f struct{ dir string }
	name, usage := "disable", "make the peer refuse jumps until enabled again"
	if !disable {
		name, usage = "enable", "allow jumps to the peer again"
	}
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		UsageText: "jumpmesh peer " + name + " --dir DIR [--json]\n\nExample:\n  jumpmesh peer " + name + " --dir /opt/jumpmesh",
		Description: "Refused for non-root users when the site restricts local uninstall/disable (a statement the site\n" +
			"signs for this peer; editing the state does not lift it). A running peer tells the coordinator at once.",
		Flags: []cli.Flag{&cli.StringFlag{Name: "dir", Destination: &f.dir, Usage: "install directory (required)"}, jsonFlag},
		Action: func(cc *cli.Context) error {
			if err := requireFlags(cc, "dir"); err != nil {
				return err
			}
			if err := peer.SetDisabled(f.dir, disable, os.Geteuid()); err != nil {
				return err
			}
			return output(cc, map[string]bool{"disabled": disable}, func(w io.Writer) {
				fmt.Fprintf(w, "Peer %sd.\n", name)
			})
		},
	}
}

func peerUninstallCommand() *cli.Command {
	var f struct{ dir string }
	return &cli.Command{
		Name:      "uninstall",
		Usage:     "stop the peer, tell the coordinator, and remove the install directory",
		UsageText: "jumpmesh peer uninstall --dir DIR [--json]\n\nExample:\n  /opt/jumpmesh/uninstall",
		Description: "Refused for non-root users when the site restricts local uninstall/disable. The coordinator marks\n" +
			"the peer uninstalled (or removes it, per uninstalled-behavior) when it can be told.",
		Flags: []cli.Flag{&cli.StringFlag{Name: "dir", Destination: &f.dir, Usage: "install directory (required)"}, jsonFlag},
		Action: func(cc *cli.Context) error {
			if err := requireFlags(cc, "dir"); err != nil {
				return err
			}
			told, err := peer.Uninstall(cc.Context, f.dir, peer.UninstallOptions{EUID: os.Geteuid(), Version: Version})
			if err != nil {
				return err
			}
			return output(cc, map[string]any{"uninstalled": f.dir, "coordinator_told": told}, func(w io.Writer) {
				fmt.Fprintf(w, "Uninstalled the peer in %s.", f.dir)
				if !told {
					fmt.Fprint(w, " The coordinator could not be told; it will delete the peer after its offline horizon.")
				}
				fmt.Fprintln(w)
			})
		},
	}
}
