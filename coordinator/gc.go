package coordinator

import (
	"os"
	"runtime/debug"
)

// GCPercent is the garbage collector's target that `coordinator run` sets
// for its process unless the environment sets GOGC. What an online peer
// costs the coordinator is ~30 KB of live objects and ~24 KB of stacks;
// at Go's default of 100 the heap's spans also hold 15–19 KB of garbage
// per peer between collections (71–72 KB per online peer in all). At 50:
// 62.5–64.6 KB, with the same CPU per registration (2,819–3,079 µs
// against 3,023–3,128; at 25, 59.4 KB but 4–6 % more CPU), measured by
// BenchmarkOnlinePeerMemory with 2,000 and 20,000 peers (2026-12-03,
// session 25, docs/performance.md).
const GCPercent = 50

// TuneGC sets the process's garbage collector target to GCPercent, unless
// GOGC is set. `coordinator run` calls it, and so does the benchmarks'
// coordinator process, so that they measure what runs.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}
