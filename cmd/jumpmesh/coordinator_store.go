package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/coordinator"
)

// The coordinator's store: --store and the etcd options of `coordinator
// run` and `coordinator migrate`. Flag names follow etcdctl's (--cacert,
// --cert, --key, --user, --password) with an etcd- prefix, and etcdctl's
// environment variables are read too.

type storeFlags struct {
	store, cacert, cert, key, user, password, prefix string
	maxTxnOps                                        int
}

// flags are the etcd options; storeFlag names the flag that takes the URL
// ("store" for run, "to" for migrate).
func (f *storeFlags) flags(storeFlag, storeUsage, storeDefault string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: storeFlag, Destination: &f.store, Value: storeDefault, Usage: storeUsage, EnvVars: storeEnv(storeFlag)},
		&cli.StringFlag{Name: "etcd-cacert", Destination: &f.cacert, EnvVars: []string{"JUMPMESH_ETCD_CACERT", "ETCDCTL_CACERT"},
			Usage: "CA bundle (PEM) that verifies the etcd members' certificates; turns TLS on"},
		&cli.StringFlag{Name: "etcd-cert", Destination: &f.cert, EnvVars: []string{"JUMPMESH_ETCD_CERT", "ETCDCTL_CERT"},
			Usage: "client certificate (PEM) for etcd's client certificate authentication"},
		&cli.StringFlag{Name: "etcd-key", Destination: &f.key, EnvVars: []string{"JUMPMESH_ETCD_KEY", "ETCDCTL_KEY"},
			Usage: "private key (PEM) of --etcd-cert"},
		&cli.StringFlag{Name: "etcd-user", Destination: &f.user, EnvVars: []string{"JUMPMESH_ETCD_USER", "ETCDCTL_USER"},
			Usage: "etcd user name, or USER:PASSWORD as etcdctl takes it"},
		&cli.StringFlag{Name: "etcd-password", Destination: &f.password, EnvVars: []string{"JUMPMESH_ETCD_PASSWORD", "ETCDCTL_PASSWORD"},
			Usage: "password of --etcd-user (prefer the environment: a flag shows in ps)"},
		&cli.StringFlag{Name: "etcd-prefix", Destination: &f.prefix, EnvVars: []string{"JUMPMESH_ETCD_PREFIX"},
			Usage: "key prefix of the site's records (default /jumpmesh/<site id>/)"},
		&cli.IntFlag{Name: "etcd-max-txn-ops", Destination: &f.maxTxnOps, Value: 128,
			Usage: "the members' --max-txn-ops: the most writes one transaction may send (a jumpoint's tunnel report writes up to 256)"},
	}
}

// storeEnv: JUMPMESH_STORE sets run's --store (not migrate's --to).
func storeEnv(flag string) []string {
	if flag == "store" {
		return []string{"JUMPMESH_STORE"}
	}
	return nil
}

// config checks the flags and makes the coordinator's StoreConfig.
func (f *storeFlags) config(storeFlag string) (coordinator.StoreConfig, error) {
	if _, _, err := coordinator.ParseStoreURL(f.store); err != nil {
		return coordinator.StoreConfig{}, usagef("--%s: %v", storeFlag, err)
	}
	sc := coordinator.StoreConfig{URL: f.store}
	if !sc.IsEtcd() {
		// etcd options (from etcdctl's environment, say) do not apply.
		return sc, nil
	}
	user, password := f.user, f.password
	if u, p, ok := strings.Cut(user, ":"); ok && password == "" {
		user, password = u, p
	}
	if password != "" && user == "" {
		return sc, usagef("--etcd-password needs --etcd-user")
	}
	if f.prefix != "" && !strings.HasPrefix(f.prefix, "/") {
		return sc, usagef("--etcd-prefix %q: start it with /", f.prefix)
	}
	if f.maxTxnOps < 1 {
		return sc, usagef("--etcd-max-txn-ops %d: give etcd's --max-txn-ops (128 by default)", f.maxTxnOps)
	}
	sc.Etcd = coordinator.EtcdConfig{CACert: f.cacert, Cert: f.cert, Key: f.key, Username: user, Password: password, Prefix: f.prefix,
		MaxTxnOps: f.maxTxnOps}
	return sc, nil
}

func coordinatorMigrateCommand() *cli.Command {
	var f storeFlags
	var data string
	var force bool
	return &cli.Command{
		Name:  "migrate",
		Usage: "copy a stopped site's records from its data directory to etcd",
		UsageText: "jumpmesh coordinator migrate --from DIR --to etcd://HOST:2379[,HOST:2379...] [--force] [etcd options]\n\n" +
			"Examples:\n" +
			"  jumpmesh coordinator migrate --from /var/lib/jumpmesh --to etcd://10.0.0.5:2379\n" +
			"  JUMPMESH_ETCD_PASSWORD=... jumpmesh coordinator migrate --from /var/lib/jumpmesh \\\n" +
			"      --to etcd://etcd-1:2379,etcd-2:2379,etcd-3:2379 --etcd-cacert ca.pem --etcd-user jumpmesh",
		Description: "Copies every record (users, groups, policies, settings, installers, peers, audit, ...) of the\n" +
			"site in --from to etcd under /jumpmesh/<site id>/, then reads both back and compares their\n" +
			"count and SHA-256 digest. Stop the coordinator first. A destination that holds records is\n" +
			"refused unless --force, which replaces them. The site key and site.json stay in --from: run\n" +
			"the coordinator with --data DIR --store etcd://... afterwards. The Badger copy is left as it was.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "from", Destination: &data, Usage: "the site's data directory (required)"},
			&cli.BoolFlag{Name: "force", Destination: &force, Usage: "replace the records the destination already holds"},
			jsonFlag,
		}, f.flags("to", "etcd://HOST:2379[,HOST:2379...] to copy to (required)", "")...),
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 0); err != nil {
				return err
			}
			if err := requireFlags(cc, "from", "to"); err != nil {
				return err
			}
			sc, err := f.config("to")
			if err != nil {
				return err
			}
			if !sc.IsEtcd() {
				return usagef("--to: give etcd://HOST:2379")
			}
			res, err := coordinator.Migrate(coordinator.MigrateConfig{DataDir: data, To: sc, Force: force})
			if err != nil {
				return err
			}
			return output(cc, res, func(w io.Writer) {
				if res.Replaced > 0 {
					fmt.Fprintf(w, "removed %d records the destination held\n", res.Replaced)
				}
				fmt.Fprintf(w, "copied %d records (%d bytes) to %s under %s\n", res.Records, res.Bytes, sc.URL, res.Prefix)
				fmt.Fprintf(w, "verified: same count and SHA-256 %s\n", res.Digest)
				fmt.Fprintf(w, "now run: jumpmesh coordinator run --data %s --store %s\n", data, sc.URL)
			})
		},
	}
}
