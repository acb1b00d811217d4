package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/sim/netlab"
	"github.com/jumpmesh/jumpmesh/sim/report"
	"github.com/jumpmesh/jumpmesh/sim/results"
	"github.com/jumpmesh/jumpmesh/sim/scenario"
)

// simRunCommand is `jumpmesh sim run SCENARIO`: a scenario file, or a
// shipped scenario by name, with real jumpmesh processes in the lab.
func simRunCommand() *cli.Command {
	var f struct{ out, binary, etcd string }
	return &cli.Command{
		Name:      "run",
		Usage:     "run a scenario (a file, or a shipped scenario's name) with real jumpmesh processes in the lab",
		ArgsUsage: "SCENARIO",
		UsageText: "jumpmesh sim run SCENARIO [--out DIR] [--binary PATH] [--json]\n\n" +
			"Shipped scenarios: " + strings.Join(scenario.Shipped(), ", ") + "\n\n" +
			"Examples:\n  sudo jumpmesh sim run quickstart\n  sudo jumpmesh sim run ./my-lab.yaml --out /tmp/lab",
		Description: "Builds the scenario's topology in network namespaces, runs each host's jumpmesh process with its\n" +
			"own data dir, runs the steps in order (stopping at the first failure), tears everything down and\n" +
			"writes results.json and a directory per host (data, console home, logs) into --out.\n" +
			"Exits 1 if a step failed. Needs root.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Destination: &f.out, Usage: "output directory (default: ./sim-out/SCENARIO-TIME)"},
			&cli.StringFlag{Name: "binary", Destination: &f.binary, Usage: "jumpmesh binary the hosts run (default: this one)"},
			&cli.StringFlag{Name: "etcd-binary", Destination: &f.etcd, Usage: "etcd member the scenario's etcd hosts run (default: " + scenario.EtcdBinaryName + " next to this binary or in PATH, else etcd; build it with go build -o bin/" + scenario.EtcdBinaryName + " ./sim/labetcd)"},
			pcapFlag,
			jsonFlag,
		},
		Action: func(cc *cli.Context) error {
			if err := needArgs(cc, 1); err != nil {
				return err
			}
			sc, err := scenario.Load(cc.Args().First())
			if err != nil {
				return usagef("%v", err)
			}
			return runScenario(cc, sc, f.out, f.binary, f.etcd)
		},
	}
}

// runScenario runs sc in the lab, prints each step as it ends (or the
// results as JSON), writes results.json and report.html into out (default
// ./sim-out/NAME-TIME) and exits 1 when a step failed.
// pcapFlag asks for a pcap capture of every host's interface.
var pcapFlag = &cli.BoolFlag{Name: "pcap", Usage: "capture every host's traffic into OUT/hosts/HOST/HOST.pcap (tcpdump -r, Wireshark)"}

func runScenario(cc *cli.Context, sc *scenario.Scenario, out, bin, etcdBin string) error {
	if err := netlab.Available(); err != nil {
		return err
	}
	var err error
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return err
		}
	}
	if out == "" {
		out = filepath.Join("sim-out", sc.Name+"-"+time.Now().Format("20060102-150405"))
	}
	w := cc.App.Writer
	if cc.Bool("json") {
		w = io.Discard
	}
	fmt.Fprintf(w, "scenario %s: %d hosts, %d steps\n", sc.Name, len(sc.Hosts), len(sc.Steps))
	bar := newScenarioProgress(w, sc)
	defer bar.Close()
	res, err := scenario.Run(cc.Context, sc, scenario.Options{Binary: bin, EtcdBinary: etcdBin, OutDir: out, Progress: bar.Step, Pcap: cc.Bool("pcap")})
	bar.Close()
	if err != nil && res == nil {
		return err
	}
	path := filepath.Join(out, results.File)
	if abs, aerr := filepath.Abs(path); aerr == nil {
		path = abs
	}
	if rerr := report.FromResultsFile(path); rerr != nil {
		fmt.Fprintf(cc.App.ErrWriter, "jumpmesh: report: %v\n", rerr)
	}
	if oerr := output(cc, res, func(w io.Writer) {
		state := "passed"
		if !res.OK {
			state = "FAILED"
		}
		fmt.Fprintf(w, "%s %s in %.1fs; results: %s, report: %s\n", sc.Name, state, res.DurationMS/1000, path,
			filepath.Join(filepath.Dir(path), report.File))
	}); oerr != nil {
		return oerr
	}
	if err != nil {
		return err
	}
	if !res.OK {
		return exitCodeError{exitError}
	}
	return nil
}
