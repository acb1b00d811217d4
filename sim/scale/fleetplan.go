package scale

import (
	"errors"
	"fmt"
	"strings"
)

// ErrFleetPlan is what every error of a fleet that cannot be placed as
// asked matches (errors.Is): too few fleet processes for the open-file
// limit, more than peers, none to run them with.
var ErrFleetPlan = errors.New("the fleet cannot run as asked")

// planError is one of ErrFleetPlan's.
type planError struct{ error }

func (planError) Is(target error) bool { return target == ErrFleetPlan }

// InProcess as Config.Fleets keeps the fleet in the engine's process.
const InProcess = -1

// NoQUIC as Config.QUICPeers sends no peer over QUIC: the plan fails if
// this process's open-file limit cannot hold them all over TCP (0 lets
// QUIC carry the ones it cannot).
const NoQUIC = -1

// What the plan counts in open files: the coordinator's process keeps
// coordinatorReserve for its store, listeners and console, and one socket
// a TCP peer (three through a jumpoint: the jumpoint's two sides); a fleet
// process keeps childReserve, and childFilesPerPeer a peer (its socket,
// and the next one while it redials).
const (
	coordinatorReserve = 512
	childReserve       = 256
	childFilesPerPeer  = 2
)

// FleetPart is one fleet process: its peers, and how they reach the
// coordinator ("tcp", "quic", or "all": the key's addresses, TCP first).
type FleetPart struct {
	Peers     int    `json:"peers"`
	Transport string `json:"transport"`
}

// fleetPlan is where the storm's peers run: in this process (Parts empty)
// or in one child process a part. Note says why, for the report.
type fleetPlan struct {
	Parts []FleetPart
	Note  string
	// FileLimit is this process's open-file limit (raised as far as it
	// may be).
	FileLimit int
}

// planFleet decides where cfg's peers run. Automatically (Fleets 0) they
// stay in this process while they fit its open-file limit — both ends of
// every connection are then its files — and go to as few child processes
// as hold them otherwise; the peers this process's limit cannot hold over
// TCP come over QUIC, in fleet processes of their own (the coordinator
// holds one UDP socket for all of them).
// limit is this process's open-file limit (openFileLimit).
func planFleet(cfg Config, limit int) (fleetPlan, error) {
	plan, err := placeFleet(cfg, limit)
	if err != nil {
		return plan, planError{err}
	}
	return plan, nil
}

func placeFleet(cfg Config, limit int) (fleetPlan, error) {
	n := cfg.peers()
	plan := fleetPlan{FileLimit: limit}
	inProcess := n*filesPerPeer + 4096
	if cfg.Jumpoint {
		inProcess += 2 * n
	}
	switch {
	case cfg.Fleets == InProcess:
		if inProcess > limit {
			plan.Note = fmt.Sprintf("in this process as asked, though %d peers may need %d open files and its limit is %d", n, inProcess, limit)
		}
		return plan, nil
	case cfg.Fleets == 0 && cfg.QUICPeers <= 0 && inProcess <= limit:
		return plan, nil
	case cfg.Fleets < 0:
		return plan, fmt.Errorf("fleets %d: want %d (in this process), 0 (chosen) or a count of processes", cfg.Fleets, InProcess)
	}
	if len(cfg.FleetCommand) == 0 {
		return plan, fmt.Errorf("%d peers need %d open files in this process, its limit is %d, and there is no command to run fleet processes with", n, inProcess, limit)
	}
	transport := cmpTransport(cfg.transport())
	perChild := (limit - childReserve) / childFilesPerPeer
	perCoordinator := limit - coordinatorReserve
	if cfg.Jumpoint {
		perCoordinator /= 3
	}
	quic := max(0, min(cfg.QUICPeers, n))
	if transport == "quic" {
		quic = 0 // every part is QUIC already
	} else if cfg.QUICPeers == NoQUIC && n > perCoordinator {
		files := n + coordinatorReserve
		if cfg.Jumpoint {
			files = 3*n + coordinatorReserve
		}
		return plan, fmt.Errorf("no peer over QUIC: %d TCP peers need %d open files in this process, its limit is %d (at most %d): raise it (ulimit -n) or let QUIC carry the rest", n, files, limit, perCoordinator)
	} else if quic == 0 && cfg.QUICPeers != NoQUIC && n > perCoordinator {
		if cfg.Jumpoint {
			return plan, fmt.Errorf("%d peers behind a jumpoint need %d open files in this process (three a peer), its limit is %d: at most %d", n, 3*n+coordinatorReserve, limit, perCoordinator)
		}
		quic = n - perCoordinator
	}
	main := n - quic
	k := cfg.Fleets
	if k == 0 {
		k = max(1, (main+perChild-1)/perChild)
	}
	if k > main && main > 0 {
		return plan, fmt.Errorf("%d fleet processes for %d peers", k, main)
	}
	if each := (main + k - 1) / k; each > perChild {
		return plan, fmt.Errorf("%d fleet processes of %d peers: a process's open-file limit (%d) holds %d; want at least %d processes", k, each, limit, perChild, (main+perChild-1)/perChild)
	}
	var desc []string
	split := func(peers, parts int, transport string) {
		for i := range parts {
			p := peers / parts
			if i < peers%parts {
				p++
			}
			plan.Parts = append(plan.Parts, FleetPart{Peers: p, Transport: transport})
			desc = append(desc, fmt.Sprintf("%d over %s", p, transport))
		}
	}
	if main > 0 {
		split(main, k, transport)
	}
	if quic > 0 {
		split(quic, (quic+perChild-1)/perChild, "quic")
	}
	why := fmt.Sprintf("as asked (--fleets %d)", cfg.Fleets)
	if cfg.Fleets == 0 {
		why = fmt.Sprintf("in this process they would need %d open files, its limit is %d", inProcess, limit)
	}
	plan.Note = fmt.Sprintf("%d peers in %d fleet processes (%s): %s", n, len(plan.Parts), strings.Join(desc, ", "), why)
	if quic > 0 && cfg.QUICPeers == 0 {
		plan.Note += fmt.Sprintf("; this process's limit holds %d TCP peers (one socket each), the other %d come over QUIC (one socket for all)", perCoordinator, quic)
	}
	return plan, nil
}

// cmpTransport names Config.transport's "" (the key's addresses, TCP
// first) for a fleet process.
func cmpTransport(t string) string {
	if t == "" {
		return "all"
	}
	return t
}
