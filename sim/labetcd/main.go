// Command labetcd is the lab's etcd member: etcd's own server
// (go.etcd.io/etcd/server/v3/embed, the version the coordinator's client is
// built with) behind the subset of etcd's flags the lab uses, so that a
// scenario or a test runs a real multi-member cluster as separate processes
// it can kill with SIGKILL. It is built by the lab's tests (and by hand for
// `jumpmesh sim run ha`: go build -o bin/jumpmesh-lab-etcd ./sim/labetcd);
// it is not part of the jumpmesh binary. Debian's or upstream's etcd binary
// takes the same flags and works in its place (--etcd-binary).
//
// It prints "ready" on standard output once the member serves clients and
// stops cleanly on SIGTERM or SIGINT.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "labetcd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg := embed.NewConfig()
	fs := flag.NewFlagSet("labetcd", flag.ContinueOnError)
	var listenClient, advertiseClient, listenPeer, advertisePeer, logOutput string
	fs.StringVar(&cfg.Name, "name", "default", "member name")
	fs.StringVar(&cfg.Dir, "data-dir", "", "data directory (required)")
	fs.StringVar(&listenClient, "listen-client-urls", "", "client URLs to listen on, comma-separated")
	fs.StringVar(&advertiseClient, "advertise-client-urls", "", "client URLs to advertise")
	fs.StringVar(&listenPeer, "listen-peer-urls", "", "peer URLs to listen on")
	fs.StringVar(&advertisePeer, "initial-advertise-peer-urls", "", "peer URLs to advertise")
	fs.StringVar(&cfg.InitialCluster, "initial-cluster", "", "NAME=PEER-URL,... of every member")
	fs.StringVar(&cfg.ClusterState, "initial-cluster-state", "new", "new or existing")
	fs.StringVar(&cfg.InitialClusterToken, "initial-cluster-token", "etcd-cluster", "the cluster's token")
	fs.UintVar(&cfg.MaxTxnOps, "max-txn-ops", cfg.MaxTxnOps, "most operations in one transaction")
	fs.StringVar(&cfg.AutoCompactionMode, "auto-compaction-mode", cfg.AutoCompactionMode, "periodic or revision")
	fs.StringVar(&cfg.AutoCompactionRetention, "auto-compaction-retention", cfg.AutoCompactionRetention, "retention")
	fs.UintVar(&cfg.TickMs, "heartbeat-interval", cfg.TickMs, "heartbeat interval (ms)")
	fs.UintVar(&cfg.ElectionMs, "election-timeout", cfg.ElectionMs, "election timeout (ms)")
	fs.StringVar(&cfg.LogLevel, "log-level", "warn", "debug, info, warn or error")
	fs.StringVar(&logOutput, "log-outputs", "stderr", "stderr, stdout or a file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Dir == "" {
		return fmt.Errorf("--data-dir is required")
	}
	var err error
	set := func(dst *[]url.URL, s, flag string) {
		if s == "" || err != nil {
			return
		}
		*dst = nil
		for _, u := range strings.Split(s, ",") {
			p, perr := url.Parse(u)
			if perr != nil {
				err = fmt.Errorf("--%s: %v", flag, perr)
				return
			}
			*dst = append(*dst, *p)
		}
	}
	set(&cfg.ListenClientUrls, listenClient, "listen-client-urls")
	set(&cfg.AdvertiseClientUrls, advertiseClient, "advertise-client-urls")
	set(&cfg.ListenPeerUrls, listenPeer, "listen-peer-urls")
	set(&cfg.AdvertisePeerUrls, advertisePeer, "initial-advertise-peer-urls")
	if err != nil {
		return err
	}
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	}
	cfg.LogOutputs = []string{logOutput}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-e.Server.ReadyNotify():
		fmt.Println("ready")
	case err := <-e.Err():
		return err
	case <-sig:
		return nil
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("not ready after 5 minutes (no quorum?)")
	}
	select {
	case err := <-e.Err():
		return err
	case <-sig:
		return nil
	}
}
