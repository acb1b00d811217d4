package peer_test

// Where the benchmark fleet's CPU goes (#16): the registration sweep's
// fleet runs every peer of a size as a full libp2p host in one child
// process, sharing the machine's two cores with the coordinator it
// measures, so every µs the fleet spends beyond what the peers themselves
// would spend on their own machines is taken from the coordinator.

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strconv"
	"syscall"
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
	// envFleetProcs sets the fleet children's GOMAXPROCS (an experiment's
	// knob).
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

// setFleetProcs applies envFleetProcs in a fleet child.
func setFleetProcs() error {
	raw := os.Getenv(envFleetProcs)
	if raw == "" {
		return nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 {
		return fmt.Errorf("%s=%q: want a count of processors", envFleetProcs, raw)
	}
	runtime.GOMAXPROCS(n)
	return nil
}

// minorFaults is how many pages this process has touched for the first
// time (minor page faults: the kernel maps and zeroes a page).
func minorFaults() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Minflt
}

// runtimeCPU is this process's runtime bookkeeping so far: the CPU its GC
// spent (mark workers, assists and pauses; runtime/metrics' estimate) and
// its completed GC cycles.
func runtimeCPU() (gc time.Duration, cycles int64) {
	s := []rtmetrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/gc/cycles/total:gc-cycles"}}
	rtmetrics.Read(s)
	return seconds(s[0]), uint64Of(s[1])
}

// gcIdleCPU is the part of runtimeCPU's GC CPU its idle mark workers
// spent: marking on processors that had nothing else to run. On a
// machine with a core to spare it is CPU no registration waited for.
func gcIdleCPU() time.Duration {
	s := []rtmetrics.Sample{{Name: "/cpu/classes/gc/mark/idle:cpu-seconds"}}
	rtmetrics.Read(s)
	return seconds(s[0])
}

func seconds(s rtmetrics.Sample) time.Duration {
	if s.Value.Kind() != rtmetrics.KindFloat64 {
		return 0
	}
	return time.Duration(s.Value.Float64() * float64(time.Second))
}

func uint64Of(s rtmetrics.Sample) int64 {
	if s.Value.Kind() != rtmetrics.KindUint64 {
		return 0
	}
	return int64(s.Value.Uint64())
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
