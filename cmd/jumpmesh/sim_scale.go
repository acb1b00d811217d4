package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/sim/etcdlab"
	"github.com/jumpmesh/jumpmesh/sim/scale"
)

// simScaleCommand is `jumpmesh sim scale`: the in-process engine, many
// peers in this process against a real coordinator with an injected clock.
func simScaleCommand() *cli.Command {
	var f struct {
		peers, stored, runs, connRate int
		rate                          float64
		workload, transport, dir      string
		coordinators, etcd, etcdBin   string
		ops, rounds                   int
		fleets, quicPeers             int
		timeout                       time.Duration
	}
	return &cli.Command{
		Name:  "scale",
		Usage: "many peers against a real coordinator in this process: registration storm, reconnect, lifecycle, search (no root needed)",
		UsageText: "jumpmesh sim scale [--peers N] [--rate R] [--workload storm|settings|reconnect|lifecycle|search|all] [--stored M] [--fleets K] [--quic-peers Q] [--json]\n" +
			"jumpmesh sim scale --coordinators 1,2,3 [--etcd etcd://HOST:PORT | --etcd-binary PATH] [--peers N] [--ops N] [--json]\n\n" +
			"Examples:\n  jumpmesh sim scale --peers 1000\n  jumpmesh sim scale --peers 2000 --rate 300 --workload storm,reconnect --json\n" +
			"  jumpmesh sim scale --workload search --stored 100000\n  jumpmesh sim scale --coordinators 1,2,3 --peers 300\n" +
			"  jumpmesh sim scale --peers 20000 --workload storm,settings   (the fleet in processes of its own, chosen by the open-file limit)\n" +
			"  jumpmesh sim scale --peers 400 --fleets 2 --quic-peers 100 --workload storm,reconnect",
		Description: "Starts a coordinator (a real Badger store in a temporary directory, a real libp2p host on loopback,\n" +
			"an injected clock), logs in an administrator, and runs the workloads in this order:\n" +
			"  storm      N fresh peers (one libp2p host each) register, R per second or all at once: peers/s,\n" +
			"             registration latency percentiles, memory per online peer, failed attempts and retries\n" +
			"  settings   the administrator changes a setting every peer keeps: the admin's wait, until written to every\n" +
			"             peer's stream, until read by every peer (goal-ratio: ÷ 10 s, the goal at 20,000 peers)\n" +
			"  reconnect  the coordinator restarts under the online peers: time until all are back, ratio to the storm\n" +
			"  lifecycle  the peers stop; the clock moves past the lost and delete horizons: peers per state and\n" +
			"             sweep time at each step\n" +
			"  search     M peer records written to the store; a few queries, in the coordinator and through a console\n" +
			"Settings, reconnect and lifecycle run the storm first.\n\n" +
			"Where the peers run: in this process while they fit its open-file limit (both ends of every connection\n" +
			"are its files; memory per peer then counts both ends), else in fleet processes of their own (this binary,\n" +
			"re-executed; they die with it), as few as hold them, and the memory per peer is the coordinator's alone.\n" +
			"The peers this process's limit cannot hold over TCP (one socket each) then come over QUIC (one socket for\n" +
			"all), in fleet processes of their own. A line on stderr says what was chosen and why; --fleets K (0: this\n" +
			"process) and --quic-peers Q choose instead.\n\n" +
			"--json: peers, transport, rate, connection_rate, started, seconds, load_average (at the end),\n" +
			"open_file_limit, fleet_processes ([{peers, transport}], absent in this process), fleet_note; storm:\n" +
			"registered, online, seconds, peers_per_second, registration_latency {count, p50_ms, p90_ms, p99_ms,\n" +
			"max_ms}, cpu_per_peer_ms (this process's), fleet_cpu_per_peer_ms (the fleet processes'), memory {ends\n" +
			"(\"both\" or \"coordinator\"), online_heap_bytes_per_peer, online_live_bytes_per_peer,\n" +
			"online_stack_bytes_per_peer, goroutines_per_peer, idle_host_bytes_per_peer}, coordinator_retries, fleet\n" +
			"{welcomed, welcomes, retries, failed_attempts, down_dials, gave_up, ...}; settings: peers, admin_ms,\n" +
			"written_seconds, received_seconds, goal_ratio, slow_peers; reconnect, lifecycle, search: their figures as\n" +
			"printed. A workload that fails ends the run: the ones before it are printed (failed: its name), then the\n" +
			"error (exit 1).\n\n" +
			"With --coordinators, instead: the storm of --peers fresh peers (all at once) against one coordinator on\n" +
			"Badger, then against 1, 2, 3 ... coordinators of one site on one etcd (the fleet split evenly, each part\n" +
			"pinned to one coordinator; --rounds interleaved, each row the median): registrations/s, the ratio to\n" +
			"Badger, CPU per registration; then --ops store\n" +
			"operations through a coordinator on etcd against Badger. The etcd is --etcd, or a one-member cluster this\n" +
			"command starts on loopback with --etcd-binary (default: " + etcdlab.BinaryName + " next to this binary or\n" +
			"in PATH, else etcd). On a machine with few cores this measures the overhead of several coordinators,\n" +
			"not a speed-up: they share the CPUs with each other and the fleet.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "peers", Value: 100, Destination: &f.peers, Usage: "peers in the fleet"},
			&cli.Float64Flag{Name: "rate", Destination: &f.rate, Usage: "peers the storm starts per second (0: all at once)"},
			&cli.StringFlag{Name: "workload", Value: "all", Destination: &f.workload, Usage: "storm, settings, reconnect, lifecycle, search, a comma-separated list, or all"},
			&cli.IntFlag{Name: "stored", Value: 10000, Destination: &f.stored, Usage: "peer records the search workload writes to the store"},
			&cli.IntFlag{Name: "runs", Value: 20, Destination: &f.runs, Usage: "times each search query runs"},
			&cli.IntFlag{Name: "connection-rate", Destination: &f.connRate, Usage: "the site's connection-rate, 1-300 per second (0: admission lifted)"},
			&cli.StringFlag{Name: "transport", Value: "tcp", Destination: &f.transport, Usage: "how peers reach the coordinator: tcp, quic or all"},
			&cli.IntFlag{Name: "fleets", Destination: &f.fleets, Usage: "fleet processes to run the peers in; 0: this process (default: this process while they fit its open-file limit, else as few as hold them)"},
			&cli.IntFlag{Name: "quic-peers", Destination: &f.quicPeers, Usage: "with fleet processes: peers that come over QUIC, in fleet processes of their own; 0: none, an error if this process's open-file limit cannot hold them all over TCP (default: those the limit cannot hold over TCP)"},
			&cli.DurationFlag{Name: "timeout", Destination: &f.timeout, Usage: "bound on each wait for the peers (default 1 min + 20 ms a peer: 7.7 min for 20,000)"},
			&cli.StringFlag{Name: "dir", Destination: &f.dir, Usage: "directory for the site (default: a temporary one, removed afterwards)"},
			&cli.StringFlag{Name: "coordinators", Destination: &f.coordinators, Usage: "compare 1 coordinator on Badger with these counts of coordinators on one etcd (e.g. 1,2,3)"},
			&cli.StringFlag{Name: "etcd", Destination: &f.etcd, Usage: "with --coordinators: the etcd to use, etcd://HOST:PORT (sites go under /jumpmesh-scale/ and stay)"},
			&cli.StringFlag{Name: "etcd-binary", Destination: &f.etcdBin, Usage: "with --coordinators and no --etcd: the etcd member to start on loopback"},
			&cli.IntFlag{Name: "ops", Value: 200, Destination: &f.ops, Usage: "with --coordinators: store operations of each kind timed on each backend"},
			&cli.IntFlag{Name: "rounds", Value: 3, Destination: &f.rounds, Usage: "with --coordinators: storms of each configuration, interleaved (each row is the median)"},
			jsonFlag,
		},
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 0); err != nil {
				return err
			}
			workloads, err := scale.ParseWorkloads(f.workload)
			if err != nil {
				return usagef("%v", err)
			}
			if f.peers <= 0 || f.rate < 0 || f.stored <= 0 || f.runs <= 0 || f.connRate < 0 || f.connRate > 300 {
				return usagef("--peers, --stored and --runs must be positive, --rate not negative, --connection-rate 0-300")
			}
			if f.fleets < 0 || f.quicPeers < 0 || f.quicPeers > f.peers || f.timeout < 0 {
				return usagef("--fleets and --timeout must not be negative, --quic-peers 0 to --peers")
			}
			if cc.IsSet("quic-peers") && cc.IsSet("fleets") && f.fleets == 0 {
				return usagef("--quic-peers needs fleet processes: not with --fleets 0 (the peers in this process)")
			}
			asJSON := cc.Bool("json")
			if f.coordinators != "" {
				if cc.IsSet("fleets") || cc.IsSet("quic-peers") {
					return usagef("--fleets and --quic-peers are not for --coordinators (its fleet stays in this process)")
				}
				cfg := scale.CoordinatorsConfig{Dir: f.dir, Etcd: f.etcd, Ops: f.ops, Rounds: f.rounds}
				if cc.IsSet("peers") {
					cfg.Peers = f.peers
				}
				return simScaleCoordinators(cc, cfg, f.coordinators, f.etcdBin)
			}
			cfg := scale.Config{Dir: f.dir, Peers: f.peers, Rate: f.rate, ConnectionRate: f.connRate, Transport: f.transport,
				StoredPeers: f.stored, SearchRuns: f.runs, QUICPeers: f.quicPeers, Timeout: f.timeout}
			if cc.IsSet("quic-peers") && f.quicPeers == 0 {
				cfg.QUICPeers = scale.NoQUIC
			}
			if cc.IsSet("fleets") {
				cfg.Fleets = f.fleets
				if f.fleets == 0 {
					cfg.Fleets = scale.InProcess
				}
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			cfg.FleetCommand = []string{exe, "sim", "fleet"}
			if slices.Contains(workloads, scale.Search) {
				// `ls` as a technician runs it: this binary, a process a run.
				cfg.ConsoleBinary = exe
			}
			if !asJSON {
				cfg.Progress = func(w scale.Workload) { fmt.Fprintf(cc.App.ErrWriter, "running %s…\n", w) }
				cfg.FleetNote = func(note string) { fmt.Fprintf(cc.App.ErrWriter, "fleet: %s\n", note) }
			}
			res, err := scale.Run(cc.Context, cfg, workloads...)
			if errors.Is(err, scale.ErrFleetPlan) {
				return usagef("%v", err)
			}
			if err != nil {
				// The workloads that finished before the one that failed
				// are reported, then the error.
				if res.Finished() {
					if perr := output(cc, res, func(w io.Writer) { printScale(w, res) }); perr != nil {
						return errors.Join(err, perr)
					}
				}
				return err
			}
			return output(cc, res, func(w io.Writer) { printScale(w, res) })
		},
	}
}

// printScale is the human form of a scale run: one section per workload.
func printScale(w io.Writer, r *scale.Result) {
	start := "all at once"
	if r.Rate > 0 {
		start = fmt.Sprintf("%g per second", r.Rate)
	}
	admission := "admission lifted"
	if r.ConnectionRate > 0 {
		admission = fmt.Sprintf("connection-rate %d/s", r.ConnectionRate)
	}
	fmt.Fprintf(w, "sim scale: %d peers over %s, started %s, %s; %.1f s in all; load average %s\n", r.Peers, r.Transport, start, admission, r.Seconds, r.LoadAverage)
	if r.Failed != "" {
		fmt.Fprintf(w, "%s failed (below: the workloads that finished before it; the error follows)\n", r.Failed)
	}
	if len(r.FleetProcesses) > 0 {
		fmt.Fprintf(w, "fleet: %s\n", r.FleetNote)
	} else {
		fmt.Fprintf(w, "fleet: in this process (open-file limit %d)\n", r.OpenFileLimit)
	}
	if s := r.Storm; s != nil {
		m := s.Memory
		fmt.Fprintln(w, "\nstorm")
		fields(w,
			"  registered / online", fmt.Sprintf("%d / %d", s.Registered, s.Online),
			"  time to the last welcome", fmt.Sprintf("%.2f s", s.Seconds),
			"  peers per second", fmt.Sprintf("%.0f", s.PeersPerSecond),
			"  registration latency", latencyText(s.Latency),
			"  memory per online peer", fmt.Sprintf("heap %s (live %s) + stacks %s, %.1f goroutines (%s)", kb(m.OnlineHeap), kb(m.OnlineLive), kb(m.OnlineStack), m.Goroutines, endsText(m.Ends)),
			"  CPU per registration", cpuText(s),
			"  idle fleet host per peer", kb(m.IdleHost),
			"  failed / retried / refused / gave up", fleetText(s.Fleet))
	}
	if s := r.Settings; s != nil {
		met := "met"
		if s.GoalRatio > 1 {
			met = "not met"
		}
		fmt.Fprintln(w, "\nsettings (a setting every peer keeps, changed by the administrator)")
		fields(w,
			"  the administrator's wait", fmt.Sprintf("%.1f ms (its store write included; the pushes follow)", s.AdminMs),
			"  written to every peer's stream", fmt.Sprintf("%.2f s", s.WrittenSeconds),
			"  read by every peer", fmt.Sprintf("%.2f s", s.ReceivedSeconds),
			"  goal-ratio", fmt.Sprintf("%.2f (read by every peer ÷ %s; the goal is for 20,000 peers: %s at %d)", s.GoalRatio, scale.SettingsGoal, met, s.Peers),
			"  peers dropped for not taking it", strconv.FormatInt(s.SlowPeers, 10))
	}
	if c := r.Reconnect; c != nil {
		fmt.Fprintln(w, "\nreconnect (coordinator restarted under the online peers)")
		fields(w,
			"  all back after", fmt.Sprintf("%.2f s (restart %.2f s)", c.Seconds, c.RestartSeconds),
			"  ratio to the first registration", fmt.Sprintf("%.2f", c.RatioToFirst),
			"  ratio to N ÷ connection-rate", orDash(ratioText(c.RatioToRate)),
			"  failed / retried / refused / gave up", fleetText(c.Fleet))
	}
	if l := r.Lifecycle; l != nil {
		fmt.Fprintf(w, "\nlifecycle (lost after %d days, deleted after %d; all offline %.2f s after the stop)\n", l.LostAfterDays, l.DeleteAfterDays, l.OfflineSeconds)
		rows := [][]string{{"  STEP", "OFFLINE FOR", "ONLINE", "OFFLINE", "LOST", "DELETED", "SWEEP"}}
		for _, s := range l.Steps {
			rows = append(rows, []string{"  " + s.Name, s.After, strconv.Itoa(s.States.Online), strconv.Itoa(s.States.Offline),
				strconv.Itoa(s.States.Lost), strconv.Itoa(s.States.Deleted), fmt.Sprintf("%.2f ms", s.SweepMs)})
		}
		table(w, rows)
	}
	if s := r.Search; s != nil {
		fmt.Fprintf(w, "\nsearch (%d records written in %.2f s, %d peers loaded in %.2f s, first search %.1f ms; %d runs a query)\n",
			s.Stored, s.WriteSeconds, s.Known, s.LoadSeconds, s.FirstSearchMs, s.Runs)
		rows := [][]string{{"  QUERY", "MATCHES", "REPLY", "COORDINATOR p50/p90/p99", "ENCODE p50/p99", "DECODE p50/p99", "CONSOLE p50/p90/p99", "--json p50/p90/p99", "PRINT p50 ls / --json", "ALLOCS ls / --json", "COMMAND ls p50/p90/p99", "COMMAND --json p50/p90/p99", "COMMAND CPU p50 ls / --json"}}
		for _, q := range s.Queries {
			console := percentiles(q.Console)
			switch {
			case q.Console.Count == 0:
				console = "failed: " + q.ConsoleError
			case q.ConsoleErrors > 0:
				console += fmt.Sprintf(" (%d failed: %s)", q.ConsoleErrors, q.ConsoleError)
			}
			query := q.Query
			if query == "" {
				query = `""`
			}
			rows = append(rows, []string{"  " + query, strconv.Itoa(q.Matches), fmt.Sprintf("%.0f KB", float64(q.ReplyBytes)/1000),
				percentiles(q.Server), fmt.Sprintf("%.1f / %.1f ms", q.Encode.P50, q.Encode.P99),
				fmt.Sprintf("%.1f / %.1f ms", q.Decode.P50, q.Decode.P99), console, percentiles(q.ConsoleJSON),
				fmt.Sprintf("%.1f / %.1f ms", q.Print.P50, q.PrintJSON.P50),
				fmt.Sprintf("%s / %s", allocsText(q.ConsoleAllocs), allocsText(q.ConsoleJSONAllocs)),
				processText(q.Process, q), processText(q.ProcessJSON, q), processCPUText(q)})
		}
		table(w, rows)
		met := func(r float64) string {
			if r > 1 {
				return "not met"
			}
			return "met"
		}
		if s.ProcessGoalRatio > 0 {
			fmt.Fprintf(w, "search goal-ratio %.2f (the worst command's p99 ÷ %s, each run a process: ls %.2f %s, ls --json %.2f %s)\n",
				s.ProcessGoalRatio, scale.SearchGoal, s.ProcessGoalRatioLs, met(s.ProcessGoalRatioLs), s.ProcessGoalRatioJSON, met(s.ProcessGoalRatioJSON))
		}
		fmt.Fprintf(w, "search in-process goal-ratio %.2f (the worst console p99 in this process ÷ %s: ls %.2f %s, ls --json %.2f %s)\n",
			s.GoalRatio, scale.SearchGoal, s.GoalRatioLs, met(s.GoalRatioLs), s.GoalRatioJSON, met(s.GoalRatioJSON))
	}
}

// processText is a command's percentiles, its failures, or "-" when the
// commands did not run.
func processText(l scale.Latency, q scale.QueryResult) string {
	switch {
	case l.Count == 0 && q.ProcessErrors == 0:
		return "-"
	case l.Count == 0:
		return "failed: " + q.ProcessError
	case q.ProcessErrors > 0:
		return percentiles(l) + fmt.Sprintf(" (%d failed: %s)", q.ProcessErrors, q.ProcessError)
	}
	return percentiles(l)
}

// processCPUText is the commands' CPU, or "-" when they did not run.
func processCPUText(q scale.QueryResult) string {
	if q.ProcessCPU.Count == 0 && q.ProcessJSONCPU.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f / %.1f ms", q.ProcessCPU.P50, q.ProcessJSONCPU.P50)
}

// allocsText is one run's allocations: "12.3k 456 KB".
func allocsText(a scale.Allocs) string {
	return fmt.Sprintf("%.1fk %.0f KB", a.Objects/1e3, a.KB)
}

func ratioText(r float64) string {
	if r == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f", r)
}

func latencyText(l scale.Latency) string {
	return fmt.Sprintf("p50 %.0f ms, p90 %.0f ms, p99 %.0f ms, max %.0f ms", l.P50, l.P90, l.P99, l.Max)
}

func percentiles(l scale.Latency) string {
	return fmt.Sprintf("%.1f / %.1f / %.1f ms", l.P50, l.P90, l.P99)
}

func fleetText(t scale.FleetTotals) string {
	s := fmt.Sprintf("%d / %d / %d / %d", t.Failures, t.Retries, t.Refusals, t.GaveUp)
	if t.Sample != "" && (t.Failures > 0 || t.Refusals > 0) {
		s += " (last: " + t.Sample + ")"
	}
	return s
}

// cpuText is the storm's CPU per registration, this process's and the
// fleet processes'.
func cpuText(s *scale.StormResult) string {
	if s.Memory.Ends == "coordinator" {
		return fmt.Sprintf("%.2f ms the coordinator's (this process), %.2f ms the fleet processes'", s.CPUPerPeerMs, s.FleetCPUPerPeerMs)
	}
	return fmt.Sprintf("%.2f ms (coordinator and fleet)", s.CPUPerPeerMs)
}

// endsText says whose memory the storm's figure is.
func endsText(ends string) string {
	if ends == "coordinator" {
		return "the coordinator's alone: the fleet ran in processes of its own"
	}
	return "both ends: coordinator and fleet in this process"
}

// kb prints bytes in kilobytes (1000), as the peer benchmarks do (docs/performance.md).
func kb(b float64) string { return fmt.Sprintf("%.1f KB", b/1000) }
