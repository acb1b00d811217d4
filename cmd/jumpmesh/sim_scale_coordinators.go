package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/sim/etcdlab"
	"github.com/jumpmesh/jumpmesh/sim/scale"
)

// simScaleCoordinators is `jumpmesh sim scale --coordinators 1,2,3`: the
// storm against one coordinator on Badger and against several on one etcd,
// and the cost of store operations on each.
func simScaleCoordinators(cc *cli.Context, cfg scale.CoordinatorsConfig, counts, etcdBin string) error {
	for _, c := range strings.Split(counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 || n > 9 {
			return usagef("--coordinators %q: counts of 1 to 9, comma-separated (e.g. 1,2,3)", counts)
		}
		cfg.Counts = append(cfg.Counts, n)
	}
	if cfg.Ops < 1 || cfg.Rounds < 1 {
		return usagef("--ops and --rounds must be positive")
	}
	if cfg.Etcd == "" {
		bin, err := etcdlab.FindBinary(etcdBin)
		if err != nil {
			return usagef("--coordinators needs an etcd: --etcd etcd://HOST:PORT, or %v", err)
		}
		edir, err := os.MkdirTemp("", "jumpmesh-scale-etcd")
		if err != nil {
			return err
		}
		defer os.RemoveAll(edir)
		c, err := etcdlab.StartLocal(cc.Context, bin, edir)
		if err != nil {
			return err
		}
		defer c.Close()
		cfg.Etcd = c.URL()
	}
	if !cc.Bool("json") {
		cfg.Progress = func(what string) { fmt.Fprintf(cc.App.ErrWriter, "running %s…\n", what) }
	}
	res, err := scale.Coordinators(cc.Context, cfg)
	if err != nil {
		return err
	}
	return output(cc, res, func(w io.Writer) { printCoordinators(w, res) })
}

// printCoordinators is the human form of a --coordinators run.
func printCoordinators(w io.Writer, r *scale.CoordinatorsResult) {
	fmt.Fprintf(w, "sim scale --coordinators: %d fresh peers over TCP, all at once, each configuration, %d rounds (each row the median); %.1f s in all; load average %s\n",
		r.Peers, r.Rounds, r.Seconds, r.LoadAverage)
	fmt.Fprintf(w, "note: %s\n\n", r.Note)
	rows := [][]string{{"STORE", "COORDINATORS", "PEERS/S", "EACH ROUND", "× BADGER", "CPU/REGISTRATION", "LATENCY p50/p90/p99", "HELD EACH", "FAILED/RETRIED/REFUSED/GAVE UP"}}
	for _, run := range r.Runs {
		var each []string
		for _, n := range run.Held {
			each = append(each, strconv.Itoa(n))
		}
		var rounds []string
		for _, r := range run.RoundsPerSecond {
			rounds = append(rounds, fmt.Sprintf("%.0f", r))
		}
		rows = append(rows, []string{run.Store, strconv.Itoa(run.Coordinators), fmt.Sprintf("%.0f", run.PeersPerSecond),
			strings.Join(rounds, " "), fmt.Sprintf("%.2f", run.RatioToBadger), fmt.Sprintf("%.2f ms", run.CPUPerRegistrationMs), percentiles(run.Latency),
			strings.Join(each, " / "), fleetText(run.Fleet)})
	}
	table(w, rows)
	if len(r.Ops) > 0 {
		fmt.Fprintf(w, "\nstore operations through one coordinator, etcd against Badger (%d of each, alternating)\n", r.Ops[0].Ops)
		rows = [][]string{{"  OP", "BADGER p50/p90/p99", "ETCD p50/p90/p99", "ETCD ÷ BADGER (p50)", "WHAT"}}
		for _, o := range r.Ops {
			rows = append(rows, []string{"  " + o.Op, fine(o.Badger), fine(o.Etcd), fmt.Sprintf("%.1f ×", o.RatioP50), o.What})
		}
		table(w, rows)
	}
}

// fine prints percentiles with two decimals: a Badger read takes tens of
// microseconds.
func fine(l scale.Latency) string {
	return fmt.Sprintf("%.2f / %.2f / %.2f ms", l.P50, l.P90, l.P99)
}
