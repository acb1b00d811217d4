package peer_test

// Where the benchmark fleet's CPU goes (#16): the registration sweep's
// fleet runs every peer of a size as a full libp2p host in one child
// process, sharing the machine's two cores with the coordinator it
// measures, so every µs the fleet spends beyond what the peers themselves
// would spend on their own machines is taken from the coordinator.
//
// What session 30 found (docs/performance.md): at 5,000 peers the fleet's
// CPU per registration was 1.35–1.6 × its best size's, and none of it GC
// (the fleet collects no garbage during a storm: its heap goal after
// building the hosts is twice their 1.1–1.6 GB) nor page faults (28 per
// registration at every size). It grew with the storm, in the Go
// runtime's scheduler: its timer-heap scans (runtime.(*timers).adjust,
// 60–90 → 440–510 µs per registration from 1,000 to 5,000 peers in two
// profiles on the quiet machine) while thousands of dials wait in the
// coordinator's room. Idle hosts' tickers add little (12 more idle timers
// per host: +40–70 µs at 5,000; libp2p's address manager ticks every 5 s,
// 8–15 µs per host-second). Splitting the fleet over 5 processes or
// leaving out its hosts' resource and connection managers did not lower
// it; more Go processors in the one fleet process did (sweepFleetProcs).

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
)

const (
	// envFleetCPUProfile=FILE writes the fleet child's CPU profile from
	// "go" to the last peer's first welcome to FILE-N (N its peers; a
	// second fleet's FILE-N.J) and its heap, after a GC, to FILE-N.heap
	// once they are all welcomed.
	envFleetCPUProfile = "JM_BENCH_FLEET_CPU_PROFILE"
	// envFleetIdle=DURATION makes the sweep measure, after each size's
	// storm, the fleet's CPU over DURATION with all its peers online and
	// nothing to do: what idle hosts cost it per peer-second (a daemon on
	// its own machine pays its share of that too, but not in one process
	// beside the coordinator).
	envFleetIdle = "JM_BENCH_FLEET_IDLE"
	// envFleetProcs sets the fleet children's GOMAXPROCS (default: the
	// sweep's sweepFleetProcs, the others' the runtime's).
	envFleetProcs = "JM_BENCH_FLEET_PROCS"
	// envCoordGOGC runs the coordinator child at GOGC=VALUE instead of
	// coordinator.GCPercent (an experiment's knob: the coordinator's GC is
	// its whole growth per registration at 5,000 peers).
	envCoordGOGC = "JM_BENCH_COORD_GOGC"
)

// childEnv is the environment of a child process in role.
func childEnv(role string) []string {
	env := os.Environ()
	if v := os.Getenv(envCoordGOGC); v != "" && role == roleCoordinator {
		env = append(env, "GOGC="+v)
	}
	return env
}

// sweepFleetProcs is the GOMAXPROCS of BenchmarkRegistrationSweep's fleet:
// more Go processors than the machine's 2 cores, so that the timers of
// its thousands of hosts and waiting dials are spread over 8 per-P timer
// heaps instead of 2. The runtime scans a P's whole timer heap when a
// modified timer comes due (runtime.(*timers).adjust), and with 5,000
// peers in one process those scans were the fleet's growth: 60–90 µs per
// registration at 1,000 peers, 440–510 at 5,000. A daemon on its own
// machine keeps a few dozen timers; nothing a peer sends changes, and the
// fleet still runs on the same 2 cores (session 30, docs/performance.md).
const sweepFleetProcs = 8

// setFleetProcs sets a fleet child's GOMAXPROCS: envFleetProcs, else def
// (0: the runtime's default).
func setFleetProcs(def int) error {
	n := def
	if raw := os.Getenv(envFleetProcs); raw != "" {
		var err error
		if n, err = strconv.Atoi(raw); err != nil || n < 1 {
			return fmt.Errorf("%s=%q: want a count of processors", envFleetProcs, raw)
		}
	}
	if n > 0 {
		runtime.GOMAXPROCS(n)
	}
	return nil
}

// fleetProfile is the fleet child's envFleetCPUProfile file for its peers,
// or "" when none is asked for.
func fleetProfile(cfg fleetConfig) string {
	path := os.Getenv(envFleetCPUProfile)
	if path == "" {
		return ""
	}
	if cfg.Part > 0 {
		return fmt.Sprintf("%s-%d.%d", path, cfg.Peers, cfg.Part)
	}
	return fmt.Sprintf("%s-%d", path, cfg.Peers)
}
