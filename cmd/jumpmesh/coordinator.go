package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/coordinator"
)

func coordinatorCommand() *cli.Command {
	return &cli.Command{
		Name:        "coordinator",
		Usage:       "create and run a site's coordinator",
		Description: "The coordinator is the site's rendezvous and authority. It keeps its state in an embedded\ndatabase in --data; nothing else is needed to run a site. With --store etcd://..., its records\nlive in an etcd cluster instead (coordinator migrate moves them there).",
		Subcommands: []*cli.Command{coordinatorInitCommand(), coordinatorRunCommand(), coordinatorMigrateCommand()},
	}
}

func coordinatorInitCommand() *cli.Command {
	var f struct {
		data, httpAddr, admin string
		listen, public, relay cli.StringSlice
		inviteValid           string
	}
	return &cli.Command{
		Name:  "init",
		Usage: "create a new site: site key, database and the first administrator's invite",
		UsageText: "jumpmesh coordinator init --data DIR [--listen MULTIADDR ...] [--public-addr MULTIADDR ...]\n\n" +
			"Example:\n" +
			"  jumpmesh coordinator init --data /var/lib/jumpmesh --public-addr /dns4/jump.example.com/tcp/4830",
		Description: "Creates the site key (Ed25519, mode 0600), site.json and the database in DIR, and prints a\n" +
			"one-time invite for the first administrator. Refuses a directory that already holds a site.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data", Destination: &f.data, Usage: "site data directory (required; created 0700 if missing)"},
			&cli.StringSliceFlag{Name: "listen", Destination: &f.listen, Usage: "multiaddr to listen on (repeatable; default TCP and QUIC on port 4830)"},
			&cli.StringSliceFlag{Name: "public-addr", Destination: &f.public, Usage: "multiaddr peers and consoles should dial, if not the listen addresses (repeatable)"},
			&cli.StringSliceFlag{Name: "relay", Destination: &f.relay, Usage: "relay multiaddr ending in /p2p/ID, handed to peers in installer keys (repeatable)"},
			&cli.StringFlag{Name: "http-addr", Destination: &f.httpAddr, Usage: "local address for /metrics and /healthz, or \"off\"", Value: coordinator.DefaultHTTPAddr},
			&cli.StringFlag{Name: "admin", Destination: &f.admin, Value: "admin", Usage: "user name of the first administrator"},
			&cli.StringFlag{Name: "invite-valid-for", Destination: &f.inviteValid, Value: "24h", Usage: "how long the first invite is valid"},
			jsonFlag,
		},
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 0); err != nil {
				return err
			}
			if err := requireFlags(cc, "data"); err != nil {
				return err
			}
			valid, err := parseDuration(f.inviteValid)
			if err != nil {
				return err
			}
			res, err := coordinator.InitSite(coordinator.InitConfig{
				DataDir: f.data, Listen: f.listen.Value(), PublicAddrs: f.public.Value(), Relays: f.relay.Value(),
				HTTPAddr: f.httpAddr, AdminName: f.admin, InviteValidFor: valid,
			})
			if err != nil {
				return err
			}
			view := initView{LoginAddrs: []string{}, Site: res.SiteID.String(), Admin: res.Admin, Invite: res.InviteCode, Expires: res.Expires.UTC().Format(time.RFC3339)}
			for _, a := range res.LoginAddrs {
				view.LoginAddrs = append(view.LoginAddrs, a.String())
			}
			return output(cc, view, func(w io.Writer) { printInit(w, f.data, view) })
		},
	}
}

type initView struct {
	Site       string   `json:"site"`
	Admin      string   `json:"admin"`
	Invite     string   `json:"invite"`
	Expires    string   `json:"invite_expires"`
	LoginAddrs []string `json:"login_addrs"`
}

func printInit(w io.Writer, dir string, v initView) {
	fmt.Fprintf(w, "Site %s created in %s.\n\n", v.Site, dir)
	fmt.Fprintf(w, "Start it:\n  jumpmesh coordinator run --data %s\n\n", dir)
	fmt.Fprintf(w, "One-time invite for administrator %q (valid until %s):\n  %s\n\n", v.Admin, humanTime(v.Expires), v.Invite)
	addr := "COORDINATOR-ADDR"
	if len(v.LoginAddrs) > 0 {
		addr = v.LoginAddrs[0]
	} else {
		fmt.Fprintln(w, "(The coordinator picks its ports when it starts; `coordinator run` prints the addresses.)")
	}
	fmt.Fprintf(w, "Log in from the administrator's machine:\n  jumpmesh login %s %s\n", addr, v.Invite)
	if len(v.LoginAddrs) > 1 {
		fmt.Fprintf(w, "\nOther coordinator addresses:\n  %s\n", strings.Join(v.LoginAddrs[1:], "\n  "))
	}
}

func coordinatorRunCommand() *cli.Command {
	var f struct {
		data, httpAddr, logLevel, logFormat, instance string
		listen                                        cli.StringSlice
		store                                         storeFlags
	}
	return &cli.Command{
		Name:  "run",
		Usage: "run the coordinator until SIGINT or SIGTERM",
		UsageText: "jumpmesh coordinator run --data DIR [--listen MULTIADDR ...] [--http-addr ADDR] [--log-format text|json]\n" +
			"                         [--store badger|etcd://HOST:2379[,HOST:2379...] [--instance NAME] [etcd options]]\n\n" +
			"Examples:\n" +
			"  jumpmesh coordinator run --data /var/lib/jumpmesh --log-format json\n" +
			"  JUMPMESH_ETCD_PASSWORD=... jumpmesh coordinator run --data /var/lib/jumpmesh \\\n" +
			"      --store etcd://etcd-1:2379,etcd-2:2379,etcd-3:2379 --etcd-cacert ca.pem --etcd-user jumpmesh",
		Description: "Listens on TCP and QUIC, serves the control protocol, and exposes Prometheus /metrics and\n" +
			"/healthz on --http-addr. Stops cleanly on SIGINT/SIGTERM.\n\n" +
			"--store etcd://... keeps the site's records in etcd under /jumpmesh/<site id>/ (the site key and\n" +
			"site.json stay in --data). Several coordinators may serve one site on one etcd, each with the\n" +
			"site's data directory (the same site key) and its own --instance name: a second process with\n" +
			"the same instance name is refused (store_in_use) while the first lives. See docs/etcd.md.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "data", Destination: &f.data, Usage: "site data directory made by coordinator init (required)"},
			&cli.StringSliceFlag{Name: "listen", Destination: &f.listen, Usage: "multiaddr to listen on, replacing site.json's (repeatable)"},
			&cli.StringFlag{Name: "http-addr", Destination: &f.httpAddr, Usage: "address for /metrics and /healthz, replacing site.json's; \"off\" disables"},
			&cli.StringFlag{Name: "log-level", Destination: &f.logLevel, Value: "info", Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", Destination: &f.logFormat, Value: "text", Usage: "text or json"},
			&cli.StringFlag{Name: "instance", Destination: &f.instance, EnvVars: []string{"JUMPMESH_INSTANCE"},
				Usage: "this coordinator's name among the site's coordinators on etcd: a-z, 0-9, - (default: the host name)"},
		}, f.store.flags("store", "where the site's records live: badger (in --data) or etcd://HOST:2379[,HOST:2379...]", "badger")...),
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 0); err != nil {
				return err
			}
			if err := requireFlags(cc, "data"); err != nil {
				return err
			}
			store, err := f.store.config("store")
			if err != nil {
				return err
			}
			if f.instance != "" {
				if err := coordinator.ValidInstance(f.instance); err != nil {
					return usagef("--instance: %v", err)
				}
				store.Instance = f.instance
			}
			log, err := newLogger(cc.App.ErrWriter, f.logLevel, f.logFormat)
			if err != nil {
				return err
			}
			coordinator.TuneGC() // GOGC=50 unless set: less memory per online peer (coordinator/gc.go)
			c, err := coordinator.New(coordinator.Config{DataDir: f.data, Listen: f.listen.Value(), HTTPAddr: f.httpAddr, Logger: log, Store: store})
			if err != nil {
				return err
			}
			printReady(cc.App.Writer, c.LoginAddrs(), c.HTTPAddr())
			err = c.Run(cc.Context)
			log.Info("coordinator stopped")
			return err
		},
	}
}

// printReady prints where a daemon (coordinator, relay) listens, then
// "ready": scripts and tests (sim/scenario) wait for that line before using
// it. httpAddr is its metrics/health endpoint, "" when off.
func printReady(w io.Writer, addrs []ma.Multiaddr, httpAddr string) {
	for _, a := range addrs {
		fmt.Fprintf(w, "listening %s\n", a)
	}
	if httpAddr != "" {
		fmt.Fprintf(w, "http http://%s/metrics\n", httpAddr)
	}
	fmt.Fprintln(w, "ready")
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: use text or json", format)
}
