package labtest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/sim/netlab"
)

// Skip skips the test, with the reason, unless this machine can build labs.
func Skip(t testing.TB) {
	t.Helper()
	if err := netlab.Available(); err != nil {
		t.Skipf("network lab unavailable: %v (run the lab's tests as root on Linux)", err)
	}
}

// New builds topo, or skips the test when labs cannot run here. The lab is
// closed when the test and its subtests end, and the test fails if the
// teardown left anything behind.
func New(t testing.TB, topo netlab.Topology) *netlab.Lab {
	t.Helper()
	Skip(t)
	ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
	defer cancel()
	lab, err := netlab.New(ctx, topo, netlab.Config{})
	if err != nil {
		t.Fatalf("building lab: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("closing lab %s: %v", lab.Prefix(), err)
		}
	})
	return lab
}

// BuildTimeout bounds building one lab in a test.
const BuildTimeout = 30 * time.Second

// watchdogMargin is how long before -test.timeout live labs are torn down:
// the testing package's own timeout panics without running cleanups.
const watchdogMargin = 10 * time.Second

// Main runs the tests of a package that builds labs. Before the tests it
// removes runs whose owner process is gone; during them, SIGINT and SIGTERM
// and an approaching -test.timeout close every live lab. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(labtest.Main(m)) }
func Main(m *testing.M) int {
	flag.Parse()
	if netlab.Available() == nil {
		if removed, err := netlab.CleanStale(); len(removed) > 0 || err != nil {
			fmt.Fprintf(os.Stderr, "labtest: removed runs of a dead test process: %v (err: %v)\n", removed, err)
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		sig, ok := <-sigs
		if !ok {
			return
		}
		err := netlab.CloseAll()
		fmt.Fprintf(os.Stderr, "labtest: %v: closed live labs (err: %v)\n", sig, err)
		os.Exit(130)
	}()
	if d := testTimeout(); d > 0 {
		// A short timeout (the lifecycle test's) still leaves a quarter of
		// it for the teardown, so that a busy machine finishes in time.
		margin := min(watchdogMargin, d/4)
		t := time.AfterFunc(d-margin, func() {
			err := netlab.CloseAll()
			fmt.Fprintf(os.Stderr, "labtest: -test.timeout %v is near: closed live labs (err: %v)\n", d, err)
		})
		defer t.Stop()
	}
	return m.Run()
}

func testTimeout() time.Duration {
	f := flag.Lookup("test.timeout")
	if f == nil {
		return 0
	}
	if g, ok := f.Value.(flag.Getter); ok {
		if d, ok := g.Get().(time.Duration); ok {
			return d
		}
	}
	return 0
}
