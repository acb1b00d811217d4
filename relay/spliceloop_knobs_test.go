package relay_test

import (
	"os"

	"github.com/jumpmesh/jumpmesh/relay"
)

// benchRawEnv, set to 0 in a relay child's environment, makes its splice
// loops make every system call through Go's scheduler (as before session
// 27), to compare with the raw calls (docs/performance.md).
const benchRawEnv = "JUMPMESH_RELAY_BENCH_RAW"

func init() {
	if os.Getenv(benchRawEnv) == "0" {
		relay.SetSpliceRaw(false)
	}
}
