package peer_test

// Where the benchmark fleet's CPU goes (#16): the registration sweep's
// fleet runs every peer of a size as a full libp2p host in one child
// process, sharing the machine's two cores with the coordinator it
// measures, so every µs the fleet spends beyond what the peers themselves
// would spend on their own machines is taken from the coordinator.

import (
	"fmt"
	"os"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strconv"
	"time"
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
	// envFleetGOGC sets the fleet children's GOGC (an experiment's knob).
	envFleetGOGC = "JM_BENCH_FLEET_GOGC"
)

// setFleetGC applies envFleetGOGC in a fleet child.
func setFleetGC() error {
	raw := os.Getenv(envFleetGOGC)
	if raw == "" {
		return nil
	}
	pct, err := strconv.Atoi(raw)
	if err != nil {
		return fmt.Errorf("%s=%q: %w", envFleetGOGC, raw, err)
	}
	debug.SetGCPercent(pct)
	return nil
}

// runtimeCPU is this process's runtime bookkeeping so far: the CPU its GC
// spent (mark workers, assists and pauses; runtime/metrics' estimate) and
// its completed GC cycles.
func runtimeCPU() (gc time.Duration, cycles int64) {
	s := []rtmetrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/gc/cycles/total:gc-cycles"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() == rtmetrics.KindFloat64 {
		gc = time.Duration(s[0].Value.Float64() * float64(time.Second))
	}
	if s[1].Value.Kind() == rtmetrics.KindUint64 {
		cycles = int64(s[1].Value.Uint64())
	}
	return gc, cycles
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
