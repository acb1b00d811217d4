package netlab_test

import (
	"os"
	"testing"

	"github.com/jumpmesh/jumpmesh/sim/netlab/labtest"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(labtest.Main(m))
}
