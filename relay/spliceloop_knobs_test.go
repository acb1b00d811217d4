package relay_test

import (
	"os"

	"github.com/jumpmesh/jumpmesh/relay"
)

// benchRawEnv, set to 0 in a relay child's environment, makes its splice
// loops make every system call through Go's scheduler (as before session
// 27), to compare with the raw calls (docs/performance.md).
const benchRawEnv = "JUMPMESH_RELAY_BENCH_RAW"

// benchDelayAckEnv, set to 0 in a relay child's environment, makes its
// splice loops leave quick ACKs on (as before session 28), to compare; set
// to "each", they turn them off before every read (the gap rule off).
const benchDelayAckEnv = "JUMPMESH_RELAY_BENCH_DELACK"

func init() {
	if os.Getenv(benchRawEnv) == "0" {
		relay.SetSpliceRaw(false)
	}
	switch os.Getenv(benchDelayAckEnv) {
	case "0":
		relay.SetSpliceDelayAck(false, 0)
	case "each":
		relay.SetSpliceDelayAck(true, 0)
	}
}
